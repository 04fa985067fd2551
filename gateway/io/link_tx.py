"""NVGRE framed by the daemon and sent on the provider link itself
(``--provider-tx link``, the default); the kernel still routes and resolves.

Why: a raw GRE socket has the kernel build the outer IPv4 header, route the datagram
and find its next hop, per packet. Measured on the project's machine (64-byte inner
frames into a veth, 64 per ``sendmmsg``): 2.4-2.6 us of system time per packet that
way, 1.3-1.5 us for the same packets framed here and sent on an AF_PACKET socket
bound to the link. On the gateway's TAP -> NVGRE path that is a sixth of a packet.

What the daemon writes, per pair of PAs (``send_batch.Outer``): the Ethernet header to
the next hop's MAC, and the IPv4 header the raw socket's would be (DF set, as with
IP_PMTUDISC_DO; the kernel's default TTL; protocol 47; ID 0, which RFC 6864 allows
for an atomic datagram) with its total length and checksum left to
``Outer.header``, per frame size.

What the kernel still decides, asked by ``refresh`` in a worker thread every
``REFRESH_S``:

- where a PA is: a pair with no ``Outer`` goes the kernel's way (the raw GRE socket,
  which has the kernel route it and resolve its next hop) and is noted
  (``FdOutput.wanted``); the refresh asks the kernel for the pair's route (``ip route
  get``: policy routing and gateways hold) and frames the pair from then on if it
  leaves by an Ethernet link;
- the next hop's MAC, read from the kernel's neighbour table (``/proc/net/arp``) at
  every refresh: a MAC that changed is followed within ``REFRESH_S``, and a neighbour
  the kernel no longer has (failed, flushed) sends its pairs the kernel's way again;
- whether the next hop is still there: every ``VERIFY_S`` each pair's route is asked
  again and its next hop marked used (NTF_USE), so the kernel confirms a stale entry
  (STALE, DELAY, PROBE) as if its own packets went there, which they no longer do.

What the kernel's way has and this one bypasses: the IP layer's netfilter hooks
(OUTPUT, POSTROUTING) and a route's learned path MTU (the link's MTU bounds what
leaves: a bigger datagram is refused and counted ``too_big``, as with
IP_PMTUDISC_DO). ``--provider-tx kernel`` keeps them.
"""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple

import anyio
import anyio.to_thread
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from gateway.io.provider import link_mac
from gateway.io.send_batch import Outer
from gateway.wire import ETHERTYPE_IPV4

if TYPE_CHECKING:
    from gateway.io.output import FdOutput

REFRESH_S: Final = 1.0
VERIFY_S: Final = 30.0
# Pairs framed at most (their PAs are the policy's: few); beyond, the kernel's way.
MAX_PAIRS: Final = 4096
# Route lookups per refresh (about a millisecond each, holding the GIL): the
# worker's share of the data plane's core stays small whatever the policy's size.
MAX_LOOKUPS: Final = 128
TX_PROTOCOL: Final = 0  # the packet sockets send only: bound to no protocol, they receive nothing
_RTN_UNICAST: Final = 1
_NTF_USE: Final = 0x01  # linux/neighbour.h: "the kernel's own packets used this entry"
_ARPHRD_ETHER: Final = 1
_ATF_COM: Final = 0x02  # /proc/net/arp's flags: the entry holds a MAC (linux/if_arp.h)
_ETHERTYPE: Final = ETHERTYPE_IPV4.to_bytes(2, "big")


class _Route(NamedTuple):
    """Where the kernel sends a pair's datagrams: out of ``interface`` to ``next_hop``
    (the destination itself, or the route's gateway), as asked at ``asked``."""

    ifindex: int
    interface: str
    next_hop: str
    asked: float


class LinkTx:
    """The provider links' packet sockets and the pairs of PAs framed on them. The
    routes are the worker thread's (one refresh at a time); ``FdOutput.outer`` is
    replaced whole, on the event loop, after each refresh."""

    def __init__(self) -> None:
        self._routes: dict[tuple[bytes, bytes], _Route] = {}
        self._sockets: dict[int, socket.socket] = {}  # by ifindex, opened when first routed to
        self._framed: dict[tuple[bytes, bytes], Outer] = {}  # rebuilt only when a MAC changes
        self._ttl = int(Path("/proc/sys/net/ipv4/ip_default_ttl").read_text())

    async def run(self, output: FdOutput) -> None:
        while True:
            await anyio.sleep(REFRESH_S)
            await self.refresh(output)

    async def refresh(self, output: FdOutput) -> None:
        """Frame the pairs noted since the last refresh, and follow the kernel's
        routes and neighbours for those already framed."""
        assert output.wanted is not None
        noted = list(output.wanted)
        output.wanted.clear()
        output.outer = await anyio.to_thread.run_sync(self._resolve, noted)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def _resolve(self, noted: list[tuple[bytes, bytes]]) -> dict[bytes, Outer]:
        """The pairs' outer headers (by destination PA), as the kernel routes them now."""
        routes = self._routes
        now = time.monotonic()
        new = [pair for pair in noted if pair not in routes][: MAX_PAIRS - len(routes)]
        due = [pair for pair, route in routes.items() if now - route.asked >= VERIFY_S]
        lookups = (new + due)[:MAX_LOOKUPS]
        if lookups:
            with IPRoute() as ipr:
                for pair in lookups:
                    route = _route(ipr, pair, now)
                    if route is None:
                        routes.pop(pair, None)  # the kernel's way, noted again if still used
                        continue
                    if pair in routes:  # a framed pair verified: its next hop marked used
                        _mark_used(ipr, route)
                    routes[pair] = route
        macs = _neighbours()
        own: dict[str, bytes] = {}  # each link's own MAC, read once per refresh
        outer: dict[bytes, Outer] = {}
        framed: dict[tuple[bytes, bytes], Outer] = {}
        for pair, route in list(routes.items()):
            mac = macs.get((route.interface, route.next_hop))
            if mac is None:
                del routes[pair]  # lost by the kernel: its way until it resolves again
                continue
            if route.interface not in own:
                own[route.interface] = link_mac(route.interface)
            ethernet = mac + own[route.interface] + _ETHERTYPE
            fd = self._socket(route)
            known = self._framed.get(pair)
            if known is None or known.fd != fd or not known.head.startswith(ethernet):
                known = Outer.for_pair(pair, fd, ethernet, self._ttl)
            framed[pair] = known
            if pair[1] not in outer:  # one source PA per destination; another goes the kernel's way
                outer[pair[1]] = known
        self._framed = framed
        return outer

    def _socket(self, route: _Route) -> int:
        sock = self._sockets.get(route.ifindex)
        if sock is None:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, TX_PROTOCOL)
            sock.setblocking(False)
            sock.bind((route.interface, TX_PROTOCOL))
            self._sockets[route.ifindex] = sock
        return sock.fileno()


def _route(ipr: IPRoute, pair: tuple[bytes, bytes], now: float) -> _Route | None:
    """The kernel's route for datagrams from ``pair[0]`` to ``pair[1]``, if it leaves
    by an Ethernet link to a unicast next hop."""
    src, dst = (socket.inet_ntoa(pa) for pa in pair)
    try:
        found = ipr.route("get", dst=dst, src=src)
    except NetlinkError:
        return None  # no route (or the source is no longer ours)
    if not found or found[0]["type"] != _RTN_UNICAST:
        return None
    ifindex = found[0].get_attr("RTA_OIF")
    try:
        interface = socket.if_indextoname(ifindex)
        link_type = int(Path(f"/sys/class/net/{interface}/type").read_text())
    except (OSError, ValueError):
        return None
    if link_type != _ARPHRD_ETHER:
        return None
    return _Route(ifindex, interface, found[0].get_attr("RTA_GATEWAY") or dst, now)


def _mark_used(ipr: IPRoute, route: _Route) -> None:
    with contextlib.suppress(NetlinkError):  # gone meanwhile: the neighbour table says so next
        ipr.neigh("replace", dst=route.next_hop, ifindex=route.ifindex, flags=_NTF_USE, state=0)


def _neighbours() -> dict[tuple[str, str], bytes]:
    """The kernel's IPv4 neighbours that hold a MAC, by (interface, address)."""
    macs = {}
    with open("/proc/net/arp") as table:
        next(table)  # the column names
        for line in table:
            address, _, flags, mac, _, interface = line.split()
            if int(flags, 16) & _ATF_COM:
                macs[interface, address] = bytes.fromhex(mac.replace(":", ""))
    return macs
