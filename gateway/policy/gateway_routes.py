"""A gateway node's routing table per routing domain it serves, compiled.

decisions.md ("Routes and where they lead"): on a gateway, a routing domain's table
is the node's own routes for it plus the domain's customer routes, minus those whose
next hop is one of the gateway's own CAs (the CA of a ``gateway`` record whose PA is
this node's: what the hosts send to it, which would loop); the longest prefix wins,
then the node route, then the lowest metric (then on-link, then the lowest next hop,
as on hosts). Each entry says where it leads: out of a TAP (on-link, or to a
neighbour on it), out through the node's NAT, or into a VSID (on-link: to the
destination's own record; or to a next-hop CA, whose lookup record is resolved here,
as hosts resolve it).

Built whole from a validated policy and its snapshot, like the snapshot itself, and
looked up with the snapshot's longest-prefix match (one implementation of LPM).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from ._values import IPNetwork, NextHopKind
from .model import (
    CustomerRoute,
    NodeRole,
    NodeRoute,
    RecordType,
    ServedDomain,
    Tunnel,
    domains_matching,
)
from .snapshot import CompiledRecord, Snapshot, _lookup, _Table, _tables


class GatewayHop(NamedTuple):
    """Where a gateway's route leads: a TAP (``tap`` set), a VSID (``vsid`` set), a
    tunnel (``tunnel`` set), or, none set, the node's NAT (``nat``: internet egress)."""

    destination: IPNetwork
    tap: str | None  # out of this TAP (a node route)
    vsid: int | None  # into this VSID (a customer route)
    # The neighbour or CA to send to (packed); None: on-link, to the destination itself.
    next_hop_bytes: bytes | None
    # The next hop CA's lookup record (a customer route via a CA that has one).
    record: CompiledRecord | None
    metric: int | None  # a customer route's; None for a node route (it wins its prefix)
    route: NodeRoute | CustomerRoute | Tunnel  # a tunnel: one of its allowed IPs
    tunnel: str | None = None  # into this tunnel (a node route, or an allowed IP)

    @property
    def nat(self) -> bool:
        """A route to ``nat``: out through the node's NAT."""
        return self.tap is None and self.vsid is None and self.tunnel is None


@dataclass(frozen=True, slots=True, eq=False)
class GatewayTable:
    """One gateway node's routes, per routing domain it serves (canonical RDIDs)."""

    node: str
    served: Mapping[str, ServedDomain]  # by RDID, in the document's order
    tap_rdid: Mapping[str, str]  # each TAP's name -> the RDID it serves
    _lpm: Mapping[tuple[str, int], _Table]

    def route(self, rdid: str, destination: bytes) -> GatewayHop | None:
        """The route of routing domain ``rdid`` toward ``destination`` (4 or 16 packed
        bytes) on this gateway, or None when nothing matches."""
        return _lookup(self._lpm, rdid, destination)  # type: ignore[return-value]


def compile_gateway(snapshot: Snapshot, node: str) -> GatewayTable:
    """The table of gateway node ``node`` of a validated policy (``KeyError``: no such
    node; ``ValueError``: not a gateway). Relies on the policy's invariants: each
    routing domain key names one domain, next hops are TAPs or neighbours on them."""
    gateway = snapshot.policy.node(node)
    if gateway.role is not NodeRole.GATEWAY:
        raise ValueError(f"node {node} is a {gateway.role.value} node, not a gateway")
    domains = snapshot.policy.routing_domains
    served = {
        domains_matching(key, domains)[0].rdid: domain
        for key, domain in (gateway.routing_domains or {}).items()
    }
    # Read by the node's PAs, not a pass over every record: the gateway's tables are
    # built again on each change of records (10^5 records: 22 ms a change).
    pas = {address.pa.packed for address in gateway.provider_addresses}
    own = {
        (record.vsid, record.ca_bytes)
        for pa in pas
        for record in snapshot.records_by_pa.get(pa, ())
        if record.type is RecordType.GATEWAY and not record.wildcard  # a wildcard: no address's
    }
    tunnels = [t for t in snapshot.policy.tunnels if t.node == node and t.rdid in served]
    hops = [*_node_hops(served), *_tunnel_hops(tunnels), *_customer_hops(snapshot, served, own)]
    return GatewayTable(
        node=node,
        served=MappingProxyType(served),
        tap_rdid=MappingProxyType(
            {tap.name: rdid for rdid, domain in served.items() for tap in domain.taps}
        ),
        _lpm=MappingProxyType(_tables(((rdid, hop.destination, hop) for rdid, hop in hops), _rank)),
    )


def _node_hops(served: Mapping[str, ServedDomain]) -> Iterator[tuple[str, GatewayHop]]:
    for rdid, domain in served.items():
        for route in domain.routes:
            next_hop = route.next_hop
            if next_hop.kind is NextHopKind.NAT:
                yield rdid, GatewayHop(route.destination, None, None, None, None, None, route)
                continue
            if next_hop.kind is NextHopKind.TUNNEL:
                hop = GatewayHop(route.destination, None, None, None, None, None, route)
                yield rdid, hop._replace(tunnel=next_hop.name)
                continue
            if next_hop.kind is NextHopKind.TAP:
                tap, address = next_hop.name, None
            else:  # a neighbour: on the one TAP whose subnet holds it (they do not overlap)
                address = next_hop.address
                tap = next(t.name for t in domain.taps if address in t.address.network)
            packed = None if address is None else address.packed
            yield rdid, GatewayHop(route.destination, tap, None, packed, None, None, route)


def _tunnel_hops(tunnels: list[Tunnel]) -> Iterator[tuple[str, GatewayHop]]:
    """Each tunnel's allowed IPs, as node routes to it (a valid policy has no other
    node route of their prefixes but to the same tunnel)."""
    for tunnel in tunnels:
        for prefix in tunnel.allowed_ips:
            hop = GatewayHop(prefix, None, None, None, None, None, tunnel, tunnel.name)
            yield tunnel.rdid, hop


def _customer_hops(
    snapshot: Snapshot, served: Mapping[str, ServedDomain], own: set[tuple[int, bytes]]
) -> Iterator[tuple[str, GatewayHop]]:
    for compiled in snapshot.routes:
        if compiled.rdid not in served:
            continue
        next_hop, vsid = compiled.next_hop_bytes, compiled.next_hop_vsid
        if next_hop is not None and (vsid, next_hop) in own:
            continue  # toward this gateway itself: the hosts' route, not the gateway's
        record = None if next_hop is None else snapshot.record_by_ca.get((vsid, next_hop))
        hop = GatewayHop(
            compiled.destination, None, vsid, next_hop, record, compiled.metric, compiled.route
        )
        yield compiled.rdid, hop


def _rank(hop: GatewayHop) -> tuple[int, int, bytes]:
    """Among routes of one prefix, the lowest sorts first: the node route (one per
    prefix in a valid policy), then the lowest metric, then on-link, then the lowest
    next hop: a total order, so the choice never depends on document order."""
    if hop.metric is None:
        return 0, 0, b""
    return 1, hop.metric, hop.next_hop_bytes or b""
