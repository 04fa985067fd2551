"""TCP MSS clamping (RFC 9293 sec. 3.7.1, RFC 6691): the gateway's answer to a path MTU
the ends of a connection cannot see.

A TCP SYN's Maximum Segment Size option tells the peer the largest segment the sender
will take. A host on a 1500-byte corp network offers 1460, but the tenant's side of
the gateway holds 1458 bytes of IP (42 bytes of NVGRE on a 1500 underlay), so each
full segment would need fragmentation-needed, or be lost where ICMP is filtered.
Lowering the MSS in the SYNs that cross the gateway, both ways, makes both ends send
segments that fit from the first one, as routers' ``ip tcp adjust-mss`` and Linux's
``TCPMSS --clamp-mss-to-pmtu`` do.

The option is rewritten in place and the TCP checksum patched (RFC 1624), so the cost
does not grow with the segment. Nothing here trusts the segment: every option is read
within the TCP header the data offset declares, which must itself lie within the IP
packet, and a header that breaks those bounds is left alone (the receiver's stack
drops it anyway). Nothing is ever read past the TCP header.
"""

from __future__ import annotations

from typing import Final

from gateway.wire._types import WritableBuffer
from gateway.wire.checksum import checksum_update
from gateway.wire.ipv4 import (
    _IPV4_FRAGMENT_OFFSET_MASK,
    IPPROTO_TCP,
    IPV4_HEADER_SIZE,
    IPV4_IHL_MASK,
    IPV4_OFFSET_FRAGMENT,
    IPV4_OFFSET_PROTOCOL,
    IPV4_OFFSET_TOTAL_LENGTH,
)
from gateway.wire.l4 import (
    _TCP_DATA_OFFSET_MIN,
    _TCP_HEADER_SIZE,
    _TCP_OFFSET_CHECKSUM,
    _TCP_SYN,
    _WORD,
)

# TCP header fields the clamp reads (RFC 9293 sec. 3.1).
_TCP_OFFSET_DATA_OFFSET: Final = 12  # data offset in the high 4 bits, in 32-bit words
_TCP_OFFSET_FLAGS: Final = 13
# Option kinds (RFC 9293 sec. 3.2): one byte each for end and no-op; every other
# option is kind, length (counting both), then its data.
_OPTION_END: Final = 0
_OPTION_NOP: Final = 1
_OPTION_MSS: Final = 2
_OPTION_MSS_LENGTH: Final = 4  # kind, length, 16-bit MSS
_OPTION_MIN_LENGTH: Final = 2


def clamp_mss(packet: WritableBuffer, mss: int, offset: int = 0) -> bool:
    """Lower the MSS option of a TCP SYN (or SYN-ACK) to ``mss`` in place, patching the
    TCP checksum incrementally; True when it was lowered.

    ``packet`` holds an IPv4 datagram at ``offset``; its total length bounds what is
    read. Anything else is left as it is and gives False: not TCP, a fragment other
    than the first, not a SYN, no MSS option or one already at most ``mss``, and any
    header or option that does not fit where it claims to (hostile bytes never raise
    here: they are simply not clamped).
    """
    size = len(packet)
    if offset < 0 or size - offset < IPV4_HEADER_SIZE:
        return False
    if packet[offset + IPV4_OFFSET_PROTOCOL] != IPPROTO_TCP:
        return False
    (fragment,) = _WORD.unpack_from(packet, offset + IPV4_OFFSET_FRAGMENT)
    if fragment & _IPV4_FRAGMENT_OFFSET_MASK:
        return False  # its TCP header travels in the first fragment
    (total,) = _WORD.unpack_from(packet, offset + IPV4_OFFSET_TOTAL_LENGTH)
    end = offset + min(total, size - offset)
    tcp = offset + (packet[offset] & IPV4_IHL_MASK) * 4
    if tcp < offset + IPV4_HEADER_SIZE or end - tcp < _TCP_HEADER_SIZE:
        return False
    if not packet[tcp + _TCP_OFFSET_FLAGS] & _TCP_SYN:
        return False
    words = packet[tcp + _TCP_OFFSET_DATA_OFFSET] >> 4
    options_end = tcp + words * 4
    if words < _TCP_DATA_OFFSET_MIN or options_end > end:
        return False
    at = tcp + _TCP_HEADER_SIZE
    while at < options_end:
        kind = packet[at]
        if kind == _OPTION_END:
            return False
        if kind == _OPTION_NOP:
            at += 1
            continue
        if options_end - at < _OPTION_MIN_LENGTH:
            return False
        length = packet[at + 1]
        if length < _OPTION_MIN_LENGTH or at + length > options_end:
            return False  # a malformed option list: nothing after it can be found
        if kind == _OPTION_MSS and length == _OPTION_MSS_LENGTH:
            return _lower(packet, tcp, at + 2, mss)
        at += length
    return False


def _lower(packet: WritableBuffer, tcp: int, field: int, mss: int) -> bool:
    """Write ``mss`` over the MSS value at ``field`` if it is lower, and patch the TCP
    checksum at ``tcp``. The checksum sums 16-bit words counted from the TCP header
    (the pseudo-header before it is 12 bytes): an MSS value at an odd position, after
    a single NOP or a 3-byte window scale, straddles two words, its first byte the low
    half of one and its second the high half of the next, so it counts byte-swapped
    (RFC 1071 sec. 2 (B)) and the update is given the swapped values. The bytes
    around it are never read: the option may end the header."""
    (value,) = _WORD.unpack_from(packet, field)
    if value <= mss:
        return False
    at = tcp + _TCP_OFFSET_CHECKSUM
    (checksum,) = _WORD.unpack_from(packet, at)
    if (field - tcp) & 1:
        checksum = checksum_update(checksum, _swapped(value), _swapped(mss))
    else:
        checksum = checksum_update(checksum, value, mss)
    _WORD.pack_into(packet, field, mss)
    _WORD.pack_into(packet, at, checksum)
    return True


def _swapped(word: int) -> int:
    return (word & 0xFF) << 8 | word >> 8
