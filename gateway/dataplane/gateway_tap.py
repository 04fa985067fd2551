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
"""

from __future__ import annotations

import struct
from typing import Final

from gateway.dataplane._frame import ETH_DST, ETH_SRC, IP, IP_DST_ADDR, IP_MIN_FRAME
from gateway.dataplane.gateway_node import GatewayNode
from gateway.dataplane.gateway_routing import route_ipv4
from gateway.dataplane.gateway_tables import ExternalTap, GatewayTap
from gateway.dataplane.napt import napt_inbound
from gateway.errors import BadPacket, Drop
from gateway.wire import (
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    ETH_GROUP_BIT,
    ETH_HEADER_SIZE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ZERO_MAC,
    build_arp_reply,
    parse_arp,
)

_DST_AND_TYPE: Final = struct.Struct("!6s6xH").unpack_from  # Ethernet's destination and type


def gateway_from_tap(node: GatewayNode, tap: GatewayTap | ExternalTap, frame: memoryview) -> None:
    """A frame the corp side sent into ``tap`` (or the internet into the external
    TAP): answered, routed, or a counted drop."""
    if len(frame) < ETH_HEADER_SIZE:
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
