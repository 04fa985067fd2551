"""The readers: one per fd, each draining its fd in batches whenever it is readable.

A reader drains up to a batch (``BATCH`` frames) into one preallocated buffer (a
receive ring: ``RING_BATCH``, read in place) and hands each frame to the data plane
before reading the next. Its batches run when the fd is readable, at the cost
``readiness.py`` makes cheapest for the event loop (on asyncio, the fd's readiness
callback; on trio, a task that waits when the fd ran dry); after a full batch the
other tasks (other ports, reloads, the API) get a turn before the next one. There is
no await per packet, and a batch is decided synchronously, so a policy swap (between
batches) is never seen half-way. The event loop's clock is read once per batch, for
the data plane's ``now`` (``loop_clock``, bound when the reader starts).

The per-packet barrier (``faults.py``): a frame the handler raises on goes to the
reader's ``on_fault`` and the reader goes on with the next frame.

Free functions over an fd and a handler, whatever the role: TAPs, raw GRE sockets,
the provider link, the receive rings and a gateway's tunnel sockets use them.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from functools import partial
from typing import Final, Protocol, TypeVar

from gateway.io.faults import Fault
from gateway.io.readiness import loop_clock, serve_batches
from gateway.io.ring import ReceiveRing

# Frames handled per readiness before other tasks get a turn (wireguard-go's
# IdealBatchSize is 128; 64 keeps a TAP from starving the others on 2 cores).
BATCH: Final = 64
# The receive ring's batch: its frames cost no syscall, so the turn each batch ends
# with (an event loop iteration, 5-8 us here) is a larger share of a frame's cost;
# 256 frames are still about a millisecond of the others' wait under load.
RING_BATCH: Final = 256
MAX_DATAGRAM: Final = 65535  # an IPv4 datagram's largest size: never truncate

Handler = Callable[[memoryview], None]
# The end of a batch: what its handlers gathered to send leaves (``FdOutput.flush``).
Flush = Callable[[], None]


class Clocked(Protocol):
    """A role's data-plane state (``gateway.dataplane.HostNode``): its handlers read
    the time from ``now``, which the reader's ``for_batch`` sets once per batch."""

    now: float


Node = TypeVar("Node", bound=Clocked)
Found = TypeVar("Found")


def discard(frame: memoryview) -> None:
    """The handler of a reader whose destination is gone (a port removed by a
    reload, its task being cancelled): its last frames go nowhere."""
    del frame


# What a reader asks at the start of each batch, given the time: the batch's handler.
ForBatch = Callable[[float], Handler]


def each_batch(handle: Callable[[Node, memoryview], None], node: Node) -> ForBatch:
    """A reader's ``for_batch`` for a data-plane entry point that takes the node
    alone: per batch, the time is set into ``node.now`` and the handler bound."""

    def for_batch(now: float) -> Handler:
        node.now = now
        return partial(handle, node)

    return for_batch


def each_batch_for(
    handle: Callable[[Node, Found, memoryview], None],
    node: Node,
    find: Callable[[], Found | None],
) -> ForBatch:
    """A reader's ``for_batch`` for an entry point that takes the node and what the fd
    stands for (a host's port, a gateway's TAP): ``find`` looks it up again once per
    batch, since a swap replaces it between batches. Gone (removed by a change, the
    reader's task being cancelled), its last frames are discarded."""

    def for_batch(now: float) -> Handler:
        node.now = now
        found = find()
        if found is None:
            return discard
        return partial(handle, node, found)

    return for_batch


async def read_socket(
    sock: socket.socket, for_batch: ForBatch, on_fault: Fault, flush: Flush
) -> None:
    await read(sock, lambda buffer: partial(sock.recv_into, buffer), for_batch, on_fault, flush)


# A handler of datagrams that needs their source: a tunnel's listen port.
SourcedHandler = Callable[[memoryview, tuple[str, int]], None]


async def read_socket_from(
    sock: socket.socket,
    for_batch: Callable[[float], SourcedHandler],
    on_fault: Fault,
    flush: Flush,
) -> None:
    """``read_socket`` for a UDP socket whose handler needs each datagram's source
    (a tunnel's peer roams): ``recvfrom_into`` reads it, and the batch's handler is
    given it beside the datagram (two small calls per datagram more than
    ``read_socket``; a tunnel's datagram costs its decryption besides)."""
    source: list[tuple[str, int]] = [("", 0)]
    recvfrom_into = sock.recvfrom_into

    def reader_into(buffer: bytearray) -> Callable[[], int]:
        def read_one() -> int:
            size, source[0] = recvfrom_into(buffer)
            return size

        return read_one

    def for_batch_with_source(now: float) -> Handler:
        handle = for_batch(now)
        return lambda datagram: handle(datagram, source[0])

    await read(sock, reader_into, for_batch_with_source, on_fault, flush)


async def read_fd(fd: int, for_batch: ForBatch, on_fault: Fault, flush: Flush) -> None:
    """``read`` for a bare fd (a TAP): an unbuffered ``FileIO`` reads each frame into
    the buffer (``readinto`` costs ~300 ns less a call than ``os.readv``, which builds
    an iovec from a sequence each time), and says the fd ran dry with None rather than
    an exception. The fd stays the caller's (``closefd=False``)."""
    with io.FileIO(fd, "rb", closefd=False) as file:
        await read(fd, lambda buffer: partial(file.readinto, buffer), for_batch, on_fault, flush)


async def read(
    waitable: socket.socket | int,
    reader_into: Callable[[bytearray], Callable[[], int | None]],
    for_batch: ForBatch,
    on_fault: Fault,
    flush: Flush,
) -> None:
    """Drain the fd in batches into one preallocated buffer, each frame handled
    before the next read, whenever it is readable (``serve_batches``).
    ``reader_into(buffer)`` gives the call that reads one frame into ``buffer``, its
    arguments bound once (a C call per frame, no Python frame or tuple); it raises
    BlockingIOError or returns None when the fd ran dry.

    ``for_batch`` is asked for the handler at the start of each batch, given the
    time: the policy may be swapped between batches, never within one, and asking
    per packet would cost for nothing. The ``try`` of the barrier wraps the handler
    alone, so that a read that fails (a broken fd) still ends the reader rather than
    spin; it costs nothing per frame until it catches (Python 3.11's exceptions are
    zero-cost).

    ``flush`` ends each batch, before the reader waits or the others get a turn:
    what the handlers gathered to send (``FdOutput.flush``) leaves then, never later."""
    buffer = bytearray(MAX_DATAGRAM)
    view = memoryview(buffer)
    read_one = reader_into(buffer)
    clock = loop_clock()

    def batch() -> int:
        handled = 0
        handle = for_batch(clock())
        try:
            while handled < BATCH:
                size = read_one()
                if size is None:  # ran dry (``read_fd``'s FileIO; sockets raise)
                    break
                handled += 1
                try:
                    handle(view[:size])
                except Exception as error:  # a bug costs this frame, not the node
                    on_fault(error, view[:size])
        except BlockingIOError:
            pass
        flush()
        return handled

    await serve_batches(waitable, batch, BATCH)


async def read_ring(
    ring: ReceiveRing, handle: Callable[[Node, memoryview], None], node: Node, flush: Flush
) -> None:
    """The receive ring's reader: ``drain`` calls ``handle(node, frame)`` itself for
    each frame in place (no copy, no wrapper call per packet) and holds the barrier;
    ``flush`` ends each batch, as in ``read``."""
    drain = ring.drain
    clock = loop_clock()

    def batch() -> int:
        node.now = clock()
        drained = drain(handle, node, RING_BATCH)
        flush()
        return drained

    await serve_batches(ring.fileno(), batch, RING_BATCH)
