"""The data plane's ``Output``, carried out on real file descriptors.

Every write is tried at once and never waited for: a full TAP queue or socket
buffer costs that one packet (``TX_FULL``), counted, instead of a queue that grows
without bound or an await in the middle of a batch. Errors are counted by kind,
never logged per packet. NVGRE is gathered over a reader's batch and sent by
``flush`` (``send_batch.py``), which every reader calls before it waits: framed by
the daemon on the provider link when ``link_tx.py`` has resolved the pair of PAs,
else by the kernel on the source PA's raw GRE socket.
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

    __slots__ = ("_sockaddrs", "batch", "drops", "gre", "link", "outer", "tap_fds", "udp", "wanted")

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
        try:
            os.write(fd, frame)
        except BlockingIOError:
            self.drops[Drop.TX_FULL] += 1
        except OSError as error:
            self.drops[Drop.PORT_DOWN if error.errno in _TAP_GONE else Drop.TX_FULL] += 1

    def to_provider(self, src_pa: bytes, dst_pa: bytes, gre: bytes, frame: memoryview) -> None:
        outer = self.outer.get(dst_pa)
        if outer is not None and outer[0] == src_pa and len(frame) <= FRAMED_BYTES:
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
        """Send the NVGRE gathered since the last flush (the readers' end of batch)."""
        self.batch.flush()

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
