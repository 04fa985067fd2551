"""Every malformed, forged or truncated message is refused with a reason, counted once,
and answered with nothing (trio's ``test_invalid_cookie_rejected``: each byte in turn).

A forger knows our public key, so it can recompute mac1: the messages are tried both
with the corrupted bytes as they are and with mac1 made right again, which takes the
refusal past the mac1 check into the handshake itself.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.wireguard import Reason
from gateway.wireguard.cookie import LABEL_MAC1
from gateway.wireguard.crypto import digest, mac

from ._pair import A, B, established, make_pair


def _fix_mac1(message: bytearray, receiver_public: bytes) -> bytes:
    message[-32:-16] = mac(digest(LABEL_MAC1, receiver_public), bytes(message[:-32]))
    return bytes(message)


def _refused_once(device, datagram: bytes, source, reason: Reason) -> None:
    before = list(device.refused)
    assert device.receive(datagram, source, 1.0) is None
    after = list(device.refused)
    after[reason] -= 1
    assert after == before, f"not refused as {reason.label}"
    assert device.outbox == []


def _messages():
    """One of each message type, as B would receive it (the cookie reply as A would)."""
    pair = make_pair()
    pair.a.initiate(pair.ab, 0.0)
    (initiation,) = [bytes(d) for d, _ in pair.a.outbox]
    pair.deliver(pair.a, 0.0)
    (response,) = [bytes(d) for d, _ in pair.b.outbox]
    pair.b.outbox.clear()
    return pair, initiation, response


def test_every_prefix_is_refused_as_truncated_or_of_the_wrong_length() -> None:
    pair, initiation, response = _messages()
    fresh = established()
    fresh.a.send(fresh.ab, bytes([0x45]) + bytes(59), 1.0)
    (transport,) = [bytes(d) for d, _ in fresh.a.outbox]
    fresh.a.outbox.clear()
    for device, message in ((pair.b, initiation), (pair.a, response), (fresh.b, transport)):
        for end in range(len(message)):
            reason = Reason.TRUNCATED if end < 32 else Reason.BAD_LENGTH
            if message[0] == 4 and end >= 32:
                reason = Reason.DECRYPT_FAILED
            _refused_once(device, message[:end], A, reason)


@pytest.mark.parametrize("fix_mac1", [False, True], ids=["as-is", "mac1-recomputed"])
def test_each_byte_of_an_initiation_corrupted(fix_mac1: bool) -> None:
    pair, initiation, _ = _messages()
    for i in range(len(initiation) - 16):  # mac2 is not checked when not under load
        forged = bytearray(initiation)
        forged[i] ^= 0x80
        if i < 4:
            expected = Reason.UNKNOWN_TYPE
        elif fix_mac1 and i >= 116:
            continue  # mac1 itself, recomputed: the original message again
        elif not fix_mac1:
            expected = Reason.BAD_MAC1
        elif i < 8:
            continue  # the sender index: only mac1 covers it (the response then goes astray)
        else:
            expected = Reason.HANDSHAKE_AUTH  # ephemeral, static, timestamp: the AEADs
        datagram = (
            _fix_mac1(forged, pair.b.identity.public) if fix_mac1 and i >= 4 else bytes(forged)
        )
        _refused_once(pair.b, datagram, A, expected)


@pytest.mark.parametrize("fix_mac1", [False, True], ids=["as-is", "mac1-recomputed"])
def test_each_byte_of_a_response_corrupted(fix_mac1: bool) -> None:
    pair, _, response = _messages()
    for i in range(len(response) - 16):
        forged = bytearray(response)
        forged[i] ^= 0x80
        if i < 4:
            expected = Reason.UNKNOWN_TYPE
        elif fix_mac1 and i >= 60:
            continue  # mac1 itself, recomputed: the original message again
        elif not fix_mac1:
            expected = Reason.BAD_MAC1
        elif i < 8:
            continue  # the responder's index: only mac1 covers it
        elif i < 12:
            expected = Reason.UNKNOWN_INDEX
        else:
            expected = Reason.HANDSHAKE_AUTH  # ephemeral, the empty AEAD
        datagram = (
            _fix_mac1(forged, pair.a.identity.public) if fix_mac1 and i >= 4 else bytes(forged)
        )
        _refused_once(pair.a, datagram, B, expected)
    assert pair.ab.handshakes == 0  # and the real one is still welcome
    pair.a.receive(response, B, 1.0)
    assert pair.ab.handshakes == 1


def test_each_byte_of_a_data_message_corrupted() -> None:
    pair = established()
    pair.a.send(pair.ab, bytes([0x45, 0, 0, 40]) + bytes(36), 1.0)
    (transport,) = [bytes(d) for d, _ in pair.a.outbox]
    pair.a.outbox.clear()
    for i in range(len(transport)):
        forged = bytearray(transport)
        forged[i] ^= 0x80
        expected = (
            Reason.UNKNOWN_TYPE
            if i < 4
            else Reason.UNKNOWN_INDEX
            if i < 8
            else Reason.DECRYPT_FAILED
        )
        _refused_once(pair.b, bytes(forged), A, expected)
    assert pair.ba.decryption_failures == len(transport) - 8
    assert pair.b.receive(transport, A, 1.0) is not None  # the original still decrypts


def test_a_decrypted_payload_that_is_no_ip_packet_is_dropped() -> None:
    pair = established()
    for payload in (bytes([0x45, 0, 0, 200]) + bytes(36), bytes([0x15]) + bytes(39)):
        pair.a.send(pair.ab, payload, 1.0)
        pair.deliver(pair.a, 1.0)
    assert pair.b.refused[Reason.INNER_MALFORMED] == 2 and pair.delivered == []


_ONE_PEER = established()


@settings(max_examples=300)
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_are_refused_counted_and_unanswered(data: bytes, under_load: bool) -> None:
    device = _ONE_PEER.b
    before = sum(device.refused)
    assert device.receive(data, A, 1.0, under_load) is None
    assert sum(device.refused) == before + 1
    assert device.outbox == []


@settings(max_examples=300)
@given(
    st.sampled_from(range(3)),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    st.integers(-8, 8),
    st.booleans(),
)
def test_mutated_messages_raise_nothing_and_are_refused_or_authentic(
    which: int, writes: list[tuple[int, int]], resize: int, under_load: bool
) -> None:
    """Each mutated message is either refused (counted once) or authenticated; only
    mac2 is left unchecked when not under load, so a change there may be accepted."""
    pair, initiation, response = _messages()
    pair.a.send(pair.ab, bytes([0x45, 0, 0, 20]) + bytes(16), 1.0)  # held: no session yet
    target, message, source = [(pair.b, initiation, A), (pair.a, response, B)][which % 2]
    mutated = bytearray(message)
    for at, value in writes:
        if at < len(mutated):
            mutated[at] = value
    mutated = mutated[: len(mutated) + resize] if resize < 0 else mutated + bytes(resize)
    before = sum(target.refused)
    target.outbox.clear()
    target.receive(bytes(mutated), source, 1.0, under_load)
    refused = sum(target.refused) - before
    if refused == 0:
        assert len(mutated) == len(message) and mutated[:-16] == message[:-16]
    else:
        assert refused == 1
        cookie_only = all(d[0] == 3 for d, _ in target.outbox)
        assert cookie_only and (not target.outbox or under_load)
