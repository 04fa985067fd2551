"""IPv4 headers (RFC 791 sec. 3.1): the outer header of NVGRE over IPv4, and tenant packets.

One parser serves both, but the two are dropped for different reasons: a bad outer header
is counted as IP_VERSION / IP_HEADER_LENGTH, a bad tenant header as INNER_MALFORMED, so
``parse_ipv4`` and ``parse_inner_ipv4`` differ only in the reasons they raise. Bytes that
end before the header says it does are TRUNCATED in both.

The header checksum is not verified by the parsers. Who does: the kernel, for what the
raw GRE socket delivers; for the receive ring (AF_PACKET, which the kernel does not
check), its socket filter for headers without options (``gateway.io.ring.gre_filter``)
and the data plane's slow path, with ``ipv4_checksum_ok``, for the rest. IP-Rewrite
packets read from the provider link are not checked: their addresses are rewritten
with incremental updates (RFC 1624), which keep a wrong checksum wrong, so the VM's
own stack drops them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from gateway.errors import BadPacket, Drop
from gateway.wire._types import Buffer, WritableBuffer
from gateway.wire.checksum import checksum_ok, checksum_update, internet_checksum

# version+IHL, TOS, total length, identification, flags+fragment offset, TTL, protocol,
# header checksum, source, destination (RFC 791 sec. 3.1)
_IPV4_HEADER: Final = struct.Struct("!BBHHHBBH4s4s")
IPV4_HEADER_SIZE: Final = _IPV4_HEADER.size  # 20: IHL 5, no options
_IPV4_HEADER_MAX_SIZE: Final = 60  # IHL is 4 bits of 32-bit words: 15 * 4
IPV4_ADDR_SIZE: Final = 4
IPV4_VERSION: Final = 4
_IPV4_TOTAL_LENGTH_MAX: Final = 0xFFFF

IPV4_OFFSET_VERSION_IHL: Final = 0  # version (high 4 bits), IHL (low 4 bits)
IPV4_OFFSET_TOTAL_LENGTH: Final = 2
_IPV4_OFFSET_IDENT: Final = 4
IPV4_OFFSET_FRAGMENT: Final = 6  # flags (3 bits) + fragment offset (13 bits)
IPV4_OFFSET_TTL: Final = 8
IPV4_OFFSET_PROTOCOL: Final = 9
_IPV4_OFFSET_CHECKSUM: Final = 10
IPV4_OFFSET_SRC: Final = 12
IPV4_OFFSET_DST: Final = 16

# The byte at IPV4_OFFSET_VERSION_IHL: IHL counts the header in 32-bit words.
IPV4_IHL_MASK: Final = 0x0F
IPV4_IHL_MIN: Final = IPV4_HEADER_SIZE // 4  # 5: a header without options
IPV4_VIHL_NO_OPTIONS: Final = IPV4_VERSION << 4 | IPV4_IHL_MIN  # 0x45, the common header

# A destination whose first octet is at least this is no single host: 224.0.0.0/4
# multicast, 240.0.0.0/4 reserved and 255.255.255.255 (never routed, RFC 1812 sec.
# 5.3.5, 5.3.7; never sent an ICMP error, sec. 4.3.2.7).
IPV4_FIRST_GROUP_OCTET: Final = 224

# Masks on the 16-bit word at IPV4_OFFSET_FRAGMENT.
IPV4_DF: Final = 0x4000
_IPV4_MF: Final = 0x2000
_IPV4_FRAGMENT_OFFSET_MASK: Final = 0x1FFF  # in 8-byte units
IPV4_FRAGMENT_MASK: Final = _IPV4_MF | _IPV4_FRAGMENT_OFFSET_MASK  # non-zero: a fragment

# The 3-bit flags field as Ipv4Header.flags holds it (RFC 791: reserved, DF, MF).
IPV4_FLAG_DF: Final = 0b010
_IPV4_FLAG_MF: Final = 0b001

IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_GRE: Final = 47

_DEFAULT_TTL: Final = 64  # RFC 1700 / Linux net.ipv4.ip_default_ttl


@dataclass(frozen=True, slots=True)
class Ipv4Header:
    tos: int
    total_length: int
    ident: int
    flags: int  # 3 bits: IPV4_FLAG_DF, _IPV4_FLAG_MF
    fragment_offset: int  # 8-byte units
    ttl: int
    protocol: int
    checksum: int
    src: bytes
    dst: bytes
    options: bytes = b""

    @property
    def header_length(self) -> int:
        return IPV4_HEADER_SIZE + len(self.options)

    @property
    def payload_length(self) -> int:
        return self.total_length - self.header_length

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags & IPV4_FLAG_DF)

    @property
    def more_fragments(self) -> bool:
        return bool(self.flags & _IPV4_FLAG_MF)

    @property
    def is_fragment(self) -> bool:
        return self.more_fragments or self.fragment_offset != 0


def _parse(data: Buffer, offset: int, bad_version: Drop, bad_length: Drop) -> Ipv4Header:
    available = len(data) - offset
    if offset < 0 or available < IPV4_HEADER_SIZE:
        raise BadPacket(Drop.TRUNCATED)
    try:
        (ver_ihl, tos, total_length, ident, frag, ttl, protocol, checksum, src, dst) = (
            _IPV4_HEADER.unpack_from(data, offset)
        )
        if ver_ihl >> 4 != IPV4_VERSION:
            raise BadPacket(bad_version)
        header_length = (ver_ihl & IPV4_IHL_MASK) * 4
        if header_length < IPV4_HEADER_SIZE or total_length < header_length:
            raise BadPacket(bad_length)
        if total_length > available:  # covers the options too: header_length <= total_length
            raise BadPacket(Drop.TRUNCATED)
        options = bytes(data[offset + IPV4_HEADER_SIZE : offset + header_length])
    except (struct.error, IndexError, ValueError):
        raise BadPacket(Drop.TRUNCATED) from None
    return Ipv4Header(
        tos,
        total_length,
        ident,
        frag >> 13,
        frag & _IPV4_FRAGMENT_OFFSET_MASK,
        ttl,
        protocol,
        checksum,
        src,
        dst,
        options,
    )


def parse_ipv4(data: Buffer, offset: int = 0) -> Ipv4Header:
    """An outer (provider) IPv4 header from hostile bytes.

    Bytes past ``total_length`` (Ethernet padding) are allowed and ignored; the caller
    must bound the payload with ``total_length``, never with ``len(data)``.
    """
    return _parse(data, offset, Drop.IP_VERSION, Drop.IP_HEADER_LENGTH)


def parse_inner_ipv4(data: Buffer, offset: int = 0) -> Ipv4Header:
    """A tenant's IPv4 header (after the inner Ethernet header) from hostile bytes."""
    return _parse(data, offset, Drop.INNER_MALFORMED, Drop.INNER_MALFORMED)


def build_ipv4(
    src: bytes,
    dst: bytes,
    protocol: int,
    payload_length: int,
    *,
    ttl: int = _DEFAULT_TTL,
    ident: int = 0,
    tos: int = 0,
    flags: int = IPV4_FLAG_DF,
    fragment_offset: int = 0,
    options: bytes = b"",
) -> bytes:
    """An IPv4 header with its checksum, for a payload of ``payload_length`` bytes.

    DF is set by default because nvgw never fragments (RFC 7637 sec. 4.4: a sender NVE
    must not fragment NVGRE packets) and wants path MTU discovery to work instead.
    """
    if len(src) != IPV4_ADDR_SIZE or len(dst) != IPV4_ADDR_SIZE:
        raise ValueError("an IPv4 address is 4 bytes")
    if len(options) % 4 or IPV4_HEADER_SIZE + len(options) > _IPV4_HEADER_MAX_SIZE:
        raise ValueError("IPv4 options must be padded to 32 bits and at most 40 bytes")
    if not 0 <= flags <= 0b111 or not 0 <= fragment_offset <= _IPV4_FRAGMENT_OFFSET_MASK:
        raise ValueError("flags are 3 bits and fragment offset 13 bits")
    header_length = IPV4_HEADER_SIZE + len(options)
    total_length = header_length + payload_length
    if not header_length <= total_length <= _IPV4_TOTAL_LENGTH_MAX:
        raise ValueError(f"IPv4 total length {total_length} out of range")
    header = bytearray(header_length)
    _IPV4_HEADER.pack_into(
        header,
        0,
        (IPV4_VERSION << 4) | (header_length // 4),
        tos,
        total_length,
        ident,
        (flags << 13) | fragment_offset,
        ttl,
        protocol,
        0,
        src,
        dst,
    )
    header[IPV4_HEADER_SIZE:] = options
    header[_IPV4_OFFSET_CHECKSUM : _IPV4_OFFSET_CHECKSUM + 2] = internet_checksum(header).to_bytes(
        2, "big"
    )
    return bytes(header)


def ipv4_checksum_ok(data: Buffer, offset: int = 0) -> bool:
    """Whether the header at ``offset`` (already parsed, so its IHL is sane) is intact."""
    header_length = (data[offset] & IPV4_IHL_MASK) * 4
    return checksum_ok(data[offset : offset + header_length])


def decrement_ttl(packet: WritableBuffer, offset: int = 0) -> int:
    """Decrement the TTL in place, fixing the checksum incrementally (RFC 1624 sec. 4).

    Returns the new TTL; at 0 the router must drop the packet (and may send ICMP time
    exceeded). A TTL already 0 is left alone. The header must already be parsed.
    """
    ttl = packet[offset + IPV4_OFFSET_TTL]
    if ttl == 0:
        return 0
    at = offset + _IPV4_OFFSET_CHECKSUM
    old_word = (ttl << 8) | packet[offset + IPV4_OFFSET_PROTOCOL]
    new_checksum = checksum_update(
        int.from_bytes(packet[at : at + 2], "big"), old_word, old_word - 0x100
    )
    packet[offset + IPV4_OFFSET_TTL] = ttl - 1
    packet[at : at + 2] = new_checksum.to_bytes(2, "big")
    return ttl - 1
