"""The per-packet barrier's other half: what becomes of a packet the data plane raised on.

The data plane never raises on a packet's account (refusals are counted drops), so an
exception out of it is a bug. One bad frame must still never stop a node: each reader
(``daemon.py``, and the ring's ``drain``) catches what its handler raises, hands the
frame here and goes on with the next one. Here it is counted as ``internal_error`` and
logged as the bug it is, in a way a flood of such frames cannot turn into a flood of
logs or a leak of tenant data:

* at most one event per ``FAULT_LOG_INTERVAL_S``; the ones held back are counted in
  the next event (and every one of them in the drop counter);
* the frame's headers only (Ethernet, ARP, IP, GRE, and the 8 bytes after the last IP
  header, the ports or ICMP type an ICMP error quotes, RFC 792): never its payload;
* the traceback the first time each place in the code is logged, the place alone
  (file, line, function) after that.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Final

import structlog

from gateway.errors import Drop
from gateway.wire import (
    ARP_IPV4_SIZE,
    ETH_HEADER_SIZE,
    ETH_OFFSET_TYPE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_TEB,
    GRE_BASE_SIZE,
    GRE_FLAG_C,
    GRE_FLAG_K,
    GRE_FLAG_S,
    GRE_OFFSET_PROTOCOL,
    IPPROTO_GRE,
    IPV4_HEADER_SIZE,
    IPV4_IHL_MASK,
    IPV4_OFFSET_PROTOCOL,
    IPV6_HEADER_SIZE,
    IPV6_OFFSET_NEXT_HEADER,
    IPV6_VERSION,
)

FAULT_LOG_INTERVAL_S: Final = 5.0
MAX_SITES: Final = 256  # places whose traceback was logged; code has few, so never reached
QUOTED_AFTER_IP: Final = 8  # RFC 792: an ICMP error quotes 8 bytes past the IP header
HEADERS_MAX: Final = 128  # outer IPv4 60 + GRE 16 + Ethernet 14 + inner 40 fits with room
# The GRE fields a flag adds, 4 bytes each (RFC 2890 sec. 2): checksum and reserved
# (C), key (K), sequence number (S); the flags as bits of the header's first byte.
_GRE_OPTIONAL: Final = tuple((flag >> 8, 4) for flag in (GRE_FLAG_C, GRE_FLAG_K, GRE_FLAG_S))
_LAYERS_MAX: Final = 6  # Ethernet, IP, GRE, Ethernet, IP: a GRE-in-GRE chain stops here

Fault = Callable[[Exception, memoryview], None]

log = structlog.get_logger("nvgw")


def header_length(data: memoryview, ethernet: bool) -> int:
    """How many leading bytes of ``data`` are headers (see the module docstring):
    ``ethernet`` for a frame (TAP, provider link), else an IP datagram (NVGRE).
    Reads hostile bytes: never raises, never more than ``len(data)``."""
    size = len(data)
    at = 0
    layer = "ethernet" if ethernet else "ip"
    for _ in range(_LAYERS_MAX):
        if layer == "ethernet":
            if size < at + ETH_HEADER_SIZE:
                return size
            ethertype = data[at + ETH_OFFSET_TYPE] << 8 | data[at + ETH_OFFSET_TYPE + 1]
            at += ETH_HEADER_SIZE
            if ethertype == ETHERTYPE_ARP:
                return min(size, at + ARP_IPV4_SIZE)
            if ethertype not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
                return at
            layer = "ip"
        elif layer == "ip":
            if size < at + IPV4_HEADER_SIZE:
                return size
            if data[at] >> 4 == IPV6_VERSION:
                protocol = (
                    data[at + IPV6_OFFSET_NEXT_HEADER] if size >= at + IPV6_HEADER_SIZE else -1
                )
                at += IPV6_HEADER_SIZE
            else:
                protocol = data[at + IPV4_OFFSET_PROTOCOL]
                at += max(IPV4_HEADER_SIZE, (data[at] & IPV4_IHL_MASK) * 4)
            if protocol != IPPROTO_GRE:
                return min(size, at + QUOTED_AFTER_IP)
            layer = "gre"
        else:
            if size < at + GRE_BASE_SIZE:
                return size
            flags = data[at]
            protocol = data[at + GRE_OFFSET_PROTOCOL] << 8 | data[at + GRE_OFFSET_PROTOCOL + 1]
            at += GRE_BASE_SIZE + sum(extra for bit, extra in _GRE_OPTIONAL if flags & bit)
            if protocol != ETHERTYPE_TEB:
                return min(size, at)
            layer = "ethernet"
    return min(size, at)


class PacketFaults:
    """Counts and logs the packets the readers' barrier caught (one per daemon)."""

    def __init__(
        self,
        drops: list[int],
        interval_s: float = FAULT_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.drops = drops
        self.interval_s = interval_s
        self.clock = clock
        self._last: float | None = None
        self._held_back = 0
        self._sites: set[tuple[str, str, int]] = set()

    def reader(self, source: str, *, ethernet: bool) -> Fault:
        """The barrier's callback for one reader: ``source`` names it in the log (a
        TAP's name, the provider ring's interface), ``ethernet`` says how its frames
        begin (an Ethernet header, or the outer IP header of NVGRE)."""

        def fault(error: Exception, frame: memoryview) -> None:
            self.record(source, error, frame, ethernet)

        return fault

    def record(self, source: str, error: Exception, frame: memoryview, ethernet: bool) -> None:
        self.drops[Drop.INTERNAL_ERROR] += 1
        now = self.clock()
        if self._last is not None and 0 <= now - self._last < self.interval_s:
            self._held_back += 1
            return
        self._last = now
        where = traceback.extract_tb(error.__traceback__)[-1:]
        filename, line, function = (
            (where[0].filename, where[0].lineno or 0, where[0].name) if where else ("?", 0, "?")
        )
        site = (type(error).__name__, filename, line)
        first = site not in self._sites and len(self._sites) < MAX_SITES
        if first:
            self._sites.add(site)
        log.error(
            "packet raised: dropped, reader carries on",
            reader=source,
            error=type(error).__name__,
            message=str(error)[:200],
            where=f"{filename}:{line} in {function}",
            frame_bytes=len(frame),
            headers=bytes(frame[: min(header_length(frame, ethernet), HEADERS_MAX)]).hex(),
            held_back=self._held_back,
            traceback="".join(traceback.format_exception(error)) if first else None,
        )
        self._held_back = 0
