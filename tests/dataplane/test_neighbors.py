"""Neighbors: ARP for IP-Rewrite PAs, sans IO. ``now`` is stepped, never slept."""

from __future__ import annotations

import pytest

from gateway.dataplane.neighbors import (
    ANSWER_WITHIN_S,
    MAX_ASKED,
    MAX_PENDING_PER_PA,
    REFRESH_AFTER_S,
    RETRY_AFTER_S,
    Neighbors,
)

PA, OTHER = bytes([198, 18, 0, 12]), bytes([198, 18, 0, 22])
MAC, NEW_MAC = bytes.fromhex("020000000002"), bytes.fromhex("020000000003")
OWN_MAC = bytes.fromhex("020000000001")  # what the node sends from on this link
T0 = 1000.0
STEP = RETRY_AFTER_S / 8  # well inside one retry window, and exact in binary


def test_limits_are_sane() -> None:
    assert 0 < RETRY_AFTER_S < ANSWER_WITHIN_S < REFRESH_AFTER_S
    assert MAX_PENDING_PER_PA >= 1 and MAX_ASKED >= 1
    assert Neighbors(OWN_MAC).max_pending == MAX_PENDING_PER_PA
    assert Neighbors(OWN_MAC).max_asked == MAX_ASKED


def test_unknown_pa_is_asked_once_per_retry_window() -> None:
    n = Neighbors(OWN_MAC)
    assert n.resolve(PA, T0) == (None, True)
    for k in range(1, 8):
        assert n.resolve(PA, T0 + k * STEP) == (None, False), k
    assert n.resolve(PA, T0 + RETRY_AFTER_S) == (None, True)
    assert n.resolve(PA, T0 + RETRY_AFTER_S + STEP) == (None, False)
    # the window restarts at the last ask, not at the first
    assert n.resolve(PA, T0 + 2 * RETRY_AFTER_S - STEP) == (None, False)
    assert n.resolve(PA, T0 + 2 * RETRY_AFTER_S) == (None, True)


def test_each_pa_has_its_own_retry_window() -> None:
    n = Neighbors(OWN_MAC)
    assert n.resolve(PA, T0) == (None, True)
    assert n.resolve(OTHER, T0 + STEP) == (None, True)
    assert n.resolve(PA, T0 + 2 * STEP) == (None, False)
    assert n.mac(PA) is None and n.mac(OTHER) is None


@pytest.mark.parametrize("limit", [1, 3, MAX_PENDING_PER_PA])
def test_park_is_bounded_per_pa(limit: int) -> None:
    n = Neighbors(OWN_MAC, max_pending=limit)
    frames = [bytes([i]) * 60 for i in range(limit + 5)]
    kept = [n.park(PA, frame) for frame in frames]
    assert kept == [True] * limit + [False] * 5
    assert n.park(OTHER, b"other") is True, "a full queue for one PA blocks no other"
    assert n.resolve(PA, T0) == (None, True) and n.resolve(OTHER, T0) == (None, True)
    assert n.learn(PA, MAC, T0) == frames[:limit]
    assert n.learn(OTHER, MAC, T0) == [b"other"]


def test_learn_returns_parked_frames_in_order_once_and_resolves_without_asking() -> None:
    n = Neighbors(OWN_MAC)
    assert n.resolve(PA, T0) == (None, True)
    frames = [b"first", b"second", b"third"]
    assert all(n.park(PA, f) for f in frames)
    assert n.learn(PA, MAC, T0 + STEP) == frames
    assert n.mac(PA) == MAC
    # within the refresh time: the MAC, and no request, however often it is asked
    for t in (T0 + STEP, T0 + 2 * RETRY_AFTER_S, T0 + STEP + REFRESH_AFTER_S):
        assert n.resolve(PA, t) == (MAC, False), t
    # answered already: a second reply is no answer, and changes nothing
    assert n.learn(PA, NEW_MAC, T0 + 2 * STEP) is None
    assert n.mac(PA) == MAC
    # and the queue is usable again, to its full size
    assert all(n.park(PA, bytes([i])) for i in range(n.max_pending))
    assert n.park(PA, b"one too many") is False


def test_a_reply_nobody_asked_for_is_refused() -> None:
    n = Neighbors(OWN_MAC)
    assert n.park(PA, b"waiting")
    assert n.learn(PA, MAC, T0) is None
    assert n.mac(PA) is None
    assert n.resolve(PA, T0) == (None, True), "still unknown: asked for"


def test_a_late_reply_is_refused() -> None:
    n = Neighbors(OWN_MAC)
    assert n.resolve(PA, T0) == (None, True)
    assert n.learn(PA, MAC, T0 + ANSWER_WITHIN_S + STEP) is None
    assert n.mac(PA) is None


def test_a_doubted_entry_is_still_used_and_asked_again() -> None:
    n = Neighbors(OWN_MAC)
    n.resolve(PA, T0)
    n.learn(PA, MAC, T0)
    n.doubt(PA, MAC)  # the claim we already believe: nothing to doubt
    assert n.resolve(PA, T0 + STEP) == (MAC, False)
    n.doubt(PA, NEW_MAC)
    assert n.resolve(PA, T0 + 2 * STEP) == (MAC, True)
    assert n.learn(PA, NEW_MAC, T0 + 3 * STEP) == []
    assert n.resolve(PA, T0 + 4 * STEP) == (NEW_MAC, False)


def test_unanswered_asks_are_bounded() -> None:
    n = Neighbors(OWN_MAC, max_asked=2)
    third = bytes([198, 18, 0, 32])
    assert n.resolve(PA, T0) == (None, True)
    assert n.resolve(OTHER, T0) == (None, True)
    assert n.resolve(third, T0 + STEP) == (None, False), "the table of asks is full"
    # Once the first asks are too old to be answered, they make room.
    later = T0 + ANSWER_WITHIN_S + STEP
    assert n.resolve(third, later) == (None, True)
    assert n.learn(PA, MAC, later) is None, "forgotten: no longer an answer"
    assert n.learn(third, MAC, later) == []


def test_stale_entry_is_still_used_while_a_refresh_is_asked_once_per_window() -> None:
    n = Neighbors(OWN_MAC)
    n.resolve(PA, T0)
    n.learn(PA, MAC, T0)
    stale = T0 + REFRESH_AFTER_S + STEP
    assert n.resolve(PA, stale) == (MAC, True)
    for k in range(1, 8):
        assert n.resolve(PA, stale + k * STEP) == (MAC, False), k
    assert n.resolve(PA, stale + RETRY_AFTER_S) == (MAC, True)
    # the answer arrives, with a new MAC (the PA moved): used at once, no more asking
    assert n.learn(PA, NEW_MAC, stale + RETRY_AFTER_S + STEP) == []
    fresh = stale + RETRY_AFTER_S + 2 * STEP
    assert n.resolve(PA, fresh) == (NEW_MAC, False)
    assert n.resolve(PA, fresh + REFRESH_AFTER_S - 2 * STEP) == (NEW_MAC, False)
    assert n.resolve(PA, fresh + REFRESH_AFTER_S + STEP) == (NEW_MAC, True)


def test_time_going_backwards_never_asks_more_than_once_a_window() -> None:
    """Clocks are monotonic in io/, but a table must not flood if handed an earlier now."""
    n = Neighbors(OWN_MAC)
    assert n.resolve(PA, T0) == (None, True)
    assert n.resolve(PA, T0 - 5) == (None, False)
    assert n.resolve(PA, T0 + STEP) == (None, False)


def test_a_learned_entry_holds_the_addresses_a_frame_to_it_starts_with() -> None:
    """The gateway's per-packet code writes them in one go: the neighbour's MAC, then
    the node's own on this link; a doubted entry keeps them (and is due at once)."""
    n = Neighbors(OWN_MAC)
    n.resolve(PA, T0)
    n.learn(PA, MAC, T0)
    mac, due, addresses = n.learned[PA]
    assert (mac, due, addresses) == (MAC, T0 + REFRESH_AFTER_S, MAC + OWN_MAC)
    n.doubt(PA, NEW_MAC)
    mac, due, addresses = n.learned[PA]
    assert (mac, addresses) == (MAC, MAC + OWN_MAC) and due < T0
