"""ICMP for IPv4 (RFC 792): echo, which the gateway answers on its tenant addresses;
destination unreachable / fragmentation needed (RFC 1191), which it sends when a tenant
frame will not fit the underlay after the NVGRE overhead; and time exceeded, which a
node that routes sends when a datagram's TTL runs out (RFC 1812 sec. 5.3.1), so that
traceroute sees it as a hop. ``icmp_error_allowed`` says when no error may be sent.

Every ICMP message starts with type, code, checksum and four "rest of header" bytes
whose meaning depends on the type, so one layout and one parser cover them all.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from gateway.errors import BadPacket, Drop
from gateway.wire._types import Buffer
from gateway.wire.checksum import checksum_ok, internet_checksum
from gateway.wire.ipv4 import (
    _IPV4_FRAGMENT_OFFSET_MASK,
    IPPROTO_ICMP,
    IPV4_FIRST_GROUP_OCTET,
    IPV4_IHL_MASK,
    IPV4_OFFSET_DST,
    IPV4_OFFSET_FRAGMENT,
    IPV4_OFFSET_PROTOCOL,
)

_ICMP_HEADER: Final = struct.Struct("!BBHI")  # type, code, checksum, rest (RFC 792)
_ICMP_HEADER_SIZE: Final = _ICMP_HEADER.size  # 8
_ICMP_OFFSET_CHECKSUM: Final = 2

ICMP_ECHO_REPLY: Final = 0
ICMP_DEST_UNREACHABLE: Final = 3
ICMP_ECHO_REQUEST: Final = 8
ICMP_TIME_EXCEEDED: Final = 11  # code 0: TTL exceeded in transit (RFC 792)
_ICMP_SOURCE_QUENCH: Final = 4
_ICMP_REDIRECT: Final = 5
_ICMP_PARAMETER_PROBLEM: Final = 12
# The error messages (RFC 1812 sec. 4.3.1): no error is ever sent about one.
_ICMP_ERROR_TYPES: Final = frozenset(
    (
        ICMP_DEST_UNREACHABLE,
        _ICMP_SOURCE_QUENCH,
        _ICMP_REDIRECT,
        ICMP_TIME_EXCEEDED,
        _ICMP_PARAMETER_PROBLEM,
    )
)
ICMP_CODE_FRAGMENTATION_NEEDED: Final = 4  # with type 3; next-hop MTU in rest (RFC 1191 sec. 4)
# RFC 792: an error quotes the offending datagram's IP header and its first 64 bits.
_ICMP_QUOTED_PAYLOAD_SIZE: Final = 8


@dataclass(frozen=True, slots=True)
class IcmpMessage:
    type: int
    code: int
    checksum: int
    rest: int  # identifier << 16 | sequence for echo; next-hop MTU for fragmentation needed
    payload: bytes  # echo data, or the quoted datagram of an error

    @property
    def identifier(self) -> int:
        return self.rest >> 16

    @property
    def sequence(self) -> int:
        return self.rest & 0xFFFF

    @property
    def next_hop_mtu(self) -> int:
        """RFC 1191 sec. 4: the low 16 bits; 0 from routers that predate it."""
        return self.rest & 0xFFFF


def parse_icmp(data: Buffer, offset: int = 0) -> IcmpMessage:
    """An ICMP message running to the end of ``data``, from hostile bytes.

    Pass the IP payload bounded by the IP total length, so padding is not taken for
    echo data. The checksum is reported, not verified (``icmp_checksum_ok`` does that).
    """
    if offset < 0 or len(data) - offset < _ICMP_HEADER_SIZE:
        raise BadPacket(Drop.TRUNCATED)
    try:
        icmp_type, code, checksum, rest = _ICMP_HEADER.unpack_from(data, offset)
    except struct.error:
        raise BadPacket(Drop.TRUNCATED) from None
    return IcmpMessage(icmp_type, code, checksum, rest, bytes(data[offset + _ICMP_HEADER_SIZE :]))


def icmp_checksum_ok(data: Buffer) -> bool:
    """Whether a whole ICMP message (header and data) is intact (RFC 792: it covers all)."""
    return checksum_ok(data)


def _build_icmp(icmp_type: int, code: int, rest: int, payload: Buffer = b"") -> bytes:
    """Any ICMP message, with its checksum over header and payload."""
    message = bytearray(_ICMP_HEADER.pack(icmp_type, code, 0, rest))
    message += payload
    _ICMP_HEADER.pack_into(message, 0, icmp_type, code, internet_checksum(message), rest)
    return bytes(message)


def build_icmp_echo(
    identifier: int, sequence: int, payload: Buffer = b"", *, reply: bool = False
) -> bytes:
    if not 0 <= identifier <= 0xFFFF or not 0 <= sequence <= 0xFFFF:
        raise ValueError("identifier and sequence are 16 bits")
    icmp_type = ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST
    return _build_icmp(icmp_type, 0, (identifier << 16) | sequence, payload)


def build_icmp_echo_reply(request: IcmpMessage) -> bytes:
    """RFC 792: the reply returns the request's identifier, sequence and data unchanged."""
    if request.type != ICMP_ECHO_REQUEST:
        raise ValueError("only an echo request can be answered")
    return _build_icmp(ICMP_ECHO_REPLY, 0, request.rest, request.payload)


def build_icmp_unreachable(code: int, original: Buffer, next_hop_mtu: int = 0) -> bytes:
    """Destination unreachable quoting ``original`` (an IPv4 datagram that was parsed).

    Quotes the IP header and 8 bytes of payload (RFC 792), enough for the sender to find
    its socket by ports. ``next_hop_mtu`` is only meaningful with
    ICMP_CODE_FRAGMENTATION_NEEDED: the tenant MTU the packet must shrink to.
    """
    if not 0 <= next_hop_mtu <= 0xFFFF:
        raise ValueError("the next-hop MTU is 16 bits")
    return _build_icmp(ICMP_DEST_UNREACHABLE, code, next_hop_mtu, _quoted(original))


def build_icmp_time_exceeded(original: Buffer) -> bytes:
    """Time exceeded in transit (code 0) quoting ``original``, an IPv4 datagram that
    was parsed, as it arrived (its TTL not yet decremented, as Linux quotes it)."""
    return _build_icmp(ICMP_TIME_EXCEEDED, 0, 0, _quoted(original))


def _quoted(original: Buffer) -> Buffer:
    """What an error quotes of a datagram: its IP header and 8 bytes of payload
    (RFC 792), enough for the sender to find its socket by ports."""
    return original[: (original[0] & IPV4_IHL_MASK) * 4 + _ICMP_QUOTED_PAYLOAD_SIZE]


def icmp_error_allowed(original: Buffer) -> bool:
    """Whether an ICMP error may be sent about ``original``, an IPv4 datagram whose
    header was parsed (RFC 1812 sec. 4.3.2.7, RFC 1122 sec. 3.2.2): not about a
    fragment other than the first, nor a datagram to a multicast or broadcast
    address, nor an ICMP error message (a storm of errors about errors). The caller
    knows what else rules one out (a link-layer broadcast, a source that is not one
    host's)."""
    fragment = original[IPV4_OFFSET_FRAGMENT] << 8 | original[IPV4_OFFSET_FRAGMENT + 1]
    if fragment & _IPV4_FRAGMENT_OFFSET_MASK:
        return False
    if original[IPV4_OFFSET_DST] >= IPV4_FIRST_GROUP_OCTET:
        return False
    if original[IPV4_OFFSET_PROTOCOL] == IPPROTO_ICMP:
        at = (original[0] & IPV4_IHL_MASK) * 4
        # Too short to say what it is: not known to be an error, but not answered either.
        return at < len(original) and original[at] not in _ICMP_ERROR_TYPES
    return True
