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
"""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address

from gateway.dataplane import Delivery, Fabric
from gateway.errors import BadPacket
from gateway.lab.corp_server import PORT
from gateway.lab.plan import CorpPlan, LabPlan, VmPlan
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
    parse_arp,
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


def ask(vm: VmPlan, address: str, protocol: str) -> str | None:
    """The name the server at ``address`` gives ``vm`` over ``protocol`` (tcp, udp),
    or None when nothing answered."""
    command = ["ip", "netns", "exec", vm.namespace, sys.executable, "-c", _ASK, protocol]
    command += [address, str(PORT), str(PING_TIMEOUT_S)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    return done.stdout.strip() or None if done.returncode == 0 else None


def corp_connectivity(snapshot: Snapshot, plan: LabPlan) -> list[Cell]:
    """Each VM asks every corp address (once per address: the corps may share one)
    over TCP and UDP; a cell per VM and corp says whether that corp answered it."""
    fabric = Fabric(snapshot)
    cells = []
    for vm in plan.vms:
        answers: dict[str, str | None] = {}
        for address in sorted({str(corp.address.ip) for corp in plan.corps}):
            said = {ask(vm, address, protocol) for protocol in PROTOCOLS}
            answer = said.pop() if len(said) == 1 else "/".join(sorted(map(str, said)))
            answers[address] = answer
        for corp in plan.corps:
            answered = answers[str(corp.address.ip)]
            expected = _reaches(fabric, plan, vm, corp.address.ip)
            cells.append(
                Cell(
                    vm.name,
                    corp.name,
                    answered if answered == corp.name else None,
                    corp.name if expected == corp.name else None,
                )
            )
    return cells


def _reaches(fabric: Fabric, plan: LabPlan, vm: VmPlan, address: IPv4Address) -> str | None:
    """The corp whose server answers ``vm``'s echo request to ``address`` on the
    data plane (module docstring), or None."""
    if vm.gateway is None:
        return None
    mac, _ = fabric.resolve(vm.node, vm.name, vm.gateway.packed, _NOW)
    if mac is None:
        return None
    port = fabric.tap(vm.node, vm.name)
    echo = build_icmp_echo(1, 1, b"nvgw lab")
    ip = build_ipv4(vm.address.ip.packed, address.packed, IPPROTO_ICMP, len(echo))
    sent = build_ethernet(mac, port.mac, ETHERTYPE_IPV4) + ip + echo
    for delivery in _carry(fabric, plan, vm.node, vm.name, sent):
        corp = _corp(plan, delivery.tap)
        request = _icmp(delivery.frame, ICMP_ECHO_REQUEST)
        if corp is None or corp.address.ip != address or request is None:
            continue  # a stack takes echo requests for its own address only
        sender, message = request
        reply = build_icmp_echo_reply(message)
        ip = build_ipv4(address.packed, sender.packed, IPPROTO_ICMP, len(reply))
        gateway_mac = delivery.frame[ETH_ADDR_SIZE : 2 * ETH_ADDR_SIZE]  # the source
        frame = build_ethernet(gateway_mac, _CORP_MAC, ETHERTYPE_IPV4) + ip + reply
        for back in _carry(fabric, plan, corp.node, corp.tap, frame):
            answer = _icmp(back.frame, ICMP_ECHO_REPLY)
            if back.tap == vm.name and answer is not None and answer[0] == address:
                return corp.name
    return None


def _carry(fabric: Fabric, plan: LabPlan, node: str, tap: str, frame: bytes) -> list[Delivery]:
    """``frame`` into ``node``'s TAP ``tap``, carried to the end; a corp side answers
    the gateway's ARP requests for its address on the way, as its stack would. The
    deliveries made."""
    seen = index = len(fabric.deliveries)
    fabric.from_tap(node, tap, frame, _NOW)
    fabric.carry(_NOW)
    while index < len(fabric.deliveries):  # grows as the answers' frames are carried
        delivery = fabric.deliveries[index]
        index += 1
        corp = _corp(plan, delivery.tap)
        arp = _arp_request(delivery.frame) if corp is not None else None
        if corp is not None and arp is not None and arp.target_ip == corp.address.ip.packed:
            fabric.from_tap(corp.node, corp.tap, build_arp_reply(arp, _CORP_MAC), _NOW)
            fabric.carry(_NOW)
    return fabric.deliveries[seen:]


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
