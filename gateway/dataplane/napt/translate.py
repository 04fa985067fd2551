"""NAPT on the packet: an IPv4 datagram rewritten in place, each way, with its
checksums fixed incrementally (RFC 1624, deltas precomputed per mapping).

``napt_outbound(napt, tenant, packet, now)``: a tenant's datagram to the internet;
its source becomes the mapping's external address and port (ICMP echo: identifier).
``napt_inbound(napt, packet, now)``: a datagram from the internet to an external
address; its destination becomes the tenant's CA and port. Each returns the
``Session`` the datagram belongs to (the caller routes an inbound one in
``session.tenant``'s routing domain) or the ``Drop`` reason it was refused for, and
raises nothing: the bytes are hostile. ``packet`` starts at the IPv4 header and may
run past its total length (Ethernet padding).

ICMP errors (destination unreachable, incl. fragmentation needed; time exceeded;
parameter problem) quote the datagram they are about: per RFC 5508 sec. 4.2 the
quoted headers are translated back too (address, port or identifier, the quoted IP
checksum, the quoted transport checksum where the quote holds it), then the outer
address and the ICMP checksum, so the error reaches the tenant's VM with its own
addresses, and traceroute and path-MTU discovery work through the NAT. An error
from the internet belongs to the session its quote names (REQ-3, REQ-4: none, and
it is dropped); one from a tenant about a datagram that came in through a session
is translated the other way. Errors do not refresh a session (Linux: RELATED).
"""

from __future__ import annotations

import struct
from typing import Final

from gateway.dataplane.napt.session import Session, Tenant, apply_delta, in_key, out_key
from gateway.dataplane.napt.states import (
    ICMP_ECHO,
    TCP_EVENT,
    TCP_NEXT,
    TCP_OPENS,
    TCP_SYN_SENT,
    UDP_STREAM,
    UDP_UNREPLIED,
)
from gateway.dataplane.napt.table import Napt
from gateway.errors import Drop
from gateway.wire import (
    ICMP_DEST_UNREACHABLE,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_TIME_EXCEEDED,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_FRAGMENT_MASK,
    IPV4_HEADER_SIZE,
    IPV4_OFFSET_DST,
    IPV4_OFFSET_SRC,
    IPV4_VIHL_NO_OPTIONS,
    checksum_update,
)

# version+IHL, total length, flags+fragment offset, protocol, source, destination
# (RFC 791 sec. 3.1), in one unpack.
_IP: Final = struct.Struct("!BxHxxHxB2x4s4s")
_WORD: Final = struct.Struct("!H")
_PORTS: Final = struct.Struct("!HH")
_IP_CHECKSUM: Final = 10
_FRAGMENT_OFFSET_MASK: Final = 0x1FFF
_VIHL_V4: Final = 4
# What each protocol's header must hold for NAPT to read it (RFC 9293, 768, 792).
_L4_NEEDED: Final = {IPPROTO_TCP: 20, IPPROTO_UDP: 8, IPPROTO_ICMP: 8}
# Where the transport checksum sits in each header; ICMP echo's identifier is its port.
_L4_CHECKSUM: Final = {IPPROTO_TCP: 16, IPPROTO_UDP: 6, IPPROTO_ICMP: 2}
_TCP_FLAGS: Final = 13
_ICMP_ID: Final = 4
_ICMP_PARAMETER_PROBLEM: Final = 12
_ICMP_ERRORS: Final = frozenset(
    (ICMP_DEST_UNREACHABLE, ICMP_TIME_EXCEEDED, _ICMP_PARAMETER_PROBLEM)
)
_ICMP_ERROR_HEADER: Final = 8  # the quote starts after type, code, checksum, 4 unused bytes
_QUOTE_L4: Final = 8  # RFC 792: at least 64 bits of the quoted datagram's payload
_OUT, _IN = 0, 1  # a packet's direction: from a tenant, from the internet
_WORD_MASK: Final = 0xFFFF
# The direct path: a TCP segment or UDP datagram with no IP options and no fragment,
# of a live session. One unpack reads what it needs (the IPv4 header's version+IHL,
# total length, flags+fragment offset, protocol, checksum, addresses; the ports; and
# UDP's length and checksum, which are TCP's sequence number there, unused) and one
# pack writes the IPv4 checksum, both addresses and both ports back (UDP: its length
# and checksum too; TCP's checksum, further on, takes a second). Addresses are ints
# here, as in the table's keys (``session.out_key``: the tuple below is that one's).
_DIRECT: Final = struct.Struct("!BxHxxHxBHIIHHHH").unpack_from
_DIRECT_MIN: Final = struct.calcsize("!BxHxxHxBHIIHHHH")  # 28: IPv4 and UDP headers
_UDP_REWRITE: Final = struct.Struct("!HIIHHHH").pack_into  # from the IPv4 checksum on
_TCP_REWRITE: Final = struct.Struct("!HIIHH").pack_into
_DIRECT_TCP_CHECKSUM: Final = IPV4_HEADER_SIZE + 16
# The least total length a direct packet may have, by protocol: its headers whole
# (RFC 768, 9293); any other protocol goes the general way (an end never this long).
_DIRECT_END: Final = tuple(
    IPV4_HEADER_SIZE + {IPPROTO_TCP: 20, IPPROTO_UDP: 8}.get(protocol, 0x10000)
    for protocol in range(256)
)


def napt_outbound(
    napt: Napt, tenant: Tenant, packet: memoryview, now: float, at: int = 0
) -> Session | Drop:
    """Translate a tenant's datagram toward the internet in place (``at``: where in
    ``packet`` its IPv4 header starts: a frame's, with no slice made per packet)."""
    size = len(packet) - at
    if size < _DIRECT_MIN:
        return _outbound(napt, tenant, packet[at:], now)
    vihl, end, fragment, protocol, check, src, dst, sport, dport, w6, w8 = _DIRECT(packet, at)
    if (
        vihl != IPV4_VIHL_NO_OPTIONS
        or not _DIRECT_END[protocol] <= end <= size
        or fragment & IPV4_FRAGMENT_MASK
    ):
        return _outbound(napt, tenant, packet[at:], now)
    session = napt.by_out.get((tenant.rdid, protocol, src, sport, dst, dport))
    if session is None or session.expires <= now:
        return _outbound(napt, tenant, packet[at:], now)
    # A segment or datagram of a live session: the common case, its rewrite inline
    # (``_rewrite`` does the same for every other packet).
    _advance(napt, session, packet, at + IPV4_HEADER_SIZE, protocol, _OUT, now)
    m = session.mapping
    check = -((check ^ _WORD_MASK) + m.out_ip) % _WORD_MASK
    if protocol == IPPROTO_UDP:
        if w8:  # RFC 768: 0 is "no checksum", kept; a computed 0 is sent as 0xFFFF
            w8 = -((w8 ^ _WORD_MASK) + m.out_l4) % _WORD_MASK or _WORD_MASK
        _UDP_REWRITE(packet, at + _IP_CHECKSUM, check, m.ext_int, dst, m.ext_port, dport, w6, w8)
    else:
        _TCP_REWRITE(packet, at + _IP_CHECKSUM, check, m.ext_int, dst, m.ext_port, dport)
        at += _DIRECT_TCP_CHECKSUM
        tcp = packet[at] << 8 | packet[at + 1]
        _WORD.pack_into(packet, at, -((tcp ^ _WORD_MASK) + m.out_l4) % _WORD_MASK)
    session.out_packets += 1
    session.out_bytes += end
    return session


def _outbound(napt: Napt, tenant: Tenant, packet: memoryview, now: float) -> Session | Drop:
    """``napt_outbound`` of any datagram: IP options, ICMP, a session to open or
    found expired, or one NAPT refuses."""
    flow = _flow(napt, tenant, packet, _OUT, now)
    if flow.__class__ is not tuple:
        return flow
    ihl, end, protocol, src, dst, sport, dport = flow
    session = napt.by_out.get(out_key(tenant.rdid, protocol, src, sport, dst, dport))
    if session is not None and session.expires <= now:
        napt.end(session, session.expires)
        session = None
    if session is None:
        state = _opening_state(packet, ihl, protocol)
        if state < 0:
            return Drop.NAPT_NO_SESSION
        opened = napt.open(tenant, protocol, src, sport, dst, dport, state, now)
        if opened.__class__ is Drop:
            return opened
        session = opened
    else:
        _advance(napt, session, packet, ihl, protocol, _OUT, now)
    m = session.mapping
    _rewrite(
        packet, ihl, protocol, IPV4_OFFSET_SRC, 0, m.ext_addr, m.ext_port_bytes, m.out_ip, m.out_l4
    )
    session.out_packets += 1
    session.out_bytes += end
    return session


def napt_inbound(napt: Napt, packet: memoryview, now: float, at: int = 0) -> Session | Drop:
    """Translate a datagram from the internet to one of the NAT's addresses in place
    (``at`` as in ``napt_outbound``)."""
    size = len(packet) - at
    if size < _DIRECT_MIN:
        return _inbound(napt, packet[at:], now)
    vihl, end, fragment, protocol, check, src, dst, sport, dport, w6, w8 = _DIRECT(packet, at)
    if (
        vihl != IPV4_VIHL_NO_OPTIONS
        or not _DIRECT_END[protocol] <= end <= size
        or fragment & IPV4_FRAGMENT_MASK
    ):
        return _inbound(napt, packet[at:], now)
    session = napt.by_in.get((protocol, dst, dport, src, sport))
    if session is None or session.expires <= now:
        return _inbound(napt, packet[at:], now)
    # A reply of a live session (or a packet of a forwarded one), its rewrite inline
    # as in ``napt_outbound``.
    _advance(napt, session, packet, at + IPV4_HEADER_SIZE, protocol, _IN, now)
    m = session.mapping
    check = -((check ^ _WORD_MASK) + m.in_ip) % _WORD_MASK
    if protocol == IPPROTO_UDP:
        if w8:
            w8 = -((w8 ^ _WORD_MASK) + m.in_l4) % _WORD_MASK or _WORD_MASK
        _UDP_REWRITE(packet, at + _IP_CHECKSUM, check, src, m.ca_int, sport, m.ca_port, w6, w8)
    else:
        _TCP_REWRITE(packet, at + _IP_CHECKSUM, check, src, m.ca_int, sport, m.ca_port)
        at += _DIRECT_TCP_CHECKSUM
        tcp = packet[at] << 8 | packet[at + 1]
        _WORD.pack_into(packet, at, -((tcp ^ _WORD_MASK) + m.in_l4) % _WORD_MASK)
    session.in_packets += 1
    session.in_bytes += end
    return session


def _inbound(napt: Napt, packet: memoryview, now: float) -> Session | Drop:
    """``napt_inbound`` of any datagram (as ``_outbound``)."""
    flow = _flow(napt, None, packet, _IN, now)
    if flow.__class__ is not tuple:
        return flow
    ihl, end, protocol, src, dst, sport, dport = flow
    session = napt.by_in.get(in_key(protocol, dst, dport, src, sport))
    if session is not None and session.expires <= now:
        napt.end(session, session.expires)
        session = None
    if session is None:
        forward = napt.forwards.get((protocol, dst, dport))
        state = _opening_state(packet, ihl, protocol)
        if forward is None or state < 0:
            return Drop.NAPT_NO_SESSION
        opened = napt.open_forwarded(*forward, src, sport, state, now)
        if opened.__class__ is Drop:
            return opened
        session = opened
    else:
        _advance(napt, session, packet, ihl, protocol, _IN, now)
    m = session.mapping
    _rewrite(packet, ihl, protocol, IPV4_OFFSET_DST, 2, m.ca, m.ca_port_bytes, m.in_ip, m.in_l4)
    session.in_packets += 1
    session.in_bytes += end
    return session


# The echo that travels each way inside a session: requests out, replies in.
_ECHO: Final = (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)


def _flow(
    napt: Napt, tenant: Tenant | None, packet: memoryview, way: int, now: float
) -> tuple[int, int, int, bytes, bytes, int, int] | Session | Drop:
    """(header length, total length, protocol, source, destination, source port,
    destination port) of a datagram of ``way`` (ICMP echo: the identifier is the
    tenant side's port, the remote's is 0); or, for an ICMP error, its whole
    verdict; or why it cannot be translated."""
    header = _header(packet)
    if header.__class__ is Drop:
        return header
    ihl, end, protocol, src, dst = header
    if protocol != IPPROTO_ICMP:
        sport, dport = _PORTS.unpack_from(packet, ihl)
        return ihl, end, protocol, src, dst, sport, dport
    icmp_type = packet[ihl]
    if icmp_type in _ICMP_ERRORS:
        return _error(napt, tenant, packet, ihl, end, way, now)
    if icmp_type != _ECHO[way]:
        # An echo the other way opens nothing (the NAT is no ping target).
        return Drop.NAPT_NO_SESSION if icmp_type == _ECHO[1 - way] else Drop.NAPT_UNSUPPORTED
    (ident,) = _WORD.unpack_from(packet, ihl + _ICMP_ID)
    if way == _OUT:
        return ihl, end, protocol, src, dst, ident, 0
    return ihl, end, protocol, src, dst, 0, ident


def _opening_state(packet: memoryview, ihl: int, protocol: int) -> int:
    """The state a session opened by this datagram starts in; -1: it opens none
    (only a SYN opens TCP, ``states.py``)."""
    if protocol == IPPROTO_TCP:
        return TCP_SYN_SENT if TCP_OPENS[packet[ihl + _TCP_FLAGS]] else -1
    return UDP_UNREPLIED if protocol == IPPROTO_UDP else ICMP_ECHO


def _header(packet: memoryview) -> tuple[int, int, int, bytes, bytes] | Drop:
    """(header length, total length, protocol, source, destination) of a datagram
    NAPT can translate, or why not."""
    if len(packet) < IPV4_HEADER_SIZE:
        return Drop.TRUNCATED
    vihl, end, fragment, protocol, src, dst = _IP.unpack_from(packet)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != _VIHL_V4 or ihl < IPV4_HEADER_SIZE or end < ihl:
        return Drop.INNER_MALFORMED
    if end > len(packet):
        return Drop.TRUNCATED
    if fragment & IPV4_FRAGMENT_MASK:
        return Drop.NAPT_FRAGMENT
    needed = _L4_NEEDED.get(protocol)
    if needed is None:
        return Drop.NAPT_UNSUPPORTED
    if end - ihl < needed:
        return Drop.TRUNCATED
    return ihl, end, protocol, src, dst


def _advance(
    napt: Napt, session: Session, packet: memoryview, ihl: int, protocol: int, way: int, now: float
) -> None:
    """Follow the session's state on a packet of ``way`` and restart its idle timer
    (TCP: not on a segment its state does not expect, ``states.py``). A session that
    stays in its state (nearly every packet) is refreshed here, without a call, and
    once per ``now`` (a batch's): its deadline is already right for the rest."""
    state = session.state
    if protocol == IPPROTO_TCP:
        nxt = TCP_NEXT[way ^ session.opener][TCP_EVENT[packet[ihl + _TCP_FLAGS]]][state]
    elif state == UDP_UNREPLIED and way != session.opener:
        nxt = UDP_STREAM  # the other end answers
    else:
        nxt = state
    if nxt == state:
        deadline = now + napt.timeout_of[state]
        if session.expires != deadline:
            napt.queues[state].move_to_end(session)
            session.expires = deadline
    elif nxt is not None:
        napt.set_state(session, nxt, now)


def _rewrite(
    packet: memoryview,
    ihl: int,
    protocol: int,
    addr_at: int,
    port_at: int,
    addr: bytes,
    port: bytes,
    ip_delta: int,
    l4_delta: int,
) -> None:
    """Write ``addr`` at ``addr_at`` of the IPv4 header and ``port`` at ``port_at``
    of the TCP/UDP header (ICMP echo: at its identifier), fixing both checksums.
    ``packet`` may be an ICMP error's quote that ends before the TCP checksum: that
    one is left alone (there is nothing to fix)."""
    (checksum,) = _WORD.unpack_from(packet, _IP_CHECKSUM)
    _WORD.pack_into(packet, _IP_CHECKSUM, apply_delta(checksum, ip_delta))
    packet[addr_at : addr_at + 4] = addr
    if protocol == IPPROTO_ICMP:
        port_at = _ICMP_ID
    at = ihl + _L4_CHECKSUM[protocol]
    if at + 2 <= len(packet):
        (checksum,) = _WORD.unpack_from(packet, at)
        if protocol != IPPROTO_UDP:
            _WORD.pack_into(packet, at, apply_delta(checksum, l4_delta))
        elif checksum:  # RFC 768: 0 is "no checksum", kept; a computed 0 is sent as 0xFFFF
            _WORD.pack_into(packet, at, apply_delta(checksum, l4_delta) or 0xFFFF)
    packet[ihl + port_at : ihl + port_at + 2] = port


def _error(
    napt: Napt,
    tenant: Tenant | None,
    packet: memoryview,
    ihl: int,
    end: int,
    way: int,
    now: float,
) -> Session | Drop:
    """An ICMP error of ``way``: the session its quote names, with the quote, the
    outer address and the ICMP checksum translated; or why not. A session past its
    idle timeout is over, whether or not ``expire`` has collected it yet: an error
    about it is refused as a reply to it is (and the session ended)."""
    quote = ihl + _ICMP_ERROR_HEADER
    if end - quote < IPV4_HEADER_SIZE:
        return Drop.TRUNCATED
    vihl, _, fragment, protocol, qsrc, qdst = _IP.unpack_from(packet, quote)
    qihl = (vihl & 0x0F) * 4
    if vihl >> 4 != _VIHL_V4 or qihl < IPV4_HEADER_SIZE:
        return Drop.INNER_MALFORMED
    if fragment & _FRAGMENT_OFFSET_MASK:
        return Drop.NAPT_FRAGMENT  # a later fragment's quote holds no ports
    l4 = quote + qihl
    if end - l4 < _QUOTE_L4:
        return Drop.TRUNCATED
    if protocol == IPPROTO_ICMP:
        if packet[l4] not in (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY):
            return Drop.NAPT_UNSUPPORTED
        # The echo's identifier is the port on the tenant's side, the remote's is 0.
        (qsport,) = (qdport,) = _WORD.unpack_from(packet, l4 + _ICMP_ID)
        if way == _IN:
            qdport = 0
        else:
            qsport = 0
    elif protocol in (IPPROTO_TCP, IPPROTO_UDP):
        qsport, qdport = _PORTS.unpack_from(packet, l4)
    else:
        return Drop.NAPT_UNSUPPORTED
    if way == _IN:  # the quote is what went out: from the external address and port
        session = napt.by_in.get(in_key(protocol, qsrc, qsport, qdst, qdport))
        if session is None or packet[IPV4_OFFSET_DST : IPV4_OFFSET_DST + 4] != qsrc:
            return Drop.NAPT_NO_SESSION
    else:  # the quote is what the tenant received: to its CA and port
        session = napt.by_out.get(out_key(tenant.rdid, protocol, qdst, qdport, qsrc, qsport))
        if session is None or packet[IPV4_OFFSET_SRC : IPV4_OFFSET_SRC + 4] != qdst:
            return Drop.NAPT_NO_SESSION
    if session.expires <= now:
        napt.end(session, session.expires)
        return Drop.NAPT_NO_SESSION
    # The ICMP checksum covers the quote: fixed from the quoted bytes rewritten
    # (the TCP checksum only when the quote holds it: RFC 792 asks for 8 bytes of
    # payload, Linux quotes as much as fits in 576).
    touched = l4 + (_L4_CHECKSUM[IPPROTO_TCP] + 2 if end - l4 >= 18 else _QUOTE_L4)
    old = bytes(packet[quote:touched])
    m = session.mapping
    if way == _IN:
        args = (IPV4_OFFSET_SRC, 0, m.ca, m.ca_port_bytes, m.in_ip, m.in_l4)
        outer_at, address, ip_delta = IPV4_OFFSET_DST, m.ca, m.in_ip
    else:
        args = (IPV4_OFFSET_DST, 2, m.ext_addr, m.ext_port_bytes, m.out_ip, m.out_l4)
        outer_at, address, ip_delta = IPV4_OFFSET_SRC, m.ext_addr, m.out_ip
    _rewrite(packet[quote:end], qihl, protocol, *args)
    at = ihl + _L4_CHECKSUM[IPPROTO_ICMP]
    (checksum,) = _WORD.unpack_from(packet, at)
    _WORD.pack_into(packet, at, checksum_update(checksum, old, packet[quote:touched]))
    (checksum,) = _WORD.unpack_from(packet, _IP_CHECKSUM)
    _WORD.pack_into(packet, _IP_CHECKSUM, apply_delta(checksum, ip_delta))
    packet[outer_at : outer_at + 4] = address
    return session
