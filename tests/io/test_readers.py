"""The daemon's readers: try, drain a batch, then wait; one ``for_batch`` per batch.

No TAP and no raw socket: a Unix socketpair stands in for both. ``read_socket`` is
given one end as a socket, ``read_fd`` its bare fd (``os.readv`` works on any fd,
and a datagram or seqpacket socket keeps each write a record of its own, which a
pipe would not). The other end is the "network". Runs on asyncio and trio.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable

import anyio
import anyio.lowlevel
import pytest

from gateway.io.readers import BATCH, read, read_fd, read_socket, read_socket_from

pytestmark = pytest.mark.anyio

TOTAL = 300
WAIT_S = 5.0  # only ever reached when a test is failing


def payload(index: int) -> bytes:
    """Distinct lengths and contents, so order and length both show."""
    return index.to_bytes(2, "big") * (1 + index % 37)


class Recorder:
    """A ``for_batch`` that keeps every frame, copied, split by batch."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.times: list[float] = []  # the time each batch was given
        self.received = 0
        self._target = 0
        self._reached = anyio.Event()

    def for_batch(self, now: float) -> Callable[[memoryview], None]:
        batch: list[bytes] = []
        self.batches.append(batch)
        self.times.append(now)

        def handle(frame: memoryview) -> None:
            batch.append(bytes(frame))  # the reader reuses its buffer: copy
            self.received += 1
            if self.received >= self._target:
                self._reached.set()

        return handle

    @property
    def frames(self) -> list[bytes]:
        return [frame for batch in self.batches for frame in batch]

    async def wait_for(self, count: int) -> None:
        self._target = count
        self._reached = anyio.Event()
        if self.received >= count:
            return
        with anyio.fail_after(WAIT_S):
            await self._reached.wait()


def prefill(sender: socket.socket, frames: list[bytes]) -> int:
    """Queue as many frames as the socket buffer holds (without a reader)."""
    for sent, frame in enumerate(frames):
        try:
            sender.send(frame)
        except BlockingIOError:
            return sent
    return len(frames)


async def send_all(sender: socket.socket, frames: list[bytes]) -> None:
    for frame in frames:
        while True:
            try:
                sender.send(frame)
                break
            except BlockingIOError:
                with anyio.fail_after(WAIT_S):
                    await anyio.wait_writable(sender)


@pytest.fixture
def pair(request: pytest.FixtureRequest):
    kind = request.param
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    a.setblocking(False)
    b.setblocking(False)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def never_faults(error: Exception, frame: memoryview) -> None:
    raise AssertionError(f"the barrier caught {error!r}")


def no_flush() -> None:
    """A reader's end of batch when nothing is gathered to send."""


def start_reader(
    how: str, sock: socket.socket, for_batch: Callable, on_fault=never_faults, flush=no_flush
):
    if how == "socket":
        return read_socket, sock, for_batch, on_fault, flush
    return read_fd, sock.fileno(), for_batch, on_fault, flush


READERS = [
    pytest.param("socket", socket.SOCK_DGRAM, id="read_socket-dgram"),
    pytest.param("socket", socket.SOCK_SEQPACKET, id="read_socket-seqpacket"),
    pytest.param("fd", socket.SOCK_SEQPACKET, id="read_fd-seqpacket"),
    pytest.param("fd", socket.SOCK_DGRAM, id="read_fd-dgram"),
]


@pytest.mark.parametrize(("how", "pair"), READERS, indirect=["pair"])
async def test_reader_drains_in_batches_in_order_then_waits(how: str, pair) -> None:
    """In order, a batch at a time with the others' turn between full ones, each
    given the clock's time; then asleep until the next datagram."""
    sender, receiver = pair
    frames = [payload(i) for i in range(TOTAL)]
    queued = prefill(sender, frames)
    assert queued > 2 * BATCH, "the socket buffer should hold a few batches"
    recorder = Recorder()
    seen_between_batches: list[int] = []

    async def observer() -> None:
        # Runs whenever the reader yields: it must yield between full batches.
        while recorder.received < queued:
            seen_between_batches.append(recorder.received)
            await anyio.lowlevel.checkpoint()

    started = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(observer)
        tg.start_soon(*start_reader(how, receiver, recorder.for_batch))
        await recorder.wait_for(queued)
        await send_all(sender, frames[queued:])
        await recorder.wait_for(TOTAL)

        # Everything is read: the reader must now sleep in wait_readable, not spin.
        calls = len(recorder.batches)
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        assert len(recorder.batches) == calls, "the reader polled an empty socket"

        late = b"\xab" * 65535  # the largest datagram MAX_DATAGRAM allows, not truncated
        await anyio.sleep(0.01)
        sent_late = anyio.current_time()
        sender.send(late)
        await recorder.wait_for(TOTAL + 1)
        tg.cancel_scope.cancel()
    ended = anyio.current_time()

    assert recorder.frames == [*frames, late]
    sizes = [len(batch) for batch in recorder.batches]
    assert max(sizes) <= BATCH
    assert sizes[0] == BATCH, "with a full queue the first batch is a whole one"
    assert sum(1 for size in sizes if size) >= math.ceil(TOTAL / BATCH)
    assert any(0 < seen < queued for seen in seen_between_batches), (
        "other tasks never ran while the reader drained the queue"
    )
    # Each batch is given the event loop's clock (anyio's), read as it starts.
    times = recorder.times
    assert started <= times[0] and times == sorted(times) and times[-1] <= ended
    assert times[-1] >= sent_late > times[0], "the clock is read per batch, not once"


@pytest.mark.parametrize(("how", "pair"), [READERS[0], READERS[3]], indirect=["pair"])
async def test_empty_datagram_is_a_frame_and_the_reader_carries_on(how: str, pair) -> None:
    """Hostile input: a zero-length datagram is handed over as an empty frame (the data
    plane counts it TRUNCATED); it must neither stop the reader nor swallow the next."""
    sender, receiver = pair
    sender.send(b"")
    sender.send(b"after")
    recorder = Recorder()
    async with anyio.create_task_group() as tg:
        tg.start_soon(*start_reader(how, receiver, recorder.for_batch))
        await recorder.wait_for(2)
        tg.cancel_scope.cancel()
    assert recorder.frames == [b"", b"after"]


@pytest.mark.parametrize(("how", "pair"), [READERS[0], READERS[2]], indirect=["pair"])
async def test_handler_is_chosen_once_per_batch(how: str, pair) -> None:
    """A policy swap lands between batches: every frame of one batch goes to the
    handler ``for_batch`` returned at its start, and the next batch asks again."""
    sender, receiver = pair
    frames = [payload(i) for i in range(2 * BATCH + 5)]
    assert prefill(sender, frames) == len(frames)
    generation = 0
    seen: list[tuple[int, bytes]] = []

    def for_batch(now: float) -> Callable[[memoryview], None]:
        nonlocal generation
        generation += 1
        mine = generation
        return lambda frame: seen.append((mine, bytes(frame)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(*start_reader(how, receiver, for_batch))
        with anyio.fail_after(WAIT_S):
            while len(seen) < len(frames):
                await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert [frame for _, frame in seen] == frames
    assert [g for g, _ in seen] == [1] * BATCH + [2] * BATCH + [3] * 5


@pytest.mark.parametrize(("how", "pair"), [READERS[0], READERS[2]], indirect=["pair"])
async def test_a_frame_the_handler_raises_on_costs_that_frame_only(how: str, pair) -> None:
    """The barrier: frames marked 0xEE make the handler raise (a data-plane bug);
    each goes to ``on_fault`` with its bytes, and the frames after it, in the same
    batch, are still handled, in order."""
    sender, receiver = pair
    frames = [payload(i) + (b"\xee" if i % 5 == 2 else b"") for i in range(BATCH + 10)]
    assert prefill(sender, frames) == len(frames)
    recorder = Recorder()
    faults: list[tuple[str, bytes]] = []

    def for_batch(now: float) -> Callable[[memoryview], None]:
        record = recorder.for_batch(now)

        def handle(frame: memoryview) -> None:
            record(frame)
            if frame[-1] == 0xEE:
                raise ValueError("a bug")

        return handle

    def on_fault(error: Exception, frame: memoryview) -> None:
        faults.append((repr(error), bytes(frame)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(*start_reader(how, receiver, for_batch, on_fault))
        await recorder.wait_for(len(frames))
        tg.cancel_scope.cancel()
    assert recorder.frames == frames
    assert faults == [("ValueError('a bug')", f) for f in frames if f.endswith(b"\xee")]
    assert len(recorder.batches[0]) == BATCH, "a fault does not end the batch"


async def test_a_read_that_fails_still_ends_the_reader() -> None:
    """Only the handler is behind the barrier: a broken fd must not make the reader
    spin on an error it would meet again at once."""

    def broken() -> int:
        raise OSError(5, "Input/output error")

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        a.send(b"x")
        with pytest.raises(OSError, match="Input/output"):
            await read(b, lambda buffer: broken, Recorder().for_batch, never_faults, no_flush)


@pytest.mark.parametrize(("how", "pair"), [READERS[0], READERS[2]], indirect=["pair"])
async def test_flush_ends_every_batch_before_the_reader_yields_or_waits(how: str, pair) -> None:
    """What the handlers gathered to send (``FdOutput.flush``) leaves at the end of
    each batch: after a full one, before other tasks run, and after the last frames,
    before the reader sleeps; never in the middle of a batch."""
    sender, receiver = pair
    frames = [payload(i) for i in range(2 * BATCH + 5)]
    assert prefill(sender, frames) == len(frames)
    events: list[bytes | None] = []  # a frame, or None for a flush
    recorder = Recorder()

    def for_batch(now: float) -> Callable[[memoryview], None]:
        record = recorder.for_batch(now)

        def handle(frame: memoryview) -> None:
            events.append(bytes(frame))
            record(frame)

        return handle

    async with anyio.create_task_group() as tg:
        tg.start_soon(*start_reader(how, receiver, for_batch, flush=lambda: events.append(None)))
        await recorder.wait_for(len(frames))
        with anyio.fail_after(WAIT_S):
            while events[-1] is not None:  # the last batch's flush, before it sleeps
                await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    batches: list[list[bytes]] = [[]]
    for event in events:
        if event is None:
            batches.append([])
        else:
            batches[-1].append(event)
    assert [batch for batch in batches if batch] == [
        frames[:BATCH],
        frames[BATCH : 2 * BATCH],
        frames[2 * BATCH :],
    ]


async def test_read_socket_from_gives_each_datagram_its_source() -> None:
    """A tunnel's listen port: UDP on loopback from two senders, each datagram handed
    over with the address and port it came from, in batches, in order."""
    seen: list[tuple[bytes, tuple[str, int]]] = []
    done = anyio.Event()
    batches = 0

    def for_batch(now: float) -> Callable[[memoryview, tuple[str, int]], None]:
        nonlocal batches
        batches += 1

        def handle(datagram: memoryview, source: tuple[str, int]) -> None:
            seen.append((bytes(datagram), source))
            if len(seen) == TOTAL:
                done.set()

        return handle

    def fault(error: Exception, frame: memoryview) -> None:
        raise AssertionError(f"no fault expected: {error!r}")

    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as port,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second,
    ):
        port.bind(("127.0.0.1", 0))
        port.setblocking(False)
        port.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for sender in (first, second):
            sender.bind(("127.0.0.1", 0))
        senders = {0: second.getsockname(), 1: first.getsockname()}
        for index in range(TOTAL):
            (first if index % 2 else second).sendto(payload(index), port.getsockname())
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_socket_from, port, for_batch, fault, lambda: None)
            with anyio.fail_after(WAIT_S):
                await done.wait()
            tg.cancel_scope.cancel()
    assert [data for data, _ in seen] == [payload(index) for index in range(TOTAL)]
    assert all(source == senders[index % 2] for index, (_, source) in enumerate(seen))
    assert batches >= math.ceil(TOTAL / BATCH)
