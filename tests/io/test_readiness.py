"""``readiness.serve_batches``: a reader's batches run once its fd is readable and
not while it is dry; after one that found a full batch the others get a turn; one
that raises ends the reader with its error; on asyncio the batch is the fd's
readiness callback, registered for the reader's life and no longer (a cancelled or
failed reader's too), so a new fd with its number can be served. Runs on asyncio and
trio; a socketpair is the fd."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest
import sniffio

from gateway.io.readiness import serve_batches

pytestmark = pytest.mark.anyio

QUIET_S = 0.05  # how long a dry fd is watched for batches that should not run
WAIT_S = 5.0  # only ever reached when a test is failing
FULL = 4


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def registered(fd: int) -> bool:
    """Whether asyncio's loop watches ``fd`` for reading (removing is the public way
    to ask: what it removed is put back as a no-op)."""
    if sniffio.current_async_library() != "asyncio":
        return False  # trio keeps no registration between waits
    loop = asyncio.get_running_loop()
    if not loop.remove_reader(fd):
        return False
    loop.add_reader(fd, lambda: None)
    return True


class Drainer:
    """A batch: reads up to ``FULL`` datagrams, keeps them, says how many."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.calls = 0
        self.got: list[bytes] = []

    def __call__(self) -> int:
        self.calls += 1
        found = 0
        try:
            while found < FULL:
                self.got.append(self.sock.recv(64))
                found += 1
        except BlockingIOError:
            pass
        return found

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(WAIT_S):
            while len(self.got) < count:
                await anyio.sleep(0.001)


async def test_batches_run_once_the_fd_is_readable_and_not_while_it_is_dry(pair) -> None:
    a, b = pair
    drainer = Drainer(b)
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_batches, b, drainer, FULL)
        for round_ in range(3):
            before = drainer.calls
            await anyio.sleep(QUIET_S)
            # trio's loop tries the fd once before it first waits; nothing spins
            assert drainer.calls - before <= (1 if round_ == 0 else 0), f"round {round_}"
            a.send(b"x%d" % round_)
            await drainer.wait_for(round_ + 1)
        tg.cancel_scope.cancel()
    assert drainer.got == [b"x0", b"x1", b"x2"]


async def test_after_a_full_batch_the_others_get_a_turn(pair) -> None:
    a, b = pair
    for i in range(3 * FULL):
        a.send(b"%d" % i)
    drainer = Drainer(b)
    seen: list[int] = []  # how many datagrams were read each time the other task ran

    async def other() -> None:
        while len(drainer.got) < 3 * FULL:
            seen.append(len(drainer.got))
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        tg.start_soon(serve_batches, b, drainer, FULL)
        await drainer.wait_for(3 * FULL)
        tg.cancel_scope.cancel()
    assert drainer.got == [b"%d" % i for i in range(3 * FULL)]
    assert any(0 < count < 3 * FULL for count in seen), f"the others never ran between: {seen}"


async def test_a_batch_that_raises_ends_the_reader_and_its_registration(pair) -> None:
    a, b = pair

    def broken() -> int:
        raise OSError(5, "Input/output error")

    a.send(b"x")
    with anyio.fail_after(WAIT_S), pytest.raises(OSError, match="Input/output"):
        await serve_batches(b, broken, FULL)
    assert not registered(b.fileno())


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio registers per wait
async def test_on_asyncio_the_fd_is_registered_for_the_readers_life_only(pair) -> None:
    a, b = pair
    fd = b.fileno()
    drainer = Drainer(b)
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_batches, b, drainer, FULL)
        await anyio.wait_all_tasks_blocked()
        a.send(b"x")
        await drainer.wait_for(1)
        loop = asyncio.get_running_loop()
        assert loop.remove_reader(fd)  # the reader's, while it serves ...
        loop.add_reader(fd, lambda: None)  # (put back: the reader's end removes it)
        tg.cancel_scope.cancel()
    assert not registered(fd)  # ... and gone with it


async def test_a_cancelled_reader_leaves_its_fd_free_for_the_next(pair) -> None:
    a, b = pair
    first = Drainer(b)
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_batches, b, first, FULL)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert not registered(b.fileno())
    second = Drainer(b)  # the same fd, as a new one with its number would be
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_batches, b, second, FULL)
        a.send(b"y")
        await second.wait_for(1)
        tg.cancel_scope.cancel()
    assert second.got == [b"y"] and not first.got
