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

The NAT (``gateway_nat.py``): out of the external TAP, from the gateway's MAC there,
only ARP about one of the NAT's addresses, or IPv4 from one of them (translated: the
session's address and port, when the NAT holds one for it) that fits the TAP's MTU,
and only for an input of a routing domain with a route to ``nat`` (``isolation``
else); never an internet input's IPv4 back to the internet. An input from the
internet belongs to the session of its inbound key (its routing domain: the session
tenant's), and may come out only as NVGRE into that domain, its destination translated
to the session's CA (a CA, or a forward's, is in one of its VSIDs: never a corp
TAP). Either way the translation may change the addresses and ports (an echo's
identifier, an error's quote) the NAT owns, the TTL, the MSS and the checksums, and
nothing else; every checksum (IP, TCP/UDP, ICMP) that held on the way in holds after.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from gateway.dataplane import PORT_MTU, GatewayTables, GatewayTap, router_mac
from gateway.dataplane.gateway_tables import TAP_MTU
from gateway.dataplane.napt import Napt, out_key
from gateway.errors import BadPacket
from gateway.wire import (
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    BROADCAST_MAC,
    ETH_HEADER_SIZE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    ZERO_MAC,
    checksum_ok,
    encapsulate_ipv4,
    icmp_checksum_ok,
    is_multicast,
    parse_arp,
    parse_ethernet,
    parse_gre_nvgre,
    parse_nvgre,
)

from .frames import PROVIDER
from .gateway_nat import inbound_session, nat_domains

_ICMP_ERRORS = frozenset((3, 11, 12))  # destination unreachable, time exceeded, parameter


def ingress_rdid(
    entry: str, source: Any, data: bytes, tables: GatewayTables, napt: Napt | None = None
) -> str | None:
    """The routing domain an input belongs to: its TAP's, or its VSID's; from the
    internet, that of the NAT session its inbound key names."""
    if entry != PROVIDER:
        if source.internet:
            session = inbound_session(napt, data)
            return None if session is None else session.tenant.rdid  # type: ignore[no-any-return]
        return source.rdid  # type: ignore[no-any-return]
    try:
        return tables.rdid_by_vsid.get(parse_nvgre(data).vsid)
    except BadPacket:
        return None


def check_gateway_event(
    entry: str,
    source: GatewayTap | None,
    data: bytes,
    event: tuple,
    view: Any,
    napt: Napt | None = None,
) -> tuple[str, str] | None:
    """(kind, what is wrong) with one output of a gateway, or None; ``napt`` is its
    NAT as the input left it."""
    tables: GatewayTables = view.gateway
    internet = source is not None and source.internet
    try:
        external = tables.external
        if event[0] == "port" and external is not None and event[1] == external.name:
            return _to_internet(entry, source, data, event[2], tables, napt)
        rdid = ingress_rdid(entry, source, data, tables, napt)
        if rdid is None:
            if internet:
                return ("isolation", f"{entry} -> {event[0]}: from the internet, for no session")
            return ("output", f"{entry} -> {event[0]}: from an input of no routing domain")
        if event[0] == "port" and internet:
            # A session's CA (a forward's too) is in one of the domain's VSIDs.
            return ("isolation", f"{entry} -> TAP: from the internet into a corp network")
        if event[0] == "port":
            problem = _to_tap(entry, data, rdid, tables.tap_by_name[event[1]], event[2], view)
        elif event[0] == "provider":
            problem = _to_provider(entry, data, rdid, *event[1:], view)
        else:
            return ("output", f"{entry} -> link: a gateway is never on the provider link")
        if problem is None and internet:
            return _translated_in(entry, data, rdid, event[-1], tables, napt)
        return problem
    except BadPacket as bad:
        return ("output", f"{entry} -> {event[0]}: does not parse back ({bad.reason.name})")


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
        wrong = _arp_wrong(frame, eth, tap.mac, (tap.own_ip,), "the gateway's own address")
        return None if wrong is None else ("output", f"{entry} -> TAP: {wrong}")
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


def _arp_wrong(
    frame: bytes, eth: Any, mac: bytes, addresses: tuple[bytes, ...], whose: str
) -> str | None:
    """What is wrong with ARP the gateway sent from ``mac`` on a TAP where it holds
    ``addresses``: about another address, a request not broadcast, neither a request
    nor a reply to the asker."""
    arp = parse_arp(frame, ETH_HEADER_SIZE)
    if arp.sender_mac != mac or arp.sender_ip not in addresses:
        return f"ARP not about {whose}"
    if arp.opcode == ARP_OP_REQUEST:
        if eth.dst != BROADCAST_MAC or arp.target_mac != ZERO_MAC:
            return "an ARP request not broadcast"
    elif arp.opcode != ARP_OP_REPLY or eth.dst != arp.target_mac or is_multicast(eth.dst):
        return "ARP that is neither a request nor a reply"
    return None


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


_nat_domains = lru_cache(maxsize=8)(nat_domains)  # per tables: one walk of their routes


def _to_internet(
    entry: str, source: Any, data: bytes, frame: bytes, tables: GatewayTables, napt: Napt | None
) -> tuple[str, str] | None:
    """An output out of the external TAP (module docstring)."""
    from .oracle import _bad_ipv4

    tap = tables.external
    assert tap is not None
    internet = source is not None and source.internet
    if internet:
        if data[12:14] == ETHERTYPE_IPV4.to_bytes(2, "big"):
            return ("isolation", f"{entry} -> internet: an internet packet sent back to it")
    elif ingress_rdid(entry, source, data, tables) not in _nat_domains(tables):
        return ("isolation", f"{entry} -> internet: from a routing domain with no route to nat")
    eth = parse_ethernet(frame)
    if eth.src != tap.mac:
        return ("output", f"{entry} -> internet: not from the gateway's MAC on the external TAP")
    if eth.ethertype == ETHERTYPE_ARP:
        wrong = _arp_wrong(frame, eth, tap.mac, tap.addresses, "one of the NAT's addresses")
        return None if wrong is None else ("output", f"{entry} -> internet: {wrong}")
    if eth.ethertype != ETHERTYPE_IPV4 or is_multicast(eth.dst) or _bad_ipv4(frame) is not None:
        return ("output", f"{entry} -> internet: not unicast IPv4 that parses")
    at = ETH_HEADER_SIZE
    if frame[at + 12 : at + 16] not in tap.addresses:
        return ("output", f"{entry} -> internet: IPv4 not from a NAT address (untranslated)")
    if len(frame) - at > TAP_MTU:  # the link's, not what the tables believe
        return ("output", f"{entry} -> internet: over the external TAP's MTU")
    if internet:
        return None  # a frame of a tenant's that waited for the router's ARP reply
    packet = _input_packet(entry, data)
    whole = packet is not None and not _is_fragment(packet) and not _is_fragment(frame[at:])
    if whole and napt is not None:
        key = (packet[12:16], int.from_bytes(packet[_ihl(packet) : _ihl(packet) + 2], "big"))
        session = _outbound_session(napt, tables, entry, source, data, packet, key)
        if session is not None and _leaves_from(frame[at:]) != session:
            return ("output", f"{entry} -> internet: not from the session's address and port")
    broken = _nat_changed(packet, frame[at:], out=True)
    return None if broken is None else ("output", f"{entry} -> internet: {broken}")


def _outbound_session(
    napt: Napt,
    tables: GatewayTables,
    entry: str,
    source: Any,
    data: bytes,
    packet: bytes,
    key: tuple[bytes, int],
) -> tuple[bytes, int] | None:
    """(NAT address, port) of the session a tenant's TCP/UDP packet belongs to after
    the feed (its outbound key), or None (ICMP, or not held)."""
    protocol = packet[9]
    if protocol not in (IPPROTO_TCP, IPPROTO_UDP) or len(packet) < _ihl(packet) + 4:
        return None
    rdid = ingress_rdid(entry, source, data, tables)
    l4 = _ihl(packet)
    dport = int.from_bytes(packet[l4 + 2 : l4 + 4], "big")
    session = napt.by_out.get(out_key(rdid, protocol, key[0], key[1], packet[16:20], dport))
    return None if session is None else (session.mapping.ext_addr, session.mapping.ext_port)


def _leaves_from(packet: bytes) -> tuple[bytes, int]:
    """(source address, source port) of a TCP/UDP packet."""
    return packet[12:16], int.from_bytes(packet[_ihl(packet) : _ihl(packet) + 2], "big")


def _translated_in(
    entry: str, data: bytes, rdid: str, frame: bytes, tables: GatewayTables, napt: Napt | None
) -> tuple[str, str] | None:
    """An internet input's packet, delivered in ``rdid``: to the session's CA, a CA of
    that routing domain, changed only where the NAT may change it."""
    session = inbound_session(napt, data)
    at = ETH_HEADER_SIZE
    if frame[12:14] != ETHERTYPE_IPV4.to_bytes(2, "big"):
        return ("output", f"{entry} -> {rdid}: not IPv4 from the internet")
    dst = frame[at + 16 : at + 20]
    if session is None or dst != session.mapping.ca or (rdid, dst) not in tables.record_by_rdid_ca:
        return ("isolation", f"{entry} -> tenant: not to the session's CA in its routing domain")
    broken = _nat_changed(_input_packet(entry, data), frame[at:], out=False)
    return None if broken is None else ("output", f"{entry} -> tenant: {broken}")


def _input_packet(entry: str, data: bytes) -> bytes | None:
    """The input's IPv4 packet, cut to its total length, or None."""
    from .oracle import _input_ip

    found = _input_ip(entry, data)
    if found is None:
        return None
    source, at = found
    if len(source) < at + 20 or source[at] >> 4 != 4:
        return None
    return source[at : at + int.from_bytes(source[at + 2 : at + 4], "big")]


def _ihl(packet: bytes) -> int:
    return (packet[0] & 0x0F) * 4


def _is_fragment(packet: bytes) -> bool:
    return int.from_bytes(packet[6:8], "big") & 0x3FFF != 0


def _nat_changed(before: bytes | None, after: bytes, *, out: bool) -> str | None:
    """What a translation (``out``: a tenant's packet to the internet, else back)
    changed that it may not: bytes other than ``_nat_fields``, or a checksum that held
    on the way in (IPv4 header, TCP/UDP, ICMP) and does not any more."""
    from .oracle import _l4_ok

    if before is None or len(before) < 20:
        return None
    if checksum_ok(before[: _ihl(before)]) and not checksum_ok(after[: _ihl(after)]):
        return "an IPv4 header checksum that held on input is broken by the NAT"
    if len(after) != len(before) or _is_fragment(after) != _is_fragment(before):
        return None  # split on the way: the header is checked above, the rest is a part
    allowed = _nat_fields(before, out)
    changed = [i for i in range(len(before)) if before[i] != after[i] and i not in allowed]
    if changed:
        return f"the NAT changed byte {changed[0]}, not an address, port, TTL, MSS or checksum"
    pad = bytes(ETH_HEADER_SIZE)
    if _l4_ok(pad + before, ETH_HEADER_SIZE) and _l4_ok(pad + after, ETH_HEADER_SIZE) is False:
        return "a TCP/UDP checksum that held on input is broken by the NAT"
    ihl = _ihl(before)
    icmp = before[9] == IPPROTO_ICMP and not _is_fragment(before)
    if icmp and icmp_checksum_ok(before[ihl:]) and not icmp_checksum_ok(after[ihl:]):
        return "an ICMP checksum that held on input is broken by the NAT"
    return None


def _nat_fields(packet: bytes, out: bool) -> set[int]:
    """The offsets in an IPv4 packet a translation may change (``out``: the source
    side, else the destination's), besides the TTL and the MSS a router patches."""
    ihl = _ihl(packet)
    allowed = {8, 10, 11, *(range(12, 16) if out else range(16, 20))}
    protocol, l4 = packet[9], ihl
    if _is_fragment(packet) or len(packet) < l4 + 8:
        return allowed
    if protocol == IPPROTO_ICMP and packet[l4] in _ICMP_ERRORS and len(packet) >= l4 + 28:
        quote = l4 + 8
        qihl = _ihl(packet[quote:])
        allowed |= {l4 + 2, l4 + 3, quote + 10, quote + 11}
        allowed |= {quote + i for i in (range(16, 20) if out else range(12, 16))}
        # The quote went the other way: its destination is the side this one's source is.
        allowed |= _l4_fields(packet[quote + 9], packet, quote + qihl, not out)
        return allowed
    return allowed | _l4_fields(protocol, packet, l4, out)


def _l4_fields(protocol: int, packet: bytes, l4: int, out: bool) -> set[int]:
    """A transport header's translated port (an echo's identifier) and checksum; for
    TCP its options too, where the MSS is clamped."""
    if protocol == IPPROTO_ICMP:
        return {l4 + 2, l4 + 3, l4 + 4, l4 + 5}
    port = {l4, l4 + 1} if out else {l4 + 2, l4 + 3}
    if protocol == IPPROTO_UDP:
        return port | {l4 + 6, l4 + 7}
    if protocol == IPPROTO_TCP and len(packet) > l4 + 12:
        return port | {l4 + 16, l4 + 17} | set(range(l4 + 20, l4 + (packet[l4 + 12] >> 4) * 4))
    return port
