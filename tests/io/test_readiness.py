"""``readiness.readable``: a wait returns once the fd is readable, and not before; a
cancelled wait leaves the next one working; on asyncio the fd stays registered
between waits and is no longer once the block ends (a cancelled reader's too), so a
new fd with its number can be waited on. Runs on asyncio and trio; a socketpair is
the fd."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import anyio
import pytest
import sniffio

from gateway.io.readiness import readable

pytestmark = pytest.mark.anyio

QUIET_S = 0.05  # how long a wait on a dry fd is watched not returning
WAIT_S = 5.0  # only ever reached when a test is failing


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def registered(fd: int) -> bool:
    """Whether asyncio's loop watches ``fd`` for reading, asked outside a ``readable``
    block (removing is the public way to ask: what it removed is put back as a no-op)."""
    if sniffio.current_async_library() != "asyncio":
        return False  # trio keeps no registration between waits
    loop = asyncio.get_running_loop()
    if not loop.remove_reader(fd):
        return False
    loop.add_reader(fd, lambda: None)
    return True


async def test_a_wait_returns_once_the_fd_is_readable_and_not_before(pair) -> None:
    a, b = pair
    async with readable(b) as wait:
        for round_ in range(3):
            with anyio.move_on_after(QUIET_S) as quiet:
                await wait()
            assert quiet.cancelled_caught, f"round {round_}: returned with nothing to read"
            a.send(b"x%d" % round_)
            with anyio.fail_after(WAIT_S):
                await wait()
            assert b.recv(16) == b"x%d" % round_


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio registers per wait
async def test_on_asyncio_the_fd_stays_registered_between_waits_and_not_after(pair) -> None:
    a, b = pair
    fd = b.fileno()
    assert not registered(fd)
    async with readable(b) as wait:
        a.send(b"x")
        with anyio.fail_after(WAIT_S):
            await wait()
        b.recv(16)
        loop = asyncio.get_running_loop()
        assert loop.remove_reader(fd)  # still ours after the wait returned ...
        loop.add_reader(fd, lambda: None)  # (put back: the block's end removes it)
    assert not registered(fd)  # ... and gone with the block


async def test_a_cancelled_reader_leaves_its_fd_free_for_the_next(pair) -> None:
    a, b = pair

    async def reader() -> None:
        async with readable(b) as wait:
            await wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    assert not registered(b.fileno())
    async with readable(b) as wait:  # the same fd, as a new one with its number would be
        a.send(b"y")
        with anyio.fail_after(WAIT_S):
            await wait()
    assert b.recv(16) == b"y"
