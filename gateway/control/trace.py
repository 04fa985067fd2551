"""``nvgw trace``: what the data plane does with one packet, hop by hop.

Like ovn-trace, but for HNV policy, and with no model of its own: the packet goes
through the deployment's ``Fabric`` (``gateway.dataplane.fabric``), where each node
it reaches runs its real data plane over the policy (a ``HostNode`` or a
``GatewayNode``, built when the packet first reaches it: building every node's would
cost the policy's size once per node, 29 s for 40,000 records on 800 nodes). A VM's
ARP request and then its packet go through ``from_port``, the fabric carries
whatever crosses the provider network, and each hop is read off the fabric's steps
(outputs, drops).

The source may also be a gateway's TAP (``--from gw-blue``): the packet is then sent
by the corp side of that TAP, from the first address of the TAP's subnet that is not
the gateway's own (172.16.0.2 in the lab) and a stand-in MAC, toward the gateway's
address on the TAP (its next hop, as the corp network routes to the tenant through
it). Where a gateway asks out of a TAP for a neighbour's MAC, the trace answers as
that neighbour would (the stand-in MAC), so the packet's way out of the TAP shows; a
packet that leaves by a TAP ends the trace there ("delivered to TAP gw-blue (routing
domain blue)"). To say *why*, the fabric builds
the tables with a lookup tracer: the lookups the data plane made (which lookup
record, which customer route) are listed as they happened, at no cost to the daemon,
whose tables are built without one.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.dataplane import (
    MAX_HOPS,
    ExternalTap,
    Fabric,
    GatewayNode,
    GatewayTap,
    HostPort,
    Step,
    in_key,
    router_mac,
)
from gateway.errors import BadPacket
from gateway.policy import GatewayHop, Policy, compile_policy
from gateway.wire import (
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    ETH_ADDR_SIZE,
    ETH_HEADER_SIZE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    build_arp,
    build_ethernet,
    build_icmp_echo,
    build_ipv4,
    build_tcp_v4,
    build_udp_v4,
    mac_to_str,
    parse_arp,
    parse_ethernet,
    parse_ipv4,
    parse_nvgre,
)

PROTOCOLS = {"icmp": IPPROTO_ICMP, "udp": IPPROTO_UDP, "tcp": IPPROTO_TCP}
PORTS = range(0, 65536)  # UDP and TCP ports: 16 bits
_NOW = 0.0  # one packet's trace: the clock never moves
# The corp side of a gateway's TAP, as the trace plays it (a locally administered MAC
# no daemon uses): the sender of a trace from a TAP, and every neighbour there.
CORP_MAC: Final = bytes.fromhex("02c0ffee0002")
# A traced TCP segment is a connection's first, a SYN (RFC 9293's flag bit): what a
# NAT opens a session for and a port forward lets in.
TCP_SYN: Final = 0x02


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
    then the IPv4 packet to the MAC that ARP returned. ``vm`` may also name a
    gateway's TAP: the packet is then its corp side's (module docstring)."""
    if protocol not in PROTOCOLS:
        raise TraceError(f"protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")
    for name, port in (("source port", src_port), ("destination port", dst_port)):
        if port not in PORTS:
            raise TraceError(f"{name} {port}: ports are 0..65535")
    try:
        dst = ipaddress.IPv4Address(destination)
    except ValueError:
        raise TraceError(f"{destination!r} is not an IPv4 address") from None
    fabric = Fabric(compile_policy(policy), trace=True)
    result = Trace()
    try:
        node = fabric.locate(vm)
    except KeyError:
        known = sorted(port.name for node in policy.nodes for port in node.ports)
        taps = sorted(
            tap.name
            for node in policy.nodes
            for served in (node.routing_domains or {}).values()
            for tap in served.taps
        )
        what, listed = "VM port", ", ".join(known)
        if taps:
            what, listed = "VM port or gateway TAP", f"{listed}; gateway TAPs: {', '.join(taps)}"
        raise TraceError(f"no {what} named {vm!r} (ports: {listed})") from None
    source = fabric.tap(node, vm)
    if isinstance(source, ExternalTap):
        # The internet side of a NAT: its router hands the gateway what the internet
        # sends to the NAT's addresses (a port forward's, or nothing: no session).
        src, src_mac, who, hop = source.next_hop, CORP_MAC, f"{vm}'s internet side", dst.packed
    elif isinstance(source, GatewayTap):
        network = _tap_network(policy, node, source)
        own = ipaddress.IPv4Address(source.own_ip)
        src = next(a for a in network.hosts() if a != own).packed  # the corp host
        src_mac, who = CORP_MAC, f"{vm}'s corp side"
        # Its next hop: the gateway's address, or the destination on its own subnet.
        hop = dst.packed if dst in network else source.own_ip
    else:
        subnet = policy.virtual_subnet(source.vsid)
        prefix = subnet.prefix_for(4)
        src, src_mac, hop, who = source.ca, source.mac, dst.packed, vm
        if prefix is None or dst not in prefix:
            if subnet.gateway is None:
                result.add(node, "drop", f"{vm}'s subnet has no gateway: {dst} is off-link")
                result.dropped = "no_gateway"
                return result
            hop = subnet.gateway.packed
    result.add(node, "arp", f"{who} asks who has {_ip(hop)}")
    answer, asked = fabric.resolve(node, vm, hop, _NOW, (src_mac, src))
    _read(result, fabric, asked, deliveries=False)  # the answer is the next hop
    if answer is None:
        return result
    router = isinstance(source, HostPort) and answer == router_mac(source.vsid)
    result.add(
        node,
        "arp",
        f"{_ip(hop)} is at {mac_to_str(answer)}" + (" (the subnet's router)" if router else ""),
    )
    number = PROTOCOLS[protocol]
    if number == IPPROTO_ICMP:
        payload = build_icmp_echo(1, 1, b"nvgw trace")
    elif number == IPPROTO_UDP:
        payload = build_udp_v4(src, dst.packed, src_port, dst_port, b"nvgw trace")
    else:
        payload = build_tcp_v4(src, dst.packed, src_port, dst_port, flags=TCP_SYN)
    frame = build_ethernet(answer, src_mac, ETHERTYPE_IPV4)
    frame += build_ipv4(src, dst.packed, number, len(payload)) + payload
    result.add(node, "send", f"{who} {_ip(src)} -> {dst} {protocol}")
    first = fabric.from_tap(node, vm, frame, _NOW)
    steps = [first, *fabric.carry(_NOW)]
    while steps:
        step = steps.pop(0)
        if step is first and isinstance(source, ExternalTap):
            _from_internet(result, fabric.node(node), frame[ETH_HEADER_SIZE:])
        for tap, target in _read(result, fabric, step):
            steps += _answer_for_neighbour(result, fabric, step.node, tap, target)
    if fabric.looped:
        result.add(node, "drop", f"still crossing the provider network after {MAX_HOPS} hops")
        result.dropped = "loop"
    return result


def _tap_network(policy: Policy, node: str, tap: GatewayTap) -> ipaddress.IPv4Network:
    """The subnet of a gateway's TAP, as its node's config gives it."""
    served = policy.node(node).routing_domains or {}
    found = next(t for domain in served.values() for t in domain.taps if t.name == tap.name)
    return found.address.network  # type: ignore[return-value]


def _answer_for_neighbour(
    result: Trace, fabric: Fabric, node: str, tap: GatewayTap | ExternalTap, target: bytes
) -> list[Step]:
    """The gateway asked out of ``tap`` who has ``target``: the trace answers as that
    neighbour would, and the packets that waited for it move on."""
    result.add(node, "arp", f"{_ip(target)} is at {mac_to_str(CORP_MAC)} (on {tap.name})")
    reply = build_ethernet(tap.mac, CORP_MAC, ETHERTYPE_ARP) + build_arp(
        ARP_OP_REPLY, CORP_MAC, target, tap.mac, tap.own_ip
    )
    return [fabric.from_tap(node, tap.name, reply, _NOW), *fabric.carry(_NOW)]


def _read(
    result: Trace, fabric: Fabric, step: Step, deliveries: bool = True
) -> list[tuple[GatewayTap | ExternalTap, bytes]]:
    """One step's hops: the lookups it made, its drops, then what it sent on. Returns
    the ARP requests a gateway sent out of a TAP, (TAP, address asked for)."""
    node = step.node
    for table, key, found in step.lookups:
        result.add(node, "lookup", f"{table} {_show(key)} -> {_show(found)}")
    for reason in step.drops:
        result.add(node, "drop", reason.label)
        result.dropped = reason.label
    if not deliveries:
        return []
    asked: list[tuple[GatewayTap | ExternalTap, bytes]] = []
    for tap, frame in step.taps:
        if isinstance(tap, ExternalTap):
            request = _arp_request(frame)
            if request is not None:
                where = f"out of {tap.name} (the internet side)"
                result.add(node, "arp", f"who has {_ip(request)}, {where}")
                asked.append((tap, request))
            else:
                _to_internet(result, fabric.node(node), tap, frame)
            continue
        if isinstance(tap, GatewayTap):
            request = _arp_request(frame)
            if request is not None:
                result.add(node, "arp", f"who has {_ip(request)}, out of {tap.name}")
                asked.append((tap, request))
                continue
            domain = tap.domain.name
            result.add(
                node, "deliver", f"to TAP {tap.name} (routing domain {domain}), {len(frame)} bytes"
            )
            result.delivered_to = f"TAP {tap.name} (routing domain {domain})"
            continue
        result.add(node, "deliver", f"to {tap.name} (VSID {tap.vsid}), {len(frame)} bytes")
        result.delivered_to = tap.name
    for src, dst, datagram in step.nvgre:
        packet = parse_nvgre(memoryview(datagram))
        result.add(
            node,
            "encapsulate",
            f"NVGRE VSID {packet.vsid} FlowID {packet.flow_id}: PA {_ip(src)} -> {_ip(dst)}",
        )
        if fabric.owner(dst) is None:
            result.add(node, "drop", f"no node owns PA {_ip(dst)}")
    for frame in step.link:
        result.add(node, "ip-rewrite", _on_link(frame))
    return asked


def _to_internet(result: Trace, node: Any, tap: ExternalTap, frame: bytes) -> None:
    """A packet the gateway's NAT sent to the internet: its translation, read from the
    session the trace's own table holds for it (the tenant's side, the external side
    it got), then the packet as it left."""
    ip = parse_ipv4(frame, ETH_HEADER_SIZE)
    start = ETH_HEADER_SIZE + ip.header_length
    name = {IPPROTO_ICMP: "icmp", IPPROTO_UDP: "udp", IPPROTO_TCP: "tcp"}.get(ip.protocol, "?")
    if ip.protocol == IPPROTO_ICMP:  # an echo: its identifier is the port
        sport, dport = int.from_bytes(frame[start + 4 : start + 6], "big"), 0
        ends = f"{_ip(ip.src)} id {sport}", _ip(ip.dst)
    else:
        sport = int.from_bytes(frame[start : start + 2], "big")
        dport = int.from_bytes(frame[start + 2 : start + 4], "big")
        ends = f"{_ip(ip.src)}:{sport}", f"{_ip(ip.dst)}:{dport}"
    assert isinstance(node, GatewayNode) and node.napt is not None
    session = node.napt.by_in.get(in_key(ip.protocol, ip.src, sport, ip.dst, dport))
    if session is not None:
        m = session.mapping
        inside = f"{_ip(m.ca)} id {m.ca_port}" if dport == 0 else f"{_ip(m.ca)}:{m.ca_port}"
        domain = node.tables.domains[session.tenant.rdid].name
        result.add(
            node.name,
            "nat",
            f"{name} {inside} -> {ends[0]} (routing domain {domain}), to {ends[1]}",
        )
    where = f"the internet out of {tap.name}"
    result.add(node.name, "deliver", f"to {where}: {ends[0]} -> {ends[1]}, {len(frame)} bytes")
    result.delivered_to = f"the internet (out of {tap.name})"


def _from_internet(result: Trace, node: Any, packet: bytes) -> None:
    """What the NAT made of a packet from the internet (traced from its external TAP):
    the session it went through, a port forward's, read from the trace's own table."""
    assert isinstance(node, GatewayNode) and node.napt is not None
    ip = parse_ipv4(packet)
    start = ip.header_length
    sport = int.from_bytes(packet[start : start + 2], "big")
    dport = int.from_bytes(packet[start + 2 : start + 4], "big")
    session = node.napt.by_in.get(in_key(ip.protocol, ip.dst, dport, ip.src, sport))
    if session is None:
        return  # refused: the step's drop says why
    m = session.mapping
    name = {IPPROTO_UDP: "udp", IPPROTO_TCP: "tcp"}.get(ip.protocol, "?")
    domain = node.tables.domains[session.tenant.rdid].name
    result.add(
        node.name,
        "nat",
        f"{name} {_ip(ip.dst)}:{dport} -> {_ip(m.ca)}:{m.ca_port} (routing domain {domain}, "
        f"a port forward), from {_ip(ip.src)}:{sport}",
    )


def _arp_request(frame: bytes) -> bytes | None:
    """The address an ARP request asks for, if ``frame`` is one."""
    try:
        if parse_ethernet(frame).ethertype != ETHERTYPE_ARP:
            return None
        arp = parse_arp(frame, ETH_HEADER_SIZE)
    except BadPacket:
        return None
    return arp.target_ip if arp.opcode == ARP_OP_REQUEST else None


def _on_link(frame: bytes) -> str:
    """What a frame the data plane put on the provider link says."""
    try:
        if parse_ethernet(frame).ethertype == ETHERTYPE_ARP:
            arp = parse_arp(frame, ETH_HEADER_SIZE)
            what = "who-has" if arp.opcode == ARP_OP_REQUEST else "is-at"
            return f"ARP {what} {_ip(arp.target_ip)} on the provider link"
        ip = parse_ipv4(frame, ETH_HEADER_SIZE)
    except BadPacket as bad:
        return f"a frame the trace cannot read ({bad.reason.label})"
    return f"plain IPv4 {_ip(ip.src)} -> {_ip(ip.dst)}"


def _ip(packed: bytes) -> str:
    return str(ipaddress.ip_address(bytes(packed)))


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, GatewayHop):
        if value.nat:
            return f"{value.destination} to the NAT"
        via = "on-link" if value.next_hop_bytes is None else f"via {_ip(value.next_hop_bytes)}"
        if value.tap is not None:
            return f"{value.destination} {via} out of {value.tap}"
        return f"{value.destination} {via} in VSID {value.vsid} (metric {value.metric})"
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
    if hasattr(value, "router_mac") and hasattr(value, "domain"):  # a gateway's interface
        return f"the gateway in VSID {value.vsid} ({value.domain.name})"
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    if isinstance(value, bytes):
        if len(value) == ETH_ADDR_SIZE:
            return mac_to_str(value)
        try:
            return _ip(value)  # 4 or 16 bytes
        except ValueError:
            return value.hex()
    return str(value)
