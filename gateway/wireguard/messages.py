"""The four WireGuard messages (paper 5.4.2-5.4.7): sizes, layouts and codecs.

Every message opens with a 32-bit little-endian type (1..4: one byte of type, three
reserved zero bytes). Handshake messages have fixed sizes and end in mac1 and mac2;
a transport message is a 16-byte header (type, receiver index, 64-bit counter), then
the ciphertext of a packet padded to 16 bytes, then the Poly1305 tag.

``parse_*`` take hostile bytes and raise only ``Refused`` (with ``BAD_LENGTH`` or
``UNKNOWN_TYPE``); ``build_*`` take trusted fields. wireguard-go's
``device/noise-protocol.go`` has the same sizes; ours are checked against it by the
interop test, not copied from its code.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from gateway.wireguard.crypto import HASH_SIZE, KEY_SIZE, MAC_SIZE, TAG_SIZE, XNONCE_SIZE
from gateway.wireguard.reasons import Reason, Refused

INITIATION: Final = 1
RESPONSE: Final = 2
COOKIE_REPLY: Final = 3
TRANSPORT: Final = 4

TYPE: Final = struct.Struct("<I")
# type, sender, ephemeral, AEAD(static) 32+16, AEAD(timestamp) 12+16, mac1, mac2
_INITIATION: Final = struct.Struct("<II32s48s28s16s16s")
# type, sender, receiver, ephemeral, AEAD(empty) 0+16, mac1, mac2
_RESPONSE: Final = struct.Struct("<III32s16s16s16s")
# type, receiver, nonce, XAEAD(cookie) 16+16
_COOKIE_REPLY: Final = struct.Struct("<II24s32s")
TRANSPORT_HEADER: Final = struct.Struct("<IIQ")  # type, receiver index, counter

INITIATION_SIZE: Final = _INITIATION.size  # 4 + 4 + 32 + 48 + 28 + 16 + 16 = 148
RESPONSE_SIZE: Final = _RESPONSE.size  # 4 + 4 + 4 + 32 + 16 + 16 + 16 = 92
COOKIE_REPLY_SIZE: Final = _COOKIE_REPLY.size  # 4 + 4 + 24 + 32 = 64
TRANSPORT_HEADER_SIZE: Final = TRANSPORT_HEADER.size  # 16
KEEPALIVE_SIZE: Final = TRANSPORT_HEADER_SIZE + TAG_SIZE  # 32: an empty transport message
PADDING_MULTIPLE: Final = 16  # plaintext padded to a multiple of 16 (paper 5.4.6)
# mac1 and mac2 are the last 32 bytes of a handshake message; mac1 covers what is
# before it, mac2 covers that and mac1 (paper 5.4.4).
MACS_SIZE: Final = 2 * MAC_SIZE
_SIZES: Final = {
    INITIATION: INITIATION_SIZE,
    RESPONSE: RESPONSE_SIZE,
    COOKIE_REPLY: COOKIE_REPLY_SIZE,
}

assert (INITIATION_SIZE, RESPONSE_SIZE, COOKIE_REPLY_SIZE) == (148, 92, 64)
assert HASH_SIZE == KEY_SIZE == 32 and XNONCE_SIZE == 24


@dataclass(frozen=True, slots=True)
class Initiation:
    sender: int
    ephemeral: bytes
    encrypted_static: bytes
    encrypted_timestamp: bytes


@dataclass(frozen=True, slots=True)
class Response:
    sender: int
    receiver: int
    ephemeral: bytes
    encrypted_empty: bytes


@dataclass(frozen=True, slots=True)
class CookieReply:
    receiver: int
    nonce: bytes
    encrypted_cookie: bytes


def message_type(data: bytes | memoryview) -> int:
    """The type of a datagram whose length fits it; ``Refused`` otherwise."""
    if len(data) < KEEPALIVE_SIZE:
        raise Refused(Reason.TRUNCATED)
    (kind,) = TYPE.unpack_from(data)
    if kind == TRANSPORT:
        return kind
    size = _SIZES.get(kind)
    if size is None:
        raise Refused(Reason.UNKNOWN_TYPE)
    if len(data) != size:
        raise Refused(Reason.BAD_LENGTH)
    return kind


def _with_zero_macs(layout: struct.Struct, *fields: int | bytes) -> bytearray:
    """A handshake message whose mac1 and mac2 are zero (``CookieGenerator.add_macs``
    fills them once the rest is written: they cover it)."""
    out = bytearray(layout.size)
    layout.pack_into(out, 0, *fields, bytes(MAC_SIZE), bytes(MAC_SIZE))
    return out


def _fields(layout: struct.Struct, kind: int, data: bytes | memoryview) -> tuple:
    """The fields of a message of ``layout`` after its type, macs left out."""
    if len(data) != layout.size:
        raise Refused(Reason.BAD_LENGTH)
    found = layout.unpack_from(data)
    if found[0] != kind:
        raise Refused(Reason.UNKNOWN_TYPE)
    return found[1:-2]


def build_initiation(message: Initiation) -> bytearray:
    return _with_zero_macs(
        _INITIATION,
        INITIATION,
        message.sender,
        message.ephemeral,
        message.encrypted_static,
        message.encrypted_timestamp,
    )


def parse_initiation(data: bytes | memoryview) -> Initiation:
    return Initiation(*_fields(_INITIATION, INITIATION, data))


def build_response(message: Response) -> bytearray:
    return _with_zero_macs(
        _RESPONSE,
        RESPONSE,
        message.sender,
        message.receiver,
        message.ephemeral,
        message.encrypted_empty,
    )


def parse_response(data: bytes | memoryview) -> Response:
    return Response(*_fields(_RESPONSE, RESPONSE, data))


def build_cookie_reply(message: CookieReply) -> bytes:
    return _COOKIE_REPLY.pack(
        COOKIE_REPLY, message.receiver, message.nonce, message.encrypted_cookie
    )


def parse_cookie_reply(data: bytes | memoryview) -> CookieReply:
    if len(data) != COOKIE_REPLY_SIZE:
        raise Refused(Reason.BAD_LENGTH)
    kind, receiver, nonce, cookie = _COOKIE_REPLY.unpack_from(data)
    if kind != COOKIE_REPLY:
        raise Refused(Reason.UNKNOWN_TYPE)
    return CookieReply(receiver, nonce, cookie)


def padded_length(length: int, mtu: int) -> int:
    """The plaintext length after padding: up to a multiple of 16, but not past the
    tunnel's MTU when the packet fits it (paper 5.4.6, as wireguard-go pads)."""
    padded = (length + PADDING_MULTIPLE - 1) & ~(PADDING_MULTIPLE - 1)
    return padded if length > mtu else min(padded, mtu)
