"""The host role's VM side: a frame a VM sent on its TAP (``host.py`` has the overview).

ARP for a CA is answered from the lookup records and never leaves the host; IPv4 is
switched within its VSID, or routed through the subnet's gateway MAC: between VSIDs of
one routing domain, or toward a gateway (a customer route via its CA, else the VSID's
GatewayWildcard), its TTL counted down and time-exceeded answered here; then
delivered to a local port, encapsulated in NVGRE to the destination's PA, or sent
IP-Rewritten (``rule: nat``) on the provider link.
"""

from __future__ import annotations

from typing import Final

from gateway.dataplane._frame import (
    ETH_DST,
    ETH_SRC,
    IP,
    IP_DST_ADDR,
    IP_FLAG_DF,
    IP_FLAGS,
    IP_MIN_FRAME,
    IP_SRC_ADDR,
    IP_TOTAL_LENGTH,
    IP_TOTAL_LENGTH_FIELD,
    IP_VERSION_IHL,
)
from gateway.dataplane.host import HostNode
from gateway.dataplane.ip_rewrite import to_link
from gateway.dataplane.tables import HostPort, router_mac
from gateway.errors import BadPacket, Drop
from gateway.policy import RecordType, Rule
from gateway.wire import (
    ARP_OP_REQUEST,
    ETH_GROUP_BIT,
    ETH_HEADER,
    ETH_HEADER_SIZE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_TEB,
    GRE_KEYED,
    ICMP_CODE_FRAGMENTATION_NEEDED,
    IPPROTO_ICMP,
    IPV4_ADDR_SIZE,
    IPV4_FIRST_GROUP_OCTET,
    IPV4_IHL_MASK,
    IPV4_IHL_MIN,
    IPV4_OFFSET_TTL,
    IPV4_VERSION,
    NVGRE_FLAGS,
    VSID_SHIFT,
    build_arp_reply,
    build_ethernet,
    build_icmp_time_exceeded,
    build_icmp_unreachable,
    build_ipv4,
    decrement_ttl,
    flow_id_of_frame,
    icmp_error_allowed,
    parse_arp,
    rewrite_ipv4_dst,
    rewrite_ipv4_src,
)

_UNSPECIFIED_V4: Final = bytes(IPV4_ADDR_SIZE)  # 0.0.0.0: an ARP probe's sender (RFC 5227)
_IP_TTL: Final = IP + IPV4_OFFSET_TTL


def from_port(node: HostNode, port: HostPort, frame: memoryview) -> None:
    """A frame ``port``'s VM sent: answered, forwarded through ``node.out``, or a
    counted drop."""
    drops = node.counters.drops
    if len(frame) < ETH_HEADER_SIZE:
        drops[Drop.INNER_TRUNCATED] += 1
        return
    dst_mac, src_mac, ethertype = ETH_HEADER.unpack_from(frame)
    if src_mac != port.mac:
        drops[Drop.SPOOFED_SOURCE] += 1
    elif ethertype == ETHERTYPE_IPV4:
        _ipv4_from_port(node, port, frame, dst_mac)
    elif ethertype == ETHERTYPE_ARP:
        _arp_from_port(node, port, frame)
    else:
        drops[Drop.UNSUPPORTED] += 1


def _arp_from_port(node: HostNode, port: HostPort, frame: memoryview) -> None:
    counters = node.counters
    try:
        arp = parse_arp(frame, ETH_HEADER_SIZE)
    except BadPacket as bad:
        counters.drops[bad.reason] += 1
        return
    if arp.sender_mac != port.mac or arp.sender_ip not in (port.ca, _UNSPECIFIED_V4):
        counters.drops[Drop.SPOOFED_SOURCE] += 1
        return
    if arp.opcode != ARP_OP_REQUEST:
        counters.drops[Drop.ARP_UNANSWERED] += 1
        return
    counters.arp_requests += 1
    answer = node.tables.answers_arp_for(port, arp.target_ip)
    if answer is None:
        counters.drops[Drop.ARP_UNANSWERED] += 1
        return
    node.out.to_tap(port, build_arp_reply(arp, answer))
    counters.arp_replies += 1


def _ipv4_from_port(node: HostNode, port: HostPort, frame: memoryview, dst_mac: bytes) -> None:
    counters = node.counters
    drops = counters.drops
    size = len(frame)
    if size < IP_MIN_FRAME:
        drops[Drop.INNER_MALFORMED] += 1
        return
    vihl = frame[IP_VERSION_IHL]
    if vihl >> 4 != IPV4_VERSION or vihl & IPV4_IHL_MASK < IPV4_IHL_MIN:
        drops[Drop.INNER_MALFORMED] += 1
        return
    # The IPv4 packet must fit its frame and hold its own header (RFC 1812 sec.
    # 5.2.2, what a router checks): a VM's packet is checked here, where it enters,
    # so the receiving host need not check it again per packet (provider_side.py).
    ip_total = frame[IP_TOTAL_LENGTH] << 8 | frame[IP_TOTAL_LENGTH + 1]
    if not (vihl & IPV4_IHL_MASK) << 2 <= ip_total <= size - ETH_HEADER_SIZE:
        drops[Drop.INNER_MALFORMED] += 1
        return
    if bytes(frame[IP_SRC_ADDR]) != port.ca:
        drops[Drop.SPOOFED_SOURCE] += 1
        return
    if size - ETH_HEADER_SIZE > port.mtu:
        _too_big(node, port, frame, dst_mac)
        return
    tables = node.tables
    snapshot = tables.snapshot
    dst_ip = bytes(frame[IP_DST_ADDR])
    if dst_mac == port.router_mac:
        if dst_ip[0] >= IPV4_FIRST_GROUP_OCTET:  # never routed, so never sent to a gateway
            drops[Drop.BROADCAST] += 1  # multicast, broadcast: no router forwards them
            return
        route = snapshot.route(port.rdid, dst_ip)
        if route is not None:
            # On-link: to the destination's record; else to the next hop CA's, which
            # may be a gateway's (any destination, as the RDID's way out).
            vsid = route.next_hop_vsid
            record = snapshot.record_by_ca.get((vsid, route.next_hop_bytes or dst_ip))
            if record is None:
                drops[Drop.NO_RECORD] += 1
                return
        else:
            # No customer route: the VSID's gateway record on 0.0.0.0 (GatewayWildcard).
            vsid = port.vsid
            record = tables.wildcard_by_vsid.get(vsid)
            if record is None:
                drops[Drop.NO_ROUTE] += 1
                return
        if frame[_IP_TTL] <= 1:
            _time_exceeded(node, port, frame)
            return
        decrement_ttl(frame, IP)
        frame[ETH_DST] = record.mac_bytes
        frame[ETH_SRC] = router_mac(vsid)
        counters.routed += 1
    elif dst_mac[0] & ETH_GROUP_BIT:
        drops[Drop.BROADCAST] += 1
        return
    else:
        vsid = port.vsid
        record = tables.record_by_mac.get((vsid, dst_mac))  # IPv4 CAs only
        # A frame for a VM's MAC must be for that VM's CA; only a gateway takes others.
        if record is None or (record.ca_bytes != dst_ip and record.type is not RecordType.GATEWAY):
            drops[Drop.NO_RECORD] += 1
            return
    if record.pa_bytes in tables.local_pas:
        destination = tables.port_by_key.get((vsid, record.mac_bytes))
        if destination is None:
            drops[Drop.NO_PORT] += 1
            return
        node.out.to_tap(destination, frame)
        counters.switched_locally += 1
        destination.counters.to_vm_packets += 1
        destination.counters.to_vm_bytes += size
    elif record.rule is Rule.ENCAP:
        if len(record.pa_bytes) != IPV4_ADDR_SIZE or len(port.pa) != IPV4_ADDR_SIZE:
            # A host on an IPv6 underlay, this one or the other: the daemon serves
            # IPv4 PAs only (the node plan; trace and replay build any node), and
            # NVGRE is never carried across families.
            drops[Drop.PROVIDER_UNREACHABLE] += 1
            return
        key = vsid << VSID_SHIFT | flow_id_of_frame(frame)
        node.out.to_provider(
            port.pa, record.pa_bytes, GRE_KEYED.pack(NVGRE_FLAGS, ETHERTYPE_TEB, key), frame
        )
        counters.encapsulated += 1
    else:
        # IP-Rewrite: the CAs become the two records' PAs; no GRE, and the frame's
        # own Ethernet header is readdressed for the provider link.
        if port.rule is not Rule.IP_REWRITE:
            # The sender has no PA of its own to stand for its CA (an encap VM's
            # is its host's, shared, and the kernel's): nothing can carry it.
            drops[Drop.PROVIDER_UNREACHABLE] += 1
            return
        end = IP + int.from_bytes(frame[IP_TOTAL_LENGTH_FIELD], "big")
        try:
            rewrite_ipv4_src(frame[IP:end], port.pa)
            rewrite_ipv4_dst(frame[IP:end], record.pa_bytes)
        except BadPacket as bad:
            drops[bad.reason] += 1
            return
        if not to_link(node, port.pa, record.pa_bytes, frame[:end]):
            return
        counters.ip_rewritten_out += 1
    port.counters.from_vm_packets += 1
    port.counters.from_vm_bytes += size


def _too_big(node: HostNode, port: HostPort, frame: memoryview, dst_mac: bytes) -> None:
    """RFC 1191: with DF set, tell the VM the MTU it must use; never drop silently.

    The error comes from the subnet's gateway CA, or, when the subnet has no IPv4
    gateway (none, or an IPv6 one), from the address the frame was sent to."""
    counters = node.counters
    counters.drops[Drop.TOO_BIG] += 1
    if not frame[IP_FLAGS] & IP_FLAG_DF:
        return  # a VM that allows fragmentation sent more than its TAP's MTU: its bug
    if dst_mac[0] & ETH_GROUP_BIT:
        return  # RFC 1122 sec. 3.2.2: no ICMP error for a link-layer broadcast
    icmp = build_icmp_unreachable(ICMP_CODE_FRAGMENTATION_NEEDED, frame[IP:], port.mtu)
    _icmp_error(node, port, frame, dst_mac, port.gateway_ca or bytes(frame[IP_DST_ADDR]), icmp)


def _time_exceeded(node: HostNode, port: HostPort, frame: memoryview) -> None:
    """RFC 1812 sec. 5.3.1: the TTL of a packet this host would route has run out;
    say so from the subnet's gateway CA, the hop the VM routes through, so that
    traceroute's first hop is this host (decisions.md, "The gateway forwards as the
    RDID's router"). A subnet with no IPv4 gateway has no address the VM knows this
    hop by (it reached the router MAC without asking ARP for it): the packet is
    dropped and counted, and no address is made up for the error."""
    node.counters.drops[Drop.TTL_EXPIRED] += 1
    if port.gateway_ca is not None:
        icmp = build_icmp_time_exceeded(frame[IP:])
        _icmp_error(node, port, frame, port.router_mac, port.gateway_ca, icmp)


def _icmp_error(
    node: HostNode, port: HostPort, frame: memoryview, sent_to: bytes, source: bytes, icmp: bytes
) -> None:
    """Send ``port``'s VM the ICMP error ``icmp`` about ``frame``, from the CA
    ``source`` and the MAC it ``sent_to``, unless no error may be sent about it
    (a fragment but the first, a group destination, an ICMP error itself)."""
    if not icmp_error_allowed(frame[IP:]):
        return
    ip = build_ipv4(source, port.ca, IPPROTO_ICMP, len(icmp))
    node.out.to_tap(port, build_ethernet(port.mac, sent_to, ETHERTYPE_IPV4) + ip + icmp)
    node.counters.icmp_errors_sent += 1
