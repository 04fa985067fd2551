"""What a gateway node may send, for ``oracle.py``: the rules its outputs are held to.

Every output stays in the routing domain the input came from (the VSID's of a
datagram, the TAP's of a frame): a TAP of another domain, or NVGRE into another
domain's VSID, is an ``isolation`` finding. To a TAP, from the gateway's MAC there:
ARP about its own address only (a request broadcast, a reply to the asker), or IPv4
to a unicast MAC that parses, with a valid header checksum, fitting the TAP's MTU.
In NVGRE: from the domain's PA to a PA some remote record has, in a VSID of the
domain, from that VSID's router MAC to a MAC with a record on that PA, IPv4 that parses
and fits the tenant's MTU (1458), and comes back out of ``parse_nvgre`` as sent.
Forwarded packets keep every checksum that held on the way in (the TTL and the MSS are
patched, RFC 1624). Nothing goes on the provider link.
"""

from __future__ import annotations

from typing import Any

from gateway.dataplane import PORT_MTU, GatewayTables, GatewayTap, router_mac
from gateway.errors import BadPacket
from gateway.wire import (
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    BROADCAST_MAC,
    ETH_HEADER_SIZE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ZERO_MAC,
    encapsulate_ipv4,
    is_multicast,
    parse_arp,
    parse_ethernet,
    parse_gre_nvgre,
    parse_nvgre,
)

from .frames import PROVIDER


def ingress_rdid(entry: str, source: Any, data: bytes, tables: GatewayTables) -> str | None:
    """The routing domain an input belongs to: its TAP's, or its VSID's."""
    if entry != PROVIDER:
        return source.rdid  # type: ignore[no-any-return]
    try:
        return tables.rdid_by_vsid.get(parse_nvgre(data).vsid)
    except BadPacket:
        return None


def check_gateway_event(
    entry: str, source: GatewayTap | None, data: bytes, event: tuple, view: Any
) -> tuple[str, str] | None:
    """(kind, what is wrong) with one output of a gateway, or None."""
    tables: GatewayTables = view.gateway
    rdid = ingress_rdid(entry, source, data, tables)
    if rdid is None:
        return ("output", f"{entry} -> {event[0]}: from an input of no routing domain")
    try:
        if event[0] == "port":
            return _to_tap(entry, data, rdid, tables.tap_by_name[event[1]], event[2], view)
        if event[0] == "provider":
            return _to_provider(entry, data, rdid, *event[1:], view)
    except BadPacket as bad:
        return ("output", f"{entry} -> {event[0]}: does not parse back ({bad.reason.name})")
    return ("output", f"{entry} -> link: a gateway is never on the provider link")


def _sums(entry: str, data: bytes, frame: bytes) -> bool:
    """Whether an IPv4 output's header checksum is as it must be: right, for a packet
    the gateway made (an error, an echo reply: another source or protocol than the
    input's); a forwarded one keeps the input's (``_carried_intact`` checks that a
    right one stays right; the gateway checks no inner header checksum, as a host
    does not: the receiving stack drops a wrong one)."""
    from .oracle import _input_ip, _ipv4_ok

    found = _input_ip(entry, data)
    at = ETH_HEADER_SIZE
    if found is not None:
        source, _ = found
        same = slice(at + 9, at + 10), slice(at + 12, at + 16)
        if len(source) >= at + 16 and all(source[s] == frame[s] for s in same):
            return True
    return _ipv4_ok(frame, at)


def _to_tap(
    entry: str, data: bytes, rdid: str, tap: GatewayTap, frame: bytes, view: Any
) -> tuple[str, str] | None:
    from .oracle import _bad_ipv4, _carried_intact

    if tap.rdid != rdid:
        return ("isolation", f"{entry} -> TAP: out of another routing domain's TAP")
    eth = parse_ethernet(frame)
    if eth.src != tap.mac:
        return ("output", f"{entry} -> TAP: not from the gateway's MAC on the TAP")
    if eth.ethertype == ETHERTYPE_ARP:
        arp = parse_arp(frame, ETH_HEADER_SIZE)
        if arp.sender_mac != tap.mac or arp.sender_ip != tap.own_ip:
            return ("output", f"{entry} -> TAP: ARP not about the gateway's own address")
        if arp.opcode == ARP_OP_REQUEST:
            if eth.dst != BROADCAST_MAC or arp.target_mac != ZERO_MAC:
                return ("output", f"{entry} -> TAP: an ARP request not broadcast")
        elif arp.opcode != ARP_OP_REPLY or eth.dst != arp.target_mac or is_multicast(eth.dst):
            return ("output", f"{entry} -> TAP: ARP that is neither a request nor a reply")
        return None
    if eth.ethertype != ETHERTYPE_IPV4:
        return ("output", f"{entry} -> TAP: ethertype {eth.ethertype:#06x}")
    if is_multicast(eth.dst):
        return ("output", f"{entry} -> TAP: IPv4 to a group MAC")
    if _bad_ipv4(frame) is not None or not _sums(entry, data, frame):
        return ("output", f"{entry} -> TAP: an IPv4 header that does not parse or sum")
    if len(frame) - ETH_HEADER_SIZE > tap.mtu:
        return ("output", f"{entry} -> TAP: over the TAP's MTU")
    broken = _carried_intact(entry, data, frame, True)
    return None if broken is None else ("output", f"{entry} -> TAP: {broken}")


def _to_provider(
    entry: str,
    data: bytes,
    rdid: str,
    src: bytes,
    dst: bytes,
    gre: bytes,
    frame: bytes,
    view: Any,
) -> tuple[str, str] | None:
    from .oracle import _bad_ipv4, _carried_intact

    tables: GatewayTables = view.gateway
    if src != tables.domains[rdid].pa:
        return ("output", f"{entry} -> NVGRE: not from the routing domain's gateway PA")
    if len(dst) != len(src) or dst not in view.record_pas or dst in view.local_pas:
        return ("output", f"{entry} -> NVGRE: to a PA no remote record has")
    header = parse_gre_nvgre(gre)
    if view.snapshot.rdid_by_vsid.get(header.vsid) != rdid:
        return ("isolation", f"{entry} -> NVGRE: into another routing domain's VSID")
    eth = parse_ethernet(frame)
    records = view.snapshot.records_by_mac.get((header.vsid, eth.dst), ())
    if not any(record.pa_bytes == dst for record in records):
        return ("output", f"{entry} -> NVGRE: inner destination MAC has no record on that PA")
    if eth.src != router_mac(header.vsid):
        return ("output", f"{entry} -> NVGRE: inner source is not the VSID's router MAC")
    if eth.ethertype != ETHERTYPE_IPV4 or _bad_ipv4(frame) is not None:
        return ("output", f"{entry} -> NVGRE: not IPv4 that parses")
    if not _sums(entry, data, frame) or len(frame) - ETH_HEADER_SIZE > PORT_MTU:
        return ("output", f"{entry} -> NVGRE: a header that does not sum, or over 1458 bytes")
    packet = parse_nvgre(encapsulate_ipv4(src, dst, header.vsid, header.flow_id, frame))
    if packet.vsid != header.vsid or bytes(packet.inner) != frame:
        return ("output", f"{entry} -> NVGRE: the datagram does not parse back as sent")
    broken = _carried_intact(entry, data, frame, True)
    return None if broken is None else ("output", f"{entry} -> NVGRE: {broken}")
