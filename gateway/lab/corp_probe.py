"""Who each VM reaches behind a gateway: the corp networks' servers, asked for real
and asked of the data plane.

Every corp network of the gateway lab has the same address (172.16.0.2): a VM can
only ever name that address, and what it reached is told by what answered, since
each corp's server answers with its routing domain's name (``corp_server.py``). So
each VM asks the address over TCP and UDP, and the answer names the corp it reached.

Who *should* answer is asked of the real data plane, as for the VMs' matrix
(``probe.expectations``): the VM's stack sends an echo request through the policy's
``Fabric`` (ARP for its gateway, then the packet), the corp side of the gateway's
TAP that the request comes out of answers the gateway's ARP and the echo as a stack
would, and the answer counts only if the reply gets back to the VM.

A VM of a host that is not ours (``PeerPlan``: no node of the fabric plays it) is
asked the same way, as its host's flows would carry it (``ovs_peer.py``): its echo
request reaches the fabric as NVGRE from its host's PA to its gateway's, and the
answer counts if the reply leaves for its host's PA as NVGRE of its VSID to its MAC.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from functools import partial
from ipaddress import IPv4Address

from gateway.dataplane import Delivery, Fabric, Step
from gateway.errors import BadPacket
from gateway.lab.corp_server import PORT
from gateway.lab.plan import CorpPlan, LabPlan, PeerPlan, PeerVmPlan, VmPlan
from gateway.lab.probe import PING_TIMEOUT_S, Cell, _icmp
from gateway.policy import Snapshot
from gateway.wire import (
    ARP_OP_REQUEST,
    ETH_ADDR_SIZE,
    ETH_HEADER_SIZE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    IPPROTO_ICMP,
    ArpPacket,
    build_arp_reply,
    build_ethernet,
    build_icmp_echo,
    build_icmp_echo_reply,
    build_ipv4,
    encapsulate_ipv4,
    parse_arp,
    parse_nvgre,
)

PROTOCOLS = ("tcp", "udp")
_NOW = 0.0
_CORP_MAC = b"\x02\xc0\x00\x00\x00\x02"  # the corp side's MAC in the fabric: any will do
_ASK = """
import socket, sys
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
with socket.socket(socket.AF_INET, kind) as s:
    s.settimeout(float(sys.argv[4]))
    s.connect((sys.argv[2], int(sys.argv[3])))
    if kind == socket.SOCK_DGRAM:
        s.send(b"who are you?")
    sys.stdout.write(s.recv(2048).decode())
"""


def ask(vm: VmPlan, address: str, protocol: str, port: int = PORT) -> str | None:
    """The name the server at ``address`` gives ``vm`` over ``protocol`` (tcp, udp)
    on ``port``, or None when nothing answered."""
    command = ["ip", "netns", "exec", vm.namespace, sys.executable, "-c", _ASK, protocol]
    command += [address, str(port), str(PING_TIMEOUT_S)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    return done.stdout.strip() or None if done.returncode == 0 else None


def corp_connectivity(snapshot: Snapshot, plan: LabPlan) -> list[Cell]:
    """Each VM asks every corp address (once per address: the corps may share one)
    over TCP and UDP; a cell per VM and corp says whether that corp answered it."""
    expected = corp_expectations(snapshot, plan)
    cells = []
    for vm in plan.every_vm:
        answers: dict[str, str | None] = {}
        for address in sorted({str(corp.address.ip) for corp in plan.corps}):
            said = {ask(vm, address, protocol) for protocol in PROTOCOLS}
            answer = said.pop() if len(said) == 1 else "/".join(sorted(map(str, said)))
            answers[address] = answer
        for corp in plan.corps:
            answered = answers[str(corp.address.ip)]
            cells.append(
                Cell(
                    vm.name,
                    corp.name,
                    answered if answered == corp.name else None,
                    corp.name if expected[vm.name, corp.name] == corp.name else None,
                )
            )
    return cells


def corp_expectations(snapshot: Snapshot, plan: LabPlan) -> dict[tuple[str, str], str | None]:
    """Per VM (a host's, or one of a host that is not ours) and corp network: the
    corp whose server answers the VM's echo request to that corp's address on the
    data plane (module docstring), or None."""
    fabric = Fabric(snapshot)
    peers = {vm.vm.name: (peer, vm) for peer in plan.peers for vm in peer.vms}
    return {
        (vm.name, corp.name): _reaches(fabric, plan, vm, corp.address.ip, peers.get(vm.name))
        for vm in plan.every_vm
        for corp in plan.corps
    }


def _reaches(
    fabric: Fabric,
    plan: LabPlan,
    vm: VmPlan,
    address: IPv4Address,
    peer: tuple[PeerPlan, PeerVmPlan] | None = None,
) -> str | None:
    """The corp whose server answers ``vm``'s echo request to ``address`` on the
    data plane (module docstring), or None; ``peer``: the host that is not ours
    that ``vm`` is on, and ``vm`` there."""
    if vm.gateway is None:
        return None
    echo = build_icmp_echo(1, 1, b"nvgw lab")
    ip = build_ipv4(vm.address.ip.packed, address.packed, IPPROTO_ICMP, len(echo)) + echo
    if peer is None:
        mac, _ = fabric.resolve(vm.node, vm.name, vm.gateway.packed, _NOW)
        if mac is None:
            return None
        port = fabric.tap(vm.node, vm.name)
        sent = build_ethernet(mac, port.mac, ETHERTYPE_IPV4) + ip
        deliveries, _ = _carry(fabric, plan, partial(fabric.from_tap, vm.node, vm.name, sent, _NOW))
    else:
        host, on_peer = peer
        frame = build_ethernet(_mac(on_peer.router_mac), _mac(on_peer.mac), ETHERTYPE_IPV4) + ip
        pas = host.address.ip.packed, on_peer.router_pa.packed
        datagram = encapsulate_ipv4(*pas, vm.vsid, 0, frame)
        deliveries, _ = _carry(fabric, plan, partial(fabric.to_pa, datagram, _NOW))
    for delivery in deliveries:
        corp = _corp(plan, delivery.tap)
        request = _icmp(delivery.frame, ICMP_ECHO_REQUEST)
        if corp is None or corp.address.ip != address or request is None:
            continue  # a stack takes echo requests for its own address only
        sender, message = request
        reply = build_icmp_echo_reply(message)
        ip = build_ipv4(address.packed, sender.packed, IPPROTO_ICMP, len(reply))
        gateway_mac = delivery.frame[ETH_ADDR_SIZE : 2 * ETH_ADDR_SIZE]  # the source
        answer = build_ethernet(gateway_mac, _CORP_MAC, ETHERTYPE_IPV4) + ip + reply
        back, nvgre = _carry(
            fabric, plan, partial(fabric.from_tap, corp.node, corp.tap, answer, _NOW)
        )
        frames = (
            [d.frame for d in back if d.tap == vm.name]
            if peer is None
            else _delivered_by_peer(*peer, nvgre)
        )
        for got in filter(None, (_icmp(f, ICMP_ECHO_REPLY) for f in frames)):
            if got[0] == address:
                return corp.name
    return None


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _delivered_by_peer(
    host: PeerPlan, vm: PeerVmPlan, sent: list[tuple[bytes, bytes, bytes]]
) -> list[bytes]:
    """The inner frames of the NVGRE ``sent`` that the peer's flows give its VM: to
    its host's PA, of its VSID (any FlowID), to its MAC."""
    frames = []
    for _, dst, datagram in sent:
        if dst != host.address.ip.packed:
            continue
        try:
            packet = parse_nvgre(datagram)
        except BadPacket:
            continue
        inner = bytes(packet.inner)
        if packet.vsid == vm.vm.vsid and inner[:ETH_ADDR_SIZE] == _mac(vm.mac):
            frames.append(inner)
    return frames


def _carry(
    fabric: Fabric, plan: LabPlan, start: Callable[[], Step | None]
) -> tuple[list[Delivery], list[tuple[bytes, bytes, bytes]]]:
    """``start`` a frame into the fabric and carry it to the end; a corp side answers
    the gateway's ARP requests for its address on the way, as its stack would. The
    deliveries made, and every NVGRE datagram sent (src PA, dst PA, datagram), to a
    node's PA or to one no node owns."""
    seen = index = len(fabric.deliveries)
    first = start()
    steps = [first] if first is not None else []
    steps += fabric.carry(_NOW)
    while index < len(fabric.deliveries):  # grows as the answers' frames are carried
        delivery = fabric.deliveries[index]
        index += 1
        corp = _corp(plan, delivery.tap)
        arp = _arp_request(delivery.frame) if corp is not None else None
        if corp is not None and arp is not None and arp.target_ip == corp.address.ip.packed:
            steps.append(
                fabric.from_tap(corp.node, corp.tap, build_arp_reply(arp, _CORP_MAC), _NOW)
            )
            steps += fabric.carry(_NOW)
    return fabric.deliveries[seen:], [sent for step in steps for sent in step.nvgre]


def _arp_request(frame: bytes) -> ArpPacket | None:
    if frame[ETH_ADDR_SIZE * 2 : ETH_HEADER_SIZE] != ETHERTYPE_ARP.to_bytes(2, "big"):
        return None
    try:
        arp = parse_arp(frame, ETH_HEADER_SIZE)
    except BadPacket:
        return None
    return arp if arp.opcode == ARP_OP_REQUEST else None


def _corp(plan: LabPlan, tap: str) -> CorpPlan | None:
    return next((corp for corp in plan.corps if corp.tap == tap), None)
