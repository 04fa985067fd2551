"""SendBatch: NVGRE gathered over a reader's batch leaves in one sendmmsg, in order,
byte for byte, and every failure is a counted drop, never an exception.

UDP sockets on loopback stand in for the raw GRE ones (the same sendmmsg call, the
same sockaddr_in, with a port): no root, no devices. The error paths the loopback
cannot provoke (a full socket, a datagram too big) come from a stand-in for the
libc call that fails as the kernel would, through ctypes' errno.
"""

from __future__ import annotations

import ctypes
import errno
import socket
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether

from gateway.errors import Drop
from gateway.io import send_batch
from gateway.io.send_batch import HEADER_SIZES, SLOTS, Outer, SendBatch

LOOPBACK = bytes([127, 0, 0, 1])
GRE = b"\x20\x00\x65\x58\x00\x13\x92\x00"  # K bit, TEB, VSID 5010


def nonzero(drops: list[int]) -> dict[str, int]:
    return {Drop(i).name: n for i, n in enumerate(drops) if n}


@pytest.fixture
def udp() -> Iterator[tuple[socket.socket, socket.socket, int]]:
    """(a sender, a receiver, the receiver's port) on loopback, both non-blocking."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    receiver.bind(("127.0.0.1", 0))
    sender.setblocking(False)
    receiver.setblocking(False)
    try:
        yield sender, receiver, receiver.getsockname()[1]
    finally:
        sender.close()
        receiver.close()


def received(receiver: socket.socket) -> list[bytes]:
    datagrams = []
    while True:
        try:
            datagrams.append(receiver.recv(65536))
        except BlockingIOError:
            return datagrams


def frame(index: int) -> bytes:
    """Distinct lengths and contents, so order, length and bytes all show."""
    return bytes([index % 256]) * (14 + index * 7)


def test_nothing_leaves_before_flush_then_all_in_order_from_a_reused_buffer(udp) -> None:
    sender, receiver, port = udp
    drops = [0] * len(Drop)
    batch = SendBatch(drops, port)
    buffer = bytearray(2048)  # a reader's buffer: reused for every frame
    view = memoryview(buffer)
    frames = [frame(i) for i in range(10)]
    for data in frames:
        buffer[: len(data)] = data
        batch.add(sender, LOOPBACK, GRE, view[: len(data)])
        buffer[:64] = b"\xff" * 64  # the next read overwrites it: the batch kept a copy
    assert received(receiver) == []
    batch.flush()
    assert received(receiver) == [GRE + data for data in frames]
    batch.flush()  # nothing gathered: nothing sent
    assert received(receiver) == []
    assert nonzero(drops) == {}


def test_a_full_batch_leaves_by_itself(udp) -> None:
    sender, receiver, port = udp
    batch = SendBatch([0] * len(Drop), port)
    frames = [frame(i) for i in range(SLOTS + 3)]
    for data in frames:
        batch.add(sender, LOOPBACK, GRE, memoryview(data))
    assert received(receiver) == [GRE + data for data in frames[:SLOTS]]
    batch.flush()
    assert received(receiver) == [GRE + data for data in frames[SLOTS:]]


def test_a_packet_for_another_socket_sends_the_gathered_ones_first(udp) -> None:
    sender, receiver, port = udp
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.setblocking(False)
        other.bind(("127.0.0.1", 0))
        batch = SendBatch([0] * len(Drop), port)
        batch.add(sender, LOOPBACK, GRE, memoryview(frame(1)))
        batch.add(sender, LOOPBACK, GRE, memoryview(frame(2)))
        batch.add(other, LOOPBACK, GRE, memoryview(frame(3)))
        assert received(receiver) == [GRE + frame(1), GRE + frame(2)]
        batch.flush()
        [last] = received(receiver)
    assert last == GRE + frame(3)


def test_a_message_the_kernel_refuses_is_counted_and_the_rest_still_leave(udp) -> None:
    """255.255.255.255 without SO_BROADCAST: EACCES for that message alone."""
    sender, receiver, port = udp
    drops = [0] * len(Drop)
    batch = SendBatch(drops, port)
    batch.add(sender, LOOPBACK, GRE, memoryview(frame(1)))
    batch.add(sender, b"\xff\xff\xff\xff", GRE, memoryview(frame(2)))
    batch.add(sender, LOOPBACK, GRE, memoryview(frame(3)))
    batch.flush()
    assert received(receiver) == [GRE + frame(1), GRE + frame(3)]
    assert nonzero(drops) == {"PROVIDER_UNREACHABLE": 1}


def test_datagrams_to_their_endpoints_leave_in_order_with_the_nvgre_before_them(udp) -> None:
    """A tunnel's UDP datagrams go in the same batch (each to its peer's endpoint),
    after the NVGRE gathered for another socket."""
    sender, receiver, port = udp
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.setblocking(False)
        other.bind(("127.0.0.1", 0))
        second = ("127.0.0.1", other.getsockname()[1])
        batch = SendBatch([0] * len(Drop), port)
        batch.add(other, LOOPBACK, GRE, memoryview(frame(1)))  # from the other socket
        batch.add(sender, ("127.0.0.1", port), b"", frame(2))
        assert received(receiver) == [GRE + frame(1)]  # another socket: sent first
        batch.add(sender, second, b"", bytearray(frame(3)))
        batch.add(sender, ("127.0.0.1", port), b"", frame(4))
        assert received(receiver) == []
        batch.flush()
        assert received(receiver) == [frame(2), frame(4)]
        assert received(other) == [frame(3)]


def test_past_its_bound_the_batch_forgets_addresses_after_sending_what_uses_them(
    udp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Peers' endpoints roam: the sockaddrs kept are bounded, and forgetting them never
    frees one a gathered message still points to."""
    sender, receiver, port = udp
    monkeypatch.setattr(send_batch, "MAX_ADDRESSES", 2)
    batch = SendBatch([0] * len(Drop), port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.1", 0))
        other.setblocking(False)
        endpoints = [("127.0.0.1", port), ("127.0.0.1", other.getsockname()[1])]
        for i in range(6):
            batch.add(sender, endpoints[i % 2], b"", frame(i))
            batch.add(sender, ("127.0.0.2", 9), b"", frame(i))  # a third: past the bound
        batch.flush()
        assert received(receiver) == [frame(i) for i in range(0, 6, 2)]
        assert received(other) == [frame(i) for i in range(1, 6, 2)]
    assert len(batch._addresses) <= 2


def test_framed_packets_carry_their_own_length_and_checksum_whichever_sizes_came_before(
    udp,
) -> None:
    """The outer headers an Outer keeps by frame size: each packet's IPv4 total
    length and checksum are its own, sizes past the ones kept included (they are
    built again), and no more than ``HEADER_SIZES`` are kept. A connected UDP socket
    stands in for the link's packet socket (no address per message either)."""
    sender, receiver, port = udp
    sender.connect(("127.0.0.1", port))
    src, dst = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])
    outer = Outer.for_pair((src, dst), sender.fileno(), b"\x02" * 12 + b"\x08\x00", 64)
    batch = SendBatch([0] * len(Drop))
    frames = [frame(i) for i in range(HEADER_SIZES + 5)] * 2
    for data in frames:
        batch.add_framed(outer, GRE, memoryview(data))
        batch.flush()
    datagrams = received(receiver)
    assert len(datagrams) == len(frames)
    for datagram, data in zip(datagrams, frames, strict=True):
        ip = Ether(datagram)[IP]
        assert (ip.src, ip.dst, ip.ttl, ip.flags, ip.proto) == (
            "198.18.0.1",
            "198.18.0.2",
            64,
            "DF",
            47,
        )
        assert ip.len == len(datagram) - 14 == 20 + len(GRE) + len(data)
        unsummed = IP(datagram[14:34])
        del unsummed.chksum  # scapy computes it again
        assert ip.chksum == IP(bytes(unsummed)).chksum
        assert bytes(ip.payload) == GRE + data
    assert 0 < len(outer.headers) <= HEADER_SIZES


class FailingSendmmsg:
    """Stands in for libc's sendmmsg: each call takes the next planned outcome (a
    count sent, or an errno), as the kernel reports a failure on the message after
    the ones it sent."""

    def __init__(self, plan: list[int | str]) -> None:
        self.plan = plan
        self.calls: list[int] = []  # messages offered per call

    def __call__(self, fd: int, msgs: int, count: int, flags: int) -> int:
        self.calls.append(count)
        outcome = self.plan.pop(0)
        if isinstance(outcome, str):
            ctypes.set_errno(getattr(errno, outcome))
            return -1
        return min(outcome, count)


@pytest.mark.parametrize(
    ("plan", "calls", "drops"),
    [
        pytest.param([2, "EMSGSIZE", 10], [6, 4, 3], {"TOO_BIG": 1}, id="too-big-skipped"),
        pytest.param(
            ["ENETUNREACH", "EHOSTUNREACH", 10],
            [6, 5, 4],
            {"PROVIDER_UNREACHABLE": 2},
            id="unreachable-skipped",
        ),
        pytest.param([3, "EAGAIN"], [6, 3], {"TX_FULL": 3}, id="full-socket-drops-the-rest"),
        pytest.param(["ENOBUFS"], [6], {"TX_FULL": 6}, id="no-buffers-drops-all"),
    ],
)
def test_send_failures_are_counted_by_kind(
    udp, monkeypatch: pytest.MonkeyPatch, plan: list[int | str], calls: list[int], drops: dict
) -> None:
    sender, _receiver, port = udp
    fake = FailingSendmmsg(plan)
    monkeypatch.setattr(send_batch, "sendmmsg", fake)
    counted = [0] * len(Drop)
    batch = SendBatch(counted, port)
    for i in range(6):
        batch.add(sender, LOOPBACK, GRE, memoryview(frame(i)))
    batch.flush()
    assert fake.calls == calls
    assert nonzero(counted) == drops
    batch.flush()  # everything was accounted for: nothing is offered again
    assert fake.calls == calls
