"""Waiting for a reader's fd to become readable, at the cost each event loop makes
cheapest.

A reader waits each time its fd runs dry (``readers.py``): under a steady load well
below the node's capacity (a tunnel's paced 30k datagrams a second, say) that is
once every packet or two, so what a wait costs is paid per packet. anyio's
``wait_readable`` on asyncio registers the fd with the loop's selector and removes
it again on every wait (``add_reader``/``remove_reader``: two ``epoll_ctl`` and a
selector key built and dropped in Python): a UDP socket read at a paced 30k
datagrams a second took 23.5-25.9 us of CPU a datagram on the project's machine that
way, and 15.0-17.7 with the fd registered once and a wait that only awaits a future
its callback completes. So on asyncio the fd is registered once, for the reader's
life (``readable``): the callback is level-triggered, and while nobody waits (the
reader draining a batch) it runs at most once per loop iteration and does nothing.
trio's ``wait_readable`` already costs about that (16.3-18.3: one ``epoll_ctl`` a
wait, no key in Python), so on trio it is used as it is.

The registration ends when the reader's task does (cancelled or not), before its fd
is closed: whoever closes a reader's fd must let its task end first (the readers'
owners close their fds in the task's ``finally``, or after the task group), or a
new fd with the same number would meet the old registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import anyio
import sniffio

Waitable = socket.socket | int
Wait = Callable[[], Awaitable[None]]


@contextlib.asynccontextmanager
async def readable(waitable: Waitable) -> AsyncIterator[Wait]:
    """A ``wait()`` that returns once ``waitable`` is readable, for the block."""
    if sniffio.current_async_library() != "asyncio":
        yield partial(anyio.wait_readable, waitable)
        return
    loop = asyncio.get_running_loop()
    fd = waitable if isinstance(waitable, int) else waitable.fileno()
    waiter: list[asyncio.Future[None] | None] = [None]
    # The loop may run a readiness callback it polled before the reader drained the
    # fd and began to wait: asked again, with no timeout, the fd says whether it is.
    still = select.poll()
    still.register(fd, select.POLLIN)
    readable_now = partial(still.poll, 0)

    def ready() -> None:
        future = waiter[0]
        if future is not None and readable_now():
            waiter[0] = None
            if not future.done():  # cancelled meanwhile
                future.set_result(None)

    async def wait() -> None:
        future = waiter[0] = loop.create_future()
        try:
            await future
        finally:
            waiter[0] = None

    loop.add_reader(fd, ready)
    try:
        yield wait
    finally:
        loop.remove_reader(fd)
