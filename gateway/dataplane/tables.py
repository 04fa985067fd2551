"""The host role's view of one policy snapshot: what a node needs per packet.

``compile_policy()`` answers questions about the whole deployment; a host daemon also
needs to know which of those records are its own VMs (its ports), which PAs are its
own, and where each local port's counters live. ``HostTables`` precomputes that once
per snapshot, so the per-packet code does dict lookups and attribute reads only.

``nvgw trace`` sees which lookups the data plane made through a ``LookupTracer``
given to the tables when they are built (``gateway.dataplane.fabric``): the tables
it names are wrapped there, once. The daemon passes none and so runs on the plain
dicts below; the per-packet code reads the same attributes either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from gateway.dataplane.counters import Counters, PortCounters
from gateway.dataplane.senders import sender_tables
from gateway.policy import CompiledRecord, RecordType, Rule, Snapshot
from gateway.wire import ETH_ADDR_SIZE, IPV4_ADDR_SIZE, NVGRE_OVERHEAD_V4

UNDERLAY_MTU: Final = 1500  # a plain Ethernet provider network
# What a VM's TAP gets, so that its largest frame still fits the underlay once
# encapsulated: 1500 - 42 = 1458 (design.md, "NVGRE on the wire").
PORT_MTU: Final = UNDERLAY_MTU - NVGRE_OVERHEAD_V4

# The MAC of a virtual subnet's distributed router (its gateway CA answers ARP with it):
# locally administered (02), "NV", then the 24-bit VSID, so it is the same on every
# host without configuration and tells at a glance which subnet a frame was routed into.
ROUTER_MAC_PREFIX: Final = b"\x02\x4e\x56"


def router_mac(vsid: int) -> bytes:
    return ROUTER_MAC_PREFIX + vsid.to_bytes(ETH_ADDR_SIZE - len(ROUTER_MAC_PREFIX), "big")


class HostPort:
    """A local VM network adapter with everything the per-packet code compares."""

    __slots__ = (
        "ca",
        "counters",
        "gateway_ca",
        "mac",
        "mtu",
        "name",
        "pa",
        "rdid",
        "record",
        "router_mac",
        "rule",
        "vsid",
    )

    def __init__(
        self, name: str, record: CompiledRecord, gateway_ca: bytes | None, counters: PortCounters
    ) -> None:
        self.name = name
        self.record = record
        self.vsid = record.vsid
        self.rdid = record.rdid
        self.mac = record.mac_bytes
        self.ca = record.ca_bytes
        self.pa = record.pa_bytes  # the source PA of everything this VM sends
        self.rule = record.rule
        self.gateway_ca = gateway_ca  # its subnet's IPv4 gateway CA, answered with router_mac
        self.router_mac = router_mac(record.vsid)
        self.mtu = PORT_MTU
        self.counters = counters

    def __repr__(self) -> str:
        return f"HostPort({self.name!r}, vsid={self.vsid})"


class LookupTracer(Protocol):
    """Sees each lookup a node's tables answer (``nvgw trace``). ``HostTables`` hands
    it what to wrap while it is being built, never after."""

    def table(self, name: str, table: Mapping[Any, Any]) -> Mapping[Any, Any]:
        """A mapping that answers ``get``, ``[]`` and ``in`` as ``table`` does and
        notes each ``get``."""

    def snapshot(self, snapshot: Snapshot) -> Snapshot:
        """The snapshot as the tables hand it to the data plane: ``route()`` and
        ``record_by_ca`` noted, everything else the snapshot's own."""


class HostTables:
    """One node's compiled view of one snapshot. Immutable once built, but for
    ``flows``: the receive path's verdict cache, which is derived from this snapshot
    alone and so dies with it (a swap can never serve a stale verdict)."""

    __slots__ = (
        "flows",
        "gateway_by_rdid_pa",
        "local_pas",
        "node",
        "port_by_key",
        "port_by_name",
        "port_macs",
        "ports",
        "rdid_by_vsid",
        "record_by_mac",
        "record_by_rdid_ca",
        "rewrite_by_pa",
        "snapshot",
        "wildcard_by_vsid",
    )

    def __init__(
        self,
        snapshot: Snapshot,
        node_name: str,
        counters: Counters,
        tracer: LookupTracer | None = None,
    ) -> None:
        policy = snapshot.policy
        node = policy.node(node_name)
        self.snapshot = snapshot
        self.node = node
        self.flows: dict[tuple, object] = {}  # flow key -> HostPort or Drop
        # Plain dicts (the snapshot's are read-only proxies, slower per lookup).
        self.rdid_by_vsid = dict(snapshot.rdid_by_vsid)
        # Who may send from the provider network (anti-spoofing), as every role reads it.
        self.record_by_mac, self.record_by_rdid_ca, self.gateway_by_rdid_pa = sender_tables(
            snapshot, tracer
        )
        # Where a VSID's off-subnet IPv4 goes when no customer route matches.
        self.wildcard_by_vsid = {
            vsid: record
            for (vsid, size), record in snapshot.gateway_wildcard.items()
            if size == IPV4_ADDR_SIZE
        }
        self.local_pas = frozenset(pa.pa.packed for pa in node.provider_addresses)
        ports = []
        for port in node.ports:
            # A port's record is its MAC's first with a CA (IPv4 first; a wildcard
            # record is no VM's). An IPv6-only port keeps its IPv6 one (the daemon
            # refuses to serve it, plan_node; a trace still builds it): its IPv4
            # frames fail anti-spoofing.
            record = next(
                r for r in snapshot.records_by_mac[port.vsid, bytes(port.mac)] if not r.wildcard
            )
            gateway = policy.virtual_subnet(port.vsid).gateway
            # An IPv4 error needs an IPv4 source: an IPv6 gateway is none (vm_side.py's
            # ``_too_big`` then answers from the frame's destination instead).
            gateway_ca = gateway.packed if gateway is not None and gateway.version == 4 else None
            ports.append(HostPort(port.name, record, gateway_ca, counters.port(port.name)))
        self.ports: tuple[HostPort, ...] = tuple(ports)
        self.port_by_key = {(p.vsid, p.mac): p for p in ports}
        self.port_by_name = {p.name: p for p in ports}
        self.port_macs = frozenset(p.mac for p in ports)  # tells VSID_MISMATCH from NO_PORT
        # IP-Rewrite: each of this node's rewrite PAs stands for exactly one local CA
        # (read by PA: this node's records only, not every record of the policy).
        self.rewrite_by_pa = {
            r.pa_bytes: r
            for pa in sorted(self.local_pas)
            for r in snapshot.records_by_pa.get(pa, ())
            if r.rule is Rule.IP_REWRITE
        }
        if tracer is not None:  # last: building the tables above is not traced
            self.snapshot = tracer.snapshot(snapshot)
            self.wildcard_by_vsid = tracer.table(  # type: ignore[assignment]
                "gateway wildcard by VSID", self.wildcard_by_vsid
            )
            self.port_by_key = tracer.table("local port by (VSID, MAC)", self.port_by_key)

    def rewrite_sender(self, pa: bytes) -> CompiledRecord | None:
        """The IP-Rewrite record that owns ``pa`` (one CA per PA), anywhere."""
        for record in self.snapshot.records_by_pa.get(pa, ()):
            if record.rule is Rule.IP_REWRITE:
                return record
        return None

    def answers_arp_for(self, port: HostPort, target_ip: bytes) -> bytes | None:
        """The MAC to answer a VM's ARP request for ``target_ip`` with, if any."""
        if target_ip == port.gateway_ca:
            return port.router_mac
        record = self.snapshot.record_by_ca.get((port.vsid, target_ip))
        if record is None or record.type is RecordType.L2ONLY or record.mac_bytes == port.mac:
            return None
        return record.mac_bytes
