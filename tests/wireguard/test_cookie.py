"""mac1 always, mac2 and cookie replies under load (the caller says when), and the
cookie secret that rotates every two minutes."""

from __future__ import annotations

from gateway.wireguard import Reason
from gateway.wireguard.cookie import CookieChecker, CookieGenerator
from gateway.wireguard.messages import parse_cookie_reply

from ._pair import A, B, make_pair


def _refused(device) -> dict[str, int]:
    return {reason.label: n for reason, n in zip(Reason, device.refused, strict=True) if n}


def test_under_load_an_initiation_gets_a_cookie_then_is_accepted_with_mac2() -> None:
    pair = make_pair()
    pair.a.initiate(pair.ab, 0.0)
    pair.deliver(pair.a, 0.0, under_load=True)
    assert _refused(pair.b) == {"cookie_required": 1} and pair.b.cookie_replies_sent == 1
    assert [(d[0], len(d), to) for d, to in pair.b.outbox] == [(3, 64, A)]
    assert pair.ba.handshake.remote_index == 0  # nothing was consumed: no DH was spent
    pair.deliver(pair.b, 0.1)  # A takes the cookie
    assert _refused(pair.a) == {}
    pair.a.tick(pair.ab.retransmit_at)  # the retry carries mac2
    pair.deliver(pair.a, 5.0, under_load=True)
    assert [d[0] for d, _ in pair.b.outbox] == [2]
    pair.settle(5.0)
    assert pair.ab.handshakes == pair.ba.handshakes == 1


def test_under_load_a_response_needs_mac2_too() -> None:
    pair = make_pair()
    pair.a.initiate(pair.ab, 0.0)
    pair.deliver(pair.a, 0.0)
    pair.deliver(pair.b, 0.0, under_load=True)  # A is the one under load
    assert _refused(pair.a) == {"cookie_required": 1}
    assert [d[0] for d, _ in pair.a.outbox] == [3]


def test_a_bad_mac1_gets_no_cookie_even_under_load() -> None:
    pair = make_pair()
    pair.a.initiate(pair.ab, 0.0)
    initiation = bytearray(pair.a.outbox.pop()[0])
    initiation[120] ^= 1  # inside mac1
    pair.b.receive(bytes(initiation), A, 0.0, under_load=True)
    assert _refused(pair.b) == {"bad_mac1": 1} and pair.b.outbox == []


def test_a_forged_or_stray_cookie_reply_is_refused() -> None:
    pair = make_pair()
    pair.a.initiate(pair.ab, 0.0)
    pair.deliver(pair.a, 0.0, under_load=True)
    reply = bytearray(pair.b.outbox.pop()[0])
    forged = bytearray(reply)
    forged[40] ^= 1  # the encrypted cookie
    pair.a.receive(bytes(forged), B, 0.0)
    stray = bytearray(reply)
    stray[4] ^= 1  # another receiver index
    pair.a.receive(bytes(stray), B, 0.0)
    assert _refused(pair.a) == {"bad_cookie_reply": 1, "unknown_index": 1}
    assert pair.a.outbox == []


def test_the_cookie_secret_rotates_after_two_minutes() -> None:
    checker = CookieChecker(bytes(range(32)), lambda n: bytes([7]) * n if n == 32 else bytes(n))
    generator = CookieGenerator(bytes(range(32)))
    source = bytes([192, 0, 2, 1, 0xCA, 0x6C])
    message = bytearray(148)
    generator.add_macs(message, 0.0)
    reply = checker.create_cookie_reply(bytes(message), 1, source, 0.0)
    assert generator.consume_cookie_reply(parse_cookie_reply(reply), 0.0)
    generator.add_macs(message, 100.0)  # with mac2 now
    assert checker.check_mac1(bytes(message))
    assert checker.check_mac2(bytes(message), source, 100.0)
    assert not checker.check_mac2(bytes(message), bytes([192, 0, 2, 2, 0xCA, 0x6C]), 100.0)
    assert not checker.check_mac2(bytes(message), source, 120.5)  # the secret is stale
    # A new secret (the injected randomness gives another: count the calls).
    calls = []
    checker2 = CookieChecker(bytes(range(32)), lambda n: calls.append(n) or bytes([len(calls)]) * n)
    checker2.create_cookie_reply(bytes(message), 1, source, 0.0)
    checker2.create_cookie_reply(bytes(message), 1, source, 60.0)
    assert calls.count(32) == 1  # the same secret within two minutes
    checker2.create_cookie_reply(bytes(message), 1, source, 121.0)
    assert calls.count(32) == 2  # and a new one after
