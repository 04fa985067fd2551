"""The rules of gateway nodes: what a ``role: gateway`` node's routing domains, TAPs
and node routes must be, judged against the rest of the document.

The schema (``model.py``) judges each TAP and route alone; here they meet the policy:
the routing domain a key names, the TAPs' names and subnets beside the node's other
interfaces and the tenant's virtual subnets, where each route's next hop leads, and
whether any host could send the gateway anything at all. As in ``checks.py``, every
problem is reported at the path of the entry that breaks the rule, in one pass, and an
entry that failed the schema silences the reports that might only be about it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from gateway.errors import ConfigIssue

from ._nat_checks import check_nats
from ._nat_checks import no_nat as _no_nat
from ._paths import Loc, format_path
from ._tunnel_checks import IPV4_ONLY, check_tunnels
from ._values import IPAddress, IPNetwork, NextHopKind
from .checks import Parsed, _overlaps, reserved_address
from .model import (
    Node,
    NodeNat,
    NodeRoute,
    PortForward,
    RecordType,
    Tap,
    Tunnel,
    domains_matching,
)


@dataclass(slots=True)
class ServedEntry:
    """One routing domain a gateway node serves, as the document writes it: what of it
    passed the schema, with paths."""

    loc: Loc  # nodes.gw.routing_domains.blue
    node: str
    key: str  # the routing domain's name or RDID, as written
    taps: list[tuple[Loc, Tap]] = field(default_factory=list)
    routes: list[tuple[Loc, NodeRoute]] = field(default_factory=list)
    port_forwards: list[tuple[Loc, PortForward]] = field(default_factory=list)
    taps_complete: bool = True  # False: a TAP failed the schema (a next hop may name it)
    nat: bool = False  # it has a ``nat:`` (the tenant's share of the node's NAT)


@dataclass(slots=True)
class GatewayParts:
    """Every routing domain entry of every gateway node, in document order."""

    served: list[ServedEntry] = field(default_factory=list)
    # Each gateway node with a ``nat:``: its path and the NAT, None when it (or the
    # node) failed the schema.
    nats: dict[str, tuple[Loc, NodeNat | None]] = field(default_factory=dict)
    # Every node by name (None: it failed the schema), the tunnels that passed the
    # schema and the names of those that did not (None: one had no readable name).
    nodes: dict[str, Node | None] = field(default_factory=dict)
    tunnels: list[tuple[Loc, Tunnel]] = field(default_factory=list)
    unresolved_tunnels: set[str | None] = field(default_factory=set)
    # Per served entry (by its path): the canonical RDID it names, when exactly one.
    rdids: dict[Loc, str] = field(default_factory=dict)


def check_gateways(parsed: Parsed, gateways: GatewayParts) -> list[ConfigIssue]:
    """Every problem of the gateway nodes in ``gateways``, in rule order."""
    issues: list[ConfigIssue] = []
    if not gateways.served and not gateways.nats and not gateways.tunnels:
        return issues  # nothing to judge: a host-only policy pays no scan of its records
    rdids = gateways.rdids = _resolve(parsed, gateways, issues)
    _check_taps(parsed, gateways, rdids, issues)
    check_nats(parsed, gateways, issues)
    for entry in gateways.served:
        if entry.nat and entry.node not in gateways.nats:
            _issue(issues, (*entry.loc, "nat"), "nat", _no_nat(entry.node))
        _check_routes(entry, gateways, issues)
    check_tunnels(parsed, gateways, issues)
    _check_reachable(parsed, gateways, rdids, issues)
    return issues


def _issue(issues: list[ConfigIssue], loc: Loc, value: object, message: str) -> None:
    issues.append(ConfigIssue(format_path(loc), value, message))


# Per served entry (by its loc): the canonical RDID it names, when exactly one.
_Resolved = dict[Loc, str]


def _resolve(parsed: Parsed, gateways: GatewayParts, issues: list[ConfigIssue]) -> _Resolved:
    domains = [domain for _, domain in parsed.domains]
    # A routing domain that failed the schema may be the one a key names.
    maybe_failed = bool(parsed.unresolved_rdids) or parsed.unreadable_rdid
    resolved: _Resolved = {}
    first: dict[tuple[str, str], Loc] = {}
    for entry in gateways.served:
        found = domains_matching(entry.key, domains)
        if len(found) > 1:
            named = ", ".join(f"{d.rdid} ({d.name})" if d.name else d.rdid for d in found)
            message = f"names {len(found)} routing domains: {named}; write the RDID"
            _issue(issues, entry.loc, entry.key, message)
        elif not found:
            if not maybe_failed:
                known = ", ".join(d.name or d.rdid for d in domains) or "none"
                message = f"no routing domain has this name or RDID (routing domains: {known})"
                _issue(issues, entry.loc, entry.key, message)
        else:
            rdid = found[0].rdid
            other = first.setdefault((entry.node, rdid), entry.loc)
            if other != entry.loc:
                message = f"routing domain {rdid} is already served here: {format_path(other)}"
                _issue(issues, entry.loc, entry.key, message)
            else:
                resolved[entry.loc] = rdid
    return resolved


def _interfaces(parsed: Parsed) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for _, node, address in parsed.provider_addresses:
        found[node].add(address.interface)
    return found


def _check_taps(
    parsed: Parsed, gateways: GatewayParts, rdids: _Resolved, issues: list[ConfigIssue]
) -> None:
    interfaces = _interfaces(parsed)
    names: dict[tuple[str, str], Loc] = {}
    written: dict[Loc, str] = {}  # each TAP's address as the document has it
    # TAP subnets per node and routing domain (an unresolved key: per entry), to judge
    # overlaps among them.
    groups: dict[tuple[str, object], list[tuple[IPNetwork, Loc]]] = defaultdict(list)
    for entry in gateways.served:
        rdid = rdids.get(entry.loc)
        for loc, tap in entry.taps:
            first = names.setdefault((entry.node, tap.name), loc)
            if first != loc:
                message = f"duplicate TAP name in node {entry.node}: {format_path(first)} has it"
                _issue(issues, (*loc, "name"), tap.name, message)
            if tap.name in interfaces[entry.node]:
                message = (
                    f"also a provider interface of node {entry.node}: a TAP needs a name of its own"
                )
                _issue(issues, (*loc, "name"), tap.name, message)
            address, network = tap.address.ip, tap.address.network
            where = (*loc, "address")
            if address.version != 4:
                _issue(issues, where, str(tap.address), f"{IPV4_ONLY}: an IPv6 TAP address")
                continue
            reserved = reserved_address(address, network)
            if reserved is not None:
                _issue(issues, where, str(tap.address), f"the TAP's address is {reserved}")
            groups[entry.node, rdid or entry.loc].append((network, where))
            written[where] = str(tap.address)
            if rdid is not None:
                _shadowed(parsed, rdid, tap, where, issues)
    for entries in groups.values():
        reported: set[Loc] = set()
        for inner, inner_loc, outer, outer_loc in _overlaps(entries):
            if inner_loc < outer_loc:
                inner, inner_loc, outer, outer_loc = outer, outer_loc, inner, inner_loc
            if inner_loc not in reported:
                reported.add(inner_loc)
                message = (
                    f"the TAP subnet {inner} overlaps {outer} ({format_path(outer_loc)}): "
                    "TAP subnets of one routing domain on a gateway must not overlap"
                )
                _issue(issues, inner_loc, written[inner_loc], message)


def _shadowed(parsed: Parsed, rdid: str, tap: Tap, where: Loc, issues: list[ConfigIssue]) -> None:
    """A TAP subnet that overlaps a virtual subnet of its own routing domain would
    take the tenant's own addresses: the gateway would send what is meant for VMs
    into the TAP."""
    network = tap.address.network
    for loc, subnet, subnet_rdid in parsed.subnets:
        if subnet_rdid != rdid:
            continue
        prefix = subnet.prefix_for(4)
        if prefix is not None and prefix.overlaps(network):
            message = (
                f"the TAP subnet {network} overlaps virtual subnet {subnet.vsid}'s {prefix} "
                f"({format_path(loc)}) of the same routing domain: the gateway would send "
                "traffic for the tenant's own addresses into the TAP instead of to its VMs"
            )
            _issue(issues, where, str(tap.address), message)


def _check_routes(entry: ServedEntry, gateways: GatewayParts, issues: list[ConfigIssue]) -> None:
    seen: dict[IPNetwork, Loc] = {}
    for loc, route in entry.routes:
        destination, next_hop = route.destination, route.next_hop
        if destination.version != 4:
            _issue(issues, (*loc, "destination"), str(destination), IPV4_ONLY)
        first = seen.setdefault(destination, loc)
        if first != loc:
            message = (
                f"duplicate route to {destination} in this routing domain: "
                f"{format_path(first)} has it"
            )
            _issue(issues, (*loc, "destination"), str(destination), message)
        problem = _next_hop_problem(entry, gateways, route)
        if problem is not None:
            _issue(issues, (*loc, "next_hop"), str(next_hop), problem)


def _next_hop_problem(entry: ServedEntry, gateways: GatewayParts, route: NodeRoute) -> str | None:
    next_hop = route.next_hop
    if next_hop.kind is NextHopKind.TUNNEL:
        return None  # judged with the tunnels (``check_tunnels``)
    if next_hop.kind is NextHopKind.NAT:
        return None if entry.node in gateways.nats else _no_nat(entry.node)
    if next_hop.kind is NextHopKind.TAP:
        if any(tap.name == next_hop.name for _, tap in entry.taps) or not entry.taps_complete:
            return None
        for other in _same_node(entry, gateways):
            if any(tap.name == next_hop.name for _, tap in other.taps):
                return (
                    f"TAP {next_hop.name} serves routing domain {other.key} "
                    f"({format_path(other.loc)}): a route never leaves its routing domain"
                )
        return f"no TAP of this routing domain on node {entry.node} has this name{_taps(entry)}"
    address = next_hop.address
    assert address is not None
    if address.version != route.destination.version:
        return f"an IPv{address.version} next hop for an IPv{route.destination.version} destination"
    if address.version != 4:
        return None  # the destination is refused already, and says why
    for _, tap in entry.taps:
        network = tap.address.network
        if address in network:
            if address == tap.address.ip:
                return f"the gateway's own address on TAP {tap.name}: a next hop is a neighbour"
            reserved = reserved_address(address, network)
            return None if reserved is None else f"the next hop is {reserved}"
    if not entry.taps_complete:
        return None
    return (
        f"not inside a TAP subnet of this routing domain on node {entry.node}{_taps(entry)}: "
        "a next hop is a neighbour on one of them"
    )


def _taps(entry: ServedEntry) -> str:
    if not entry.taps:
        return " (it has no TAPs)"
    return " (its TAPs: " + ", ".join(f"{t.name} {t.address}" for _, t in entry.taps) + ")"


def _same_node(entry: ServedEntry, gateways: GatewayParts) -> Iterator[ServedEntry]:
    return (o for o in gateways.served if o.node == entry.node and o.loc != entry.loc)


def _check_reachable(
    parsed: Parsed, gateways: GatewayParts, rdids: _Resolved, issues: list[ConfigIssue]
) -> None:
    """Hosts send off-subnet traffic to a ``gateway`` record's PA: without one on this
    node, nothing of the routing domain could ever reach it."""
    pas: dict[str, list[IPAddress]] = defaultdict(list)
    for _, node, address in parsed.provider_addresses:
        pas[node].append(address.pa)
    rdid_of = {subnet.vsid: rdid for _, subnet, rdid in parsed.subnets}
    reached: set[tuple[str, str]] = set()  # (node, rdid)
    owners = {pa: node for node, found in pas.items() for pa in found}
    for _, record in parsed.records:
        node = owners.get(record.pa)
        rdid = rdid_of.get(record.vsid)
        if record.type is RecordType.GATEWAY and node is not None and rdid is not None:
            reached.add((node, rdid))
    for entry in gateways.served:
        rdid = rdids.get(entry.loc)
        if rdid is None or (entry.node, rdid) in reached or _unsure(parsed, entry.node):
            continue
        vsids = [subnet.vsid for _, subnet, found in parsed.subnets if found == rdid]
        vsid = vsids[0] if vsids else "VSID"
        pa = pas[entry.node][0] if pas[entry.node] else "PA"
        message = (
            f"no host could send this gateway anything of routing domain {rdid}: "
            f"no gateway record of its VSIDs has a provider address of node {entry.node}. "
            f"Add one to lookup_records ({{vsid: {vsid}, ca: CA, mac: MAC, pa: {pa}, "
            "rule: encap, type: gateway}) and a customer route to its CA "
            f'({{rdid: "{rdid}", vsid: {vsid}, destination: 0.0.0.0/0, next_hop: CA}})'
        )
        _issue(issues, entry.loc, entry.key, message)


def _unsure(parsed: Parsed, node: str) -> bool:
    """A record, a subnet or one of the node's PAs failed the schema: the missing
    gateway record may be among them."""
    return bool(
        parsed.unresolved_records
        or parsed.unresolved_vsids
        or parsed.unreadable_vsid
        or node in parsed.unresolved_nodes
    )
