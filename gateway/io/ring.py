"""An AF_PACKET receive ring (TPACKET_V2) for NVGRE on the provider interface.

Why: with a raw socket every datagram costs a recv syscall, and the kernel is most
of the per-packet cost (bench-anchors: 80 % of a bare loop's core is system time).
A ring is memory shared with the kernel: it fills frames while we read them, and we
make a syscall (poll) only when the ring is empty. Measured on this project's path,
V2 with real gateway work delivers about 1.3x a bare blocking loop, within 0.02 ms
of its latency; V3's block-retire timer adds half a millisecond at low rates.

A classic BPF filter keeps everything but GRE to this node's own NVGRE PAs out of
the ring, and PACKET_IGNORE_OUTGOING keeps our own sends out. The kernel's IP stack
would get the frames too: the node's nftables table drops them at the interface's
ingress, after the ring's copy (``ingress_drop.py``); where it cannot be made, the raw
GRE socket the sender keeps open stops the kernel from answering them with ICMP
protocol-unreachable, and a drop-everything filter on that socket keeps it from
queueing copies for it (``attach_drop_all``).

Nothing in the kernel checks what an AF_PACKET socket reads, so the filter does what
IP input would (``gre_filter``): it verifies the outer IPv4 header checksum of every
option-less header (the data plane checks those with options, its slow path) and
refuses frames sent to another host's MAC. Both are counted, at no cost to a good
frame: the filter keeps 1 or 2 bytes of such a frame instead of all of it, and
``drain`` counts by that length. A host firewall (nftables, iptables) sees none of
this: AF_PACKET taps frames before netfilter, so the ring takes what the filter takes
whatever the firewall says.

Frames are read in place: the handler gets a memoryview from the outer IP header on
and must be done with it when it returns, because the frame goes back to the kernel.
"""

from __future__ import annotations

import ctypes
import mmap
import socket
import struct
from collections.abc import Callable, Collection
from typing import Final, TypeVar

from gateway.errors import Drop
from gateway.io.linux import (
    ETH_P_ALL,
    PACKET_IGNORE_OUTGOING,
    PACKET_RX_RING,
    PACKET_STATISTICS,
    PACKET_VERSION,
    SO_ATTACH_FILTER,
    SOL_PACKET,
    TP_STATUS_KERNEL,
    TPACKET_V2,
)
from gateway.wire import (
    ETH_HEADER_SIZE,
    ETH_OFFSET_TYPE,
    ETHERTYPE_IPV4,
    IPPROTO_GRE,
    IPV4_HEADER_SIZE,
    IPV4_OFFSET_DST,
    IPV4_OFFSET_PROTOCOL,
    IPV4_VIHL_NO_OPTIONS,
)

# struct tpacket2_hdr (linux/if_packet.h) opens each frame slot: u32 status, len,
# snaplen, then u16 mac and net offsets (bytes 12 and 14). ``drain`` reads the status
# words of a run of slots at once and each ready slot's header in one unpack.
_SLOT_HEADER: Final = struct.Struct("=4xIIHH").unpack_from  # len, snaplen, mac, net
# ``drain``'s runs of slots: the first this long, each next one this many times the
# last while they come back full (4, 16, 64, 256: a full batch of 256 in four).
_FIRST_RUN: Final = 4
_RUN_GROWTH: Final = 4
TPACKET_REQ: Final = struct.Struct("=IIII")  # block size, block count, frame size, frames
TPACKET_STATS: Final = struct.Struct("=II")  # packets, drops (reset by each read)

# Each frame slot holds the tpacket header, the sockaddr_ll and the frame: 2 KiB fits
# a 1500-byte underlay's largest frame; bigger MTUs get the next power of two.
FRAME_HEADROOM: Final = 128
BLOCK_BYTES: Final = 1 << 22  # 4 MiB blocks (a multiple of the page and frame sizes)
RING_BYTES: Final = 16 << 20  # ~8000 frames of 2 KiB: ~25 ms of a saturated veth

# Classic BPF (linux/filter.h), as (code, jt, jf, k).
_LDH, _LDB, _LDW = 0x28, 0x30, 0x20  # load a half-word, byte, word at absolute offset k
_JEQ = 0x15  # jump jt ahead if A == k, else jf ahead
_RET = 0x06  # accept k bytes of the frame (0: drop it)
_TAX, _ADDX, _MOD = 0x07, 0x0C, 0x94  # X = A; A += X; A %= k
_PKTTYPE: Final = 0xFFFFF000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE: the frame's pkt_type
_PACKET_OTHERHOST: Final = 3  # to another host's unicast MAC (linux/if_packet.h)
_JUMP_MAX: Final = 255  # jt and jf are one byte
# Offsets in the Ethernet frame: ethertype 12, outer IPv4 at 14 (protocol 23, dst 30).
_IP: Final = ETH_HEADER_SIZE
_PROTOCOL: Final = _IP + IPV4_OFFSET_PROTOCOL
_DST: Final = _IP + IPV4_OFFSET_DST
_HEADER_WORDS: Final = IPV4_HEADER_SIZE // 2  # an option-less header's 16-bit words
_ACCEPT: Final = 0x40000  # the whole frame (any snaplen above the largest frame)
# What the filter keeps of a frame it refuses but wants counted: lengths no real frame
# has, which ``drain`` tells from a whole frame and from one cut by its slot.
SNAP_BAD_CHECKSUM: Final = 1
SNAP_OTHER_HOST: Final = 2
# A node's NVGRE PAs on one interface, each one compare (jump offsets are one byte).
MAX_FILTER_PAS: Final = 128
_DROP_ALL: Final = ((_RET, 0, 0, 0),)

Instruction = tuple[int, int, int, int]
Node = TypeVar("Node")  # a role's data-plane state: the handler's first argument


def gre_filter(pas: Collection[bytes]) -> tuple[Instruction, ...]:
    """The ring's socket filter: IPv4 GRE to one of ``pas`` (packed IPv4), sent to
    this host, whose option-less header checksum is right; the rest dropped, or kept
    as a counted stub (``SNAP_*``).

    The checksum is right when the one's-complement sum of the header's ten 16-bit
    words is 0xFFFF (RFC 1071). Since 2**16 = 1 (mod 0xFFFF), that sum is congruent to
    the plain sum of the words, and a header starting 0x45 is never all zeros: it is
    right exactly when the plain sum is 0 mod 0xFFFF, which classic BPF computes with
    loads, adds and one modulo (it has no loops)."""
    if not 1 <= len(pas) <= MAX_FILTER_PAS:
        raise ValueError(f"a ring filters 1..{MAX_FILTER_PAS} PAs, not {len(pas)}")
    ordered = sorted(pas)
    code: list[str | tuple[int, int | str, int | str, int]] = [
        (_LDH, 0, 0, ETH_OFFSET_TYPE),
        (_JEQ, 0, "drop", ETHERTYPE_IPV4),
        (_LDB, 0, 0, _PROTOCOL),
        (_JEQ, 0, "drop", IPPROTO_GRE),
        (_LDW, 0, 0, _DST),
        *((_JEQ, "ours", 0, int.from_bytes(pa)) for pa in ordered[:-1]),
        (_JEQ, "ours", "drop", int.from_bytes(ordered[-1])),
        "ours",
        (_LDB, 0, 0, _PKTTYPE),
        (_JEQ, "other_host", 0, _PACKET_OTHERHOST),
        (_LDB, 0, 0, _IP),
        (_JEQ, 0, "accept", IPV4_VIHL_NO_OPTIONS),  # options: the slow path checks them
        (_LDH, 0, 0, _IP),
    ]
    for word in range(1, _HEADER_WORDS):
        code += [(_TAX, 0, 0, 0), (_LDH, 0, 0, _IP + 2 * word), (_ADDX, 0, 0, 0)]
    code += [
        (_MOD, 0, 0, 0xFFFF),
        (_JEQ, "accept", "bad_checksum", 0),
        "accept",
        (_RET, 0, 0, _ACCEPT),
        "bad_checksum",
        (_RET, 0, 0, SNAP_BAD_CHECKSUM),
        "other_host",
        (_RET, 0, 0, SNAP_OTHER_HOST),
        "drop",
        (_RET, 0, 0, 0),
    ]
    return _assemble(code)


def _assemble(code: list[str | tuple[int, int | str, int | str, int]]) -> tuple[Instruction, ...]:
    """Resolve labels (a bare string names the instruction after it; a jump may name
    one) into the forward offsets classic BPF wants."""
    labels: dict[str, int] = {}
    instructions = []
    for entry in code:
        if isinstance(entry, str):
            labels[entry] = len(instructions)
        else:
            instructions.append(entry)
    program = []
    for n, (op, jt, jf, k) in enumerate(instructions):
        jumps = [labels[j] - n - 1 if isinstance(j, str) else j for j in (jt, jf)]
        if not all(0 <= j <= _JUMP_MAX for j in jumps):
            raise ValueError(f"jump out of range at instruction {n}: {jumps}")
        program.append((op, jumps[0], jumps[1], k))
    return tuple(program)


def _attach(sock: socket.socket, program: tuple[Instruction, ...]) -> None:
    """SO_ATTACH_FILTER wants a struct sock_fprog: a length and a pointer, so the
    instructions live in a ctypes buffer for the call (the kernel copies them)."""
    code = b"".join(struct.pack("=HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def attach_drop_all(sock: socket.socket) -> None:
    """A socket that must exist but never receive (the raw GRE sender, once the ring
    reads): the filter runs before queueing, so no copy piles up in its buffer."""
    _attach(sock, _DROP_ALL)


class RingSlots:
    """The frame slots of a TPACKET_V2 receive ring, in whatever memory holds them
    (the kernel's mapping in ``ReceiveRing``; a buffer of a test's own): the ready
    ones handed to a handler in order and handed back to the kernel.

    A slot holds a status word (TP_STATUS_KERNEL, 0, until the kernel fills it and
    sets it as a whole, after the frame), the rest of its tpacket2_hdr and the frame.
    A frame longer than its slot is TRUNCATED, never half-handled; the filter's stubs
    count as IP_CHECKSUM and FOREIGN_MAC. ``on_fault`` gets a frame the handler
    raised on (``gateway.io.faults``).
    """

    def __init__(
        self,
        memory: memoryview,
        frame_size: int,
        drops: list[int],
        on_fault: Callable[[Exception, memoryview], None],
    ) -> None:
        self.view = memory
        self.frame_size = frame_size
        self.frames = len(memory) // frame_size
        # The status words, read and written back as strided runs of native u32.
        self.words = memory.cast("I")
        self.slot_words = frame_size // self.words.itemsize
        self._kernel = memoryview(bytes(self.words.itemsize * self.frames)).cast("I")
        self.index = 0  # the next slot to read
        self.drops = drops
        self.on_fault = on_fault

    def drain(self, handle: Callable[[Node, memoryview], None], node: Node, limit: int) -> int:
        """Call ``handle(node, frame)`` for up to ``limit`` ready frames (the data
        plane's ``from_provider`` itself: no wrapper call per packet); how many.

        The slots' status words are read and handed back a run at a time, as one
        strided slice each (``_ready_run``, ``_release``): per frame the loop only
        reads the header and calls ``handle``, about 1,500 fewer instructions a frame
        than a status read and write each (``bench/``). Runs start short and grow
        while they come back full: each status word read is a cache line of its own,
        cold when the ring is quiet, so a lone frame reads four of them, not the
        batch's 256 (which cost a quiet host 15-30 us of latency a frame). A slot
        stays ours until its run is released, after its frames were handled (a
        frame's view must not outlive ``handle``, which holds for the run too).

        The barrier: a frame the handler raises on goes to ``on_fault`` and the loop
        resumes with the next frame of the run. One ``try`` around the loop costs
        nothing per frame (Python 3.11 sets up no handler until one raises), and
        nothing in the loop but ``handle`` can raise."""
        view, drops, frame_size = self.view, self.drops, self.frame_size
        handled = 0
        run = _FIRST_RUN
        while handled < limit:
            index = self.index
            most = min(run, limit - handled, self.frames - index)
            ready = self._ready_run(index, most)
            if not ready:
                break
            start = index * frame_size
            offsets = iter(range(start, start + ready * frame_size, frame_size))
            try:
                while True:
                    try:
                        for offset in offsets:
                            length, snaplen, mac, net = _SLOT_HEADER(view, offset)
                            if snaplen == length:
                                handle(node, view[offset + net : offset + mac + snaplen])
                            elif snaplen == SNAP_BAD_CHECKSUM:
                                drops[Drop.IP_CHECKSUM] += 1
                            elif snaplen == SNAP_OTHER_HOST:
                                drops[Drop.FOREIGN_MAC] += 1
                            else:
                                drops[Drop.TRUNCATED] += 1
                        break
                    except Exception as error:  # from handle(): this frame is dropped
                        self.on_fault(error, view[offset + net : offset + mac + snaplen])
            finally:  # the run handed on whatever happened, never handled twice
                self._release(index, ready)
                self.index = 0 if index + ready == self.frames else index + ready
            handled += ready
            if ready < most:  # the kernel's slot next: nothing more now
                break
            run *= _RUN_GROWTH
        return handled

    def _ready_run(self, index: int, most: int) -> int:
        """How many slots from ``index`` on (at most ``most``) the kernel has handed
        over: their status words in one strided read, up to the first the kernel
        still owns (TP_STATUS_KERNEL, 0: the kernel sets a slot's status as a whole,
        after the frame, so a nonzero word is a filled slot)."""
        first = index * self.slot_words
        statuses = self.words[first : first + most * self.slot_words : self.slot_words].tolist()
        try:
            return statuses.index(TP_STATUS_KERNEL)
        except ValueError:
            return most

    def _release(self, index: int, count: int) -> None:
        """Hand ``count`` slots from ``index`` on back to the kernel, in one write."""
        first = index * self.slot_words
        self.words[first : first + count * self.slot_words : self.slot_words] = self._kernel[:count]

    def release_views(self) -> None:
        """Let go of the memory (a handler that kept a frame view: BufferError)."""
        self.words.release()
        self.view.release()


class ReceiveRing(RingSlots):
    """The ring on one interface; ``drain()`` hands each GRE frame to a handler.

    ``pas`` are this node's NVGRE PAs on ``interface`` (the filter takes GRE to them
    only); ``on_fault`` gets a frame the handler raised on (``gateway.io.faults``).
    """

    def __init__(
        self,
        interface: str,
        mtu: int,
        drops: list[int],
        pas: Collection[bytes],
        on_fault: Callable[[Exception, memoryview], None],
        ring_bytes: int = RING_BYTES,
    ) -> None:
        frame_size = 1 << (mtu + ETH_HEADER_SIZE + FRAME_HEADROOM - 1).bit_length()
        block_count = max(1, ring_bytes // BLOCK_BYTES)
        frames = block_count * (BLOCK_BYTES // frame_size)
        self.pas = frozenset(pas)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            _attach(self.sock, gre_filter(self.pas))
            self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
            self.sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            request = TPACKET_REQ.pack(BLOCK_BYTES, block_count, frame_size, frames)
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
            self.ring = mmap.mmap(self.sock.fileno(), block_count * BLOCK_BYTES)
            self.sock.bind((interface, ETH_P_ALL))
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        super().__init__(memoryview(self.ring), frame_size, drops, on_fault)
        self.kernel_drops = 0  # frames the kernel found no free slot for

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_kernel_drops(self) -> int:
        """Add up the kernel's drop count (it resets on each read) and return the total."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, TPACKET_STATS.size)
        self.kernel_drops += TPACKET_STATS.unpack(raw)[1]
        return self.kernel_drops

    def close(self) -> None:
        self.sock.close()
        try:
            self.release_views()
            self.ring.close()
        except BufferError:  # a handler kept a frame view: the GC unmaps it later
            pass
