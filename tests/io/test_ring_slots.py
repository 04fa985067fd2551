"""RingSlots.drain over a buffer laid out as the kernel lays out a TPACKET_V2 ring:
what it hands over, in which order, what it counts and what it gives back, including
across the ring's end (the real ring's tests, ``test_ring.py``, never wrap 8,000
slots). No root, no socket."""

from __future__ import annotations

import struct

import pytest

from gateway.errors import Drop
from gateway.io.linux import TP_STATUS_KERNEL, TP_STATUS_USER
from gateway.io.ring import SNAP_BAD_CHECKSUM, SNAP_OTHER_HOST, RingSlots

FRAME_SIZE = 256
SLOTS = 8
MAC = 64  # where the kernel puts the frame (after the header and sockaddr_ll)
NET = MAC + 14  # the IP header
HEADER = struct.Struct("=IIIHH")  # status, len, snaplen, mac, net


class Ring:
    """A buffer of slots, a RingSlots over it, and what it handed over."""

    def __init__(self) -> None:
        self.memory = bytearray(FRAME_SIZE * SLOTS)
        self.drops = [0] * len(Drop)
        self.faults: list[tuple[str, bytes]] = []
        self.slots = RingSlots(memoryview(self.memory), FRAME_SIZE, self.drops, self.on_fault)
        self.handed: list[bytes] = []

    def on_fault(self, error: Exception, frame: memoryview) -> None:
        self.faults.append((str(error), bytes(frame)))

    def fill(self, slot: int, payload: bytes, snaplen: int | None = None) -> None:
        """What the kernel does: the frame (an Ethernet header, then ``payload``),
        the header, and last the status."""
        frame = bytes(14) + payload
        offset = slot * FRAME_SIZE
        self.memory[offset + MAC : offset + MAC + len(frame)] = frame
        status = TP_STATUS_USER | 0x80  # with another flag (as TP_STATUS_CSUM_VALID)
        taken = len(frame) if snaplen is None else snaplen
        HEADER.pack_into(self.memory, offset, status, len(frame), taken, MAC, NET)

    def status(self, slot: int) -> int:
        return struct.unpack_from("=I", self.memory, slot * FRAME_SIZE)[0]

    def handle(self, node: object, frame: memoryview) -> None:
        assert node == "node"
        self.handed.append(bytes(frame))
        if frame[0] == 0xEE:
            raise ValueError("a bug in the data plane")

    def drain(self, limit: int = 64) -> int:
        return self.slots.drain(self.handle, "node", limit)


def payload(n: int) -> bytes:
    return bytes([n]) * (20 + n)


def test_drain_hands_over_ready_slots_in_order_up_to_the_first_the_kernel_owns() -> None:
    ring = Ring()
    for slot in (0, 1, 2, 4):  # 3 not yet filled: 4 must wait for it
        ring.fill(slot, payload(slot))
    assert ring.drain() == 3
    assert ring.handed == [payload(0), payload(1), payload(2)]
    assert [ring.status(s) for s in range(5)] == [TP_STATUS_KERNEL] * 4 + [TP_STATUS_USER | 0x80]
    assert ring.slots.index == 3
    ring.fill(3, payload(3))
    assert ring.drain() == 2
    assert ring.handed[3:] == [payload(3), payload(4)]
    assert ring.drain() == 0


def test_drain_goes_on_across_the_rings_end_and_stops_at_its_limit() -> None:
    ring = Ring()
    for slot in range(SLOTS):
        ring.fill(slot, payload(slot))
    assert ring.drain(limit=SLOTS - 2) == SLOTS - 2
    assert ring.status(SLOTS - 2) != TP_STATUS_KERNEL, "past the limit: not taken"
    for slot in range(SLOTS - 2):  # the kernel fills the slots it got back
        ring.fill(slot, payload(10 + slot))
    assert ring.drain(limit=5) == 5  # the last two slots, then three from the start
    assert ring.handed[SLOTS - 2 :] == [
        payload(6),
        payload(7),
        payload(10),
        payload(11),
        payload(12),
    ]
    assert ring.slots.index == 3
    assert [ring.status(s) for s in range(SLOTS)] == (
        [TP_STATUS_KERNEL] * 3 + [TP_STATUS_USER | 0x80] * 3 + [TP_STATUS_KERNEL] * 2
    )


def test_a_raising_handler_costs_its_frame_only_and_every_slot_goes_back() -> None:
    ring = Ring()
    ring.fill(0, payload(1))
    ring.fill(1, b"\xee" + payload(2))
    ring.fill(2, payload(3))
    assert ring.drain() == 3
    assert ring.handed == [payload(1), b"\xee" + payload(2), payload(3)]
    assert ring.faults == [("a bug in the data plane", b"\xee" + payload(2))]
    assert [ring.status(s) for s in range(3)] == [TP_STATUS_KERNEL] * 3


@pytest.mark.parametrize(
    ("snaplen", "drop"),
    [
        (SNAP_BAD_CHECKSUM, Drop.IP_CHECKSUM),
        (SNAP_OTHER_HOST, Drop.FOREIGN_MAC),
        (40, Drop.TRUNCATED),  # longer than its slot: the kernel took part of it
    ],
)
def test_the_filters_stubs_and_a_truncated_frame_are_counted_not_handed(
    snaplen: int, drop: Drop
) -> None:
    ring = Ring()
    ring.fill(0, payload(30), snaplen=snaplen)
    ring.fill(1, payload(2))
    assert ring.drain() == 2
    assert ring.handed == [payload(2)]
    assert [Drop(i) for i, n in enumerate(ring.drops) if n] == [drop]
    assert ring.drops[drop] == 1
    assert [ring.status(s) for s in range(2)] == [TP_STATUS_KERNEL] * 2


def test_a_fault_handler_that_raises_still_hands_the_run_on_and_nothing_twice() -> None:
    ring = Ring()

    def broken(error: Exception, frame: memoryview) -> None:
        raise RuntimeError("the fault handler's own bug")

    ring.slots.on_fault = broken
    ring.fill(0, b"\xee" + payload(1))
    ring.fill(1, payload(2))
    with pytest.raises(RuntimeError):
        ring.drain()
    assert [ring.status(s) for s in range(2)] == [TP_STATUS_KERNEL] * 2
    assert ring.slots.index == 2
    assert ring.drain() == 0
    assert ring.handed == [b"\xee" + payload(1)]  # the second frame lost, none handled twice
