"""The gateway's corp side: a frame from one of its TAPs (``gateway_node.py`` has the
overview).

The TAP is an Ethernet link between the gateway and a corp network's kernel: the
gateway holds an address on it (``GatewayTap.own_ip``, 172.16.0.1 in the lab) and a
MAC (``tap_mac``), answers ARP for that address, and resolves its neighbours there
itself (``neighbors.py``: only answers to its own requests are believed, as on the
provider link). IPv4 sent to its MAC is routed in the TAP's routing domain
(``gateway_routing.route_ipv4``); anything else sent to another unicast MAC is not
for it (``foreign_mac``), and broadcast or multicast IPv4 is not routed.

The external TAP (the internet side of the node's NAT) is the same kind of link, in
no routing domain: the gateway answers ARP there for the NAT's addresses, resolves
the internet router the same way, and takes in IPv4 to the NAT's addresses only,
translated back to a tenant and routed in that tenant's routing domain.

A corp TAP's frames are decided per flow, as the receive side decides NVGRE
(``gateway_provider.TapFlow``): the key (``_ROUTED_FLOW``) holds every header field
that decides where the frame goes and what is done to it, so a flow routed into a
VSID (the corp side answering a VM, the common case) is cached with its route and
its GRE header (``VsidFlow``), and its frames are encapsulated here with only their
length checked per frame. Everything else, and a frame whose length fails the check,
goes through ``route_ipv4``; a test holds the two to the same output.
"""

from __future__ import annotations

import struct
from typing import Final

from gateway.dataplane._frame import (
    ETH_DST,
    ETH_SRC,
    IP,
    IP_DST_ADDR,
    IP_MIN_FRAME,
    IP_TOTAL_LENGTH,
)
from gateway.dataplane.gateway_node import GatewayNode
from gateway.dataplane.gateway_routing import (
    _ETH_ADDRS,
    _FLOW,
    _IP_CHECKSUM,
    _IP_PROTOCOL,
    _IP_TTL,
    _TTL_PROTOCOL_CHECKSUM,
    _TTL_UNIT,
    _WORD_MASK,
    _flow_gre,
    route_ipv4,
)
from gateway.dataplane.gateway_tables import ExternalTap, GatewayTap, ToVsid
from gateway.dataplane.napt import napt_inbound
from gateway.dataplane.provider_side import cache_flow
from gateway.dataplane.tables import PORT_MTU
from gateway.errors import BadPacket, Drop
from gateway.wire import (
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    ETH_GROUP_BIT,
    ETH_HEADER_SIZE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    IPPROTO_TCP,
    IPV4_FRAGMENT_MASK,
    IPV4_HEADER_SIZE,
    IPV4_VIHL_NO_OPTIONS,
    ZERO_MAC,
    build_arp_reply,
    clamp_mss,
    parse_arp,
)

_DST_AND_TYPE: Final = struct.Struct("!6s6xH").unpack_from  # Ethernet's destination and type
# A corp frame's flow key, in three runs of the header: the Ethernet header with the
# IPv4 version/IHL and TOS; the flags and fragment offset, TTL and protocol (as one
# number); the addresses and the 4 bytes after an option-less header (a TCP or UDP
# packet's ports, which decide its FlowID). What varies within a flow (the total
# length, the ID, the checksum) is read per frame or patched; the source MAC and the
# TOS decide nothing but are constant within a flow. Three items rather than the seven
# fields a decision reads (``_DECIDED``, on a miss): about 600 fewer instructions per
# frame, its hash and compare included (``bench/gateway_callgrind.py``, ``out``).
_ROUTED_FLOW: Final = struct.Struct("!16s4xI2x12s")
_ROUTED_FLOW_UNPACK: Final = _ROUTED_FLOW.unpack_from
_ROUTED_FLOW_SIZE: Final = _ROUTED_FLOW.size
# What decides a flow, read from its first frame: Ethernet's destination and type;
# the version/IHL, the flags and fragment offset, the TTL and protocol; the addresses.
_DECIDED: Final = struct.Struct("!6s6xHB5xHBB2x8s").unpack_from
# What varies per frame and the route reads or patches, in one unpack: the total
# length and the header checksum (read apart, 950 instructions more a frame), within
# the flow key's bytes, so always there.
_LENGTH_AND_CHECKSUM: Final = struct.Struct(
    f"!{IP_TOTAL_LENGTH}xH{_IP_CHECKSUM - IP_TOTAL_LENGTH - 2}xH"
).unpack_from
_ROUTE: Final = object()  # a flow's verdict when ``route_ipv4`` decides each frame


class VsidFlow:
    """A corp flow's verdict when its frames are routed into a VSID: what
    ``route_ipv4`` decided from the key alone (the gateway's MAC, IPv4 without options
    and not fragmented, the TTL above 1, the route to a record), kept with the tables
    as the route is: the record's NVGRE (PAs, the GRE header with the flow's FlowID,
    the inner MACs), the TTL the frames leave with, the MSS clamp of a TCP flow (0:
    none)."""

    __slots__ = ("addresses", "dst_pa", "gre", "mss", "protocol", "src_pa", "ttl")

    def __init__(self, route: ToVsid, gre: bytes, ttl: int, protocol: int, mss: int) -> None:
        self.addresses = route.addresses
        self.src_pa, self.dst_pa = route.src_pa, route.dst_pa
        self.gre = gre
        self.ttl = ttl - 1
        self.protocol = protocol
        self.mss = mss if protocol == IPPROTO_TCP else 0


def gateway_from_tap(node: GatewayNode, tap: GatewayTap | ExternalTap, frame: memoryview) -> None:
    """A frame the corp side sent into ``tap`` (or the internet into the external
    TAP): answered, routed, or a counted drop."""
    size = len(frame)
    if size >= _ROUTED_FLOW_SIZE and not tap.internet:
        key = _ROUTED_FLOW_UNPACK(frame)
        flow = tap.flows.get(key)  # type: ignore[union-attr]
        if flow is None:
            flow = _flow_verdict(node, tap, key, frame)  # type: ignore[arg-type]
        if flow.__class__ is VsidFlow:
            # What ``route_ipv4`` does for this flow's frame unless its length asks
            # for more: the TTL counted down with the checksum patched (RFC 1624),
            # the MSS of a SYN clamped, the MACs; then NVGRE to the record's PA.
            ip_total, checksum = _LENGTH_AND_CHECKSUM(frame)
            end = IP + ip_total
            if end <= size and IPV4_HEADER_SIZE <= ip_total <= PORT_MTU:
                check = checksum + _TTL_UNIT
                if check >= _WORD_MASK:
                    check = (check + 1) & _WORD_MASK
                _TTL_PROTOCOL_CHECKSUM(frame, _IP_TTL, flow.ttl, flow.protocol, check)  # type: ignore[attr-defined]
                if flow.mss:  # type: ignore[attr-defined]
                    clamp_mss(frame, flow.mss, IP)  # type: ignore[attr-defined]
                counters = node.counters
                counters.routed += 1
                frame[_ETH_ADDRS] = flow.addresses  # type: ignore[attr-defined]
                node.out.to_provider(
                    flow.src_pa,  # type: ignore[attr-defined]
                    flow.dst_pa,  # type: ignore[attr-defined]
                    flow.gre,  # type: ignore[attr-defined]
                    frame if end == size else frame[:end],
                )
                counters.encapsulated += 1
                crossed = tap.counters
                crossed.in_packets += 1
                crossed.in_bytes += end
                return
        if flow is not None:  # _ROUTE, or a VsidFlow's frame its length failed
            route_ipv4(node, tap, frame)  # type: ignore[arg-type]
            return
    if size < ETH_HEADER_SIZE:
        node.counters.drops[Drop.INNER_TRUNCATED] += 1
        return
    dst_mac, ethertype = _DST_AND_TYPE(frame)  # the source MAC only for ARP: not taken here
    if dst_mac != tap.mac:
        if not dst_mac[0] & ETH_GROUP_BIT:
            node.counters.drops[Drop.FOREIGN_MAC] += 1  # another station's: not the gateway's
            return
        if ethertype == ETHERTYPE_IPV4:
            node.counters.drops[Drop.BROADCAST] += 1  # not routed (RFC 1812 sec. 5.3.5)
            return
    if ethertype == ETHERTYPE_IPV4:
        if tap.internet:
            _from_internet(node, tap, frame)  # type: ignore[arg-type]
        else:
            route_ipv4(node, tap, frame)  # type: ignore[arg-type]
    elif ethertype == ETHERTYPE_ARP:
        _arp_from_tap(node, tap, frame, bytes(frame[ETH_SRC]))
    else:
        node.counters.drops[Drop.UNSUPPORTED] += 1


def _flow_verdict(node: GatewayNode, tap: GatewayTap, key: tuple, frame: memoryview) -> object:
    """Decide a corp flow-cache miss: a ``VsidFlow`` when every frame of the flow is
    routed into a VSID unless its own length says otherwise, _ROUTE when
    ``route_ipv4`` decides each of its frames (another destination, a TTL of 1,
    options, fragments), or None when the frame is not IPv4 to the gateway's MAC
    (not cached: ``gateway_from_tap`` reads it as any other)."""
    dst_mac, ethertype, vihl, fragment, ttl, protocol, addresses = _DECIDED(frame)
    if dst_mac != tap.mac or ethertype != ETHERTYPE_IPV4:
        return None
    verdict: object = _ROUTE
    if vihl == IPV4_VIHL_NO_OPTIONS and not fragment & IPV4_FRAGMENT_MASK and ttl > 1:
        domain = tap.domain
        route = node.tables.route(domain, addresses[4:8])  # a miss: resolved afresh
        if route.__class__ is ToVsid:
            gre = _flow_gre(domain.flows, _FLOW(frame, _IP_PROTOCOL), route, frame)  # type: ignore[arg-type]
            verdict = VsidFlow(route, gre, ttl, protocol, node.tables.mss)  # type: ignore[arg-type]
    cache_flow(tap.flows, key, verdict)
    return verdict


def _from_internet(node: GatewayNode, tap: ExternalTap, frame: memoryview) -> None:
    """IPv4 from the internet: to one of the NAT's addresses, translated back by its
    session (``napt_inbound``, which refuses what belongs to none), then routed in the
    session's routing domain toward the tenant's address, as any packet toward a VM.
    The destination is checked only when ``napt_inbound`` refused the packet: a
    session's external address is always one of the NAT's (a new pool is a new
    table), so what it translated was for the NAT."""
    napt = node.napt
    if len(frame) < IP_MIN_FRAME or napt is None:
        node.counters.drops[Drop.INNER_MALFORMED] += 1
        return
    verdict = napt_inbound(napt, frame, node.now, IP)
    if verdict.__class__ is Drop:
        if bytes(frame[IP_DST_ADDR]) not in tap.answers:
            verdict = Drop.NO_ROUTE  # the NAT's addresses are all it takes in
        node.counters.drops[verdict] += 1  # type: ignore[index]
        return
    domain = node.tables.domains.get(verdict.tenant.rdid)  # type: ignore[union-attr]
    if domain is None:
        node.counters.drops[Drop.NO_ROUTE] += 1  # a tenant the policy no longer serves
        return
    tap.counters.in_packets += 1
    tap.counters.in_bytes += len(frame)
    route_ipv4(node, domain.from_internet, frame)


def _arp_from_tap(
    node: GatewayNode, tap: GatewayTap | ExternalTap, frame: memoryview, src_mac: bytes
) -> None:
    """A request for the gateway's address on the TAP (the NAT's, on the external
    one) is answered; a reply that answers
    one of its own requests is learned, and the frames that waited for it leave. The
    sender must be the frame's source, a unicast, non-zero MAC: whoever claims an
    address here decides where a tenant's packets go."""
    counters = node.counters
    drops = counters.drops
    try:
        arp = parse_arp(frame, ETH_HEADER_SIZE)
    except BadPacket as bad:
        drops[bad.reason] += 1
        return
    sender_mac = arp.sender_mac
    if sender_mac != src_mac or sender_mac[0] & ETH_GROUP_BIT or sender_mac == ZERO_MAC:
        drops[Drop.ARP_REFUSED] += 1
        return
    if arp.opcode == ARP_OP_REQUEST:
        counters.arp_requests += 1
        if arp.target_ip not in tap.answers:
            drops[Drop.ARP_UNANSWERED] += 1  # another host's address, or gratuitous
            return
        node.out.to_tap(tap, build_arp_reply(arp, tap.mac))
        counters.arp_replies += 1
        return
    if arp.opcode != ARP_OP_REPLY:
        drops[Drop.ARP_UNANSWERED] += 1
        return
    neighbors = tap.neighbors
    waiting = neighbors.learn(arp.sender_ip, sender_mac, node.now)
    if waiting is None:
        drops[Drop.ARP_REFUSED] += 1
        neighbors.doubt(arp.sender_ip, sender_mac)
        return
    crossed = tap.counters
    for parked in waiting:
        parked[ETH_DST] = sender_mac
        node.out.to_tap(tap, parked)
        crossed.out_packets += 1
        crossed.out_bytes += len(parked)
