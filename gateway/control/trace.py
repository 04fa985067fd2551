"""``nvgw trace``: what the data plane does with one packet, hop by hop.

Like ovn-trace, but for HNV policy, and with no model of its own: each node the
packet reaches gets the real ``HostNode`` over the policy (built when the packet
first reaches it: building every node's would cost the policy's size once per node,
29 s for 40,000 records on 800 nodes), a VM's ARP request and then its packet go
through ``from_port``, whatever crosses the provider network is handed to the node
that owns the destination PA, and each hop is read off what the data plane did (its
outputs, its drop counters). To say *why*, the tables it reads
are wrapped in recorders for the trace only: the lookups it made (which lookup
record, which customer route) are listed as they happened, at no cost to the
daemon, which never sees a recorder.
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass, field
from typing import Any

from gateway.dataplane import (
    HostNode,
    HostPort,
    from_port,
    from_provider,
    from_provider_link,
    router_mac,
)
from gateway.errors import Drop
from gateway.policy import Policy, Snapshot, compile_policy
from gateway.wire import (
    ARP_OP_REQUEST,
    BROADCAST_MAC,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    ZERO_MAC,
    build_arp,
    build_ethernet,
    build_icmp_echo,
    build_ipv4,
    build_tcp_v4,
    build_udp_v4,
    mac_to_str,
    parse_arp,
    parse_nvgre,
)

PROTOCOLS = {"icmp": IPPROTO_ICMP, "udp": IPPROTO_UDP, "tcp": IPPROTO_TCP}
PORTS = range(0, 65536)  # UDP and TCP ports: 16 bits
MAX_HOPS = 16  # a trace that keeps crossing the provider network is a loop: stop it


class TraceError(ValueError):
    """The packet described cannot be built from this policy (unknown VM, bad address)."""


@dataclass
class Hop:
    node: str
    what: str  # "arp", "lookup", "deliver", "encapsulate", "ip-rewrite", "drop"
    detail: str

    def __str__(self) -> str:
        return f"{self.node:>8}  {self.what:<11} {self.detail}"


@dataclass
class Trace:
    hops: list[Hop] = field(default_factory=list)
    delivered_to: str | None = None  # the VM whose TAP got the packet
    dropped: str | None = None  # the drop reason's label, when it was dropped

    def add(self, node: str, what: str, detail: str) -> None:
        self.hops.append(Hop(node, what, detail))

    def as_json(self) -> dict[str, Any]:
        """The API's and ``nvgw trace --json``'s form."""
        hops = [{"node": h.node, "step": h.what, "detail": h.detail} for h in self.hops]
        return {"hops": hops, "delivered_to": self.delivered_to, "dropped": self.dropped}


class _Recorder:
    """A mapping the data plane reads through, noting each lookup in the trace."""

    def __init__(self, name: str, inner: Any, note: Any) -> None:
        self._name, self._inner, self._note = name, inner, note

    def get(self, key: Any, default: Any = None) -> Any:
        found = self._inner.get(key, default)
        self._note(self._name, key, found)
        return found

    def __getitem__(self, key: Any) -> Any:
        return self._inner[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._inner


class _RecordingSnapshot:
    """The snapshot as the data plane sees it in a trace: route() and CA lookups noted."""

    def __init__(self, snapshot: Snapshot, note: Any) -> None:
        self._snapshot, self._note = snapshot, note
        self.record_by_ca = _Recorder("record by (VSID, CA)", snapshot.record_by_ca, note)
        self.record_by_mac = _Recorder("record by (VSID, MAC)", snapshot.record_by_mac, note)

    def route(self, rdid: str, destination: bytes) -> Any:
        found = self._snapshot.route(rdid, destination)
        self._note("customer route", (rdid, destination), found)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._snapshot, name)


class CollectOutput:
    """An Output that keeps what the data plane sent, in order: what would leave.
    NVGRE is kept as the whole datagram the kernel would send (outer IPv4 added)."""

    def __init__(self) -> None:
        self.ports: list[tuple[HostPort, bytes]] = []
        self.provider: list[tuple[bytes, bytes, bytes]] = []
        self.link: list[bytes] = []

    def to_tap(self, tap: HostPort, frame: Any) -> None:
        self.ports.append((tap, bytes(frame)))

    def to_provider(self, src_pa: bytes, dst_pa: bytes, gre: bytes, frame: Any) -> None:
        payload = gre + bytes(frame)
        self.provider.append(
            (src_pa, dst_pa, build_ipv4(src_pa, dst_pa, IPPROTO_GRE, len(payload)) + payload)
        )

    def to_provider_link(self, frame: Any) -> None:
        self.link.append(bytes(frame))


class _Tracer:
    """The deployment's nodes as the packet meets them, each node's data plane built
    on its first visit and its tables wrapped in recorders."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.snapshot = compile_policy(policy)
        self.trace = Trace()
        self.node = ""
        self.nodes: dict[str, HostNode] = {}
        self._pa_owner = {
            pa.pa.packed: node.name for node in policy.nodes for pa in node.provider_addresses
        }
        self._mac_owner = {_link_mac(node.name): node.name for node in policy.nodes}

    def dataplane(self, name: str) -> HostNode:
        dataplane = self.nodes.get(name)
        if dataplane is None:
            dataplane = HostNode(self.snapshot, name, CollectOutput(), provider_mac=_link_mac(name))
            tables = dataplane.tables
            for table, label in (
                ("record_by_mac", "record by (VSID, MAC)"),
                ("record_by_rdid_ca", "record by (RDID, CA)"),
                ("port_by_key", "local port by (VSID, MAC)"),
            ):
                setattr(tables, table, _Recorder(label, getattr(tables, table), self._note))
            tables.snapshot = _RecordingSnapshot(self.snapshot, self._note)  # type: ignore[assignment]
            self.nodes[name] = dataplane
        return dataplane

    def _note(self, name: str, key: Any, found: Any) -> None:
        self.trace.add(self.node, "lookup", f"{name} {_show(key)} -> {_show(found)}")

    def port(self, vm: str) -> tuple[str, HostPort]:
        for node in self.policy.nodes:
            if any(port.name == vm for port in node.ports):
                return node.name, self.dataplane(node.name).tables.port_by_name[vm]
        known = sorted(port.name for node in self.policy.nodes for port in node.ports)
        raise TraceError(f"no VM port named {vm!r} (ports: {', '.join(known)})")

    def run(self, node: str, call: Any, frame: bytes) -> CollectOutput:
        """One data-plane call on one node; its drops become hops."""
        self.node = node
        out = CollectOutput()
        dataplane = self.dataplane(node)
        dataplane.out = out
        counters = dataplane.counters
        before = list(counters.drops)
        call(dataplane, memoryview(bytearray(frame)))
        for reason in Drop:
            if counters.drops[reason] > before[reason]:
                self.trace.add(node, "drop", reason.label)
                self.trace.dropped = reason.label
        return out

    def follow(self, node: str, out: CollectOutput, hops: int = 0) -> None:
        """Where the outputs of one call go next, until they reach a VM or are dropped."""
        for port, frame in out.ports:
            self.trace.add(
                node, "deliver", f"to {port.name} (VSID {port.vsid}), {len(frame)} bytes"
            )
            self.trace.delivered_to = port.name
        for src, dst, datagram in out.provider:
            packet = parse_nvgre(memoryview(datagram))
            self.trace.add(
                node,
                "encapsulate",
                f"NVGRE VSID {packet.vsid} FlowID {packet.flow_id}: PA {_ip(src)} -> {_ip(dst)}",
            )
            target = self.owner(dst)
            if target is None:
                self.trace.add(node, "drop", f"no node owns PA {_ip(dst)}")
                continue
            if hops < MAX_HOPS:
                self.follow(target, self.run(target, from_provider, datagram), hops + 1)
        for frame in out.link:
            if frame[12:14] == ETHERTYPE_ARP.to_bytes(2, "big"):
                arp = parse_arp(frame, 14)
                what = "who-has" if arp.opcode == ARP_OP_REQUEST else "is-at"
                self.trace.add(
                    node, "ip-rewrite", f"ARP {what} {_ip(arp.target_ip)} on the provider link"
                )
                about = arp.target_ip
            else:
                self.trace.add(
                    node, "ip-rewrite", f"plain IPv4 {_ip(frame[26:30])} -> {_ip(frame[30:34])}"
                )
                about = bytes(frame[30:34])
            # A unicast frame reaches the node with that MAC; a broadcast reaches every
            # node, and only the owner of the PA it is about acts on it (the others
            # leave it to the kernel): that one is where the packet goes on.
            mac = bytes(frame[0:6])
            target = self.owner(about) if mac == BROADCAST_MAC else self._mac_owner.get(mac)
            if hops < MAX_HOPS and target is not None and target != node:
                self.follow(target, self.run(target, from_provider_link, frame), hops + 1)

    def owner(self, pa: bytes) -> str | None:
        return self._pa_owner.get(bytes(pa))


def trace(
    policy: Policy,
    vm: str,
    destination: str,
    protocol: str = "icmp",
    src_port: int = 49152,
    dst_port: int = 80,
) -> Trace:
    """Trace a packet from ``vm`` to the CA ``destination``, as the VM would send it:
    an ARP request for the next hop first (the destination, or its subnet's gateway),
    then the IPv4 packet to the MAC that ARP returned."""
    if protocol not in PROTOCOLS:
        raise TraceError(f"protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")
    for name, port in (("source port", src_port), ("destination port", dst_port)):
        if port not in PORTS:
            raise TraceError(f"{name} {port}: ports are 0..65535")
    try:
        dst = ipaddress.IPv4Address(destination)
    except ValueError:
        raise TraceError(f"{destination!r} is not an IPv4 address") from None
    tracer = _Tracer(policy)
    node, port = tracer.port(vm)
    subnet = policy.virtual_subnet(port.vsid)
    prefix = subnet.prefix_for(4)
    src = port.ca
    hop = dst.packed
    if prefix is None or dst not in prefix:
        if subnet.gateway is None:
            tracer.trace.add(node, "drop", f"{vm}'s subnet has no gateway: {dst} is off-link")
            tracer.trace.dropped = "no_gateway"
            return tracer.trace
        hop = subnet.gateway.packed
    request = build_ethernet(BROADCAST_MAC, port.mac, ETHERTYPE_ARP) + build_arp(
        ARP_OP_REQUEST, port.mac, src, ZERO_MAC, hop
    )
    tracer.trace.add(node, "arp", f"{vm} asks who has {_ip(hop)}")
    from_vm = _from_vm(port)
    out = tracer.run(node, from_vm, request)
    if not out.ports:
        return tracer.trace
    answer = parse_arp(out.ports[0][1], 14).sender_mac
    tracer.trace.add(
        node,
        "arp",
        f"{_ip(hop)} is at {mac_to_str(answer)}"
        + (" (the subnet's router)" if answer == router_mac(port.vsid) else ""),
    )
    number = PROTOCOLS[protocol]
    if number == IPPROTO_ICMP:
        payload = build_icmp_echo(1, 1, b"nvgw trace")
    elif number == IPPROTO_UDP:
        payload = build_udp_v4(src, dst.packed, src_port, dst_port, b"nvgw trace")
    else:
        payload = build_tcp_v4(src, dst.packed, src_port, dst_port)
    frame = build_ethernet(answer, port.mac, ETHERTYPE_IPV4)
    frame += build_ipv4(src, dst.packed, number, len(payload)) + payload
    tracer.trace.add(node, "send", f"{vm} {_ip(src)} -> {dst} {protocol}")
    tracer.follow(node, tracer.run(node, from_vm, frame))
    return tracer.trace


def _from_vm(port: HostPort) -> Any:
    """``from_port`` for one port, called as the other entry points are."""
    return lambda node, frame: from_port(node, port, frame)


def _link_mac(node: str) -> bytes:
    """A stand-in provider MAC per node, so IP-Rewrite's ARP can be traced."""
    return bytes([2, 0x4E, 0x56, 0xFF]) + (zlib.crc32(node.encode()) & 0xFFFF).to_bytes(2, "big")


def _ip(packed: bytes) -> str:
    return str(ipaddress.ip_address(bytes(packed)))


def _show(value: Any) -> str:
    if value is None:
        return "none"
    record = getattr(value, "record", None)
    if record is not None and hasattr(value, "pa_bytes"):
        return f"{record.vm or 'record'} (CA {record.ca}, PA {record.pa}, {value.rule.label})"
    if hasattr(value, "route") and hasattr(value, "destination"):
        hop = "on-link" if value.next_hop_bytes is None else _ip(value.next_hop_bytes)
        return (
            f"{value.destination} via {hop} in VSID {value.next_hop_vsid} (metric {value.metric})"
        )
    if isinstance(value, HostPort):
        return f"port {value.name}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    if isinstance(value, bytes):
        if len(value) in (4, 16):
            return _ip(value)
        if len(value) == 6:
            return mac_to_str(value)
        return value.hex()
    return str(value)
