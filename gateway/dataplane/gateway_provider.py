"""The gateway's receive side for NVGRE: a datagram from the provider network.

Checked exactly as a host checks what it receives, by the same code
(``provider_side``): RFC 7637's rules on the outer and GRE headers (``parse_nvgre``,
or the flow key's common form), the destination PA this node's, the VSID known, the
inner destination the gateway's MAC in that VSID (``GatewayTables.port_by_key``, read
where a host reads its ports), IPv4 only (ARP never crosses the provider network),
and anti-spoofing: the inner source is a record of that VSID on the outer source PA,
or, routed by its host from another VSID of the routing domain (the router MAC as
source), a CA of the routing domain on that PA. What is accepted is routed in its
VSID's routing domain (``gateway_routing.route_ipv4``).

The verdict for a flow key is cached per snapshot as on a host, but the gateway's key
(``NVGRE_V4_ROUTED_FLOW``) also holds the inner TTL, protocol and destination: what
decides the route. So a flow routed out of a TAP (private cloud, the common case)
caches that too (``TapFlow``), as does a flow into a site-to-site tunnel
(``TunnelFlow``), and its packets are forwarded here with only what a packet can
change checked per packet (its length against the frame and the MTU, the
neighbour's MAC still fresh): a quarter fewer bytecodes than through ``route_ipv4``,
and 8-10 % fewer instructions (``bench/gateway_callgrind.py``, ``in``). Whatever
else, and any of those checks failing, goes through ``route_ipv4``, which decides
every case and answers the errors; a test holds the two to the same output.
"""

from __future__ import annotations

import struct
from typing import Final

from gateway.dataplane._frame import IP
from gateway.dataplane.gateway_node import GatewayNode
from gateway.dataplane.gateway_routing import (
    _ETH_ADDRS,
    _TTL_PROTOCOL_CHECKSUM,
    _TTL_UNIT,
    _WORD_MASK,
    route_ipv4,
)
from gateway.dataplane.gateway_tables import GatewayInterface, GatewayTables, GatewayTap, ToTap
from gateway.dataplane.gateway_tunnel import GatewayTunnel, ToTunnel, send_to_tunnel
from gateway.dataplane.provider_side import (
    _INNER,
    _MIN_COMMON_TOTAL,
    _NOT_COMMON,
    cache_flow,
    decide_flow,
    slow_verdict,
)
from gateway.wire import (
    IPPROTO_TCP,
    IPV4_HEADER_SIZE,
    IPV4_OFFSET_TOTAL_LENGTH,
    IPV4_OFFSET_TTL,
    IPV4_VIHL_NO_OPTIONS,
    NVGRE_V4_ROUTED_FLOW,
    clamp_mss,
)

_FLOW_UNPACK: Final = NVGRE_V4_ROUTED_FLOW.unpack_from
_FLOW_SIZE: Final = NVGRE_V4_ROUTED_FLOW.size
_SOURCE: Final = slice(0, 4)  # of the key's 8 bytes of inner addresses
_DESTINATION: Final = slice(4, 8)
# In the datagram: the inner IPv4 header, its total length, TTL and checksum.
_INNER_IP: Final = _INNER + IP
_INNER_TOTAL_LENGTH: Final = _INNER_IP + IPV4_OFFSET_TOTAL_LENGTH
_INNER_TTL: Final = _INNER_IP + IPV4_OFFSET_TTL
_INNER_CHECKSUM: Final = _INNER_TTL + 2
# What varies per packet and the route reads or patches, in one unpack: the outer
# and the inner total length, the inner header checksum (an unpack and two byte reads
# cost 1,800 instructions more a packet: ``bench/gateway_callgrind.py``, ``in``).
# Within the flow key's bytes, so always there to read.
_LENGTHS_AND_CHECKSUM: Final = struct.Struct(
    f"!{IPV4_OFFSET_TOTAL_LENGTH}xH"
    f"{_INNER_TOTAL_LENGTH - IPV4_OFFSET_TOTAL_LENGTH - 2}xH"
    f"{_INNER_CHECKSUM - _INNER_TOTAL_LENGTH - 2}xH"
)
_PER_PACKET: Final = _LENGTHS_AND_CHECKSUM.unpack_from


class _RoutedFlow:
    """What a flow's cached route holds whatever it leads to: what ``route_ipv4``
    decided from the key alone (the header without options, the TTL above 1), kept
    with the snapshot's tables as the route is. ``ttl`` is the one the packets leave
    with; ``mss`` is the clamp for a TCP flow (0: not TCP, or not clamped); ``mtu``
    the way out's."""

    __slots__ = ("interface", "mss", "mtu", "protocol", "ttl")

    def __init__(
        self, interface: GatewayInterface, mtu: int, ttl: int, protocol: int, mss: int
    ) -> None:
        self.interface = interface
        self.mtu = mtu
        self.ttl = ttl - 1
        self.protocol = protocol
        self.mss = mss if protocol == IPPROTO_TCP else 0


class TapFlow(_RoutedFlow):
    """A flow key's verdict when its packets are routed out of a TAP, to a neighbour
    on ``tap``."""

    __slots__ = ("next_hop", "tap")

    def __init__(
        self, interface: GatewayInterface, route: ToTap, ttl: int, protocol: int, mss: int
    ) -> None:
        super().__init__(interface, route.tap.mtu, ttl, protocol, mss)
        self.tap: GatewayTap = route.tap
        self.next_hop = route.next_hop


class TunnelFlow(_RoutedFlow):
    """A flow key's verdict when its packets are routed into a site-to-site tunnel
    (hybrid cloud), so that they are sealed with only their length checked (against
    the frame and the tunnel's MTU): ``route_ipv4``'s header read, route lookup and
    chain of route kinds cost about 5,300 instructions a packet of the 39,000 (64 B)
    and 50,000 (1400 B) one into a tunnel costs (``bench/gateway_callgrind.py``,
    ``tunnel``)."""

    __slots__ = ("tunnel",)

    def __init__(
        self, interface: GatewayInterface, route: ToTunnel, ttl: int, protocol: int, mss: int
    ) -> None:
        super().__init__(interface, route.tunnel.mtu, ttl, protocol, mss)
        self.tunnel: GatewayTunnel = route.tunnel


def gateway_from_provider(node: GatewayNode, datagram: memoryview) -> None:
    """An NVGRE datagram to the gateway, outer IP header first: routed, answered, or a
    counted drop. The common form costs one unpack and one dict probe to decide, as on
    a host (``provider_side.from_provider``); everything else is read by
    ``parse_nvgre``, and both reach the same verdict."""
    counters = node.counters
    size = len(datagram)
    counters.provider_rx_packets += 1
    counters.provider_rx_bytes += size
    tables = node.tables
    if size >= _FLOW_SIZE:
        key = _FLOW_UNPACK(datagram)
        total, ip_total, checksum = _PER_PACKET(datagram)
        if _MIN_COMMON_TOTAL <= total <= size:
            verdict = tables.flows.get(key)
            if verdict is None:
                verdict = _flow_verdict(key, tables)
            cls = verdict.__class__
            if cls is TapFlow or cls is TunnelFlow:
                # What ``route_ipv4`` does for this flow's packet, unless its length
                # or (out of a TAP) the neighbour asks for more: the TTL counted down
                # with the checksum patched (RFC 1624), the MSS of a SYN clamped; then
                # the MACs and out of the TAP, or sealed into the tunnel.
                end = _INNER_IP + ip_total
                if end <= total and IPV4_HEADER_SIZE <= ip_total <= verdict.mtu:  # type: ignore[attr-defined]
                    if cls is TapFlow:
                        tap = verdict.tap  # type: ignore[attr-defined]
                        entry = tap.neighbors.learned.get(verdict.next_hop)  # type: ignore[attr-defined]
                        if entry is None or node.now > entry[1]:
                            route_ipv4(node, verdict.interface, datagram[_INNER:total])  # type: ignore[attr-defined]
                            return
                    check = checksum + _TTL_UNIT
                    if check >= _WORD_MASK:
                        check = (check + 1) & _WORD_MASK
                    _TTL_PROTOCOL_CHECKSUM(
                        datagram,
                        _INNER_TTL,
                        verdict.ttl,  # type: ignore[attr-defined]
                        verdict.protocol,  # type: ignore[attr-defined]
                        check,
                    )
                    if verdict.mss:  # type: ignore[attr-defined]
                        clamp_mss(datagram, verdict.mss, _INNER_IP)  # type: ignore[attr-defined]
                    counters.routed += 1
                    if cls is TunnelFlow:
                        send_to_tunnel(node, verdict.tunnel, datagram[_INNER_IP:end])  # type: ignore[attr-defined]
                        return
                    frame = datagram[_INNER:end]
                    frame[_ETH_ADDRS] = entry[2]
                    node.out.to_tap(tap, frame)
                    crossed = tap.counters
                    crossed.out_packets += 1
                    crossed.out_bytes += end - _INNER
                    return
                route_ipv4(node, verdict.interface, datagram[_INNER:total])  # type: ignore[attr-defined]
                return
            if cls is GatewayInterface:
                route_ipv4(node, verdict, datagram[_INNER:total])  # type: ignore[arg-type]
                return
            if verdict is not _NOT_COMMON:
                counters.drops[verdict] += 1  # type: ignore[index]
                return
    verdict, frame = slow_verdict(tables, datagram)  # type: ignore[arg-type]
    if verdict.__class__ is GatewayInterface:
        route_ipv4(node, verdict, frame)  # type: ignore[arg-type]
    else:
        counters.drops[verdict] += 1  # type: ignore[index]


def _flow_verdict(key: tuple, tables: GatewayTables) -> object:
    """Decide a flow-cache miss as a host does (the key's first seven fields are the
    host's key), then, for an interface's flow, its route: a ``TapFlow`` when every
    packet of it goes out of a TAP unless its own length or the neighbour says
    otherwise. Cached but for _NOT_COMMON, as on a host."""
    vihl, fragment, protocol, run, ethernet, inner_vihl, ttl, inner_protocol, addresses = key
    verdict = decide_flow(
        (vihl, fragment, protocol, run, ethernet, inner_vihl, addresses[_SOURCE]),
        tables,  # type: ignore[arg-type]
    )
    if verdict is _NOT_COMMON:
        return verdict
    if verdict.__class__ is GatewayInterface and inner_vihl == IPV4_VIHL_NO_OPTIONS and ttl > 1:
        route = tables.route(verdict.domain, addresses[_DESTINATION])  # type: ignore[attr-defined]
        if route.__class__ is ToTap:
            verdict = TapFlow(verdict, route, ttl, inner_protocol, tables.mss)  # type: ignore[arg-type]
        elif route.__class__ is ToTunnel:
            verdict = TunnelFlow(verdict, route, ttl, inner_protocol, tables.mss)  # type: ignore[arg-type]
    cache_flow(tables.flows, key, verdict)
    return verdict
