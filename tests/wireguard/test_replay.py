"""The RFC 6479 replay window against a naive model: the set of counters seen.

The model accepts a counter when it is below the limit, was never accepted, and is
ahead of the newest accepted counter or at most ``WINDOW_SIZE`` behind it. The ring
of blocks must decide exactly as the model does for any order of counters, with
jumps past the whole ring and steps around its block edges.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.wireguard import WINDOW_SIZE, ReplayWindow

LIMIT = (1 << 64) - (1 << 13) - 1  # reject-after-messages


class Model:
    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.last = 0

    def accept(self, counter: int, limit: int) -> bool:
        if counter >= limit or counter in self.seen:
            return False
        if counter <= self.last and self.last - counter > WINDOW_SIZE:
            return False
        self.seen.add(counter)
        self.last = max(self.last, counter)
        return True


# Counters near one another (reordering, duplicates, block edges) and big jumps.
_steps = st.one_of(
    st.integers(-70, 70),
    st.integers(-WINDOW_SIZE - 130, WINDOW_SIZE + 130),
    st.integers(-WINDOW_SIZE - 70, -WINDOW_SIZE + 70),  # back to the window's far edge
    st.sampled_from([64 * 128, 64 * 127, 64 * 129, WINDOW_SIZE, WINDOW_SIZE + 1, 1 << 40]),
)


@settings(max_examples=400)
@given(st.lists(_steps, max_size=300), st.integers(0, 1 << 20))
def test_the_window_decides_as_the_set_model(steps: list[int], start: int) -> None:
    window, model = ReplayWindow(), Model()
    counter = start
    for step in steps:
        counter = max(0, counter + step)
        assert window.accept(counter, LIMIT) == model.accept(counter, LIMIT), counter


def test_the_window_edges() -> None:
    window = ReplayWindow()
    assert window.accept(0, LIMIT) and not window.accept(0, LIMIT)
    assert window.accept(WINDOW_SIZE + 10, LIMIT)
    assert window.accept(10, LIMIT)  # exactly WINDOW_SIZE behind: still inside
    assert not window.accept(9, LIMIT)  # one more: behind the window
    assert window.accept(WINDOW_SIZE + 9, LIMIT)  # out of order, inside: accepted once
    assert not window.accept(WINDOW_SIZE + 9, LIMIT)


def test_no_counter_at_or_past_the_limit() -> None:
    window = ReplayWindow()
    assert not window.accept(LIMIT, LIMIT)
    assert window.accept(LIMIT - 1, LIMIT)
    assert not window.accept(LIMIT - 1, LIMIT)
    assert not window.accept(5, 5)


def test_a_jump_past_the_whole_ring_forgets_what_it_leaves_behind() -> None:
    window = ReplayWindow()
    for counter in range(200):
        assert window.accept(counter, LIMIT)
    far = 200 + 64 * 128 * 3 + 17
    assert window.accept(far, LIMIT)
    assert not window.accept(150, LIMIT)  # far behind now
    assert window.accept(far - 64, LIMIT)  # in the ring, never seen (not a stale bit)
