"""FdOutput: every write tried once, at the end of its batch; every failure a counted
drop, never an exception.

A Unix datagram socketpair stands in for a TAP (one write, one frame), a UDP socket
on loopback for the raw GRE socket: no root, no devices.
"""

from __future__ import annotations

import errno
import os
import socket
from types import SimpleNamespace

import pytest

from gateway.errors import Drop
from gateway.io.output import FdOutput

PA1, PA2 = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
FRAME = bytes(range(60)) + b"\x00" * 4
GRE = b"\x20\x00\x65\x58\x00\x13\x92\x00"  # K bit, TEB, VSID 5010


def port(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name)  # to_tap reads nothing but the name


def nonzero(drops: list[int]) -> dict[str, int]:
    return {Drop(i).name: n for i, n in enumerate(drops) if n}


@pytest.fixture
def tap():
    """(the daemon's end, the VM's end) of a stand-in TAP."""
    daemon_end, vm_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    daemon_end.setblocking(False)
    vm_end.setblocking(False)
    try:
        yield daemon_end, vm_end
    finally:
        daemon_end.close()
        vm_end.close()


def fill(sock: socket.socket) -> int:
    """Send until the kernel says the queue is full; how many went in."""
    for sent in range(100_000):
        try:
            sock.send(b"x" * 1024)
        except BlockingIOError:
            return sent
    raise AssertionError("the socket never filled up")


def test_to_tap_writes_exactly_the_frame_as_decided_at_the_batchs_end(tap) -> None:
    """A batch's frames wait for its ``flush`` and leave in the order decided, each
    as it was when decided: the reader's buffer holds the next frame by then."""
    daemon_end, vm_end = tap
    drops = [0] * len(Drop)
    out = FdOutput(drops, {"blue1": daemon_end.fileno()}, {})
    buffer = bytearray(b"\xee" * 10 + FRAME + b"\xee" * 10)
    out.to_tap(port("blue1"), memoryview(buffer)[10:-10])  # a slice of a reused buffer
    buffer[:] = bytes(len(buffer))  # the next frame read into it
    out.to_tap(port("blue1"), b"\x01")
    with pytest.raises(BlockingIOError):
        vm_end.recv(65536)  # nothing before the batch ends
    out.flush()
    assert vm_end.recv(65536) == FRAME
    assert vm_end.recv(65536) == b"\x01"
    out.flush()  # written once
    with pytest.raises(BlockingIOError):
        vm_end.recv(65536)
    assert nonzero(drops) == {}


def test_to_tap_on_a_full_queue_counts_tx_full_and_does_not_block(tap) -> None:
    daemon_end, _vm_end = tap
    assert fill(daemon_end) > 0
    drops = [0] * len(Drop)
    out = FdOutput(drops, {"blue1": daemon_end.fileno()}, {})
    out.to_tap(port("blue1"), FRAME)
    out.to_tap(port("blue1"), FRAME)
    out.flush()
    assert nonzero(drops) == {"TX_FULL": 2}


def test_to_tap_of_an_unknown_port_counts_port_down() -> None:
    drops = [0] * len(Drop)
    out = FdOutput(drops, {"blue1": 0}, {})
    out.to_tap(port("nosuch"), FRAME)
    assert nonzero(drops) == {"PORT_DOWN": 1}


def test_to_tap_on_a_closed_fd_counts_port_down() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as closed:  # still closed: nothing reused the number
        os.fstat(w)
    assert closed.value.errno == errno.EBADF
    drops = [0] * len(Drop)
    out = FdOutput(drops, {"blue1": w}, {})
    out.to_tap(port("blue1"), FRAME)
    out.flush()
    assert nonzero(drops) == {"PORT_DOWN": 1}


def test_to_tap_follows_the_daemons_live_mapping(tap) -> None:
    """tap_fds is the daemon's own dict: a port added or removed later is seen."""
    daemon_end, vm_end = tap
    drops = [0] * len(Drop)
    tap_fds: dict[str, int] = {}
    out = FdOutput(drops, tap_fds, {})
    out.to_tap(port("blue1"), FRAME)
    tap_fds["blue1"] = daemon_end.fileno()
    out.to_tap(port("blue1"), FRAME)
    del tap_fds["blue1"]
    out.to_tap(port("blue1"), FRAME)
    out.flush()
    assert vm_end.recv(65536) == FRAME
    with pytest.raises(BlockingIOError):
        vm_end.recv(65536)
    assert nonzero(drops) == {"PORT_DOWN": 2}


def test_to_provider_without_a_socket_for_the_source_pa_is_unreachable() -> None:
    drops = [0] * len(Drop)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        out = FdOutput(drops, {}, {PA2: other})
        out.to_provider(PA1, PA2, GRE, memoryview(FRAME))
    assert nonzero(drops) == {"PROVIDER_UNREACHABLE": 1}


def test_to_provider_send_errors_are_counted_by_kind() -> None:
    """A UDP socket stands in for the raw GRE one (the same sendmsg and sendmmsg
    calls): the kernel refuses a datagram over 65535 bytes with EMSGSIZE (TOO_BIG:
    too big for a batch's slot, it is sent alone, at once) and a send to port 0 with
    EINVAL (PROVIDER_UNREACHABLE: batched, counted when the batch is flushed);
    neither may raise."""
    drops = [0] * len(Drop)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        out = FdOutput(drops, {}, {PA1: sock})
        out.to_provider(PA1, bytes([127, 0, 0, 1]), GRE, memoryview(b"\x00" * 70000))
        assert nonzero(drops) == {"TOO_BIG": 1}
        out.to_provider(PA1, bytes([127, 0, 0, 1]), GRE, memoryview(FRAME))
        assert nonzero(drops) == {"TOO_BIG": 1}
        out.flush()
    assert nonzero(drops) == {"TOO_BIG": 1, "PROVIDER_UNREACHABLE": 1}


def test_to_provider_link_without_a_link_is_unreachable() -> None:
    drops = [0] * len(Drop)
    out = FdOutput(drops, {}, {})
    out.to_provider_link(FRAME)
    assert nonzero(drops) == {"PROVIDER_UNREACHABLE": 1}


def test_to_provider_link_sends_the_frame_counts_full_and_gone(tap) -> None:
    link, wire = tap
    drops = [0] * len(Drop)
    out = FdOutput(drops, {}, {}, link)
    out.to_provider_link(memoryview(FRAME))
    assert wire.recv(65536) == FRAME
    assert nonzero(drops) == {}
    fill(link)
    out.to_provider_link(FRAME)
    assert nonzero(drops) == {"TX_FULL": 1}
    wire.close()  # the other end is gone: ECONNREFUSED, not an exception
    out.to_provider_link(FRAME)
    assert nonzero(drops) == {"TX_FULL": 1, "PROVIDER_UNREACHABLE": 1}
