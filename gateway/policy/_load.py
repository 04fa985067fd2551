"""``load_policy()``: a plain mapping in, a ``Policy`` or one ``ConfigError`` out.

Entries are validated one by one (a routing domain apart from its subnets, a node
apart from its provider addresses and ports), so one bad entry costs only itself: the
others still reach the cross-entity checks, and the operator sees every problem of the
document in one pass. Per-entry validation costs within 10% of one pydantic call over
a whole list (measured: the per-field validators dominate), and it keeps what passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from gateway.errors import ConfigError, ConfigIssue

from ._gateway_checks import GatewayParts, ServedEntry, check_gateways
from ._gc import paused_gc
from ._paths import Loc, format_path, issue_value
from ._schema_errors import schema_issues, unknown_key_message
from ._values import NODE_NAME_RULE, parse_mac, parse_node_name, parse_rdid
from .checks import Parsed, check
from .model import (
    CustomerRoute,
    LookupRecord,
    Node,
    NodeRoute,
    Policy,
    Port,
    PortForward,
    ProviderAddress,
    RoutingDomain,
    ServedDomain,
    Tap,
    Tunnel,
    VirtualSubnet,
)

_SECTIONS = (
    "revision",
    "routing_domains",
    "lookup_records",
    "customer_routes",
    "tunnels",
    "nodes",
)
_LIST_HINT = "must be a list (write [] for none)"


def load_policy(document: Mapping[str, Any]) -> Policy:
    """Validate a whole policy document (as YAML or JSON gives it) and build it.

    Raises ``ConfigError`` listing every problem found, each with its path and value
    (no file or line: the caller that read the file adds them). Never raises anything
    else for any input made of dicts, lists and scalars.
    """
    with paused_gc():
        return _load(document)


def _load(document: Mapping[str, Any]) -> Policy:
    parse = parse_document(document)
    if parse.issues:
        raise ConfigError(parse.issues)
    return parse.policy()


@dataclass(slots=True)
class Parse:
    """What loading a document found: its issues, every entry that passed the
    schema with its path (``parsed``, ``gateways``: what the cross-entity checks
    judge, and what ``incremental.py`` indexes), and the entries built."""

    issues: list[ConfigIssue]
    parsed: Parsed
    gateways: GatewayParts
    revision: Any
    domains: list[RoutingDomain | None]
    records: list[LookupRecord]
    routes: list[CustomerRoute]
    tunnels: list[Tunnel]
    nodes: list[Node]

    def policy(self) -> Policy:
        """The policy, once no issue was found: then every entry was built, so
        nothing was dropped from these lists."""
        return Policy(
            revision=self.revision,
            routing_domains=tuple(domain for domain in self.domains if domain is not None),
            lookup_records=tuple(self.records),
            customer_routes=tuple(self.routes),
            nodes=tuple(self.nodes),
            tunnels=tuple(self.tunnels),
        )


def parse_document(document: Mapping[str, Any], *, judged: bool = True) -> Parse:
    """Validate every entry of a document and judge them together: ``Parse``.
    ``judged=False`` skips the cross-entity checks (each entry's schema is still
    validated: it builds the entries): only for a document whose entries are known
    to have passed them together already (a store's rows under its digest)."""
    issues: list[ConfigIssue] = []
    if not isinstance(document, Mapping):
        message = "a policy document must be a mapping (routing_domains:, lookup_records:, ...)"
        raise ConfigError([ConfigIssue("", _brief(document), message)])
    for key in document:
        if key not in _SECTIONS:
            message = unknown_key_message(key, _SECTIONS)
            issues.append(ConfigIssue(format_path((key,)), _brief(document[key]), message))
    revision = document.get("revision", 0)
    if type(revision) is not int or revision < 0:
        issues.append(ConfigIssue("revision", _brief(revision), "must be an integer >= 0"))
    parsed = Parsed()
    loader = _Loader(parsed, issues)
    domains = [loader.domain(loc, raw) for loc, raw in _items(document, "routing_domains", issues)]
    records = []
    for loc, raw in _items(document, "lookup_records", issues):
        record = loader.record(loc, raw)
        if record is not None:
            records.append(record)
    routes = []
    for loc, raw in _items(document, "customer_routes", issues):
        route = loader.one(CustomerRoute, loc, raw)
        if route is not None:
            parsed.routes.append((loc, route))
            routes.append(route)
    tunnels = []
    for loc, raw in _items(document, "tunnels", issues):
        tunnel = loader.one(Tunnel, loc, raw)
        if tunnel is None:
            loader.gateways.unresolved_tunnels.add(_attempt(str, raw, "name"))
        else:
            loader.gateways.tunnels.append((loc, tunnel))
            tunnels.append(tunnel)
    nodes = loader.nodes(document.get("nodes", {}))
    if judged:
        issues.extend(judge(parsed, loader.gateways))
    return Parse(
        issues, parsed, loader.gateways, revision, domains, records, routes, tunnels, nodes
    )


def judge(parsed: Parsed, gateways: GatewayParts) -> list[ConfigIssue]:
    """The cross-entity issues of what passed the schema: the whole document's, or
    (``incremental.py``) the part of it a change can break."""
    issues = check(parsed)
    # Apart from check(): the gateway's rules build on its helpers (checks.py's).
    issues.extend(check_gateways(parsed, gateways))
    return issues


class _Loader:
    """Validates entries, filling ``parsed`` with what passed and ``issues`` with what
    did not."""

    def __init__(self, parsed: Parsed, issues: list[ConfigIssue]) -> None:
        self.parsed = parsed
        self.issues = issues
        self.gateways = GatewayParts()

    def record(self, loc: Loc, raw: Any) -> LookupRecord | None:
        """A lookup record, recorded in ``parsed``; one that failed the schema still
        says which port it would have given a CA (``unresolved_records``)."""
        record = self.one(LookupRecord, loc, raw)
        if record is None:
            self.parsed.unresolved_records.append(_record_key(raw))
        else:
            self.parsed.records.append((loc, record))
        return record

    def one(self, model: type[BaseModel], loc: Loc, raw: Any) -> Any:
        try:
            return model.model_validate(raw)
        except ValidationError as error:
            self.issues.extend(schema_issues(error, loc, model))
            return None

    def domain(self, loc: Loc, raw: Any) -> RoutingDomain | None:
        shell, children = _split(raw, ("virtual_subnets",))
        domain = self.one(RoutingDomain, loc, shell)
        if domain is not None:
            self.parsed.domains.append((loc, domain))
            rdid: str | None = domain.rdid
        else:
            rdid = _attempt(parse_rdid, raw, "rdid")
            if rdid is not None:
                self.parsed.unresolved_rdids.add(rdid)
            else:
                self.parsed.unreadable_rdid = True
        subnets = []
        for index, item in enumerate(children.get("virtual_subnets", ())):
            where = (*loc, "virtual_subnets", index)
            subnet = self.one(VirtualSubnet, where, item)
            if subnet is None:
                vsid = item.get("vsid") if isinstance(item, Mapping) else None
                if type(vsid) is int:
                    self.parsed.unresolved_vsids.add(vsid)
                else:
                    self.parsed.unreadable_vsid = True
            else:
                self.parsed.subnets.append((where, subnet, rdid))
            subnets.append(subnet)
        if domain is None or None in subnets:
            return None
        return domain.model_copy(update={"virtual_subnets": tuple(subnets)})

    def nodes(self, raw: Any) -> list[Node]:
        if not isinstance(raw, Mapping):
            message = "must be a mapping of node name: node (write {} for none)"
            self.issues.append(ConfigIssue("nodes", _brief(raw), message))
            return []
        built = []
        for name, body in raw.items():
            loc: Loc = ("nodes", name)
            node = self.node(loc, name, body)
            if node is not None:
                built.append(node)
        return built

    def node(self, loc: Loc, name: Any, body: Any) -> Node | None:
        valid_name = _attempt(parse_node_name, {"name": name}, "name")
        if valid_name is None:
            self.issues.append(ConfigIssue(format_path(loc), _brief(name), NODE_NAME_RULE))
        label = name if isinstance(name, str) else str(issue_value(name))
        if isinstance(body, Mapping) and "name" in body:
            message = "unknown key; a node's name is its key under nodes:"
            self.issues.append(
                ConfigIssue(format_path((*loc, "name")), _brief(body["name"]), message)
            )
            body = {key: value for key, value in body.items() if key != "name"}
        # A gateway's ports stay in the shell, for the model to refuse as a whole.
        gateway = isinstance(body, Mapping) and body.get("role") == "gateway"
        lists = ("provider_addresses",) if gateway else ("provider_addresses", "ports")
        shell, children = _split(body, lists)
        served = None
        if isinstance(shell, dict):
            if gateway and isinstance(shell.get("routing_domains"), Mapping):
                served = self.served(loc, label, shell.pop("routing_domains"))
            # The key was judged above: a stand-in keeps its error from being repeated.
            shell = {**shell, "name": valid_name or "invalid"}
        node = self.one(Node, loc, shell)
        self.gateways.nodes[label] = node
        if gateway and isinstance(shell, dict) and shell.get("nat") is not None:
            # None: the NAT (or the node) failed the schema; its checks stay silent.
            self.gateways.nats[label] = ((*loc, "nat"), None if node is None else node.nat)
        complete = node is not None and valid_name is not None
        if served is not None and None in served.values():
            complete = False
        addresses = []
        for index, item in enumerate(children.get("provider_addresses", ())):
            where = (*loc, "provider_addresses", index)
            address = self.one(ProviderAddress, where, item)
            if address is None:
                self.parsed.unresolved_nodes.add(label)
                complete = False
            else:
                self.parsed.provider_addresses.append((where, label, address))
                addresses.append(address)
        ports = []
        for index, item in enumerate(children.get("ports", ())):
            where = (*loc, "ports", index)
            port = self.one(Port, where, item)
            if port is None:
                complete = False
            else:
                self.parsed.ports.append((where, label, port))
                ports.append(port)
        if not complete or node is None:
            return None
        update: dict[str, Any] = {"provider_addresses": tuple(addresses), "ports": tuple(ports)}
        if served is not None:
            update["routing_domains"] = MappingProxyType(served)
        return node.model_copy(update=update)

    def served(self, loc: Loc, node: str, raw: Mapping[Any, Any]) -> dict[str, Any]:
        """A gateway's routing domains, each TAP and route validated alone (so that
        one bad route costs only itself), recorded for the gateway checks. Gives each
        domain built, or None for one with a problem."""
        built: dict[str, Any] = {}
        for key, body in raw.items():
            where = (*loc, "routing_domains", key)
            if not isinstance(key, str):
                message = "must be a routing domain's name or RDID (a string)"
                self.issues.append(ConfigIssue(format_path(where), _brief(key), message))
                continue
            shell, children = _split(body, ("taps", "routes", "port_forwards"))
            domain = self.one(ServedDomain, where, shell)
            taps = self.each(Tap, where, "taps", children)
            routes = self.each(NodeRoute, where, "routes", children)
            forwards = self.each(PortForward, where, "port_forwards", children)
            entry = ServedEntry(where, node, key)
            entry.nat = isinstance(shell, Mapping) and shell.get("nat") is not None
            entry.taps = [(at, tap) for at, tap in taps if tap is not None]
            entry.routes = [(at, route) for at, route in routes if route is not None]
            entry.port_forwards = [(at, fwd) for at, fwd in forwards if fwd is not None]
            # A TAP that failed the schema (or its whole domain) may be what a next hop names.
            entry.taps_complete = domain is not None and len(entry.taps) == len(taps)
            self.gateways.served.append(entry)
            built[key] = None
            if (
                domain is not None
                and entry.taps_complete
                and len(entry.routes) == len(routes)
                and len(entry.port_forwards) == len(forwards)
            ):
                parts = {
                    "taps": entry.taps,
                    "routes": entry.routes,
                    "port_forwards": entry.port_forwards,
                }
                update = {name: tuple(item for _, item in found) for name, found in parts.items()}
                built[key] = domain.model_copy(update=update)
        return built

    def each(
        self, model: type[BaseModel], where: Loc, key: str, children: dict[str, list[Any]]
    ) -> list[tuple[Loc, Any]]:
        """Each item of the child list ``key``, validated alone: (path, entry or None)."""
        return [
            ((*where, key, index), self.one(model, (*where, key, index), item))
            for index, item in enumerate(children.get(key, ()))
        ]


def _items(
    document: Mapping[str, Any], section: str, issues: list[ConfigIssue]
) -> list[tuple[Loc, Any]]:
    value = document.get(section, [])
    if not isinstance(value, list):
        issues.append(ConfigIssue(section, _brief(value), _LIST_HINT))
        return []
    return [((section, index), item) for index, item in enumerate(value)]


def _split(raw: Any, keys: tuple[str, ...]) -> tuple[Any, dict[str, list[Any]]]:
    """``raw`` with its child lists emptied (validated apart), and those lists. A child
    value that is not a list stays, for the schema to report."""
    if not isinstance(raw, Mapping):
        return raw, {}
    shell = dict(raw)
    children = {}
    for key in keys:
        if isinstance(shell.get(key), list):
            children[key] = shell[key]
            shell[key] = []
    return shell, children


def _attempt(parse: Any, raw: Any, key: str) -> Any:
    """``parse(raw[key])``, or None when there is no such valid value."""
    if not isinstance(raw, Mapping) or key not in raw:
        return None
    try:
        return parse(raw[key])
    except (PydanticCustomError, ValueError):
        return None


def _record_key(raw: Any) -> tuple[int | None, bytes | None]:
    """What a record that failed the schema would have keyed a port by, if readable."""
    vsid = raw.get("vsid") if isinstance(raw, Mapping) else None
    return (vsid if type(vsid) is int else None, _attempt(parse_mac, raw, "mac"))


def _brief(value: Any) -> Any:
    """A value small enough to print in an issue (a whole section is not)."""
    if isinstance(value, Mapping):
        return "{...}" if value else {}
    if isinstance(value, list):
        return "[...]" if value else []
    return issue_value(value)
