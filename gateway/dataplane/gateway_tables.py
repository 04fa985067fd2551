"""The gateway role's view of one policy snapshot: what its per-packet code reads.

``compile_gateway()`` gives the gateway node's route table per routing domain it
serves; ``GatewayTables`` adds, once per snapshot, what each packet needs looked up
by a dict probe or an attribute read:

* its interfaces (``GatewayInterface``): one per VSID and MAC of its own ``gateway``
  records, what the hosts send a VSID's off-subnet traffic to; each knows its
  routing domain and the gateway's CA there, the source of the ICMP errors it sends
  toward that VSID;
* its TAPs (``GatewayTap``), with the gateway's own address and MAC on each, and its
  external TAP (``ExternalTap``, from the node's ``nat:``), which belongs to no
  routing domain: the NAT's addresses are answered there, and a route to ``nat``
  (``ToNat``) leaves by it;
* its site-to-site tunnels (``gateway_tunnel.py``), by name: a route to one
  (``tunnel:NAME``, or one of its allowed IPs) is a ``ToTunnel``;
* per routing domain (``GatewayDomain``) its counters, the PA it encapsulates from,
  and a cache of where each destination goes (an ``Action``: to a TAP and the
  neighbour there, into a VSID toward a record, the gateway itself, or a drop), so
  that a packet of a known destination costs one dict probe; the cache is built
  from this snapshot alone and dies with it, like the receive side's flow cache;
* the anti-spoofing lookups every role shares (``senders.py``).

The gateway's MAC on a TAP (``tap_mac``): locally administered ``02-4e-47`` ("NG",
beside the routers' ``02-4e-56``) and the low 24 bits of the CRC-32 of the TAP's
name, so it is the same across restarts and policy changes (a corp host's ARP cache
stays right) and needs no configuration. It is the daemon's, not the kernel's: the
kernel's end of the TAP (the corp side) has its own.

``nvgw trace`` sees the lookups through a ``LookupTracer`` given here, as for the
host's tables: the route table, the records and the interfaces are wrapped once,
while building, never on the daemon's tables.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from gateway.dataplane.counters import Counters, DomainCounters
from gateway.dataplane.gateway_tunnel import ToTunnel, TunnelKeys, compile_tunnels
from gateway.dataplane.napt import Tenant
from gateway.dataplane.neighbors import Neighbors
from gateway.dataplane.senders import sender_tables
from gateway.dataplane.tables import PORT_MTU, UNDERLAY_MTU, LookupTracer, router_mac
from gateway.errors import Drop
from gateway.policy import (
    CompiledRecord,
    DomainNat,
    GatewayHop,
    GatewayTable,
    NodeNat,
    RecordType,
    Snapshot,
    Tap,
    compile_gateway,
)
from gateway.wire import ETH_ADDR_SIZE, IPV4_ADDR_SIZE, IPV4_FIRST_GROUP_OCTET, VSID_SHIFT

TAP_MTU: Final = UNDERLAY_MTU  # a TAP is a plain Ethernet link
TAP_MAC_PREFIX: Final = b"\x02\x4e\x47"  # locally administered, "NG": a gateway's TAP side
# What ``mss_clamp: auto`` clamps to: the path through the gateway is as narrow as its
# tenant side (1458: 42 bytes of NVGRE on a 1500 underlay; a TAP takes 1500), less
# the IPv4 and TCP headers without options (RFC 9293 sec. 3.7.1): 1418.
_TCP_IPV4_HEADERS: Final = 40
AUTO_MSS: Final = min(PORT_MTU, TAP_MTU) - _TCP_IPV4_HEADERS
# Destinations remembered per routing domain before the cache is emptied and refilled:
# a gateway sees far fewer; a scan of a whole TAP subnet costs a refill.
MAX_ROUTES: Final = 1 << 16


def tap_mac(name: str) -> bytes:
    """The gateway's MAC on the TAP named ``name`` (module docstring)."""
    suffix = zlib.crc32(name.encode()) & 0xFFFFFF
    return TAP_MAC_PREFIX + suffix.to_bytes(ETH_ADDR_SIZE - len(TAP_MAC_PREFIX), "big")


class GatewayDomain:
    """A routing domain this gateway serves."""

    __slots__ = (
        "counters",
        "flows",
        "from_internet",
        "name",
        "nat",
        "pa",
        "rdid",
        "routes",
        "tenant",
    )

    def __init__(
        self,
        rdid: str,
        name: str | None,
        counters: DomainCounters,
        pa: bytes | None,
        nat: DomainNat | None = None,
    ):
        self.rdid = rdid
        self.nat = nat  # its share of the node's NAT, as configured (None: the defaults)
        # The node's NAT tenant for this domain (``Napt.tenant``): attached when the
        # node adopts the tables, as the NAT table outlives them. None: no NAT.
        self.tenant: Tenant | None = None
        self.from_internet = FromInternet(self)
        self.name = name or rdid  # for people: its name, else its RDID
        self.counters = counters
        # The PA this gateway encapsulates from in this domain: the PA of its first
        # ``gateway`` record of the domain, from which the hosts accept routed frames.
        self.pa = pa
        self.routes: dict[bytes, Action] = {}  # destination -> where it goes (the cache)
        # What this domain sends into its VSIDs: flow -> GRE header with its FlowID
        # (``gateway_routing``). A flow's destination decides its record, so the
        # domain and the flow's bytes decide the header; it dies with the tables.
        self.flows: dict[tuple[int, bytes], bytes] = {}

    def __repr__(self) -> str:
        return f"GatewayDomain({self.name!r})"


class GatewayInterface:
    """The gateway's interface in one VSID: the (VSID, MAC) of its ``gateway`` records
    there. The receive side's verdict reads ``router_mac`` (a host-routed frame's
    source); ``own_ip`` is the gateway's CA in the VSID, the source of the errors it
    sends back toward it (None: it has only a wildcard record there)."""

    __slots__ = ("domain", "mac", "own_ip", "rdid", "router_mac", "vsid")

    def __init__(self, vsid: int, mac: bytes, domain: GatewayDomain, own_ip: bytes | None):
        self.vsid = vsid
        self.mac = mac
        self.domain = domain
        self.rdid = domain.rdid
        self.router_mac = router_mac(vsid)
        self.own_ip = own_ip

    def __repr__(self) -> str:
        return f"GatewayInterface(vsid={self.vsid}, {self.domain.name})"


class FromInternet:
    """Where a packet translated in from the internet entered the domain: the
    ingress ``route_ipv4`` routes it from. The gateway sends no ICMP error about it
    (``own_ip`` None): its error would have to leave through the NAT again."""

    __slots__ = ("domain", "own_ip")

    def __init__(self, domain: GatewayDomain) -> None:
        self.domain = domain
        self.own_ip: bytes | None = None


class GatewayTap:
    """One of the gateway's TAPs (private cloud): ``name`` is its interface name (an
    Output's ``NamedTap``); ``own_ip`` the gateway's address on it, which it answers
    ARP for and sends its errors from. ``neighbors`` is the node's, for this TAP,
    attached when the node adopts the tables: learned MACs outlive a policy swap."""

    __slots__ = (
        "answers",
        "broadcast",
        "counters",
        "domain",
        "flows",
        "internet",
        "mac",
        "mtu",
        "name",
        "neighbors",
        "own_ip",
        "rdid",
    )

    def __init__(self, tap: Tap, domain: GatewayDomain) -> None:
        self.internet = False  # a corp side: IPv4 is routed (a slot read: no class check)
        self.name = tap.name
        self.domain = domain
        self.counters = domain.counters  # what crossed it, each way
        self.rdid = domain.rdid
        self.own_ip = tap.address.ip.packed
        self.broadcast = tap.address.network.broadcast_address.packed
        self.mac = tap_mac(tap.name)
        self.mtu = TAP_MTU
        self.neighbors = Neighbors(self.mac)
        self.answers = frozenset((self.own_ip,))  # the addresses ARP is answered for
        # What its frames' flows were decided to be (``gateway_tap``): it dies with the
        # tables, as the routes it was decided from.
        self.flows: dict[tuple, object] = {}

    def __repr__(self) -> str:
        return f"GatewayTap({self.name!r}, {self.domain.name})"


class ExternalTap:
    """The gateway's external TAP (``nodes.NAME.nat.tap``): the internet side of its
    NAT, in no routing domain. The NAT's addresses are the daemon's (``answers``: ARP
    for them is answered here); ``own_ip``, the first, is what its ARP requests come
    from; ``next_hop`` is the internet router. ``neighbors`` and ``counters`` are the
    node's, attached when it adopts the tables (they outlive a policy swap):
    ``counters`` counts the frames written to the internet (out) and those translated
    in from it (in)."""

    __slots__ = (
        "addresses",
        "answers",
        "counters",
        "internet",
        "mac",
        "mtu",
        "name",
        "neighbors",
        "next_hop",
        "own_ip",
    )

    def __init__(self, nat: NodeNat) -> None:
        self.internet = True  # IPv4 is translated back first
        self.name = nat.tap
        self.addresses = tuple(address.ip.packed for address in nat.addresses)
        self.answers = frozenset(self.addresses)
        self.own_ip = self.addresses[0]
        self.next_hop = nat.next_hop.packed
        self.mac = tap_mac(nat.tap)
        self.mtu = TAP_MTU
        self.neighbors = Neighbors(self.mac)
        self.counters = DomainCounters()

    def __repr__(self) -> str:
        return f"ExternalTap({self.name!r})"


class ToTap:
    """Out of ``tap`` to the neighbour ``next_hop`` (an address resolved by ARP)."""

    __slots__ = ("next_hop", "tap")

    def __init__(self, tap: GatewayTap, next_hop: bytes) -> None:
        self.tap, self.next_hop = tap, next_hop


class ToVsid:
    """Into ``vsid`` toward ``record``: NVGRE from the domain's PA to the record's, the
    inner frame from the VSID's router MAC to the record's MAC (decisions.md, "The
    gateway forwards as the RDID's router")."""

    __slots__ = ("addresses", "dst_pa", "key", "record", "src_pa", "vsid")

    def __init__(self, record: CompiledRecord, src_pa: bytes) -> None:
        self.record = record
        self.vsid = record.vsid
        self.key = record.vsid << VSID_SHIFT  # the GRE key but its FlowID
        # The inner Ethernet addresses, destination then source, written in one go.
        self.addresses = record.mac_bytes + router_mac(record.vsid)
        self.src_pa, self.dst_pa = src_pa, record.pa_bytes


class ToNat:
    """Out through the node's NAT: translated (``napt_outbound``), then out of the
    external TAP to its next hop (``out``: as a ``ToTap``, for the fragments)."""

    __slots__ = ("out", "tap")

    def __init__(self, tap: ExternalTap) -> None:
        self.tap = tap
        self.out = ToTap(tap, tap.next_hop)  # type: ignore[arg-type]


class _Own:
    """The destination is one of the gateway's own addresses (a CA, a TAP address)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "the gateway itself"


OWN: Final = _Own()
Action = ToTap | ToVsid | ToNat | ToTunnel | _Own | Drop


def _mss(setting: str | int | None) -> int:
    """The MSS routed TCP SYNs are clamped to; 0: not clamped."""
    if setting == "off":
        return 0
    if setting is None or setting == "auto":
        return AUTO_MSS
    return int(setting)


class GatewayTables:
    """One gateway node's compiled view of one snapshot. Immutable once built, but for
    its caches (``flows``, each domain's ``routes``), derived from this snapshot alone."""

    __slots__ = (
        "domains",
        "external",
        "flows",
        "gateway_by_rdid_pa",
        "local_pas",
        "lpm",
        "mss",
        "node",
        "port_by_key",
        "port_macs",
        "rdid_by_vsid",
        "record_by_ca",
        "record_by_mac",
        "record_by_rdid_ca",
        "snapshot",
        "table",
        "tap_by_name",
        "taps",
        "to_nat",
        "to_tunnel",
        "tunnel_keys",
    )

    def __init__(
        self,
        snapshot: Snapshot,
        node_name: str,
        counters: Counters,
        tracer: LookupTracer | None = None,
        tunnel_keys: TunnelKeys | None = None,
    ) -> None:
        policy = snapshot.policy
        # The tunnels' keys as read from the node's files by whoever built these
        # tables (the daemon, at each load), for the node to adopt; None: keep its own.
        self.tunnel_keys = tunnel_keys
        node = policy.node(node_name)
        self.snapshot = snapshot
        self.node = node
        self.table = compile_gateway(snapshot, node_name)
        self.flows: dict[tuple, object] = {}  # the receive side's verdict cache
        self.rdid_by_vsid = dict(snapshot.rdid_by_vsid)
        self.local_pas = frozenset(pa.pa.packed for pa in node.provider_addresses)
        self.record_by_mac, self.record_by_rdid_ca, self.gateway_by_rdid_pa = sender_tables(
            snapshot
        )
        self.mss = _mss(node.mss_clamp)
        served = self.table.served
        own = _own_records(snapshot, node.provider_addresses, served)
        self.domains = {
            rdid: GatewayDomain(
                rdid,
                policy.routing_domain(rdid).name,
                counters.domain(rdid),
                next((r.pa_bytes for r in own if r.rdid == rdid), None),
                served[rdid].nat,
            )
            for rdid in served
        }
        # The gateway's interfaces, by (VSID, MAC), under the name the receive side's
        # verdict reads for a node's local destinations (``provider_side._verdict``).
        cas: dict[int, bytes] = {}  # the gateway's first IPv4 CA in each VSID
        domain_cas: dict[str, bytes] = {}  # and in each routing domain
        for r in own:
            if len(r.ca_bytes) == IPV4_ADDR_SIZE and not r.wildcard:
                cas.setdefault(r.vsid, r.ca_bytes)
                domain_cas.setdefault(r.rdid, r.ca_bytes)
        self.port_by_key = {
            (r.vsid, r.mac_bytes): GatewayInterface(
                r.vsid, r.mac_bytes, self.domains[r.rdid], cas.get(r.vsid)
            )
            for r in own
        }
        self.port_macs = frozenset(mac for _, mac in self.port_by_key)
        self.taps = tuple(
            GatewayTap(tap, self.domains[rdid])
            for rdid, domain in served.items()
            for tap in domain.taps
        )
        self.external = None if node.nat is None else ExternalTap(node.nat)
        self.to_nat = None if self.external is None else ToNat(self.external)
        tunnels = (t for t in policy.tunnels if t.node == node_name)
        self.to_tunnel = compile_tunnels(tunnels, self.domains, domain_cas)
        # Every TAP the node reads, by name: the routing domains' and the external one.
        self.tap_by_name: dict[str, GatewayTap | ExternalTap] = {tap.name: tap for tap in self.taps}
        if self.external is not None:
            self.tap_by_name[self.external.name] = self.external
        self.record_by_ca: Mapping[tuple[int, bytes], CompiledRecord] = snapshot.record_by_ca
        self.lpm: Mapping[tuple[str, bytes], GatewayHop] = _Routes(self.table)
        if tracer is not None:  # last: building the tables above is not traced
            self.record_by_mac = tracer.table("record by (VSID, MAC)", self.record_by_mac)  # type: ignore[assignment]
            self.record_by_rdid_ca = tracer.table("record by (RDID, CA)", self.record_by_rdid_ca)  # type: ignore[assignment]
            self.gateway_by_rdid_pa = tracer.table(  # type: ignore[assignment]
                "gateway record by (RDID, PA)", self.gateway_by_rdid_pa
            )
            self.port_by_key = tracer.table(  # type: ignore[assignment]
                "gateway interface by (VSID, MAC)", self.port_by_key
            )
            self.record_by_ca = tracer.table("record by (VSID, CA)", self.record_by_ca)
            self.lpm = tracer.table("gateway route", self.lpm)

    def route(self, domain: GatewayDomain, dst: bytes) -> Action:
        """Where a packet to ``dst`` in ``domain`` goes (a cache miss: the cache is
        filled here). The per-packet code reads ``domain.routes`` first."""
        routes = domain.routes
        if len(routes) >= MAX_ROUTES:
            routes.clear()  # bounded against scans; refills by itself
        action = routes[dst] = self._resolve(domain, dst)
        return action

    def _resolve(self, domain: GatewayDomain, dst: bytes) -> Action:
        if dst[0] >= IPV4_FIRST_GROUP_OCTET:
            return Drop.BROADCAST  # multicast, broadcast: never routed (RFC 1812 sec. 5.3.5)
        hop = self.lpm.get((domain.rdid, dst))
        if hop is None:
            return Drop.NO_ROUTE
        if hop.tunnel is not None:
            return self.to_tunnel.get(hop.tunnel, Drop.NO_ROUTE)
        if hop.nat:
            return self.to_nat or Drop.NO_ROUTE  # a valid policy has the node's NAT
        if hop.tap is not None:
            tap: GatewayTap = self.tap_by_name[hop.tap]  # type: ignore[assignment]
            next_hop = hop.next_hop_bytes or dst
            if next_hop == tap.own_ip:
                return OWN
            if next_hop == tap.broadcast:
                return Drop.BROADCAST  # a directed broadcast: never forwarded (RFC 2644)
            return ToTap(tap, next_hop)
        assert hop.vsid is not None  # a customer route
        record = hop.record if hop.next_hop_bytes else self.record_by_ca.get((hop.vsid, dst))
        if record is None:
            return Drop.NO_RECORD
        if record.pa_bytes in self.local_pas:
            return OWN  # a record on this node's PA is its own
        pas = (record.pa_bytes, domain.pa or b"")
        if any(len(pa) != IPV4_ADDR_SIZE for pa in pas):
            # NVGRE over IPv4 only (the node plan refuses IPv6 PAs; trace builds any).
            return Drop.PROVIDER_UNREACHABLE
        return ToVsid(record, domain.pa)

    def __repr__(self) -> str:
        return f"GatewayTables({self.node.name!r}, revision={self.snapshot.revision})"


class _Routes(Mapping[tuple[str, bytes], GatewayHop]):
    """The route table as a mapping (routing domain, destination) -> hop, so that a
    trace can wrap it like any other table. Only ``get`` is used."""

    __slots__ = ("_table",)

    def __init__(self, table: GatewayTable) -> None:
        self._table = table

    def get(self, key: tuple[str, bytes], default: Any = None) -> Any:
        found = self._table.route(*key)
        return default if found is None else found

    def __getitem__(self, key: tuple[str, bytes]) -> GatewayHop:
        found = self._table.route(*key)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return iter(())  # the table answers by prefix: no key is listed

    def __len__(self) -> int:
        return 0


def _own_records(
    snapshot: Snapshot, addresses: Iterable[Any], served: Mapping[str, Any]
) -> list[CompiledRecord]:
    """The ``gateway`` records of the served routing domains on this node's PAs, in
    the file's order where it decides anything: read by PA (not a pass over every
    record, which each change of records would pay: 25 ms at 10^5). Which record
    comes first decides a domain's PA and a VSID's and a domain's CA, so records of
    several PAs are put back in the file's order (one pass over every record) only
    when two PAs hold records of one routing domain; otherwise each domain's (and
    each VSID's, which one domain holds) come from one PA, in its file order."""
    pas = list(dict.fromkeys(address.pa.packed for address in addresses))
    by_pa = [
        [
            r
            for r in snapshot.records_by_pa.get(pa, ())
            if r.type is RecordType.GATEWAY and r.rdid in served
        ]
        for pa in pas
    ]
    own = [r for found in by_pa for r in found]
    domains = [{r.rdid for r in found} for found in by_pa]
    if sum(map(len, domains)) > len(set().union(*domains)):  # a domain on two PAs
        place = {id(record): i for i, record in enumerate(snapshot.records)}
        own.sort(key=lambda record: place[id(record)])
    return own
