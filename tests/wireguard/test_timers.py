"""The protocol's timers, by stepping ``now`` (never by sleeping).

Retransmission with the injected jitter and giving up, rekey after time and after
messages, reject after time and after messages, a keepalive after receiving with
nothing to send, a new handshake when sent data gets no answer, keys zeroed after
3 x reject-after-time, and the optional persistent keepalive.
"""

from __future__ import annotations

from gateway.wireguard import Limits, Reason

from ._pair import A, established, make_pair, packet


def _kinds(device) -> list[int]:
    """Message types in the outbox (4 with length 32 is a keepalive: shown as 0)."""
    return [0 if d[0] == 4 and len(d) == 32 else d[0] for d, _ in device.outbox]


def test_an_unanswered_initiation_is_retried_after_rekey_timeout_plus_jitter_then_given_up() -> (
    None
):
    pair = make_pair(jitter=0.5)  # half of the 334 ms jitter
    pair.a.send(pair.ab, packet(), 0.0)
    assert _kinds(pair.a) == [1]
    assert pair.a.next_deadline() == 5.0 + 0.167
    pair.a.outbox.clear()
    pair.a.tick(5.16)
    assert pair.a.outbox == []
    now = 5.167
    sent = 1
    while pair.ab.retransmit_at is not None:
        now = pair.ab.retransmit_at
        pair.a.tick(now)
        sent += len(pair.a.outbox)
        pair.a.outbox.clear()
    # 18 retries (rekey-attempt-time / rekey-timeout) after the first: 20 initiations in
    # all, as wireguard-go sends, about 90 s; then what waited is dropped.
    assert sent == 20 and 95 < now < 110
    assert pair.a.refused[Reason.NO_SESSION] == 1 and not pair.ab.staged
    assert pair.ab.zero_keys_at == now + 3 * 180


def test_the_jitter_source_moves_the_retry() -> None:
    pair = make_pair(jitter=0.0)
    pair.a.initiate(pair.ab, 0.0)
    assert pair.ab.retransmit_at == 5.0


def test_a_keepalive_after_receiving_with_nothing_to_send() -> None:
    pair = established()
    pair.a.send(pair.ab, packet(), 1.0)
    pair.deliver(pair.a, 1.0)
    assert pair.ba.keepalive_at == 11.0
    pair.b.tick(10.9)
    assert pair.b.outbox == []
    pair.b.tick(11.0)
    assert _kinds(pair.b) == [0]
    pair.deliver(pair.b, 11.0)
    assert pair.ab.rx_packets == 0 and pair.ab.rx_bytes > 0  # a keepalive is no packet


def test_sending_data_back_cancels_the_keepalive() -> None:
    pair = established()
    pair.a.send(pair.ab, packet(), 1.0)
    pair.deliver(pair.a, 1.0)
    pair.b.send(pair.ba, packet(), 2.0)
    assert pair.ba.keepalive_at is None


def test_sent_data_without_an_answer_starts_a_new_handshake() -> None:
    pair = established(now=0.0)
    pair.a.send(pair.ab, packet(), 1.0)
    pair.a.outbox.clear()  # lost
    assert pair.ab.new_handshake_at == 1.0 + 10 + 5  # keepalive + rekey timeouts (+ jitter 0)
    pair.a.tick(16.0)
    assert _kinds(pair.a) == [1]


def test_an_answer_cancels_the_new_handshake() -> None:
    pair = established()
    pair.a.send(pair.ab, packet(), 1.0)
    pair.deliver(pair.a, 1.0)
    pair.b.send(pair.ba, packet(), 1.5)
    pair.deliver(pair.b, 1.5)
    assert pair.ab.new_handshake_at is None


def test_the_initiator_rekeys_after_rekey_after_time_on_send() -> None:
    pair = established(now=0.0)
    pair.a.send(pair.ab, packet(), 119.0)
    assert _kinds(pair.a) == [4]
    pair.deliver(pair.a, 119.0)
    pair.a.send(pair.ab, packet(), 121.0)
    assert _kinds(pair.a) == [4, 1]  # still sent with the old keypair, and a new handshake
    pair.settle(121.0)
    assert pair.ab.handshakes == 2
    assert pair.ab.keypairs.previous is not None  # the old one still receives in-flight data


def test_the_responder_does_not_rekey_on_time() -> None:
    pair = established(now=0.0)
    pair.b.send(pair.ba, packet(), 121.0)
    assert _kinds(pair.b) == [4]


def test_the_initiator_rekeys_before_reject_when_data_still_comes_in() -> None:
    pair = established(now=0.0)
    pair.b.send(pair.ba, packet(), 166.0)  # 180 - 10 - 5 = 165 s: the last-minute handshake
    pair.deliver(pair.b, 166.0)
    assert _kinds(pair.a) == [1]


def test_a_keypair_older_than_reject_after_time_is_used_for_nothing() -> None:
    pair = established(now=0.0)
    pair.b.send(pair.ba, packet(), 179.0)
    (late,) = [bytes(d) for d, _ in pair.b.outbox]
    pair.b.outbox.clear()
    assert pair.a.receive(late, ("198.51.100.2", 51820), 180.0) is None
    assert pair.a.refused[Reason.KEY_EXPIRED] == 1
    pair.a.send(pair.ab, packet(), 180.0)
    assert _kinds(pair.a) == [1] and len(pair.ab.staged) == 1  # held; a new handshake


def test_rekey_and_reject_after_messages() -> None:
    limits = Limits(rekey_after_messages=3, reject_after_messages=5)
    pair = established(limits=limits)  # A's keepalive was counter 0
    for _ in range(2):
        pair.a.send(pair.ab, packet(), 6.0)  # counters 1, 2
    assert _kinds(pair.a) == [4, 4]
    pair.a.send(pair.ab, packet(), 6.0)  # counter 3: past rekey-after-messages
    assert _kinds(pair.a) == [4, 4, 4, 1]
    pair.a.outbox.clear()  # the handshake is lost
    pair.a.send(pair.ab, packet(), 6.0)  # counter 4: the last
    pair.a.send(pair.ab, packet(), 6.0)  # 5 would be rejected: held
    assert _kinds(pair.a) == [4] and len(pair.ab.staged) == 1


def test_seal_returns_the_message_in_session_and_leaves_the_rest_to_the_outbox() -> None:
    """``seal`` (the data path's ``send``): the message itself when in session, the
    outbox untouched; a rekey puts the message and then the initiation in the outbox;
    without a session the packet is held, as ``send`` holds it."""
    limits = Limits(rekey_after_messages=2)
    pair = established(limits=limits)  # A's keepalive was counter 0
    datagram = pair.a.seal(pair.ab, packet(ident=1), 6.0)
    assert datagram is not None and not pair.a.outbox
    assert datagram[:4] == b"\x04\0\0\0" and pair.ab.tx_packets == 1
    got = pair.b.receive(datagram, A, 6.0)
    assert got is not None and bytes(got[1]) == packet(ident=1)
    assert pair.a.seal(pair.ab, packet(ident=2), 6.0) is None  # counter 2: past rekey
    assert _kinds(pair.a) == [4, 1]
    fresh = make_pair()
    assert fresh.a.seal(fresh.ab, packet(), 0.0) is None
    assert _kinds(fresh.a) == [1] and len(fresh.ab.staged) == 1


def test_the_receiver_refuses_counters_at_reject_after_messages() -> None:
    limits = Limits(reject_after_messages=3)
    pair = established(limits=limits)
    pair.ab.keypairs.current.send_counter = 3  # type: ignore[union-attr]  # a sender that ignores it
    datagram = pair.a._seal(pair.ab, pair.ab.keypairs.current, packet(), 1.0)  # type: ignore[arg-type]
    pair.a.outbox.append((datagram, pair.ab.endpoint))  # type: ignore[arg-type]
    pair.deliver(pair.a, 1.0)
    assert pair.b.refused[Reason.REPLAYED] == 1


def test_keys_are_zeroed_after_three_times_reject_after_time() -> None:
    pair = established(now=0.0)
    assert pair.ab.zero_keys_at == 540.0
    pair.a.tick(540.0)
    assert pair.ab.keypairs.current is None and not [
        i for i, (peer, _) in pair.a.indexes.items() if peer is pair.ab
    ]


def test_a_persistent_keepalive_goes_when_nothing_else_did() -> None:
    pair = established(now=0.0)
    pair.ba.persistent_keepalive_s = 25.0
    pair.a.send(pair.ab, packet(), 1.0)
    pair.deliver(pair.a, 1.0)
    assert pair.ba.persistent_keepalive_at == 26.0  # moved by what B received
    pair.b.tick(11.0)  # the keepalive answering A's data
    pair.deliver(pair.b, 11.0)
    assert pair.ba.persistent_keepalive_at == 36.0  # moved by what B sent
    pair.b.tick(35.9)
    assert pair.b.outbox == []
    pair.b.tick(36.0)
    assert _kinds(pair.b) == [0]
    assert pair.ba.persistent_keepalive_at == 61.0


def test_a_persistent_keepalive_is_sent_at_once_and_starts_the_handshake() -> None:
    pair = make_pair()
    pair.b.remove_peer(pair.ba)
    ba = pair.b.add_peer(pair.a.identity.public, endpoint=A, persistent_keepalive_s=25.0)
    pair.b.tick(0.0)
    assert _kinds(pair.b) == [1]  # no session: the keepalive waits for a handshake
    pair.settle(0.0)
    assert ba.handshakes == 1 and pair.ab.rx_bytes > 0
