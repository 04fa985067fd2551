"""A change of any kind but lookup records and ports, parsed without a pass over them.

Routing domains and their subnets, customer routes, tunnels, nodes with their
provider addresses and a gateway's served routing domains (TAPs, routes, port
forwards) are few next to the records and the ports (10^5 each on a big gateway):
their entries are kept as a document of their own, the *skeleton* (the policy's
document without ``lookup_records`` and without the host nodes' ``ports``). An edit
is applied to a copy of it (``edits.py`` works on any document), and each section
it changed is parsed again, section by section as ``parse_document`` parses it:
routing domains and tunnels whole, customer routes reusing the entry of each item
left as it was, nodes one by one (a node whose mapping is unchanged keeps its
entries; a host node's ports are never in the skeleton, it keeps its parsed ones; a
node added brings its ports, parsed with it, then kept out of the skeleton).
So the issues of each entry's schema are those of whole-policy validation, in its
order, and ``incremental.IndexedPolicy.change_others`` judges the result together
with the records and ports the change can reach.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from itertools import groupby
from operator import itemgetter
from typing import Any

from gateway.errors import ConfigIssue

from ._gateway_checks import GatewayParts, ServedEntry
from ._load import Parse, _attempt, _items, _Loader
from ._paths import Loc, issue_value
from .checks import Parsed
from .model import CustomerRoute, Node, NodeNat, Port, ProviderAddress, RoutingDomain, Tunnel

_TOP = ("routing_domains", "customer_routes", "tunnels")


@dataclass(slots=True)
class NodePart:
    """One node as parsed: its mapping in the skeleton and what came of it."""

    body: Any
    addresses: list[tuple[Loc, str, ProviderAddress]]
    ports: list[tuple[Loc, str, Port]]
    served: list[ServedEntry]
    nat: tuple[Loc, NodeNat | None] | None
    model: Node | None  # as validated alone (``GatewayParts.nodes``)
    built: Node | None  # as the policy holds it: None when something of it failed
    unresolved: bool  # a provider address failed the schema


@dataclass(slots=True)
class Sections:
    """The skeleton and what parsing each of its sections found."""

    skeleton: dict[str, Any]
    parsed: Parsed  # domains, subnets, routes and what failed: records and ports left out
    tunnels: list[tuple[Loc, Tunnel]]
    unresolved_tunnels: set[str | None]
    domains: list[RoutingDomain | None]
    routes: list[CustomerRoute]
    built_tunnels: list[Tunnel]
    nodes: dict[Any, NodePart] = field(default_factory=dict)

    @classmethod
    def of(cls, document: Mapping[str, Any], parse: Parse) -> Sections:
        """The sections of a valid document, from its whole parse."""
        nodes: dict[Any, NodePart] = {}
        built = {node.name: node for node in parse.nodes}
        gateways = parse.gateways
        raw_nodes = document.get("nodes") or {}
        for name, body in raw_nodes.items():
            nodes[name] = NodePart(
                _without_ports(body),
                [],
                [],
                [],
                gateways.nats.get(name),
                gateways.nodes.get(name),
                built.get(name),
                False,
            )
        # Each node's are together, in document order: grouped by C (10^5 ports).
        for name, found in groupby(parse.parsed.provider_addresses, itemgetter(1)):
            nodes[name].addresses = list(found)
        for name, found in groupby(parse.parsed.ports, itemgetter(1)):
            nodes[name].ports = list(found)
        for served in gateways.served:
            nodes[served.node].served.append(served)
        base = parse.parsed
        return cls(
            skeleton={
                **{key: document.get(key, []) for key in _TOP},
                "nodes": {name: part.body for name, part in nodes.items()},
            },
            parsed=Parsed(domains=base.domains, subnets=base.subnets, routes=base.routes),
            tunnels=gateways.tunnels,
            unresolved_tunnels=gateways.unresolved_tunnels,
            domains=list(parse.domains),
            routes=parse.routes,
            built_tunnels=parse.tunnels,
            nodes=nodes,
        )

    def edited(
        self, edit: Callable[[Any], Any], section: str
    ) -> tuple[Sections, Any, list[ConfigIssue], set[Any]]:
        """The sections once ``edit``, which changes the skeleton's ``section``
        alone (``routing_domains``, ``customer_routes``, ``tunnels`` or ``nodes``),
        is applied to a copy of it (what the edit reports; its refusals raise), the
        schema issues of what it changed, and the nodes whose mapping changed."""
        skeleton = {**self.skeleton, section: _copied(self.skeleton[section])}
        result = edit(skeleton)
        issues: list[ConfigIssue] = []
        new = replace(self, skeleton=skeleton, parsed=replace(self.parsed))
        changed: set[Any] = set()
        if skeleton[section] == self.skeleton[section]:
            return new, result, issues, changed
        if section == "routing_domains":
            self._domains(new, issues)
        elif section == "customer_routes":
            new.parsed.routes, new.routes = self._routes(skeleton, issues)
        elif section == "tunnels":
            loader = _Loader(Parsed(), issues)
            new.tunnels, new.built_tunnels, new.unresolved_tunnels = [], [], set()
            for loc, raw in _items(skeleton, "tunnels", issues):
                tunnel = loader.one(Tunnel, loc, raw)
                if tunnel is None:
                    new.unresolved_tunnels.add(_attempt(str, raw, "name"))
                else:
                    new.tunnels.append((loc, tunnel))
                    new.built_tunnels.append(tunnel)
        else:
            changed = set(self.nodes) ^ set(skeleton["nodes"])
            new.nodes = {}
            for name, body in skeleton["nodes"].items():
                part = self.nodes.get(name)
                if part is not None and body == part.body:
                    new.nodes[name] = part
                else:
                    changed.add(name)
                    new.nodes[name] = _node(name, body, part, issues)
                    skeleton["nodes"][name] = new.nodes[name].body  # a new one's: no ports
        return new, result, issues, changed

    def _domains(self, new: Sections, issues: list[ConfigIssue]) -> None:
        """The routing domains of ``new``'s skeleton, each left as it was at its
        place keeping its entries (and its subnets')."""
        parsed = Parsed(routes=self.parsed.routes)
        loader = _Loader(parsed, issues)
        old = self.skeleton["routing_domains"]
        subnets = defaultdict(list)
        for entry in self.parsed.subnets:
            subnets[entry[0][1]].append(entry)
        new.domains = []
        for loc, raw in _items(new.skeleton, "routing_domains", issues):
            at = loc[1]
            if at < len(old) and raw == old[at]:
                parsed.domains.append(self.parsed.domains[at])
                parsed.subnets.extend(subnets[at])
                new.domains.append(self.domains[at])
            else:
                new.domains.append(loader.domain(loc, raw))
        new.parsed = parsed

    def _routes(
        self, skeleton: dict[str, Any], issues: list[ConfigIssue]
    ) -> tuple[list[tuple[Loc, CustomerRoute]], list[CustomerRoute]]:
        """The customer routes, each item the edit left as it was keeping its entry."""
        known = {
            id(raw): route
            for raw, route in zip(self.skeleton["customer_routes"], self.routes, strict=True)
        }
        loader = _Loader(Parsed(), issues)
        entries, built = [], []
        for loc, raw in _items(skeleton, "customer_routes", issues):
            route = known.get(id(raw)) or loader.one(CustomerRoute, loc, raw)
            if route is not None:
                entries.append((loc, route))
                built.append(route)
        return entries, built

    def judged(self, records: list[Any], ports: list[Any]) -> tuple[Parsed, GatewayParts]:
        """What the cross-entity checks judge: every entry of these sections, with
        ``records`` and ``ports`` (the part of them the change can reach)."""
        base = self.parsed
        parts = self.nodes.values()
        parsed = replace(
            base,
            records=records,
            ports=ports,
            provider_addresses=[entry for part in parts for entry in part.addresses],
            unresolved_vsids=set(base.unresolved_vsids),
            unresolved_records=[],
            unresolved_nodes={_label(n) for n, part in self.nodes.items() if part.unresolved},
        )
        gateways = GatewayParts(
            served=[entry for part in parts for entry in part.served],
            nats={_label(n): p.nat for n, p in self.nodes.items() if p.nat is not None},
            nodes={_label(n): part.model for n, part in self.nodes.items()},
            tunnels=self.tunnels,
            unresolved_tunnels=self.unresolved_tunnels,
        )
        return parsed, gateways


def _node(name: Any, body: Any, old: NodePart | None, issues: list[ConfigIssue]) -> NodePart:
    """A node parsed again, alone, keeping the ports it had (never in the skeleton);
    a node new to the skeleton (an added node) with the ports its body brings, kept
    out of the skeleton from then on."""
    parsed = Parsed()
    loader = _Loader(parsed, issues)
    built = loader.node(("nodes", name), name, body)
    label = _label(name)
    ports = parsed.ports
    if old is not None:
        ports = old.ports
        if built is not None and ports:
            built = built.model_copy(update={"ports": tuple(port for _, _, port in ports)})
    gateways = loader.gateways
    return NodePart(
        _without_ports(body),
        parsed.provider_addresses,
        ports,
        gateways.served,
        gateways.nats.get(label),
        gateways.nodes.get(label),
        built,
        label in parsed.unresolved_nodes,
    )


def _label(name: Any) -> str:
    return name if isinstance(name, str) else str(issue_value(name))


def _without_ports(body: Any) -> Any:
    """A host node's mapping without its ports (a gateway's keeps them: the schema
    refuses them there, as a whole)."""
    if isinstance(body, Mapping) and body.get("role") != "gateway" and "ports" in body:
        return {key: value for key, value in body.items() if key != "ports"}
    return body


def _copied(value: Any) -> Any:
    """``value`` with every mapping and list that holds mappings or lists copied, for
    an edit to change; entries made of plain values are shared (edits never change
    an entry in place, they add and remove them)."""
    if isinstance(value, Mapping):
        if any(isinstance(v, Mapping | list) for v in value.values()):
            return {key: _copied(v) for key, v in value.items()}
        return value
    if isinstance(value, list):
        return [_copied(v) for v in value]
    return value
