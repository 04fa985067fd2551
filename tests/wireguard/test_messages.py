"""The message layouts: sizes as the paper gives them, codecs both ways, padding."""

from __future__ import annotations

import pytest

from gateway.wireguard import Reason
from gateway.wireguard.messages import (
    COOKIE_REPLY_SIZE,
    INITIATION_SIZE,
    KEEPALIVE_SIZE,
    RESPONSE_SIZE,
    CookieReply,
    Initiation,
    Response,
    build_cookie_reply,
    build_initiation,
    build_response,
    padded_length,
    parse_cookie_reply,
    parse_initiation,
    parse_response,
)
from gateway.wireguard.reasons import Refused

from ._pair import established


def test_the_sizes_are_the_papers() -> None:
    assert (INITIATION_SIZE, RESPONSE_SIZE, COOKIE_REPLY_SIZE, KEEPALIVE_SIZE) == (148, 92, 64, 32)


def test_each_message_parses_back_to_what_was_built() -> None:
    initiation = Initiation(0x01020304, b"e" * 32, b"s" * 48, b"t" * 28)
    built = build_initiation(initiation)
    assert built[:4] == b"\x01\0\0\0" and built[4:8] == b"\x04\x03\x02\x01"  # little-endian
    assert parse_initiation(bytes(built)) == initiation
    response = Response(7, 9, b"e" * 32, b"x" * 16)
    assert parse_response(bytes(build_response(response))) == response
    reply = CookieReply(5, b"n" * 24, b"c" * 32)
    assert parse_cookie_reply(build_cookie_reply(reply)) == reply
    with pytest.raises(Refused) as refused:
        parse_response(bytes(built[:92]))
    assert refused.value.reason is Reason.UNKNOWN_TYPE


@pytest.mark.parametrize(
    ("length", "mtu", "padded"),
    [
        (0, 1420, 0),
        (1, 1420, 16),
        (16, 1420, 16),
        (1400, 1420, 1408),
        (1419, 1420, 1420),
        (1420, 1420, 1420),
        (1421, 1420, 1424),
    ],
)
def test_padding_to_16_never_past_the_mtu(length: int, mtu: int, padded: int) -> None:
    assert padded_length(length, mtu) == padded


def test_a_packet_longer_than_ip_allows_is_the_callers_mistake() -> None:
    pair = established()
    with pytest.raises(ValueError, match="at most 65535 bytes"):
        pair.a.send(pair.ab, bytes(65536), 1.0)
