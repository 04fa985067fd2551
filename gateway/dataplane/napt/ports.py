"""External ports (TCP and UDP ports, ICMP echo identifiers) of the NAT's address
pool: which are free, handed out in O(1) however full the range is.

One ``PortAllocator`` per (external address, protocol) keeps its free ports in a
ring (an ``array('H')``, two bytes a port) and a flag byte per port. Ports never
handed out yet come first, each taken at random among them (a Fisher-Yates shuffle
done one step per allocation, so a table is built without shuffling 64,512 ports
first: RFC 6056 sec. 3, external ports an off-path attacker cannot guess; the seed
may be fixed). Releasing appends to the ring's tail, and once the fresh ports are
gone the ring is taken in order: a port just given up is the last to be handed out
again (the longest quiet time before a new session reuses it, the role TCP's
TIME_WAIT plays for one host). Never a port in use: a port is in the ring at most
once, and only while no session and no port forward holds it.

Port forwards take their port out of circulation with ``reserve``; a reserved port
still in the ring is skipped (and dropped from it) when it reaches the head, so a
reservation is O(1) and every allocation amortised O(1).

RFC 4787 REQ-3 recommends mapping a source port below 1024 to one below 1024; the
default range is 1024-65535 for every source port instead: a privileged source port
means nothing across the internet. The gateway's port forwards live outside the range
(below 1024 by default, or wherever ``nodes.NAME.nat.dynamic_ports`` leaves room), so
they never meet a session.
"""

from __future__ import annotations

import random
import zlib
from array import array
from collections.abc import Sequence
from typing import Final

from gateway.policy import DYNAMIC_PORTS  # first and last port handed out, by default
from gateway.wire import IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_ADDR_SIZE

_PORT_SPACE: Final = 0x10000
PROTOCOLS: Final = (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP)  # each its own port space
_IN_RING: Final = 1
_IN_USE: Final = 2  # a session's mapping holds it
_RESERVED: Final = 4  # a port forward holds it


class PortAllocator:
    """The ports of one external address and protocol."""

    __slots__ = ("_count", "_flags", "_fresh", "_head", "_random", "_ring", "first", "last")

    def __init__(self, first: int, last: int, rng: random.Random) -> None:
        if not 1 <= first <= last <= 0xFFFF:
            raise ValueError(f"a port range is within 1-65535: {first}-{last}")
        self.first, self.last = first, last
        self._ring = array("H", range(first, last + 1))
        self._head = 0
        self._count = self._fresh = len(self._ring)  # the first _fresh of the ring: never used
        self._random = rng.random
        self._flags = bytearray(_PORT_SPACE)
        self._flags[first : last + 1] = bytes([_IN_RING]) * len(self._ring)

    @property
    def free(self) -> int:
        """Ports the ring holds (reserved ones not yet skipped included)."""
        return self._count

    def allocate(self) -> int:
        """A free port, now in use; -1 when none is left."""
        ring, flags = self._ring, self._flags
        size = len(ring)
        while self._count:
            head = self._head
            if self._fresh:  # one Fisher-Yates step over the ports never handed out
                pick = (head + int(self._random() * self._fresh)) % size
                ring[head], ring[pick] = ring[pick], ring[head]
                self._fresh -= 1
            port = ring[head]
            self._head = (head + 1) % size
            self._count -= 1
            if flags[port] & _RESERVED:
                flags[port] = _RESERVED  # out of the ring; back when unreserved
                continue
            flags[port] = _IN_USE
            return port
        return -1

    def release(self, port: int) -> None:
        """A session's mapping gave ``port`` up: free again, unless a forward holds it."""
        flags = self._flags
        if not flags[port] & _IN_USE:
            raise ValueError(f"port {port} is not in use")
        flags[port] &= ~_IN_USE
        self._free(port)

    def reserve(self, port: int) -> None:
        """Hold ``port`` for a port forward; ValueError if a session or another forward
        holds it (keep forwards out of the dynamic range and that never happens)."""
        flags = self._flags
        if flags[port] & (_IN_USE | _RESERVED):
            raise ValueError(f"port {port} is already in use")
        flags[port] |= _RESERVED

    def unreserve(self, port: int) -> None:
        flags = self._flags
        if not flags[port] & _RESERVED:
            raise ValueError(f"port {port} is not reserved")
        flags[port] &= ~_RESERVED
        self._free(port)

    def in_use(self, port: int) -> bool:
        return bool(self._flags[port] & (_IN_USE | _RESERVED))

    def _free(self, port: int) -> None:
        flags = self._flags
        if flags[port] or not self.first <= port <= self.last:
            return  # still held, already in the ring, or never handed out by it
        ring = self._ring
        ring[(self._head + self._count) % len(ring)] = port
        self._count += 1
        flags[port] = _IN_RING


class AddressPool:
    """The NAT's external addresses, each with a ``PortAllocator`` per protocol.

    Pooling is "paired" (RFC 4787 REQ-2): every mapping of one tenant's internal
    address takes the same external address, chosen by a stable hash of (RDID, CA),
    so a server that ties a session to the client's address sees one client. Only
    when that address has no port left for the protocol is the next one tried."""

    __slots__ = ("addresses", "allocators", "ports")

    def __init__(
        self,
        addresses: Sequence[bytes],
        ports: tuple[int, int] = DYNAMIC_PORTS,
        seed: int | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("NAPT needs at least one external address")
        if len(set(addresses)) != len(addresses):
            raise ValueError("an external address is listed twice")
        for address in addresses:
            if len(address) != IPV4_ADDR_SIZE:
                raise ValueError("an external address is 4 bytes")
        rng = random.Random(seed)
        self.addresses = tuple(bytes(a) for a in addresses)
        self.ports = ports  # (first, last) of each allocator
        self.allocators = {
            (address, protocol): PortAllocator(*ports, rng)
            for address in self.addresses
            for protocol in PROTOCOLS
        }

    def allocate(self, rdid: str, ca: bytes, protocol: int) -> tuple[bytes, int]:
        """(external address, port) for a new mapping of ``ca``; port -1: exhausted."""
        addresses = self.addresses
        first = zlib.crc32(ca, zlib.crc32(rdid.encode())) % len(addresses)
        for step in range(len(addresses)):
            address = addresses[(first + step) % len(addresses)]
            port = self.allocators[address, protocol].allocate()
            if port >= 0:
                return address, port
        return addresses[first], -1
