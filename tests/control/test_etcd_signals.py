"""``etcd_watch.Signals``: what an etcd store's watch writes to wake its followers.
Each feed is readable once fired and drains to "nothing" after; every open feed gets
each firing; a closed feed is written no more (its fd number may be another file's
by then), and a firing from another thread reaches a feed as one from this one."""

from __future__ import annotations

import os
import select
import threading

from gateway.control.etcd_watch import Feed, Signals


def readable(feed: Feed) -> bool:
    return bool(select.select([feed], [], [], 0)[0])


def test_a_firing_wakes_every_feed_once() -> None:
    signals = Signals()
    one, two = signals.feed(), signals.feed()
    try:
        assert not readable(one) and one.drain() is False
        signals.fire()
        signals.fire()  # two firings before a read: one wake
        assert readable(one) and readable(two)
        assert one.drain() is True and two.drain() is True
        assert not readable(one) and one.drain() is False
    finally:
        one.close()
        two.close()


def test_a_closed_feed_is_written_no_more() -> None:
    signals = Signals()
    gone, kept = signals.feed(), signals.feed()
    r, w = os.pipe()  # before the close: neither takes the feed's number
    number = gone.fileno()
    gone.close()
    os.dup2(w, number)  # its number is now another file's: a pipe's writing end
    try:
        signals.fire()
        assert kept.drain() is True
        assert not select.select([r], [], [], 0)[0], "a firing reached the reused fd"
    finally:
        kept.close()
        for fd in {r, w, number}:
            os.close(fd)


def test_a_firing_from_the_watch_thread_wakes_a_feed() -> None:
    signals = Signals()
    feed = signals.feed()
    try:
        thread = threading.Thread(target=signals.fire)
        thread.start()
        thread.join()
        assert select.select([feed], [], [], 5.0)[0] and feed.drain() is True
    finally:
        feed.close()
