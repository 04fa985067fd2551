"""The IPv6 fixed header (RFC 8200 sec. 3): the outer header of NVGRE over IPv6.

Extension headers are deliberately not walked. NVGRE endpoints (Hyper-V, Open vSwitch,
nvgw itself) put GRE directly after the fixed header; a Fragment header would announce a
fragmented NVGRE packet, which RFC 7637 sec. 4.4 lets a receiver discard; and walking a
chain of attacker-chosen length on the fast path costs every packet for traffic that
does not exist. So an outer next header other than 47 is NOT_GRE.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from gateway.errors import BadPacket, Drop
from gateway.wire._types import Buffer

# version (4 bits) + traffic class (8) + flow label (20), payload length, next header,
# hop limit, source, destination (RFC 8200 sec. 3)
_IPV6_HEADER: Final = struct.Struct("!IHBB16s16s")
IPV6_HEADER_SIZE: Final = _IPV6_HEADER.size  # 40
_IPV6_ADDR_SIZE: Final = 16
IPV6_VERSION: Final = 6
_IPV6_PAYLOAD_LENGTH_MAX: Final = 0xFFFF  # larger needs a jumbo option (RFC 2675): not used
_IPV6_FLOW_LABEL_MASK: Final = 0xFFFFF

_IPV6_OFFSET_PAYLOAD_LENGTH: Final = 4
IPV6_OFFSET_NEXT_HEADER: Final = 6
_IPV6_OFFSET_HOP_LIMIT: Final = 7
_IPV6_OFFSET_SRC: Final = 8
_IPV6_OFFSET_DST: Final = 24

_DEFAULT_HOP_LIMIT: Final = 64


@dataclass(frozen=True, slots=True)
class Ipv6Header:
    traffic_class: int
    flow_label: int
    payload_length: int
    next_header: int
    hop_limit: int
    src: bytes
    dst: bytes

    @property
    def total_length(self) -> int:
        return IPV6_HEADER_SIZE + self.payload_length


def parse_ipv6(data: Buffer, offset: int = 0) -> Ipv6Header:
    """An IPv6 fixed header from hostile bytes; bytes past the payload are ignored."""
    available = len(data) - offset
    if offset < 0 or available < IPV6_HEADER_SIZE:
        raise BadPacket(Drop.TRUNCATED)
    try:
        first, payload_length, next_header, hop_limit, src, dst = _IPV6_HEADER.unpack_from(
            data, offset
        )
    except struct.error:
        raise BadPacket(Drop.TRUNCATED) from None
    if first >> 28 != IPV6_VERSION:
        raise BadPacket(Drop.IP_VERSION)
    if IPV6_HEADER_SIZE + payload_length > available:
        raise BadPacket(Drop.TRUNCATED)
    return Ipv6Header(
        (first >> 20) & 0xFF,
        first & _IPV6_FLOW_LABEL_MASK,
        payload_length,
        next_header,
        hop_limit,
        src,
        dst,
    )


def build_ipv6(
    src: bytes,
    dst: bytes,
    next_header: int,
    payload_length: int,
    *,
    hop_limit: int = _DEFAULT_HOP_LIMIT,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """An IPv6 fixed header (no checksum in IPv6: RFC 8200 leaves it to upper layers)."""
    if len(src) != _IPV6_ADDR_SIZE or len(dst) != _IPV6_ADDR_SIZE:
        raise ValueError("an IPv6 address is 16 bytes")
    if not 0 <= traffic_class <= 0xFF or not 0 <= flow_label <= _IPV6_FLOW_LABEL_MASK:
        raise ValueError("traffic class is 8 bits and flow label 20 bits")
    if not 0 <= payload_length <= _IPV6_PAYLOAD_LENGTH_MAX:
        raise ValueError(f"IPv6 payload length {payload_length} out of range")
    first = (IPV6_VERSION << 28) | (traffic_class << 20) | flow_label
    return _IPV6_HEADER.pack(first, payload_length, next_header, hop_limit, src, dst)
