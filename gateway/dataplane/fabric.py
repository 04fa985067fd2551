"""Every node of a deployment on one provider network made of lists (sans-IO).

The tests, ``nvgw trace``, ``nvgw replay`` and the lab's expectations all need what
the kernel and the provider network do between daemons; this module is the one
place that does it. aioquic tests two endpoints by handing each one's datagrams to
the other in a plain loop (``client_and_server()`` and ``transfer()`` in its
tests/test_connection.py); ``Fabric.carry`` is that loop for a whole policy.

Each node runs its real data plane over the policy, built on first use (a trace
meets two nodes of eight hundred, and building one costs the policy's size), with
an Output that collects. What one data-plane call sends waits *in flight* until
``carry`` moves it on, as the network would:

* NVGRE (``to_provider``) gets the outer IPv4 header the kernel's raw GRE socket
  adds, and goes to the node that owns its destination PA (to none: it is lost, as
  on a real network).
* A frame on the provider link (``to_provider_link``: IP-Rewrite and its ARP) is
  switched by destination MAC, as a bridge does: to the node with that MAC, a group
  address to every other node on the link. A node is on the link when it holds an
  IP-Rewrite PA, since only then does its daemon open its link socket (the kernel
  takes the rest); it gets a stand-in MAC there, ``link_mac``.
* A frame written to a TAP (``to_tap``) has arrived: ``deliveries`` records it, in
  order. A VM's port is such a TAP; a routing domain's TAP will be another.
* A UDP datagram (``to_udp``: a site-to-site tunnel's WireGuard message) is recorded
  in its step and in ``udp_log``; its peer is no node of the policy but the test's
  (or nobody's), so the test hands it over and gives the answers back
  (``from_tunnel``); ``tick`` runs a gateway's tunnel timers. A gateway's tunnel
  keys are the fabric's to give (``tunnel_keys``, ``make_device``), as the daemon
  reads them from files.

A packet that keeps crossing the network is stopped after ``MAX_HOPS`` crossings
and counted in ``looped``. Each data-plane call is one ``Step``: the node, the drops
it counted by reason, what it wrote to TAPs, sent in NVGRE and put on the link and,
when the fabric traces, the lookups its tables answered, in order (the tables are
built with a ``LookupTracer``; a daemon's are built without one and never see it).

Time is an argument: every call takes ``now`` and gives it to the node, as the io
layer does once per batch.

Each role brings its own state class and handlers: ``_build`` makes a node by its
role (a ``HostNode`` or a ``GatewayNode``), ``tap`` finds one of its TAPs by name (a
VM's port, a gateway's TAP), and the entry points call the role's handlers; carrying,
deliveries and steps are the same for both, so a gateway's TAP is recorded as a VM's
port is, and a frame can be given to it (``from_tap``, ``send``) as a VM's stack
gives one to its port: the tests play the corp side that way. A gateway holds no
IP-Rewrite PA, so it is never on the provider link.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from gateway.dataplane.counters import Counters
from gateway.dataplane.gateway_node import GatewayNode
from gateway.dataplane.gateway_provider import gateway_from_provider
from gateway.dataplane.gateway_tables import ExternalTap, GatewayTables, GatewayTap
from gateway.dataplane.gateway_tap import gateway_from_tap
from gateway.dataplane.gateway_tunnel import DeviceFactory, TunnelKeys
from gateway.dataplane.gateway_wireguard import gateway_from_tunnel, gateway_tunnel_tick
from gateway.dataplane.host import HostNode
from gateway.dataplane.ip_rewrite import from_provider_link
from gateway.dataplane.output import NamedTap
from gateway.dataplane.plan import ip_rewrite_pas
from gateway.dataplane.provider_side import from_provider
from gateway.dataplane.tables import HostPort, HostTables
from gateway.dataplane.vm_side import from_port
from gateway.errors import BadPacket, Drop
from gateway.policy import NodeRole, Snapshot
from gateway.wire import (
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    BROADCAST_MAC,
    ETH_ADDR_SIZE,
    ETH_GROUP_BIT,
    ETH_HEADER_SIZE,
    ETH_OFFSET_DST,
    ETHERTYPE_ARP,
    IPPROTO_GRE,
    IPV4_ADDR_SIZE,
    IPV4_OFFSET_DST,
    ZERO_MAC,
    build_arp,
    build_ethernet,
    build_ipv4,
    parse_arp,
    parse_ethernet,
)

MAX_HOPS: Final = 16  # network crossings of one packet before the fabric calls it a loop
Node = HostNode | GatewayNode
_LINK_MAC_PREFIX: Final = b"\x02\x00"  # locally administered, then the node's number


def link_mac(index: int) -> bytes:
    """The stand-in MAC on the provider link of the policy's ``index``-th node
    (``02-00-00-00-00-01`` for the first)."""
    return _LINK_MAC_PREFIX + (index + 1).to_bytes(ETH_ADDR_SIZE - len(_LINK_MAC_PREFIX), "big")


class Delivery(NamedTuple):
    node: str
    tap: str  # the TAP's interface name: a VM's port, a gateway's TAP
    frame: bytes


@dataclass(slots=True)
class Step:
    """One data-plane call on one node and what came of it."""

    node: str
    hops: int  # network crossings of the packet before this call
    drops: dict[Drop, int] = field(default_factory=dict)  # reason -> count, in Drop order
    taps: list[tuple[NamedTap, bytes]] = field(default_factory=list)
    nvgre: list[tuple[bytes, bytes, bytes]] = field(
        default_factory=list
    )  # src PA, dst PA, datagram
    link: list[bytes] = field(default_factory=list)  # frames put on the provider link
    udp: list[tuple[int, tuple[str, int], bytes]] = field(
        default_factory=list
    )  # listen port, endpoint, datagram
    lookups: list[tuple[str, Any, Any]] = field(default_factory=list)  # table, key, found


class _Collect:
    """A node's Output in the fabric: everything goes into the current step, copied
    (the data plane's frames are views over buffers the io layer reuses)."""

    __slots__ = ("step",)

    def __init__(self) -> None:
        self.step = Step("", 0)

    def to_tap(self, tap: NamedTap, frame: memoryview | bytes) -> None:
        self.step.taps.append((tap, bytes(frame)))

    def to_provider(self, src_pa: bytes, dst_pa: bytes, gre: bytes, frame: memoryview) -> None:
        payload = gre + bytes(frame)
        outer = build_ipv4(src_pa, dst_pa, IPPROTO_GRE, len(payload))  # what the kernel adds
        self.step.nvgre.append((bytes(src_pa), bytes(dst_pa), outer + payload))

    def to_provider_link(self, frame: memoryview | bytes) -> None:
        self.step.link.append(bytes(frame))

    def to_udp(
        self, port: int, endpoint: tuple[str, int], datagram: bytes | bytearray | memoryview
    ) -> None:
        self.step.udp.append((port, endpoint, bytes(datagram)))


class Fabric:
    """The nodes of one policy snapshot and the network between them."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        trace: bool = False,
        tunnel_keys: Mapping[str, TunnelKeys] | None = None,
        make_device: DeviceFactory | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.tunnel_keys = dict(tunnel_keys or {})  # by gateway node name
        self.make_device = make_device
        self.udp_log: list[tuple[str, int, tuple[str, int], bytes]] = []  # node, port, to, data
        self.nodes: dict[str, Node] = {}  # those built so far, by name
        self.deliveries: list[Delivery] = []  # every frame written to a TAP, in order
        self.link_log: list[bytes] = []  # every frame put on the provider link, in order
        self.in_flight: deque[tuple[str, bool, bytes, int]] = deque()  # sender, on link, data, hops
        self.looped = 0  # packets stopped after MAX_HOPS crossings
        self._tracer = _Tracer() if trace else None
        policy = snapshot.policy
        rewrite_pas = ip_rewrite_pas(policy)
        self._link_macs = {
            node.name: link_mac(index)
            for index, node in enumerate(policy.nodes)
            if node.role is NodeRole.HOST
            and any(pa.pa.packed in rewrite_pas for pa in node.provider_addresses)
        }
        self._owners = _owners(snapshot)

    # ------------------------------------------------------------------ the nodes

    def node(self, name: str) -> Node:
        """The node's data plane, built on first use (KeyError: no such node)."""
        built = self.nodes.get(name)
        if built is None:
            built = self.nodes[name] = self._build(name)
        return built

    def _build(self, name: str) -> Node:
        counters = Counters()
        if self.snapshot.policy.node(name).role is NodeRole.GATEWAY:
            keys = self.tunnel_keys.get(name)
            tables = GatewayTables(self.snapshot, name, counters, self._tracer, keys)
            return GatewayNode(self.snapshot, name, _Collect(), counters, tables, self.make_device)
        host = HostTables(self.snapshot, name, counters, self._tracer)
        return HostNode(self.snapshot, name, _Collect(), counters, self._link_macs.get(name), host)

    def swap(self, snapshot: Snapshot) -> None:
        """Every node adopts ``snapshot`` (a policy change), keeping its counters and
        neighbours; the link's members stay, as each daemon opens its link at start."""
        self.snapshot = snapshot
        self._owners = _owners(snapshot)
        for name, node in self.nodes.items():
            if isinstance(node, GatewayNode):
                keys = self.tunnel_keys.get(name)
                node.adopt(GatewayTables(snapshot, name, node.counters, self._tracer, keys))
            else:
                node.adopt(HostTables(snapshot, name, node.counters, self._tracer))

    def locate(self, tap: str) -> str:
        """The node that serves the TAP named ``tap`` (the first, in policy order): a
        VM's port on a host, or a gateway's TAP."""
        for node in self.snapshot.policy.nodes:
            if any(port.name == tap for port in node.ports):
                return node.name
            for served in (node.routing_domains or {}).values():
                if any(own.name == tap for own in served.taps):
                    return node.name
            if node.nat is not None and node.nat.tap == tap:
                return node.name
        raise KeyError(tap)

    def tap(self, node: str, name: str) -> HostPort | GatewayTap | ExternalTap:
        """One of ``node``'s TAPs by name (KeyError: none)."""
        built = self.node(node)
        if isinstance(built, GatewayNode):
            return built.tables.tap_by_name[name]
        return built.tables.port_by_name[name]

    def owner(self, pa: bytes) -> str | None:
        """The node that owns the provider address ``pa``, if any."""
        return self._owners.get(bytes(pa))

    def link_mac_of(self, node: str) -> bytes | None:
        """``node``'s MAC on the provider link; None when it is not on the link."""
        return self._link_macs.get(node)

    def drops(self, node: str) -> dict[str, int]:
        """Every drop ``node`` has counted so far, by reason name."""
        counts = self.node(node).counters.drops
        return {reason.name: counts[reason] for reason in Drop if counts[reason]}

    def delivered(self) -> list[tuple[str, bytes]]:
        """The deliveries so far as (TAP, frame), taken: the record starts empty again."""
        taken = [(delivery.tap, delivery.frame) for delivery in self.deliveries]
        self.deliveries.clear()
        return taken

    # ------------------------------------------------------------ the entry points

    def from_tap(self, node: str, tap: str, frame: bytes, now: float) -> Step:
        """``frame`` sent into ``node``'s TAP ``tap`` (by a VM, or a gateway's corp
        side). What it sends waits in flight."""
        found = self.tap(node, tap)
        if isinstance(found, GatewayTap | ExternalTap):
            return self._call(
                node, lambda plane, view: gateway_from_tap(plane, found, view), frame, now
            )
        return self._call(node, lambda plane, view: from_port(plane, found, view), frame, now)

    def from_provider(self, node: str, datagram: bytes, now: float, hops: int = 0) -> Step:
        """An NVGRE datagram (outer IP header first) at ``node``'s provider side,
        whatever its destination PA."""
        if isinstance(self.node(node), GatewayNode):
            return self._call(node, gateway_from_provider, datagram, now, hops)
        return self._call(node, from_provider, datagram, now, hops)

    def from_link(self, node: str, frame: bytes, now: float, hops: int = 0) -> Step:
        """A frame at ``node``'s provider link socket, whatever its destination MAC."""
        return self._call(node, from_provider_link, frame, now, hops)

    def from_tunnel(
        self, node: str, port: int, datagram: bytes, source: tuple[str, int], now: float
    ) -> Step:
        """A UDP datagram from ``source`` to gateway ``node``'s tunnel listen ``port``."""
        return self._call(
            node, lambda plane, view: gateway_from_tunnel(plane, port, view, source), datagram, now
        )

    def tick(self, node: str, now: float) -> Step:
        """Gateway ``node``'s tunnel timers at ``now`` (what they send is the step's)."""
        return self._call(node, lambda plane, _: gateway_tunnel_tick(plane), b"", now)

    def to_pa(self, datagram: bytes, now: float, hops: int = 0) -> Step | None:
        """An NVGRE datagram given to the network: it reaches the node that owns its
        destination PA (None: no node does)."""
        dst = datagram[IPV4_OFFSET_DST : IPV4_OFFSET_DST + IPV4_ADDR_SIZE]
        node = self.owner(dst)
        return None if node is None else self.from_provider(node, datagram, now, hops)

    def on_link(self, frame: bytes, now: float, sender: str = "", hops: int = 0) -> list[Step]:
        """A frame put on the provider link: switched by its destination MAC to the
        node with that MAC, or, for a group address, to every node on the link but
        its sender."""
        dst = frame[ETH_OFFSET_DST : ETH_OFFSET_DST + ETH_ADDR_SIZE]
        group = len(dst) == ETH_ADDR_SIZE and dst[0] & ETH_GROUP_BIT
        return [
            self.from_link(node, frame, now, hops)
            for node, mac in self._link_macs.items()
            if node != sender and (group or mac == dst)
        ]

    def send(self, tap: str, frame: bytes, now: float) -> list[Step]:
        """A VM sends ``frame`` on its port (found by name), and the network carries
        whatever follows until nothing is in flight: every step, in order."""
        first = self.from_tap(self.locate(tap), tap, frame, now)
        return [first, *self.carry(now)]

    def carry(self, now: float) -> list[Step]:
        """Move what is in flight to where it goes, and what that sends in turn,
        until nothing is left: the steps it took, in order."""
        steps: list[Step] = []
        while self.in_flight:
            sender, on_link, data, hops = self.in_flight.popleft()
            if hops > MAX_HOPS:
                self.looped += 1
            elif on_link:
                steps += self.on_link(data, now, sender, hops)
            else:
                step = self.to_pa(data, now, hops)
                if step is not None:
                    steps.append(step)
        return steps

    # ------------------------------------------------------------- a VM's stack

    def resolve(
        self,
        node: str,
        tap: str,
        target: bytes,
        now: float,
        asker: tuple[bytes, bytes] | None = None,
    ) -> tuple[bytes | None, Step]:
        """What the stack behind ``tap`` learns when it asks who has ``target`` (an ARP
        request, broadcast, from ``asker``'s MAC and IPv4 address: by default the VM's
        own): the MAC answered back on its TAP, or None; and the step, with its drops
        and lookups. A gateway's TAP has no VM: its corp side names itself."""
        if asker is None:
            port = self.tap(node, tap)
            asker = (port.mac, port.ca)  # type: ignore[union-attr]
        mac, address = asker
        request = build_ethernet(BROADCAST_MAC, mac, ETHERTYPE_ARP) + build_arp(
            ARP_OP_REQUEST, mac, address, ZERO_MAC, target
        )
        step = self.from_tap(node, tap, request, now)
        for _, frame in step.taps:
            answer = _arp_reply(frame, target)
            if answer is not None:
                return answer, step
        return None, step

    # ------------------------------------------------------------------ inside

    def _call(
        self,
        name: str,
        handler: Callable[[Any, memoryview], None],
        data: bytes,
        now: float,
        hops: int = 0,
    ) -> Step:
        node = self.node(name)
        step = Step(name, hops)
        node.out.step = step  # type: ignore[attr-defined]
        if self._tracer is not None:
            self._tracer.lookups = step.lookups
        drops = node.counters.drops
        before = list(drops)
        node.now = now
        handler(node, memoryview(bytearray(data)))
        step.drops = {
            Drop(reason): drops[reason] - before[reason]
            for reason in range(len(drops))
            if drops[reason] != before[reason]
        }
        self.deliveries += [Delivery(name, tap.name, frame) for tap, frame in step.taps]
        self.in_flight += [(name, False, datagram, hops + 1) for *_, datagram in step.nvgre]
        self.in_flight += [(name, True, frame, hops + 1) for frame in step.link]
        self.link_log += step.link
        self.udp_log += [(name, *sent) for sent in step.udp]
        return step


def _owners(snapshot: Snapshot) -> dict[bytes, str]:
    return {
        pa.pa.packed: node.name for node in snapshot.policy.nodes for pa in node.provider_addresses
    }


def _arp_reply(frame: bytes, target: bytes) -> bytes | None:
    """The MAC an ARP reply about ``target`` gives, if ``frame`` is one."""
    try:
        if parse_ethernet(frame).ethertype != ETHERTYPE_ARP:
            return None
        arp = parse_arp(frame, ETH_HEADER_SIZE)
    except BadPacket:
        return None
    if arp.opcode != ARP_OP_REPLY or arp.sender_ip != target:
        return None
    return arp.sender_mac


class _Tracer:
    """The fabric's ``LookupTracer``: each lookup goes into the current step."""

    def __init__(self) -> None:
        self.lookups: list[tuple[str, Any, Any]] = []

    def table(self, name: str, table: Mapping[Any, Any]) -> Mapping[Any, Any]:
        return _TracedTable(name, table, self)

    def snapshot(self, snapshot: Snapshot) -> Snapshot:
        return _TracedSnapshot(snapshot, self)  # type: ignore[return-value]


class _TracedSnapshot:
    """A snapshot read through: ``route()`` and ``record_by_ca`` are noted."""

    def __init__(self, snapshot: Snapshot, tracer: _Tracer) -> None:
        self._snapshot, self._tracer = snapshot, tracer
        self.record_by_ca = tracer.table("record by (VSID, CA)", snapshot.record_by_ca)

    def route(self, rdid: str, destination: bytes) -> Any:
        found = self._snapshot.route(rdid, destination)
        self._tracer.lookups.append(("customer route", (rdid, destination), found))
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._snapshot, name)


class _TracedTable(Mapping[Any, Any]):
    """A table read through: ``get`` is noted (it is how the data plane looks up)."""

    def __init__(self, name: str, inner: Mapping[Any, Any], tracer: _Tracer) -> None:
        self._name, self._inner, self._tracer = name, inner, tracer

    def get(self, key: Any, default: Any = None) -> Any:
        found = self._inner.get(key, default)
        self._tracer.lookups.append((self._name, key, found))
        return found

    def __getitem__(self, key: Any) -> Any:
        return self._inner[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._inner

    def __iter__(self) -> Iterator[Any]:
        return iter(self._inner)

    def __len__(self) -> int:
        return len(self._inner)
