"""What a person checks in a lab, done by the program: pings between VMs, who
answered them, and each daemon's counters.

Tenants overlap (Blue and Red both use 10.10.10.12), so "blue1 reached
10.10.10.12" says nothing by itself: the matrix also reads which MAC the pinging
VM resolved the address to, which names the VM that answered (ARP is answered by
the host's daemon from the source VSID's lookup records, never by another tenant).

Who *should* answer is asked of the real data plane, with no model of forwarding of
its own: every ping of the matrix is sent through the policy's ``Fabric`` as the
VMs' stacks would send it (``expectations``), and the answer is compared with what
the lab's kernels did.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Address

from prometheus_client.parser import text_string_to_metric_families

from gateway.dataplane import Delivery, Fabric
from gateway.errors import BadPacket
from gateway.lab.plan import LabError, LabPlan, VmPlan
from gateway.policy import Snapshot
from gateway.wire import (
    ETH_HEADER_SIZE,
    ETHERTYPE_IPV4,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    IPPROTO_ICMP,
    IcmpMessage,
    build_ethernet,
    build_icmp_echo,
    build_icmp_echo_reply,
    build_ipv4,
    parse_icmp,
    parse_ipv4,
)

PING_TIMEOUT_S = 2
ROUTED = "router"  # the answer came back through the subnet's gateway MAC
_NOW = 0.0  # the expectations' pings all go at one instant


@dataclass(frozen=True)
class Cell:
    source: str
    target: str  # the VM whose CA was pinged
    answered_by: str | None  # the VM that answered ("router" if routed), None if nobody
    expected: str | None  # who should answer: the data plane's answer (``expectations``)

    @property
    def as_expected(self) -> bool:
        if self.expected is None:
            return self.answered_by is None
        return self.answered_by in (self.expected, ROUTED)


def expectations(snapshot: Snapshot, plan: LabPlan) -> dict[tuple[str, str], str | None]:
    """Who answers each ping of the matrix, (source, target) -> VM or None, asked of
    the real data plane: the source's stack sends the echo request through the
    policy's fabric (ARP for its next hop, then the packet to the MAC it got), the VM
    it reaches answers as a stack does (an echo reply, by the same steps), and the
    answer counts only if the reply comes back to the source."""
    fabric = Fabric(snapshot)
    return {
        (source.name, target.name): _ping(fabric, plan, source, target.address.ip)
        for source in plan.vms
        for target in plan.vms
        if source is not target
    }


def _ping(fabric: Fabric, plan: LabPlan, source: VmPlan, address: IPv4Address) -> str | None:
    if address == source.address.ip:
        return source.name  # its own address: its loopback answers, nothing is sent
    request = build_icmp_echo(1, 1, b"nvgw lab")
    for delivery in _send(fabric, source, address, request):
        responder = _vm(plan, delivery.tap)
        echo = _icmp(delivery.frame, ICMP_ECHO_REQUEST)
        if responder is None or responder.address.ip != address or echo is None:
            continue  # a stack takes echo requests for its own address only
        sender, message = echo
        for back in _send(fabric, responder, sender, build_icmp_echo_reply(message)):
            answer = _icmp(back.frame, ICMP_ECHO_REPLY)
            if back.tap == source.name and answer is not None and answer[0] == address:
                return responder.name
    return None


def _send(fabric: Fabric, vm: VmPlan, destination: IPv4Address, icmp: bytes) -> list[Delivery]:
    """What ``vm``'s stack does to send ``icmp`` to ``destination``: ARP for the next
    hop (the destination on its subnet, else its default gateway), then the packet
    to the MAC it learnt, carried to the end. The deliveries it made."""
    hop = destination if destination in vm.address.network else vm.gateway
    if hop is None:
        return []  # no route in the VM
    mac, _ = fabric.resolve(vm.node, vm.name, hop.packed, _NOW)
    if mac is None:
        return []
    port = fabric.tap(vm.node, vm.name)
    ip = build_ipv4(vm.address.ip.packed, destination.packed, IPPROTO_ICMP, len(icmp))
    seen = len(fabric.deliveries)
    fabric.from_tap(
        vm.node, vm.name, build_ethernet(mac, port.mac, ETHERTYPE_IPV4) + ip + icmp, _NOW
    )
    fabric.carry(_NOW)
    return fabric.deliveries[seen:]


def _icmp(frame: bytes, kind: int) -> tuple[IPv4Address, IcmpMessage] | None:
    """The sender and the ICMP message of ``kind`` that ``frame`` carries, if it does."""
    try:
        ip = parse_ipv4(frame, ETH_HEADER_SIZE)
        if ip.protocol != IPPROTO_ICMP:
            return None
        packet = frame[: ETH_HEADER_SIZE + ip.total_length]  # no Ethernet padding
        message = parse_icmp(packet, ETH_HEADER_SIZE + ip.header_length)
    except BadPacket:
        return None
    return (IPv4Address(ip.src), message) if message.type == kind else None


def _vm(plan: LabPlan, name: str) -> VmPlan | None:
    try:
        return plan.vm(name)
    except KeyError:
        return None


def _mac_of(snapshot: Snapshot, vm: VmPlan) -> bytes:
    return snapshot.record_by_ca[vm.vsid, vm.address.ip.packed].mac_bytes


def connectivity(snapshot: Snapshot, plan: LabPlan) -> list[Cell]:
    """Ping every VM's CA from every other VM, all at once (one echo each)."""
    pairs = [(s, t) for s in plan.vms for t in plan.vms if s is not t]
    pings = [
        subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                s.namespace,
                "ping",
                "-n",
                "-q",
                "-c",
                "1",
                "-W",
                str(PING_TIMEOUT_S),
                str(t.address.ip),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for s, t in pairs
    ]
    vm_by_mac = {_mac_of(snapshot, vm): vm.name for vm in plan.vms}
    expected = expectations(snapshot, plan)
    cells = []
    for (source, target), ping in zip(pairs, pings, strict=True):
        answered = None
        if ping.wait() == 0:
            address = str(target.address.ip)
            if target.address.ip == source.address.ip:
                answered = source.name  # its own address: the VM's loopback answers
            elif source.gateway is not None and target.address.ip not in source.address.network:
                answered = ROUTED
            else:
                mac = neighbour_mac(source, address)
                answered = vm_by_mac.get(mac, "?") if mac else "?"
        cells.append(
            Cell(
                source.name,
                target.name,
                answered,
                expected[source.name, target.name],
            )
        )
    return cells


def neighbour_mac(vm: VmPlan, address: str) -> bytes | None:
    """The MAC the VM resolved an on-link ``address`` to."""
    out = subprocess.run(
        ["ip", "-n", vm.namespace, "neigh", "show", address, "dev", vm.name],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if "lladdr" not in out:
        return None
    return bytes.fromhex(out[out.index("lladdr") + 1].replace(":", ""))


def scrape(namespace: str, address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A daemon's /metrics, read from inside its namespace (it listens on loopback):
    ``{(sample name, sorted labels): value}``."""
    code = (
        "import sys, urllib.request; "
        f"sys.stdout.write(urllib.request.urlopen('http://{address}/metrics', timeout=5)"
        ".read().decode())"
    )
    text = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


@dataclass(frozen=True)
class PingLoss:
    sent: int
    received: int
    interval_s: float
    longest_gap_s: float  # the longest time between two consecutive replies
    first_reply: float  # wall-clock time (time.time()) of the first reply, 0 if none
    last_reply: float

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def loss_s(self) -> float:
        """How long the path was down: the longest silence between two replies, less
        the interval that separates replies anyway. (Counting lost echoes would not
        do: ping stretches its interval while replies are missing.)"""
        return max(0.0, self.longest_gap_s - self.interval_s)


class PingStream:
    """A steady, timestamped ping from one VM, to measure what an event costs."""

    def __init__(self, source: VmPlan, address: str, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self._process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                source.namespace,
                "ping",
                "-n",
                "-D",
                "-i",
                str(interval_s),
                "-W",
                "1",
                address,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._head = b""  # what wait_flowing() read before stop() reads the rest

    @property
    def pid(self) -> int:
        return self._process.pid

    def wait_flowing(self, timeout_s: float = 10.0) -> None:
        """Return at the first reply, so that what is measured next (a migration)
        starts with the stream flowing, however slowly the machine started it."""
        fd = self._process.stdout.fileno()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout_s
        while b"bytes from" not in self._head:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise LabError(f"no reply to the ping stream within {timeout_s:.0f} s")
            chunk = os.read(fd, 4096)  # raw reads: the text wrapper stays empty
            if not chunk:
                raise LabError(f"ping stopped before any reply: {self._head.decode()}")
            self._head += chunk

    def stop(self) -> PingLoss:
        self._process.send_signal(signal.SIGINT)  # ping prints its summary
        rest, _ = self._process.communicate(timeout=10)
        out = self._head.decode() + rest
        replies = [
            float(line[1 : line.index("]")])
            for line in out.splitlines()
            if line.startswith("[") and "bytes from" in line
        ]
        gaps = [later - earlier for earlier, later in itertools.pairwise(replies)]
        words = out.replace(",", " ").split()
        sent = int(words[words.index("transmitted") - 2])
        received = int(words[words.index("received") - 1])
        first, last = (replies[0], replies[-1]) if replies else (0.0, 0.0)
        return PingLoss(sent, received, self.interval_s, max(gaps, default=0.0), first, last)
