"""The gateway routes one IPv4 packet in its routing domain (``gateway_node.py`` has
the overview): the one path for packets from the provider network and from a TAP.

What a router owes the packet, in Linux's ``ip_forward`` order: the TTL first
(time-exceeded at 1, RFC 1812 sec. 5.3.1), then the next hop's MTU (RFC 1191:
fragmentation-needed with DF set; with DF clear the tenant's packet is split, never
the NVGRE one), then the TTL counted down (RFC 1624 patch) and a TCP SYN's MSS
clamped; then out of a TAP, to the neighbour resolved by ARP, or into a VSID in
NVGRE, or through the node's NAT (``napt_outbound``) out of its external TAP, or
into a site-to-site tunnel (encrypted by its WireGuard device, ``gateway_tunnel``). ICMP
errors come from the gateway's own address on the side the packet came
from: its CA in the VSID it arrived in (10.10.10.254 in the lab), routed back to the
sender like any packet; its address on the TAP, sent back to the frame's source MAC
on that TAP (the hop it came from; the way back by the table may need an ARP answer
first). No error about an error, a non-first fragment, a group destination or a
source that is no single host (RFC 1812 sec. 4.3.2.7).

A packet for one of the gateway's own addresses (a CA, a TAP address) is answered
if it is an echo request, and otherwise counted as ``to_gateway``: the gateway runs
no service on them.
"""

from __future__ import annotations

import struct
from typing import Final

from gateway.dataplane._frame import (
    ETH_DST,
    ETH_SRC,
    IP,
    IP_MIN_FRAME,
    IP_SRC_ADDR,
)
from gateway.dataplane.gateway_node import GatewayNode
from gateway.dataplane.gateway_tables import (
    OWN,
    Action,
    FromInternet,
    GatewayDomain,
    GatewayInterface,
    GatewayTap,
    ToNat,
    ToTap,
    ToVsid,
)
from gateway.dataplane.gateway_tunnel import GatewayTunnel, ToTunnel, send_to_tunnel
from gateway.dataplane.napt import napt_outbound
from gateway.dataplane.tables import PORT_MTU
from gateway.errors import BadPacket, Drop
from gateway.wire import (
    ARP_OP_REQUEST,
    BROADCAST_MAC,
    ETH_ADDR_SIZE,
    ETH_GROUP_BIT,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_TEB,
    GRE_KEYED,
    ICMP_CODE_FRAGMENTATION_NEEDED,
    ICMP_ECHO_REQUEST,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPV4_DF,
    IPV4_FIRST_GROUP_OCTET,
    IPV4_FRAGMENT_MASK,
    IPV4_HEADER_SIZE,
    IPV4_IHL_MASK,
    IPV4_OFFSET_DST,
    IPV4_OFFSET_FRAGMENT,
    IPV4_OFFSET_PROTOCOL,
    IPV4_OFFSET_TTL,
    IPV4_VERSION,
    IPV4_VIHL_NO_OPTIONS,
    NVGRE_FLAGS,
    ZERO_MAC,
    build_arp,
    build_ethernet,
    build_icmp_echo_reply,
    build_icmp_time_exceeded,
    build_icmp_unreachable,
    build_ipv4,
    clamp_mss,
    flow_id_of_frame,
    fragment_ipv4,
    icmp_checksum_ok,
    icmp_error_allowed,
    parse_icmp,
)

_IP_TTL: Final = IP + IPV4_OFFSET_TTL
_IP_CHECKSUM: Final = _IP_TTL + 2  # the header checksum follows the TTL and protocol
# What the routed path reads of the inner IPv4 header, in one unpack (RFC 791 sec.
# 3.1): version and IHL, total length, flags and fragment offset, TTL, protocol,
# header checksum, destination; and what it writes back after the TTL, in one pack.
_HEADER: Final = struct.Struct("!BxHxxHBBH4x4s").unpack_from
_TTL_PROTOCOL_CHECKSUM: Final = struct.Struct("!BBH").pack_into
_TTL_UNIT: Final = 0x0100  # one TTL in the TTL/protocol word
_WORD_MASK: Final = 0xFFFF
_ETH_ADDRS: Final = slice(0, 2 * ETH_ADDR_SIZE)  # destination and source MAC, in order
_IP_PROTOCOL: Final = IP + IPV4_OFFSET_PROTOCOL
_GRE: Final = GRE_KEYED.pack
# The bytes that decide a FlowID (``flow_id_of_frame``) when the header has no options
# and the packet is no fragment: the protocol, the addresses and the next 4 bytes (a
# TCP or UDP packet's ports), in one unpack whose tuple keys ``GatewayDomain.flows``.
_FLOW: Final = struct.Struct("!B2x12s").unpack_from
_FLOW_END: Final = IP + IPV4_HEADER_SIZE + 4  # the frame must hold the ports
# Flows remembered per routing domain before the cache is emptied and refilled: a
# flood of distinct flows costs a refill, as for the receive side's cache.
MAX_FLOWS: Final = 1 << 16
# First octets of sources that are no single host: no error or answer goes to them
# (RFC 1812 sec. 4.3.2.7: "this network", loopback, multicast, reserved, broadcast).
_THIS_NETWORK: Final = 0
_LOOPBACK: Final = 127

_WAYS_BACK: Final = (ToTap, ToVsid, ToTunnel)  # where the gateway's own packets may go
# Where a packet came in: errors go back there (none to the internet).
Ingress = GatewayInterface | GatewayTap | FromInternet | GatewayTunnel


def route_ipv4(node: GatewayNode, ingress: Ingress, frame: memoryview) -> None:
    """Route the IPv4 packet in ``frame``, an Ethernet frame for the gateway's MAC on
    ``ingress``, in the routing domain of ``ingress``; or answer or count it."""
    counters = node.counters  # its drops are read only to count one
    size = len(frame)
    if size < IP_MIN_FRAME:
        counters.drops[Drop.INNER_MALFORMED] += 1
        return
    vihl, ip_total, fragment, ttl, protocol, check, dst = _HEADER(frame, IP)
    end = IP + ip_total
    # The packet must fit its frame and hold its own header (RFC 1812 sec. 5.2.2); a
    # header without options (nearly all) has the shorter test.
    if vihl == IPV4_VIHL_NO_OPTIONS:
        if end > size or ip_total < IPV4_HEADER_SIZE:
            counters.drops[Drop.INNER_MALFORMED] += 1
            return
    elif (
        vihl >> 4 != IPV4_VERSION
        or not IPV4_HEADER_SIZE <= (vihl & IPV4_IHL_MASK) << 2 <= ip_total <= size - IP
    ):
        counters.drops[Drop.INNER_MALFORMED] += 1
        return
    # A group destination's action is Drop.BROADCAST (``GatewayTables.route``).
    domain = ingress.domain
    action = domain.routes.get(dst)
    if action is None:
        action = node.tables.route(domain, dst)
    packet = frame if end == size else frame[:end]  # without the Ethernet padding
    cls = action.__class__
    if cls is ToVsid:
        mtu = PORT_MTU
    elif cls is ToTap:
        mtu = action.tap.mtu  # type: ignore[union-attr]
    elif action is OWN:
        _to_gateway(node, domain, frame, end, ingress)
        return
    elif cls is ToNat:
        # What will be forwarded (not answered with an error) is translated here, and
        # then goes on as to any neighbour on a TAP (TTL, MSS, fragments): the errors
        # quote the packet as the tenant sent it, the fragments carry the translation.
        mtu = action.tap.mtu  # type: ignore[union-attr]
        if ttl > 1 and (ip_total <= mtu or not fragment & IPV4_DF):
            verdict = napt_outbound(node.napt, domain.tenant, packet, node.now, IP)  # type: ignore[arg-type]
            if verdict.__class__ is Drop:
                counters.drops[verdict] += 1  # type: ignore[index]
                return
            check = frame[_IP_CHECKSUM] << 8 | frame[_IP_CHECKSUM + 1]  # as translated
        action = action.out  # type: ignore[union-attr]
        cls = ToTap
    elif cls is ToTunnel:
        mtu = action.tunnel.mtu  # type: ignore[union-attr]
    else:
        counters.drops[action] += 1  # type: ignore[index]
        return
    if ttl <= 1:
        _time_exceeded(node, domain, frame, end, ingress)
        return
    too_big = ip_total > mtu
    if too_big and fragment & IPV4_DF:
        counters.drops[Drop.TOO_BIG] += 1
        icmp = build_icmp_unreachable(ICMP_CODE_FRAGMENTATION_NEEDED, frame[IP:end], mtu)
        _icmp_error(node, domain, frame, end, ingress, icmp)
        return
    # The TTL counted down and the header checksum patched inline, as Linux's
    # ip_decrease_ttl does (RFC 1624): the TTL is its word's high byte, so the word
    # falls by 0x0100 and the checksum rises by as much, with the end-around carry.
    # The same as ``decrement_ttl`` for every checksum (tests), at a fraction of a call.
    check += _TTL_UNIT
    if check >= _WORD_MASK:
        check = (check + 1) & _WORD_MASK
    _TTL_PROTOCOL_CHECKSUM(frame, _IP_TTL, ttl - 1, protocol, check)
    if protocol == IPPROTO_TCP:
        mss = node.tables.mss
        if mss:
            clamp_mss(frame, mss, IP)
    counters.routed += 1
    if too_big:
        if cls is ToVsid and ingress.__class__ is GatewayTap:
            domain.counters.in_packets += 1
            domain.counters.in_bytes += end
        _fragmented(node, frame, end, action, mtu)
    elif cls is ToTap:
        # The common case inline: a neighbour learned and fresh (else ``to_tap`` asks).
        tap = action.tap  # type: ignore[union-attr]
        entry = tap.neighbors.learned.get(action.next_hop)  # type: ignore[union-attr]
        if entry is None or node.now > entry[1]:
            to_tap(node, tap, action.next_hop, packet)  # type: ignore[union-attr]
            return
        frame[_ETH_ADDRS] = entry[2]  # both MACs in one write, as into a VSID
        node.out.to_tap(tap, packet)
        crossed = tap.counters
        crossed.out_packets += 1
        crossed.out_bytes += end
    elif cls is ToVsid:
        frame[_ETH_ADDRS] = action.addresses  # type: ignore[union-attr]
        # The GRE header with the flow's FlowID: hashed once per flow (the cache's key
        # holds all the FlowID reads), per packet for options and fragments.
        if vihl == IPV4_VIHL_NO_OPTIONS and not fragment & IPV4_FRAGMENT_MASK and size >= _FLOW_END:
            flow = _FLOW(frame, _IP_PROTOCOL)
            gre = domain.flows.get(flow)
            if gre is None:
                gre = _flow_gre(domain.flows, flow, action, frame)  # type: ignore[arg-type]
        else:
            gre = _GRE(NVGRE_FLAGS, ETHERTYPE_TEB, action.key | flow_id_of_frame(frame))  # type: ignore[union-attr]
        node.out.to_provider(action.src_pa, action.dst_pa, gre, packet)  # type: ignore[union-attr]
        counters.encapsulated += 1
        if ingress.__class__ is GatewayTap:
            crossed = domain.counters
            crossed.in_packets += 1
            crossed.in_bytes += end
    else:  # into a site-to-site tunnel, tested last: its encryption dwarfs the tests
        send_to_tunnel(node, action.tunnel, frame[IP:end])  # type: ignore[union-attr]


def _flow_gre(
    flows: dict[tuple[int, bytes], bytes],
    flow: tuple[int, bytes],
    action: ToVsid,
    frame: memoryview,
) -> bytes:
    """A flow-cache miss: the flow's GRE header, remembered (bounded)."""
    if len(flows) >= MAX_FLOWS:
        flows.clear()  # bounded against floods of distinct flows; refills by itself
    gre = flows[flow] = _GRE(NVGRE_FLAGS, ETHERTYPE_TEB, action.key | flow_id_of_frame(frame))
    return gre


def emit(node: GatewayNode, action: ToTap | ToVsid | ToTunnel, frame: memoryview) -> None:
    """Send a routed frame (its IP header final) where ``action`` says."""
    if action.__class__ is ToTap:
        to_tap(node, action.tap, action.next_hop, frame)  # type: ignore[union-attr]
        return
    if action.__class__ is ToTunnel:
        send_to_tunnel(node, action.tunnel, frame[IP:])  # type: ignore[union-attr]
        return
    frame[_ETH_ADDRS] = action.addresses  # type: ignore[union-attr]
    key = action.key | flow_id_of_frame(frame)  # type: ignore[union-attr]
    node.out.to_provider(
        action.src_pa,  # type: ignore[union-attr]
        action.dst_pa,  # type: ignore[union-attr]
        _GRE(NVGRE_FLAGS, ETHERTYPE_TEB, key),
        frame,
    )
    node.counters.encapsulated += 1


def to_tap(node: GatewayNode, tap: GatewayTap, next_hop: bytes, frame: memoryview) -> None:
    """Out of ``tap`` to the neighbour at ``next_hop``: at once when its MAC is known,
    else after ARP answers (the frame waits, copied, in a bounded queue; a request
    goes out of the TAP from the gateway's address, at most once a second)."""
    neighbors = tap.neighbors
    mac, ask = neighbors.resolve(next_hop, node.now)
    if ask:
        request = build_arp(ARP_OP_REQUEST, tap.mac, tap.own_ip, ZERO_MAC, next_hop)
        node.out.to_tap(tap, build_ethernet(BROADCAST_MAC, tap.mac, ETHERTYPE_ARP) + request)
        node.counters.arp_requests_sent += 1
    frame[ETH_SRC] = tap.mac
    if mac is None:
        if not neighbors.park(next_hop, bytearray(frame)):
            node.counters.drops[Drop.TX_FULL] += 1
        return
    frame[ETH_DST] = mac
    node.out.to_tap(tap, frame)
    crossed = tap.counters
    crossed.out_packets += 1
    crossed.out_bytes += len(frame)


def _fragmented(node: GatewayNode, frame: memoryview, end: int, action: Action, mtu: int) -> None:
    """A packet over the next hop's MTU with DF clear: sent as fragments that fit."""
    pieces = fragment_ipv4(frame[IP:end], mtu)
    if not pieces:
        node.counters.drops[Drop.TOO_BIG] += 1  # options that do not parse
        return
    node.counters.fragmented += 1
    ethernet = bytes(frame[:IP])
    for piece in pieces:
        emit(node, action, memoryview(bytearray(ethernet + piece)))  # type: ignore[arg-type]


def _time_exceeded(
    node: GatewayNode, domain: GatewayDomain, frame: memoryview, end: int, ingress: Ingress
) -> None:
    node.counters.drops[Drop.TTL_EXPIRED] += 1
    _icmp_error(node, domain, frame, end, ingress, build_icmp_time_exceeded(frame[IP:end]))


def _icmp_error(
    node: GatewayNode,
    domain: GatewayDomain,
    frame: memoryview,
    end: int,
    ingress: Ingress,
    icmp: bytes,
) -> None:
    """Send the sender of ``frame`` the ICMP error ``icmp``, from the gateway's address
    on the side it came from, unless no error may be sent about it."""
    if ingress.own_ip is None or not icmp_error_allowed(frame[IP:end]):
        return
    sent = _reply(node, domain, frame, ingress, ingress.own_ip, IPPROTO_ICMP, icmp)
    node.counters.icmp_errors_sent += sent


def _to_gateway(
    node: GatewayNode, domain: GatewayDomain, frame: memoryview, end: int, ingress: Ingress
) -> None:
    """A packet for one of the gateway's own addresses: an echo request is answered
    from the address it was sent to; anything else is counted."""
    header_end = IP + (frame[IP] & IPV4_IHL_MASK) * 4
    fragment = frame[IP + IPV4_OFFSET_FRAGMENT] << 8 | frame[IP + IPV4_OFFSET_FRAGMENT + 1]
    if frame[_IP_PROTOCOL] == IPPROTO_ICMP and not fragment & IPV4_FRAGMENT_MASK:
        try:
            request = parse_icmp(frame[:end], header_end)
        except BadPacket:
            request = None
        if (
            request is not None
            and request.type == ICMP_ECHO_REQUEST
            and request.code == 0
            and icmp_checksum_ok(frame[header_end:end])
        ):
            own = bytes(frame[IP + IPV4_OFFSET_DST : IP + IPV4_OFFSET_DST + 4])
            reply = build_icmp_echo_reply(request)
            if _reply(node, domain, frame, ingress, own, IPPROTO_ICMP, reply):
                node.counters.echo_replies += 1
                return
    node.counters.drops[Drop.TO_GATEWAY] += 1


def _reply(
    node: GatewayNode,
    domain: GatewayDomain,
    frame: memoryview,
    ingress: Ingress,
    source: bytes,
    protocol: int,
    payload: bytes,
) -> bool:
    """Send the gateway's own packet from ``source`` back to the sender of ``frame``;
    False when there is no way back (a source that is no single host, a group MAC,
    no route)."""
    to = bytes(frame[IP_SRC_ADDR])
    if to[0] in (_THIS_NETWORK, _LOOPBACK) or to[0] >= IPV4_FIRST_GROUP_OCTET:
        return False
    packet = build_ipv4(source, to, protocol, len(payload)) + payload
    if ingress.__class__ is GatewayTap:
        hop = bytes(frame[ETH_SRC])
        if hop[0] & ETH_GROUP_BIT:
            return False  # RFC 1122 sec. 3.2.2: never to a link-layer group address
        tap: GatewayTap = ingress  # type: ignore[assignment]
        node.out.to_tap(tap, build_ethernet(hop, tap.mac, ETHERTYPE_IPV4) + packet)
        return True
    action = domain.routes.get(to)
    if action is None:
        action = node.tables.route(domain, to)
    if action.__class__ not in _WAYS_BACK:
        return False
    frame = bytearray(build_ethernet(ZERO_MAC, ZERO_MAC, ETHERTYPE_IPV4) + packet)  # MACs: emit's
    emit(node, action, memoryview(frame))  # type: ignore[arg-type]
    return True
