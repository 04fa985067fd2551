"""IPv4 fragmentation (RFC 791 sec. 2.3 and 3.2): what a router does with a datagram
that allows it (DF clear) and will not fit the next hop.

The gateway meets such datagrams where a corp network's 1500 bytes meet the tenant's
1458 (42 bytes of NVGRE on a 1500 underlay). With DF set it answers
fragmentation-needed; with DF clear, dropping would lose every large datagram whose
sender does not do path MTU discovery (UDP without DF, as many DNS servers send
their large answers), so it splits the tenant's datagram as any router would.
RFC 7637 forbids fragmenting the NVGRE packet itself (sec. 4.4), which this never
does: the fragments are inner packets, each encapsulated whole.

Each fragment carries the original header with its total length, flags, fragment
offset and checksum set anew; options whose copy flag is set go into every fragment,
the others only into the first (RFC 791 sec. 3.1, "Options"). Payload is split on
8-byte boundaries. An original that is itself a fragment is split the same way
(offsets continue from its own, and the last piece keeps its MF flag).
"""

from __future__ import annotations

import struct
from typing import Final

from gateway.wire._types import Buffer
from gateway.wire.checksum import internet_checksum
from gateway.wire.ipv4 import (
    _IPV4_FRAGMENT_OFFSET_MASK,
    _IPV4_MF,
    _IPV4_OFFSET_CHECKSUM,
    IPV4_DF,
    IPV4_HEADER_SIZE,
    IPV4_IHL_MASK,
    IPV4_OFFSET_FRAGMENT,
    IPV4_OFFSET_TOTAL_LENGTH,
    IPV4_VERSION,
)

_WORD: Final = struct.Struct("!H")
_FRAGMENT_UNIT: Final = 8  # fragment offsets count 8-byte blocks (RFC 791 sec. 3.1)
_OPTION_END: Final = 0
_OPTION_NOP: Final = 1
_OPTION_COPIED: Final = 0x80  # the copy flag of an option's type byte


def fragment_ipv4(packet: Buffer, mtu: int) -> list[bytes]:
    """The fragments, each at most ``mtu`` bytes, of the IPv4 datagram ``packet``
    (its header parsed by the caller; bytes past its total length are ignored).

    Returns [] when it cannot be split that way: DF set, a datagram that already
    fits, an MTU that leaves no 8 bytes of payload, or options that do not parse
    (the caller counts the drop).
    """
    if len(packet) < IPV4_HEADER_SIZE or packet[0] >> 4 != IPV4_VERSION:
        return []
    header_length = (packet[0] & IPV4_IHL_MASK) * 4
    (total,) = _WORD.unpack_from(packet, IPV4_OFFSET_TOTAL_LENGTH)
    (field,) = _WORD.unpack_from(packet, IPV4_OFFSET_FRAGMENT)
    if (
        header_length < IPV4_HEADER_SIZE
        or not header_length <= total <= len(packet)
        or total <= mtu
        or field & IPV4_DF
    ):
        return []
    first_header = bytes(packet[:header_length])
    copied = _copied_options(first_header[IPV4_HEADER_SIZE:])
    if copied is None:
        return []
    later_header = first_header[:IPV4_HEADER_SIZE] + copied
    payload = packet[header_length:total]
    offset = field & _IPV4_FRAGMENT_OFFSET_MASK  # in 8-byte blocks
    last_mf = field & _IPV4_MF
    pieces = []
    at, header = 0, first_header
    while at < len(payload):
        room = (mtu - len(header)) // _FRAGMENT_UNIT * _FRAGMENT_UNIT
        if room <= 0:
            return []
        chunk = payload[at : at + room]
        more = at + room < len(payload)
        fragment = bytearray(header) + chunk
        fragment[0] = IPV4_VERSION << 4 | len(header) // 4
        _WORD.pack_into(fragment, IPV4_OFFSET_TOTAL_LENGTH, len(fragment))
        flags = _IPV4_MF if more or last_mf else 0
        _WORD.pack_into(fragment, IPV4_OFFSET_FRAGMENT, flags | offset + at // _FRAGMENT_UNIT)
        _WORD.pack_into(fragment, _IPV4_OFFSET_CHECKSUM, 0)
        checksum = internet_checksum(fragment[: len(header)])
        _WORD.pack_into(fragment, _IPV4_OFFSET_CHECKSUM, checksum)
        pieces.append(bytes(fragment))
        at += room
        header = later_header
    return pieces


def _copied_options(options: bytes) -> bytes | None:
    """The options a fragment after the first carries (those with the copy flag),
    padded to 32 bits; None when the options do not parse."""
    kept = bytearray()
    at = 0
    while at < len(options):
        kind = options[at]
        if kind == _OPTION_END:
            break
        if kind == _OPTION_NOP:
            at += 1
            continue
        if at + 1 >= len(options):
            return None
        length = options[at + 1]
        if length < 2 or at + length > len(options):
            return None
        if kind & _OPTION_COPIED:
            kept += options[at : at + length]
        at += length
    kept += bytes(-len(kept) % 4)  # end-of-options padding
    return bytes(kept)
