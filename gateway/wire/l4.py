"""TCP and UDP over IPv4: ports, checksums, and in-place rewrites for IP-Rewrite and NAT.

Rewriting an address or a port must fix two checksums: the IPv4 header's and the
TCP/UDP one, whose pseudo-header (RFC 768; RFC 9293 sec. 3.1) covers both addresses.
Both are patched incrementally (RFC 1624), so the cost does not grow with the payload
and a first fragment can be rewritten without the rest of its datagram. An IPv4 UDP
checksum of 0 means "none" (RFC 768) and stays 0; a patched checksum that comes out as
0 is sent as 0xFFFF.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from gateway.errors import BadPacket, Drop
from gateway.wire._types import Buffer, WritableBuffer
from gateway.wire.checksum import (
    _UDP_NO_CHECKSUM,
    _UDP_ZERO_CHECKSUM_SENT_AS,
    checksum_ok,
    checksum_update,
    internet_checksum,
    ones_complement_sum,
)
from gateway.wire.ipv4 import (
    _IPV4_FRAGMENT_OFFSET_MASK,
    _IPV4_OFFSET_CHECKSUM,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_ADDR_SIZE,
    IPV4_HEADER_SIZE,
    IPV4_IHL_MASK,
    IPV4_OFFSET_DST,
    IPV4_OFFSET_FRAGMENT,
    IPV4_OFFSET_PROTOCOL,
    IPV4_OFFSET_SRC,
    IPV4_OFFSET_TOTAL_LENGTH,
    IPV4_VERSION,
)

# src port, dst port, seq, ack, data offset (4 bits) + reserved, flags, window, checksum,
# urgent pointer (RFC 9293 sec. 3.1)
_TCP_HEADER: Final = struct.Struct("!HHIIBBHHH")
_TCP_HEADER_SIZE: Final = _TCP_HEADER.size  # 20
_TCP_DATA_OFFSET_MIN: Final = 5  # 32-bit words
_TCP_OFFSET_CHECKSUM: Final = 16
_UDP_HEADER: Final = struct.Struct("!HHHH")  # src port, dst port, length, checksum (RFC 768)
_UDP_HEADER_SIZE: Final = _UDP_HEADER.size  # 8
_UDP_OFFSET_CHECKSUM: Final = 6
# TCP and UDP put the ports first, so flow hashing and NAT need only these 4 bytes.
_L4_PORTS: Final = struct.Struct("!HH")
_L4_PORTS_SIZE: Final = _L4_PORTS.size
_L4_OFFSET_SRC_PORT: Final = 0
_L4_OFFSET_DST_PORT: Final = 2
# src, dst, zero, protocol, TCP/UDP length (RFC 768, RFC 9293 sec. 3.1)
_PSEUDO_HEADER_V4: Final = struct.Struct("!4s4sBBH")

_TCP_FIN: Final = 0x01
_TCP_SYN: Final = 0x02
_TCP_RST: Final = 0x04
_TCP_PSH: Final = 0x08
_TCP_ACK: Final = 0x10
_TCP_URG: Final = 0x20
_TCP_ECE: Final = 0x40
_TCP_CWR: Final = 0x80

_WORD: Final = struct.Struct("!H")
_CHECKSUM_AT: Final = {IPPROTO_TCP: _TCP_OFFSET_CHECKSUM, IPPROTO_UDP: _UDP_OFFSET_CHECKSUM}


@dataclass(frozen=True, slots=True)
class TcpHeader:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    data_offset: int  # header length in 32-bit words
    flags: int  # _TCP_FIN ... _TCP_CWR
    window: int
    checksum: int
    urgent: int
    options: bytes = b""


@dataclass(frozen=True, slots=True)
class UdpHeader:
    src_port: int
    dst_port: int
    length: int
    checksum: int


def parse_ports(data: Buffer, offset: int = 0) -> tuple[int, int]:
    """(src port, dst port) of a TCP or UDP header, from hostile bytes."""
    if offset < 0 or len(data) - offset < _L4_PORTS_SIZE:
        raise BadPacket(Drop.TRUNCATED)
    try:
        return _L4_PORTS.unpack_from(data, offset)
    except struct.error:
        raise BadPacket(Drop.TRUNCATED) from None


def parse_tcp(data: Buffer, offset: int = 0) -> TcpHeader:
    """A TCP header at the start of an IP payload, from hostile bytes."""
    available = len(data) - offset
    if offset < 0 or available < _TCP_HEADER_SIZE:
        raise BadPacket(Drop.TRUNCATED)
    try:
        sport, dport, seq, ack, offset_byte, flags, window, checksum, urgent = (
            _TCP_HEADER.unpack_from(data, offset)
        )
    except struct.error:
        raise BadPacket(Drop.TRUNCATED) from None
    data_offset = offset_byte >> 4
    if data_offset < _TCP_DATA_OFFSET_MIN:
        raise BadPacket(Drop.INNER_MALFORMED)
    if data_offset * 4 > available:
        raise BadPacket(Drop.TRUNCATED)
    options = bytes(data[offset + _TCP_HEADER_SIZE : offset + data_offset * 4])
    return TcpHeader(sport, dport, seq, ack, data_offset, flags, window, checksum, urgent, options)


def parse_udp(data: Buffer, offset: int = 0) -> UdpHeader:
    """A UDP header whose length must fit in ``data`` (the IP payload), from hostile bytes."""
    available = len(data) - offset
    if offset < 0 or available < _UDP_HEADER_SIZE:
        raise BadPacket(Drop.TRUNCATED)
    try:
        sport, dport, length, checksum = _UDP_HEADER.unpack_from(data, offset)
    except struct.error:
        raise BadPacket(Drop.TRUNCATED) from None
    if length < _UDP_HEADER_SIZE:
        raise BadPacket(Drop.INNER_MALFORMED)
    if length > available:
        raise BadPacket(Drop.TRUNCATED)
    return UdpHeader(sport, dport, length, checksum)


def _pseudo_header_sum_v4(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """The one's complement sum of the IPv4 pseudo-header, to chain into a checksum."""
    return ones_complement_sum(_PSEUDO_HEADER_V4.pack(src, dst, 0, protocol, length))


def l4_checksum_v4(src: bytes, dst: bytes, protocol: int, segment: Buffer) -> int:
    """The TCP/UDP checksum to store, computed over a segment whose checksum field is 0.

    For UDP a computed 0 is returned as 0xFFFF, since 0 would mean "no checksum".
    """
    value = internet_checksum(segment, _pseudo_header_sum_v4(src, dst, protocol, len(segment)))
    if protocol == IPPROTO_UDP and value == _UDP_NO_CHECKSUM:
        return _UDP_ZERO_CHECKSUM_SENT_AS
    return value


def l4_checksum_ok_v4(src: bytes, dst: bytes, protocol: int, segment: Buffer) -> bool:
    """Whether a received TCP/UDP segment is intact; a UDP checksum of 0 was never computed."""
    if (
        protocol == IPPROTO_UDP
        and segment[_UDP_OFFSET_CHECKSUM : _UDP_OFFSET_CHECKSUM + 2] == b"\0\0"
    ):
        return True
    return checksum_ok(segment, _pseudo_header_sum_v4(src, dst, protocol, len(segment)))


def build_udp_v4(
    src_ip: bytes, dst_ip: bytes, src_port: int, dst_port: int, payload: Buffer = b""
) -> bytes:
    """A UDP header and payload with the IPv4 checksum (the IP header is not included)."""
    length = _UDP_HEADER_SIZE + len(payload)
    if length > 0xFFFF:
        raise ValueError("UDP datagram too long")
    segment = bytearray(_UDP_HEADER.pack(src_port, dst_port, length, 0)) + payload
    checksum = l4_checksum_v4(src_ip, dst_ip, IPPROTO_UDP, segment)
    _WORD.pack_into(segment, _UDP_OFFSET_CHECKSUM, checksum)
    return bytes(segment)


def build_tcp_v4(
    src_ip: bytes,
    dst_ip: bytes,
    src_port: int,
    dst_port: int,
    payload: Buffer = b"",
    *,
    seq: int = 0,
    ack: int = 0,
    flags: int = _TCP_ACK,
    window: int = 0xFFFF,
    urgent: int = 0,
    options: bytes = b"",
) -> bytes:
    """A TCP header (options padded by the caller) and payload with the IPv4 checksum."""
    if len(options) % 4 or len(options) > 40:
        raise ValueError("TCP options must be padded to 32 bits and at most 40 bytes")
    data_offset = (_TCP_HEADER_SIZE + len(options)) // 4
    segment = bytearray(
        _TCP_HEADER.pack(src_port, dst_port, seq, ack, data_offset << 4, flags, window, 0, urgent)
    )
    segment += options
    segment += payload
    checksum = l4_checksum_v4(src_ip, dst_ip, IPPROTO_TCP, segment)
    _WORD.pack_into(segment, _TCP_OFFSET_CHECKSUM, checksum)
    return bytes(segment)


def _l4_checksum_position(packet: Buffer, offset: int) -> tuple[int, int]:
    """(protocol, absolute offset of its checksum field or -1), after checking lengths.

    -1 means there is no L4 checksum to patch: not TCP/UDP, a non-first fragment (its
    L4 header travels in the first one), or a UDP checksum of 0.
    """
    available = len(packet) - offset
    if offset < 0 or available < IPV4_HEADER_SIZE:
        raise BadPacket(Drop.TRUNCATED)
    ver_ihl = packet[offset]
    header_length = (ver_ihl & IPV4_IHL_MASK) * 4
    (total_length,) = _WORD.unpack_from(packet, offset + IPV4_OFFSET_TOTAL_LENGTH)
    if ver_ihl >> 4 != IPV4_VERSION or header_length < IPV4_HEADER_SIZE:
        raise BadPacket(Drop.INNER_MALFORMED)
    if total_length < header_length:
        raise BadPacket(Drop.INNER_MALFORMED)
    if total_length > available:
        raise BadPacket(Drop.TRUNCATED)
    protocol = packet[offset + IPV4_OFFSET_PROTOCOL]
    field = _CHECKSUM_AT.get(protocol)
    (fragment,) = _WORD.unpack_from(packet, offset + IPV4_OFFSET_FRAGMENT)
    if field is None or fragment & _IPV4_FRAGMENT_OFFSET_MASK:
        return protocol, -1
    if header_length + field + 2 > total_length:
        raise BadPacket(Drop.TRUNCATED)  # a first fragment too small to hold its L4 header
    position = offset + header_length + field
    if protocol == IPPROTO_UDP and packet[position] == 0 and packet[position + 1] == 0:
        return protocol, -1
    return protocol, position


def _patch(packet: WritableBuffer, position: int, protocol: int, old: Buffer, new: Buffer) -> None:
    (old_checksum,) = _WORD.unpack_from(packet, position)
    value = checksum_update(old_checksum, old, new)
    if protocol == IPPROTO_UDP and value == _UDP_NO_CHECKSUM:
        value = _UDP_ZERO_CHECKSUM_SENT_AS
    _WORD.pack_into(packet, position, value)


def _rewrite_address(packet: WritableBuffer, at: int, new: bytes, offset: int) -> None:
    if len(new) != IPV4_ADDR_SIZE:
        raise ValueError("an IPv4 address is 4 bytes")
    protocol, position = _l4_checksum_position(packet, offset)
    start = offset + at
    old = bytes(packet[start : start + IPV4_ADDR_SIZE])
    _patch(packet, offset + _IPV4_OFFSET_CHECKSUM, 0, old, new)
    if position >= 0:
        _patch(packet, position, protocol, old, new)
    packet[start : start + IPV4_ADDR_SIZE] = new


def rewrite_ipv4_src(packet: WritableBuffer, new_src: bytes, offset: int = 0) -> None:
    """Set the source address in place, fixing the IP and TCP/UDP checksums.

    ``packet`` holds a tenant IPv4 datagram at ``offset``; bad bytes raise BadPacket
    (TRUNCATED or INNER_MALFORMED) before anything is written.
    """
    _rewrite_address(packet, IPV4_OFFSET_SRC, new_src, offset)


def rewrite_ipv4_dst(packet: WritableBuffer, new_dst: bytes, offset: int = 0) -> None:
    """Set the destination address in place, fixing the IP and TCP/UDP checksums."""
    _rewrite_address(packet, IPV4_OFFSET_DST, new_dst, offset)


def _rewrite_port(packet: WritableBuffer, at: int, new_port: int, offset: int) -> None:
    if not 0 <= new_port <= 0xFFFF:
        raise ValueError("a port is 16 bits")
    protocol, position = _l4_checksum_position(packet, offset)
    if protocol not in _CHECKSUM_AT:
        raise ValueError("only TCP and UDP have ports")
    (fragment,) = _WORD.unpack_from(packet, offset + IPV4_OFFSET_FRAGMENT)
    if fragment & _IPV4_FRAGMENT_OFFSET_MASK:
        raise ValueError("a non-first fragment carries no ports")
    start = offset + (packet[offset] & IPV4_IHL_MASK) * 4 + at
    old = bytes(packet[start : start + 2])
    new = _WORD.pack(new_port)
    if position >= 0:
        _patch(packet, position, protocol, old, new)
    packet[start : start + 2] = new


def rewrite_l4_src_port(packet: WritableBuffer, new_port: int, offset: int = 0) -> None:
    """Set the TCP/UDP source port in place, fixing its checksum (ports are not in the
    IP header, so its checksum is untouched).

    Check the protocol and fragment offset first: ICMP or a non-first fragment is a
    ValueError (the caller's mistake), not a BadPacket.
    """
    _rewrite_port(packet, _L4_OFFSET_SRC_PORT, new_port, offset)


def rewrite_l4_dst_port(packet: WritableBuffer, new_port: int, offset: int = 0) -> None:
    """Set the TCP/UDP destination port in place, fixing its checksum."""
    _rewrite_port(packet, _L4_OFFSET_DST_PORT, new_port, offset)
