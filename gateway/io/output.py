"""The data plane's ``Output``, carried out on real file descriptors.

What a reader's batch decides is gathered and written by ``flush``, which every
reader calls at the end of each batch, before it waits or the others get a turn (so
nothing waits longer than the batch it was decided in): NVGRE (``send_batch.py``),
framed by the daemon on the provider link when ``link_tx.py`` has resolved the pair
of PAs, else by the kernel on the source PA's raw GRE socket; and the TAPs' frames,
copied (the reader's buffer holds the next frame), then written one ``write`` each,
in the order they were decided. Why the TAP writes wait for the batch's end: back to
back, with the data plane's Python run before them rather than between them, the
kernel's side of a write costs less; on the gateway's NVGRE -> TAP path (64-byte
frames, this project's machine) 1.4-1.5 us of system time per frame against 1.7-1.9
interleaved, the copy included in the user time.

Every write is tried once and never waited for: a full TAP queue or socket buffer
costs that one packet (``TX_FULL``), counted, instead of a queue that grows without
bound or an await in the middle of a batch. Errors are counted by kind, never logged
per packet.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket

from gateway.dataplane import NamedTap
from gateway.errors import Drop
from gateway.io.link_tx import MAX_PAIRS
from gateway.io.send_batch import FRAMED_BYTES, SLOT_BYTES, Outer, SendBatch, send_drop

_TAP_GONE = frozenset((errno.EIO, errno.EBADF, errno.ENODEV, errno.EPERM))


class FdOutput:
    """Writes to TAP fds and provider sockets. ``tap_fds`` and ``gre`` are the
    daemon's live mappings, updated when ports or PAs come and go. ``tap_fds`` holds
    every TAP the daemon owns, by interface name, whatever stands behind it (a VM's
    port today; ``gateway.dataplane.output`` says why one map serves every role)."""

    __slots__ = (
        "_sockaddrs",
        "_tap_frames",
        "batch",
        "drops",
        "gre",
        "link",
        "outer",
        "tap_fds",
        "udp",
        "wanted",
    )

    def __init__(
        self,
        drops: list[int],
        tap_fds: dict[str, int],
        gre: dict[bytes, socket.socket],
        link: socket.socket | None = None,
        udp: dict[int, socket.socket] | None = None,
    ) -> None:
        self.drops = drops
        self.udp = {} if udp is None else udp  # a gateway's tunnel sockets, by listen port
        self.tap_fds = tap_fds
        self.gre = gre
        self.link = link
        self.batch = SendBatch(drops)
        # The batch's TAP frames, (fd, frame) in the order decided: at most what one
        # batch's frames give (a frame, its fragments, an ARP request), then written.
        self._tap_frames: list[tuple[int, bytes]] = []
        # With ``--provider-tx link``: the pairs of PAs framed on the link, by
        # destination (``LinkTx`` replaces it), and those sent the kernel's way since
        # its last refresh, for it to resolve (None: no ``LinkTx``, nothing noted).
        self.outer: dict[bytes, Outer] = {}
        self.wanted: set[tuple[bytes, bytes]] | None = None
        # Packed PA -> the (address, port) sendmsg takes, built once per PA rather than
        # a call and a tuple per packet (PAs come from the policy: few).
        self._sockaddrs: dict[bytes, tuple[str, int]] = {}

    def to_tap(self, tap: NamedTap, frame: memoryview | bytes) -> None:
        fd = self.tap_fds.get(tap.name)
        if fd is None:
            self.drops[Drop.PORT_DOWN] += 1
            return
        self._tap_frames.append((fd, bytes(frame)))

    def to_provider(self, src_pa: bytes, dst_pa: bytes, gre: bytes, frame: memoryview) -> None:
        outer = self.outer.get(dst_pa)
        if outer is not None and outer.src == src_pa and len(frame) <= FRAMED_BYTES:
            self.batch.add_framed(outer, gre, frame)
            return
        sock = self.gre.get(src_pa)
        if sock is None:
            self.drops[Drop.PROVIDER_UNREACHABLE] += 1
            return
        wanted = self.wanted
        if wanted is not None and len(wanted) < MAX_PAIRS:
            wanted.add((src_pa, dst_pa))
        if len(gre) + len(frame) <= SLOT_BYTES:
            self.batch.add(sock, dst_pa, gre, frame)
            return
        self.batch.flush()  # a jumbo packet goes alone, after those decided before it
        to = self._sockaddrs.get(dst_pa)
        if to is None:
            to = self._sockaddrs[dst_pa] = (str(ipaddress.ip_address(dst_pa)), 0)
        try:
            sock.sendmsg([gre, frame], (), 0, to)
        except OSError as error:  # as a batch's failures are counted
            self.drops[send_drop(error.errno)] += 1

    def flush(self) -> None:
        """Write what was gathered since the last flush (the readers' end of batch):
        the NVGRE, then the TAPs' frames. A TAP that went away since (its fd closed
        between batches: never within one) costs its frames, counted."""
        self.batch.flush()
        frames = self._tap_frames
        if not frames:
            return
        write, drops = os.write, self.drops
        for fd, frame in frames:
            try:
                write(fd, frame)
            except BlockingIOError:
                drops[Drop.TX_FULL] += 1
            except OSError as error:
                drops[Drop.PORT_DOWN if error.errno in _TAP_GONE else Drop.TX_FULL] += 1
        frames.clear()

    def to_udp(
        self, port: int, endpoint: tuple[str, int], datagram: bytes | bytearray | memoryview
    ) -> None:
        sock = self.udp.get(port)
        if sock is None:
            self.drops[Drop.PROVIDER_UNREACHABLE] += 1
            return
        if len(datagram) <= SLOT_BYTES:
            self.batch.add(sock, endpoint, b"", datagram, segmented=True)
            return
        self.batch.flush()  # bigger than a slot: alone, after those decided before it
        try:
            sock.sendto(datagram, endpoint)
        except OSError as error:  # as a batch's failures are counted
            self.drops[send_drop(error.errno)] += 1

    def to_provider_link(self, frame: memoryview | bytes) -> None:
        if self.link is None:
            self.drops[Drop.PROVIDER_UNREACHABLE] += 1
            return
        try:
            self.link.send(frame)
        except BlockingIOError:
            self.drops[Drop.TX_FULL] += 1
        except OSError:
            self.drops[Drop.PROVIDER_UNREACHABLE] += 1
