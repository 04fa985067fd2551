"""NVGRE (and a tunnel's UDP datagrams) gathered over a reader's batch and handed
to the kernel in one sendmmsg(2).

A raw GRE send costs more in the kernel's entry and in Python's argument handling
(the iovec list, the address tuple) than the per-packet work it does: measured on
the project's machine, one ``sendmsg`` per 64-byte NVGRE packet took ~0.6 us of
Python and ~3.3 us of system time; copying the packet into a slot here and sending
64 slots with one ``sendmmsg`` took ~0.5 us and ~2.4 us. The readers (``readers.py``)
call ``flush`` after every batch, before they wait, so nothing waits here across an
await: at a low rate a batch is one packet, sent at once.

The slots, the iovecs and the mmsghdrs are allocated once; per packet, the packet
is copied into its slot and two fields are written (its length, its destination).
A packet too big for a slot (jumbo frames) is not batched: the caller flushes first,
then sends it alone, so packets leave in the order they were decided.

The same slots carry NVGRE framed by the daemon for the provider link's packet
socket (``add_framed``, ``link_tx.py`` says why): the outer Ethernet and IPv4
headers in front, no destination address (the socket's link is the way out).
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from typing import Final

from gateway.errors import Drop
from gateway.io.mmsg import (
    IOV_STRIDE,
    MSG_STRIDE,
    Iovec,
    Mmsghdr,
    SockaddrIn,
    msg_field,
    sendmmsg,
    word_index,
    words,
)
from gateway.io.udp_segments import REFUSED, Segments, kernel_segments
from gateway.wire import ETH_HEADER_SIZE, IPPROTO_GRE, IPV4_DF, ones_complement_sum

MAX_ADDRESSES: Final = 4096  # destinations whose sockaddr is kept (``SendBatch._remember``)
SLOTS: Final = 64  # a reader's batch (``readers.BATCH``): one sendmmsg each; a ring's takes four
# A 1500-byte underlay's largest NVGRE payload (GRE header and inner frame) with
# room to spare; bigger packets go alone (``FdOutput.to_provider``).
SLOT_BYTES: Final = 2048

_IOV_LEN: Final = word_index(Iovec.iov_len.offset)
_MSG_NAME: Final = msg_field("msg_name")
# A framed packet's outer headers: Ethernet and IPv4's first word, the total length,
# the words up to the checksum, the checksum, the addresses; the 8-byte GRE header
# follows them.
_OUTER_HEADERS: Final = struct.Struct("!16sH6sH8s")
_IPV4: Final = struct.Struct("!BBHHHBBH4s4s")  # RFC 791's header, no options
_GRE_SIZE: Final = 8
_HEADERS: Final = _OUTER_HEADERS.size + _GRE_SIZE
_IP_AND_GRE: Final = _HEADERS - ETH_HEADER_SIZE
FRAMED_BYTES: Final = SLOT_BYTES - _HEADERS  # the largest frame behind them
# Frame sizes whose outer headers one Outer keeps: a flow's packets come in a few
# sizes (full segments, ACKs), and past this many the kept ones are dropped, so a
# link's thousands of pairs (``link_tx.MAX_PAIRS``) hold under 2 KB each.
HEADER_SIZES: Final = 16
_NO_ROOM: Final = frozenset((errno.EAGAIN, errno.ENOBUFS))


class Outer:
    """How NVGRE from ``src`` to one PA is framed on the provider link: on the packet
    socket ``fd``, behind the Ethernet header to the next hop and an IPv4 header in
    the pieces its total length and checksum go between (``head``: Ethernet, version
    and TOS; ``middle``: ID, flags, TTL, protocol; ``addresses``), whose words sum to
    ``partial`` (folded). A class with slots, not a named tuple: its fields are read
    per packet, and a slot is read faster than a named tuple is unpacked.

    ``headers`` keeps the outer headers built for each frame size (``header``): a
    kept one is one lookup per packet where building it is a pack of five fields and
    the checksum's arithmetic (about 830 fewer instructions per packet, callgrind)."""

    __slots__ = ("addresses", "fd", "head", "headers", "middle", "partial", "src")

    def __init__(
        self, src: bytes, fd: int, head: bytes, middle: bytes, addresses: bytes, partial: int
    ) -> None:
        self.src, self.fd, self.head, self.middle = src, fd, head, middle
        self.addresses, self.partial = addresses, partial
        self.headers: dict[int, bytes] = {}

    @classmethod
    def for_pair(cls, pair: tuple[bytes, bytes], fd: int, ethernet: bytes, ttl: int) -> Outer:
        """NVGRE from ``pair[0]`` to ``pair[1]`` framed behind ``ethernet`` (the next
        hop's MAC, the link's, the IPv4 type) on ``fd``: the IPv4 header the raw
        socket's would be (DF, ``ttl``, protocol 47, ID 0), cut where ``header``
        writes the total length (after its first word) and the checksum (after its
        fifth), its other words summed once."""
        src, dst = pair
        ip = _IPV4.pack(0x45, 0, 0, 0, IPV4_DF, ttl, IPPROTO_GRE, 0, src, dst)
        return cls(src, fd, ethernet + ip[:2], ip[4:10], ip[12:], ones_complement_sum(ip))

    def header(self, size: int) -> bytes:
        """The Ethernet and IPv4 headers in front of the GRE header and a ``size``-byte
        frame, kept (at most ``HEADER_SIZES`` sizes): the IPv4 total length and the
        header checksum are the packet's own, the checksum an addition to ``partial``
        and a fold (RFC 1071)."""
        length = _IP_AND_GRE + size
        total = self.partial + length
        checksum = ((total & 0xFFFF) + (total >> 16)) ^ 0xFFFF
        header = _OUTER_HEADERS.pack(self.head, length, self.middle, checksum, self.addresses)
        if len(self.headers) >= HEADER_SIZES:
            self.headers.clear()
        self.headers[size] = header
        return header


def send_drop(error: int) -> Drop:
    """The drop a provider send that failed with ``error`` counts as: no room in the
    socket (TX_FULL), too big for the path (TOO_BIG), or no way there."""
    if error in _NO_ROOM:
        return Drop.TX_FULL
    return Drop.TOO_BIG if error == errno.EMSGSIZE else Drop.PROVIDER_UNREACHABLE


class SendBatch:
    """Up to ``SLOTS`` packets for one socket, sent by ``flush``; a packet for another
    socket flushes what was gathered first. Send errors are counted as drops by kind
    (``Drop.TX_FULL`` when the socket has no room: the rest of the batch with it;
    ``TOO_BIG``; ``PROVIDER_UNREACHABLE``), never raised. ``port`` is the
    destinations' port: 0 for raw GRE (tests send UDP)."""

    __slots__ = (
        "_addresses",
        "_base",
        "_count",
        "_fd",
        "_framed",
        "_framed_base",
        "_iov",
        "_lengths",
        "_msgs",
        "_msgs_base",
        "_names",
        "_segmented",
        "_segments",
        "_slots",
        "_sockaddrs",
        "drops",
        "port",
        "segmenting",
    )

    def __init__(self, drops: list[int], port: int = 0) -> None:
        self.drops = drops
        self.port = port
        self._fd = -1
        self._count = 0
        self._slots = memoryview(bytearray(SLOTS * SLOT_BYTES))
        self._iov = bytearray(SLOTS * IOV_STRIDE)
        self._msgs = bytearray(SLOTS * MSG_STRIDE)
        slots = (ctypes.c_char * len(self._slots)).from_buffer(self._slots)
        iov = (ctypes.c_char * len(self._iov)).from_buffer(self._iov)
        msgs = (Mmsghdr * SLOTS).from_buffer(self._msgs)
        # The framed packets' messages: the same slots, no address (the link is the
        # way out), so that nothing per packet has to clear one.
        framed = (Mmsghdr * SLOTS)()
        for i in range(SLOTS):
            vector = Iovec.from_buffer(self._iov, i * IOV_STRIDE)
            vector.iov_base = ctypes.addressof(slots) + i * SLOT_BYTES
            for message, name_size in ((msgs[i], ctypes.sizeof(SockaddrIn)), (framed[i], 0)):
                header = message.msg_hdr
                header.msg_namelen = name_size
                header.msg_iov = ctypes.addressof(iov) + i * IOV_STRIDE
                header.msg_iovlen = 1
        self._msgs_base = self._base = ctypes.addressof(msgs)
        self._framed_base = ctypes.addressof(framed)
        self._framed = framed  # kept alive: the kernel reads it
        # Each slot's iov_len and each message's msg_name, as items of native words:
        # an item written costs half a pack_into (the fields are word-aligned, and
        # the strides whole words).
        self._lengths = words(self._iov)[_IOV_LEN :: word_index(IOV_STRIDE)]
        self._names = words(self._msgs)[_MSG_NAME :: word_index(MSG_STRIDE)]
        # A destination (a packed PA; a tunnel peer's (address, port)) -> its
        # sockaddr_in (kept alive here) and that one's address; bounded (``_remember``).
        self._sockaddrs: dict[object, SockaddrIn] = {}
        self._addresses: dict[object, int] = {}
        # Datagrams gathered for ``segmented`` sends go as runs (``udp_segments.py``)
        # while ``segmenting`` holds: where the kernel has runs, until it refuses one.
        self._segments = Segments(SLOTS, ctypes.addressof(iov), IOV_STRIDE)
        self._segmented = False
        self.segmenting = kernel_segments()

    def add(
        self,
        sock: socket.socket,
        to: bytes | tuple[str, int],
        gre: bytes,
        frame: memoryview | bytes | bytearray,
        segmented: bool = False,
    ) -> None:
        """Gather ``gre`` + ``frame`` for ``to`` on ``sock``, together at most
        ``SLOT_BYTES``: NVGRE for a packed PA (on a raw GRE socket, port ``self.port``),
        or a tunnel's UDP datagram (``gre`` empty) for its peer's (address, port),
        ``segmented``: sent in runs (``udp_segments.py``) while the kernel takes them.
        Sent when the batch is full, else by ``flush``."""
        fd = sock.fileno()
        if fd != self._fd or segmented is not self._segmented:
            if self._count:
                self.flush()
            self._fd = fd
            self._base = self._msgs_base
            self._segmented = segmented
        address = self._addresses.get(to)
        if address is None:
            address = self._remember(to)
        count = self._count
        start = count * SLOT_BYTES
        header_end = start + len(gre)
        end = header_end + len(frame)
        slots = self._slots
        if gre:  # a tunnel's datagram has none: an empty slice assignment costs ~760
            slots[start:header_end] = gre
        slots[header_end:end] = frame
        self._lengths[count] = end - start
        self._names[count] = address
        self._count = count = count + 1
        if count == SLOTS:
            self.flush()

    def add_framed(self, outer: Outer, gre: bytes, frame: memoryview) -> None:
        """Gather the 8-byte ``gre`` + ``frame`` behind ``outer``'s headers for its
        size (``Outer.header``), for its link socket; ``frame`` at most
        ``FRAMED_BYTES``."""
        fd = outer.fd
        if fd != self._fd:
            if self._count:
                self.flush()
            self._fd = fd
            self._base = self._framed_base
            self._segmented = False
        count = self._count
        start = count * SLOT_BYTES
        size = len(frame)
        header = outer.headers.get(size)
        if header is None:
            header = outer.header(size)
        slots = self._slots
        end = start + _HEADERS
        slots[start:end] = header + gre  # one write: a slice assignment costs ~450
        slots[end : end + size] = frame
        self._lengths[count] = _HEADERS + size
        self._count = count = count + 1
        if count == SLOTS:
            self.flush()

    def flush(self) -> None:
        """Send what was gathered: one sendmmsg, or more when one message fails (it
        is counted and skipped, the rest sent)."""
        count = self._count
        if not count:
            return
        self._count = 0
        if self._segmented and self.segmenting and count > 1:
            self._send_runs(count)
        else:
            self._send(0, count)

    def _send(self, first: int, end: int) -> None:
        """Slots ``first`` to ``end`` (not included), a message each."""
        sent = first
        drops = self.drops
        while sent < end:
            done = sendmmsg(self._fd, self._base + sent * MSG_STRIDE, end - sent, 0)
            if done > 0:
                sent += done
                continue
            reason = send_drop(ctypes.get_errno())
            if reason is Drop.TX_FULL:
                drops[reason] += end - sent  # the socket is full: so is the rest
                return
            drops[reason] += 1
            sent += 1

    def _send_runs(self, count: int) -> None:
        """The ``count`` datagrams gathered, in runs. A run the kernel fails goes
        again one datagram at a time, so each gets its own verdict (and a kernel
        that takes no runs gets none from here on); no room fails the rest, as in
        ``_send``."""
        runs = self._segments.build(self._names, self._lengths, count)
        base = self._segments.base
        done, slot = 0, 0
        while done < len(runs):
            sent = sendmmsg(self._fd, base + done * MSG_STRIDE, len(runs) - done, 0)
            if sent > 0:
                slot += sum(runs[done : done + sent])
                done += sent
                continue
            error, run = ctypes.get_errno(), runs[done]
            if error in _NO_ROOM:
                self.drops[Drop.TX_FULL] += count - slot
                return
            if run > 1:
                if error in REFUSED:
                    self.segmenting = False
                self._send(slot, slot + run)
            else:
                self.drops[send_drop(error)] += 1
            slot += run
            done += 1

    def _remember(self, to: bytes | tuple[str, int]) -> int:
        """The address of a sockaddr_in for ``to``, kept. Destinations come from the
        policy (PAs) and from authenticated peers (their endpoints, which roam): past
        ``MAX_ADDRESSES`` the gathered packets leave and the addresses they point to
        are forgotten, so none grows without bound."""
        if len(self._addresses) >= MAX_ADDRESSES:
            self.flush()
            self._addresses.clear()
            self._sockaddrs.clear()
        if isinstance(to, tuple):
            packed, port = socket.inet_aton(to[0]), to[1]
        else:
            packed, port = to, self.port
        address_bytes = (ctypes.c_ubyte * len(packed)).from_buffer_copy(packed)
        sockaddr = SockaddrIn(socket.AF_INET, socket.htons(port), address_bytes)
        self._sockaddrs[to] = sockaddr
        address = self._addresses[to] = ctypes.addressof(sockaddr)
        return address
