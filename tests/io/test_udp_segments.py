"""A tunnel's datagrams gathered by SendBatch leave in runs (UDP GSO), and the
receiver sees exactly the datagrams gathered, in order, each its own size: the
segmentation is the kernel's, on loopback as on a veth. A run stops at another
destination, at another size (a shorter last datagram ends it) and at the kernel's
limits; a run the kernel refuses goes again one datagram at a time, counted as any
send, and one refused for want of UDP_SEGMENT ends the runs for good. The failures
loopback cannot provoke come from a stand-in for the libc call, as in
``test_send_batch.py``.
"""

from __future__ import annotations

import ctypes
import errno
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import Drop
from gateway.io import send_batch
from gateway.io.send_batch import SLOTS, SendBatch
from gateway.io.udp_segments import MAX_BYTES, MAX_SEGMENTS, Segments, kernel_segments

from .test_send_batch import FailingSendmmsg, nonzero, received


@pytest.fixture
def two() -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    """A sender and two receivers on loopback, non-blocking."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receivers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for receiver in receivers:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
    sender.setblocking(False)
    try:
        yield sender, receivers
    finally:
        for sock in (sender, *receivers):
            sock.close()


def datagram(index: int, size: int) -> bytes:
    return bytes([index % 256]) * size


def gather(batch: SendBatch, sender: socket.socket, plan: list[tuple[socket.socket, int]]):
    """Each (receiver, size) of ``plan`` gathered in turn, segmented; what each
    receiver should get."""
    wanted: dict[socket.socket, list[bytes]] = {}
    for index, (receiver, size) in enumerate(plan):
        data = datagram(index, size)
        batch.add(sender, receiver.getsockname(), b"", memoryview(data), segmented=True)
        wanted.setdefault(receiver, []).append(data)
    return wanted


def test_runs_deliver_every_datagram_in_order_with_its_own_size(two) -> None:
    sender, (a, b) = two
    drops = [0] * len(Drop)
    batch = SendBatch(drops)
    plan = [(a, 1400)] * 9 + [(a, 300)] + [(a, 1400)] * 5 + [(b, 1400)] * 2 + [(a, 64)]
    plan += [(a, 0), (a, 0), (a, 64)]  # empty datagrams are datagrams too
    wanted = gather(batch, sender, plan)
    batch.flush()
    assert received(a) == wanted[a] and received(b) == wanted[b]
    assert nonzero(drops) == {} and batch.segmenting


def test_a_run_is_one_destination_one_size_and_a_shorter_last() -> None:
    iov = (ctypes.c_char * (SLOTS * 16))()
    segments = Segments(SLOTS, ctypes.addressof(iov), 16)
    names = memoryview(bytearray(8 * SLOTS)).cast("N")
    lengths = memoryview(bytearray(8 * SLOTS)).cast("N")
    plan = [(1, 1400)] * 4 + [(1, 100)] + [(1, 100)] + [(2, 100), (2, 100), (1, 100)] + [(1, 900)]
    plan += [(1, 900), (1, 0)]
    for i, (name, size) in enumerate(plan):
        names[i], lengths[i] = name, size
    # 1400 x 4 and its shorter last; 100 alone (then another destination); the two to
    # 2; 100 and a longer 900, which starts a run of its own, with the next 900 but
    # not the empty datagram after them (an empty segment would not be sent).
    assert segments.build(names, lengths, len(plan)) == [5, 1, 2, 1, 2, 1]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 2), st.sampled_from([0, 1, 64, 1400, 1452])), max_size=SLOTS)
)
def test_runs_cover_the_batch_in_order_within_the_kernel_s_limits(plan) -> None:
    iov = (ctypes.c_char * (SLOTS * 16))()
    segments = Segments(SLOTS, ctypes.addressof(iov), 16)
    names = memoryview(bytearray(8 * SLOTS)).cast("N")
    lengths = memoryview(bytearray(8 * SLOTS)).cast("N")
    for i, (name, size) in enumerate(plan):
        names[i], lengths[i] = name, size
    runs = segments.build(names, lengths, len(plan))
    assert sum(runs) == len(plan) and all(runs)
    first = 0
    for run in runs:
        members = plan[first : first + run]
        assert len({name for name, _ in members}) == 1
        size = members[0][1]
        assert all(s == size for _, s in members[:-1]) and members[-1][1] <= size
        assert run == 1 or all(s for _, s in members)  # no empty segment
        assert run <= MAX_SEGMENTS and run * size <= MAX_BYTES
        first += run


@pytest.mark.parametrize(
    ("error", "still_segmenting"),
    [("EIO", False), ("EINVAL", False), ("EMSGSIZE", True)],
)
def test_a_refused_run_goes_one_by_one(two, monkeypatch, error: str, still_segmenting) -> None:
    """The first run fails; its datagrams go again a message each, the next run as
    built; a later batch in runs again, unless the kernel said it has none."""
    sender, (a, _b) = two
    offered: list[int] = []
    real = send_batch.sendmmsg

    def first_run_fails(fd: int, msgs: int, count: int, flags: int) -> int:
        offered.append(count)
        if len(offered) == 1:
            ctypes.set_errno(getattr(errno, error))
            return -1
        return real(fd, msgs, count, flags)

    monkeypatch.setattr(send_batch, "sendmmsg", first_run_fails)
    drops = [0] * len(Drop)
    batch = SendBatch(drops)
    wanted = gather(batch, sender, [(a, 1000)] * 6 + [(a, 500)] * 3)
    batch.flush()
    assert received(a) == wanted[a]
    assert nonzero(drops) == {}
    # runs [7, 2] (a shorter datagram ends the first): the first refused, its seven
    # sent a message each, then the second, built as a run already
    assert offered == [2, 7, 1]
    assert batch.segmenting is still_segmenting
    later = gather(batch, sender, [(a, 800)] * 3)
    batch.flush()
    assert received(a) == later[a]
    assert offered[3:] == ([1] if still_segmenting else [3])  # one run, or each alone


def test_no_room_fails_the_rest_of_the_batch(two, monkeypatch) -> None:
    sender, (a, _b) = two
    # runs [5, 2]: the first leaves, the socket is then full
    fake = FailingSendmmsg([1, "EAGAIN"])
    monkeypatch.setattr(send_batch, "sendmmsg", fake)
    drops = [0] * len(Drop)
    batch = SendBatch(drops)
    gather(batch, sender, [(a, 1000)] * 4 + [(a, 500)] * 3)
    batch.flush()
    assert fake.calls == [2, 1]
    assert nonzero(drops) == {"TX_FULL": 2}


def test_this_kernel_segments_and_a_batch_knows_it() -> None:
    """The probe a batch starts from: Linux 4.18 and later answer it (CI's kernels
    all do), and a batch makes runs only where it did."""
    assert kernel_segments()
    assert SendBatch([0] * len(Drop)).segmenting


def test_nvgre_and_lone_datagrams_are_never_segmented(two, monkeypatch) -> None:
    sender, (a, _b) = two
    fake = FailingSendmmsg([10, 10])
    monkeypatch.setattr(send_batch, "sendmmsg", fake)
    batch = SendBatch([0] * len(Drop))
    for _ in range(3):
        batch.add(sender, a.getsockname(), b"", memoryview(datagram(0, 100)))  # not segmented
    batch.flush()
    gather(batch, sender, [(a, 100)])
    batch.flush()
    assert fake.calls == [3, 1]  # a message per datagram, both times
