"""A reader's batches, run whenever its fd is readable, at the cost each event loop
makes cheapest.

A reader drains its fd in batches (``readers.py``) and sleeps when the fd runs dry.
Under a steady load well below the node's capacity (a tunnel's paced 30k datagrams
a second, say) it runs dry after a packet or two, so what a wake-up costs is paid
per packet. Measured on the project's machine, a UDP socket on loopback read at a
paced 20k datagrams a second, alone, CPU per datagram (alternated runs):

- anyio's ``wait_readable`` on asyncio adds the fd to the loop's selector and
  removes it again on every wait (two ``epoll_ctl``, a selector key built and
  dropped in Python): 23.5-25.9 us at 30k a second (an earlier day's run);
- the fd registered once, a task awaiting a future its readiness callback
  completes (this module until 6b8223b): 21.9-23.4 us;
- trio's ``wait_readable`` (one ``epoll_ctl`` a wait): 22.3-23.0 us;
- the batch run by the readiness callback itself, no task woken: 15.6-18.2 us;
- a bare blocking ``recv_into``: 10.2-10.3 us (the sleep and the wake-up alone).

So on asyncio a batch is the fd's readiness callback (``add_reader``): the loop
calls it when its poll finds the fd readable, with no future, no task step and no
second turn of the loop (a woken task costs one more poll with no timeout). The
registration is level-triggered, so a fd with more than a batch waiting is called
again on the loop's next turn, after every other ready callback and task has run:
what the task-based reader did with a checkpoint after a full batch. The reader's
task only waits: for its cancellation, or for an error a batch raised (a read that
fails ends the reader, as it would end a task). trio has no readiness callbacks:
there the task loops, draining and waiting with ``wait_readable``.

The registration ends when the reader's task does (cancelled or not), before its fd
is closed: whoever closes a reader's fd must let its task end first (the readers'
owners close their fds in the task's ``finally``, or after the task group), or a
new fd with the same number would meet the old registration.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import sniffio
import trio

Waitable = socket.socket | int
# One batch of a reader: it drains up to a batch and says how many frames it found.
Batch = Callable[[], int]


def event_loop_name() -> str:
    """The running event loop, as the daemon's ready line and start-up log name it:
    ``trio``, ``uvloop`` (asyncio on libuv's loop) or ``asyncio`` (the standard
    library's)."""
    if sniffio.current_async_library() != "asyncio":
        return "trio"
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.partition(".")[0] == "uvloop" else "asyncio"


def loop_clock() -> Callable[[], float]:
    """The running event loop's clock (the one ``anyio.current_time`` reads), as a call
    bound once. ``anyio.current_time`` finds the backend on every call: 0.8-1.1 us on
    the project's machine, against 0.14 (asyncio's ``loop.time``) and 0.22 us (trio's
    ``current_time``); a reader reads the clock once per batch, which at a light load
    is once per packet."""
    if sniffio.current_async_library() == "asyncio":
        return asyncio.get_running_loop().time
    return trio.current_time


async def serve_batches(waitable: Waitable, batch: Batch, full: int) -> None:
    """Run ``batch`` whenever ``waitable`` is readable, for as long as the caller's
    task is not cancelled; a batch that raises ends it with that error. A batch
    that found ``full`` frames may find more at once: the others get a turn first."""
    if sniffio.current_async_library() != "asyncio":
        # trio's own calls, not anyio's: anyio's find the backend on every call
        # (``loop_clock`` says what that costs) and wrap the wait in a coroutine of
        # their own, about 1 us a wait more on the project's machine (8.5 against
        # 9.5-10.6 us for a ready fd, alternated), paid per wake-up.
        wait_readable, checkpoint = trio.lowlevel.wait_readable, trio.lowlevel.checkpoint
        while True:
            if batch() < full:
                await wait_readable(waitable)
            else:
                await checkpoint()
    loop = asyncio.get_running_loop()
    fd = waitable if isinstance(waitable, int) else waitable.fileno()
    failed: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        try:
            batch()
        except Exception as error:  # ends the reader: its task raises it
            loop.remove_reader(fd)
            if not failed.done():
                failed.set_exception(error)

    loop.add_reader(fd, ready)
    try:
        await failed
    finally:
        loop.remove_reader(fd)
