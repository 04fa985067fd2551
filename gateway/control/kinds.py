"""The one registry of the policy's entry kinds: what each is and where it sits.

An entry kind (lookup records, customer routes, ...) is described here once: its
model, where its entries sit in the document (top level, or nested in a parent's
entries: a routing domain's subnets, a node's provider addresses), the key an HNV
admin knows an entry by, the filters the cmdlets take, and how its fields read on
the command line. Everything else is derived from this table: the edits (add,
remove, find), the API's JSON listing, its routes and OpenAPI document, the keys
``nvgw policy diff`` matches entries by, and the CLI's ``nvgw KIND add|get|remove``.
Adding a kind is one entry in ``KINDS`` plus its pydantic model.

Entries sit in a list (lookup records), or in a mapping from the field that names
them (``keyed_by``): nodes by name, a gateway's served routing domains by the routing
domain's name or RDID. A model may hold that field (a node's ``name``) or not (a
served domain is the mapping's value alone, in the document and in the policy): then
the entry's JSON, its key and the API's bodies carry it beside the model's fields,
as they carry the parents' refs (``names``).

The order of ``KINDS`` is the order a diff lists changes in and the CLI lists its
verbs: the policy as the document holds it (routing domains, their subnets, lookup
records, customer routes), then what nodes hold (a gateway's served routing domains
before their TAPs and routes), then the nodes themselves.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from gateway.policy import (
    CustomerRoute,
    LookupRecord,
    Node,
    NodeRoute,
    Port,
    PortForward,
    ProviderAddress,
    RoutingDomain,
    ServedDomain,
    Tap,
    Tunnel,
    VirtualSubnet,
)


@dataclass(frozen=True)
class Option:
    """How one field of an entry reads on the command line."""

    help: str
    default: Any = None  # what ``add`` sends when the option is not given (None: nothing)
    flag: str | None = None  # the option's name when not the field's: --prefix for prefixes


@dataclass(frozen=True, eq=False)
class Kind:
    """One kind of entry in the policy."""

    name: str  # as in the URL: lookup-records
    what: str  # one entry, in messages and diff lines; the CLI's verb group: lookup-record
    model: type[BaseModel]
    section: str  # the key its entries sit under, in the document or in the parent's entry
    key: str  # how an admin names one entry: a format over its fields and parents' refs
    parent: Kind | None = None  # the kind whose entries hold these (None: the document)
    ref: str | None = None  # the field by which entries nested in this kind name it
    keyed_by: str | None = None  # its entries are a mapping from this field (nodes: name)
    filters: tuple[str, ...] = ()  # the fields a GET or DELETE may filter by
    flow: bool = False  # written on one line ({vsid: ..., ca: ...}) like the shipped files
    api: bool = True  # a resource of the API and a verb of the CLI
    options: Mapping[str, Option] = field(default_factory=dict)  # the CLI's, in its order

    @property
    def verb(self) -> str:
        """The CLI's command group: ``nvgw lookup-record``."""
        return self.what.replace(" ", "-")

    @property
    def refs(self) -> tuple[str, ...]:
        """The fields naming an entry's parents, outermost first, as its JSON and the
        API's bodies carry them: a subnet's ``rdid``, a provider address's ``node``."""
        if self.parent is None:
            return ()
        assert self.parent.ref is not None, f"{self.parent.name} holds entries: it needs a ref"
        return (*self.parent.refs, self.parent.ref)

    @property
    def key_apart(self) -> str | None:
        """The field its entries are keyed by when their model lacks it: a served
        routing domain is ``blue: {taps: ..., routes: ...}``, its ``routing_domain``
        held by the mapping alone, in the document and in the policy."""
        if self.keyed_by is None or self.keyed_by in self.model.model_fields:
            return None
        return self.keyed_by

    @property
    def names(self) -> tuple[str, ...]:
        """The fields an entry's JSON and the API's bodies carry beside its model's:
        its parents' refs, then the key it sits under if its model lacks it."""
        return self.refs if self.key_apart is None else (*self.refs, self.key_apart)

    def key_of(self, refs: Mapping[str, Any], entry: BaseModel) -> str:
        """The entry's key, as ``nvgw policy diff`` prints it: ``5010/10.10.10.12``."""
        return self.key.format_map({**refs, **_fields(entry)})

    def own_key_of(self, entry: BaseModel) -> str:
        """The part of the entry's key that is its own (its parents' refs left out),
        as its parent's listing names it: a port forward's ``tcp/203.0.113.10:80``."""
        own = self.key
        for ref in self.refs:
            own = own.replace(f"{{{ref}}}/", "", 1)
        return own.format_map(_fields(entry))

    def own_key_fields(self) -> list[str]:
        """The fields of its key that are its own (not its parents')."""
        named = [name for _, name, _, _ in string.Formatter().parse(self.key) if name]
        return [name for name in named if name not in self.refs]


def _fields(entry: BaseModel) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in type(entry).model_fields}


ROUTING_DOMAINS = Kind(
    "routing-domains",
    "routing domain",
    RoutingDomain,
    section="routing_domains",
    key="{rdid}",
    ref="rdid",
    filters=("rdid", "name"),
    options={
        "rdid": Option("Routing domain ID, a GUID in braces."),
        "name": Option("A name for people."),
    },
)
VIRTUAL_SUBNETS = Kind(
    "virtual-subnets",
    "virtual subnet",
    VirtualSubnet,
    section="virtual_subnets",
    key="{vsid}",
    parent=ROUTING_DOMAINS,
    filters=("rdid", "vsid"),
    options={
        "rdid": Option("The routing domain it belongs to."),
        "vsid": Option("Virtual subnet ID."),
        "prefixes": Option("An IP prefix of the subnet (repeat for more).", flag="prefix"),
        "gateway": Option("The subnet's default-gateway CA."),
    },
)
LOOKUP_RECORDS = Kind(
    "lookup-records",
    "lookup record",
    LookupRecord,
    section="lookup_records",
    key="{vsid}/{ca}",
    filters=("vsid", "ca", "mac", "pa", "vm", "rule"),
    flow=True,
    options={
        "vsid": Option("Virtual subnet ID (-VirtualSubnetID)."),
        "ca": Option("Customer address (-CustomerAddress)."),
        "mac": Option("The VM's MAC (-MACAddress)."),
        "pa": Option("Provider address (-ProviderAddress)."),
        "rule": Option("encap or nat (-Rule).", default="encap"),
        "type": Option("static, l2only or gateway (-Type)."),
        "vm": Option("The VM's name (-VMName)."),
    },
)
CUSTOMER_ROUTES = Kind(
    "customer-routes",
    "customer route",
    CustomerRoute,
    section="customer_routes",
    key="{rdid} {destination} via {next_hop}",
    filters=("rdid", "vsid", "destination", "next_hop"),
    options={
        "rdid": Option("Routing domain ID (-RoutingDomainID)."),
        "vsid": Option("Virtual subnet ID (-VirtualSubnetID)."),
        "destination": Option("Destination prefix (-DestinationPrefix)."),
        "next_hop": Option("0.0.0.0 for on-link, or a CA (-NextHop).", default="0.0.0.0"),
        "metric": Option("Lower wins among equal prefixes (-Metric)."),
    },
)
# Site-to-site tunnels (decisions.md, "Tunnels"): keys are files on the node, so an
# entry holds the peer's public key and paths, never a secret.
TUNNELS = Kind(
    "tunnels",
    "tunnel",
    Tunnel,
    section="tunnels",
    key="{name}",
    filters=("name", "rdid", "node"),
    options={
        "name": Option("The tunnel's name (node routes say tunnel:NAME)."),
        "rdid": Option("The routing domain it belongs to."),
        "node": Option("The gateway node that serves it."),
        "listen_port": Option("The node's UDP port it is served on (a key in tunnel_keys)."),
        "public_key": Option("The peer's public key, base64 as wg prints it."),
        "preshared_key_file": Option("Path of the preshared key file on the node."),
        "endpoint": Option("The peer's address:port (none: it reaches us first)."),
        "allowed_ips": Option("A prefix of the peer's (repeat for more).", flag="allowed_ip"),
        "persistent_keepalive": Option("Seconds between keepalives (none: off)."),
    },
)
# Nodes and their ports are not API resources (a port moves with ``nvgw migrate``;
# a node's own settings only change with its config): they are here for the diff.
NODES = Kind(
    "nodes", "node", Node, section="nodes", key="{name}", ref="node", keyed_by="name", api=False
)
PROVIDER_ADDRESSES = Kind(
    "provider-addresses",
    "provider address",
    ProviderAddress,
    section="provider_addresses",
    key="{node}/{pa}",
    parent=NODES,
    filters=("node", "pa", "interface"),
    flow=True,
    options={
        "node": Option("The node (daemon) that owns it."),
        "interface": Option("Its interface on that node."),
        "pa": Option("Provider address (-ProviderAddress)."),
        "prefix_length": Option("Prefix length (-PrefixLength)."),
        "vlan": Option("VLAN ID (-VlanID)."),
    },
)
PORTS = Kind(
    "ports", "port", Port, section="ports", key="{node}/{name}", parent=NODES, flow=True, api=False
)


# A gateway node's own part of each routing domain it serves (decisions.md, "Routes
# and where they lead"): under the node, by the domain's name or RDID as written.
GATEWAY_DOMAINS = Kind(
    "gateway-routing-domains",
    "gateway routing domain",
    ServedDomain,
    section="routing_domains",
    key="{node}/{routing_domain}",
    parent=NODES,
    ref="routing_domain",
    keyed_by="routing_domain",
    filters=("node", "routing_domain"),
    options={
        "node": Option("The gateway node."),
        "routing_domain": Option("The routing domain it serves: its name or RDID."),
        "nat": Option("Its share of the node's NAT, in YAML: '{max_sessions: 4096, log: true}'."),
    },
)
_SERVED_REFS = {  # what a TAP or a gateway route sits under
    "node": Option("The gateway node."),
    "routing_domain": Option("The served routing domain, as the node's config names it."),
}
GATEWAY_TAPS = Kind(
    "gateway-taps",
    "gateway tap",
    Tap,
    section="taps",
    key="{node}/{routing_domain}/{name}",
    parent=GATEWAY_DOMAINS,
    filters=("node", "routing_domain", "name"),
    flow=True,
    options={
        **_SERVED_REFS,
        "name": Option("The TAP's interface name (15 bytes at most)."),
        "address": Option("The gateway's own address on it, with the subnet's length."),
    },
)
GATEWAY_ROUTES = Kind(
    "gateway-routes",
    "gateway route",
    NodeRoute,
    section="routes",
    key="{node}/{routing_domain}/{destination}",
    parent=GATEWAY_DOMAINS,
    filters=("node", "routing_domain", "destination", "next_hop"),
    flow=True,
    options={
        **_SERVED_REFS,
        "destination": Option("Destination prefix."),
        "next_hop": Option("tap:NAME (on-link on that TAP), or a neighbour's address on a TAP."),
    },
)
# A static port forward of the node's NAT (issue 12): the internet's address:port to
# a CA:port of the routing domain it sits under.
GATEWAY_PORT_FORWARDS = Kind(
    "gateway-port-forwards",
    "gateway port forward",
    PortForward,
    section="port_forwards",
    key="{node}/{routing_domain}/{protocol}/{address}:{port}",
    parent=GATEWAY_DOMAINS,
    filters=("node", "routing_domain", "protocol", "address", "port", "ca"),
    flow=True,
    options={
        **_SERVED_REFS,
        "protocol": Option("tcp or udp."),
        "address": Option("The external address (one of the node's nat.addresses)."),
        "port": Option("The external port (outside nat.dynamic_ports)."),
        "ca": Option("The tenant's address it leads to."),
        "ca_port": Option("The tenant's port it leads to."),
    },
)

KINDS: tuple[Kind, ...] = (
    ROUTING_DOMAINS,
    VIRTUAL_SUBNETS,
    LOOKUP_RECORDS,
    CUSTOMER_ROUTES,
    TUNNELS,
    PROVIDER_ADDRESSES,
    PORTS,
    GATEWAY_DOMAINS,
    GATEWAY_TAPS,
    GATEWAY_ROUTES,
    GATEWAY_PORT_FORWARDS,
    NODES,
)


def served(kinds: Iterable[Kind] = KINDS) -> list[Kind]:
    """The kinds the API and the CLI manage."""
    return [kind for kind in kinds if kind.api]


def children(kind: Kind, kinds: Iterable[Kind] = KINDS) -> list[Kind]:
    """The kinds whose entries sit inside an entry of ``kind``."""
    return [other for other in kinds if other.parent is kind]


_REF_TEMPLATE = "#/components/schemas/{model}"


def schema(kind: Kind) -> dict[str, Any]:
    """The JSON schema of one entry as the API takes it: the model's, with the names
    it carries beside (strings) first: the parents' refs, the key apart. The models
    it refers to are ``used_models``'."""
    found = kind.model.model_json_schema(ref_template=_REF_TEMPLATE)
    found.pop("$defs", None)
    names = {name: {"type": "string"} for name in kind.names}
    found["properties"] = {**names, **found["properties"]}
    return found


def used_models(kinds: Iterable[Kind]) -> dict[str, Any]:
    """The schemas of the models that entries of ``kinds`` refer to, by name."""
    found: dict[str, Any] = {}
    for kind in kinds:
        found.update(kind.model.model_json_schema(ref_template=_REF_TEMPLATE).get("$defs", {}))
    return found


def walk(policy: Any, kind: Kind) -> Iterator[tuple[dict[str, Any], BaseModel]]:
    """Every entry of ``kind`` in a policy, in document order, with the names it
    carries beside its model's fields (``Kind.names``: ``{"rdid": ...}`` for a
    subnet, ``{"node": ..., "routing_domain": ...}`` for a served domain)."""
    for holder, refs in holders(policy, kind, _named_objects):
        for name, entry in _named_objects(holder, kind):
            yield ({**refs, kind.key_apart: name} if kind.key_apart else refs), entry


# A holder's entries of a kind, each with the value entries nested in it name it by.
Named = Callable[[Any, Kind], Iterable[tuple[Any, Any]]]


def holders(root: Any, kind: Kind, named: Named) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Everything that holds entries of ``kind`` (the root, or each entry of its
    parent kind), with the refs that name it: ``named`` reads a policy's objects or
    a document's mappings."""
    parent = kind.parent
    if parent is None:
        yield root, {}
        return
    assert parent.ref is not None
    for holder, refs in holders(root, parent, named):
        for name, entry in named(holder, parent):
            yield entry, {**refs, parent.ref: name}


def _named_objects(holder: Any, kind: Kind) -> Iterable[tuple[Any, Any]]:
    """A policy object's entries of a kind, each with the value that names it (None
    for a kind nothing names: its entries hold none)."""
    entries = getattr(holder, kind.section) or ()  # a host node's routing_domains: None
    if isinstance(entries, Mapping):
        yield from entries.items()
        return
    field = kind.keyed_by or kind.ref
    for entry in entries:
        yield (None if field is None else getattr(entry, field)), entry


def without_children(entry: BaseModel, kind: Kind, kinds: Sequence[Kind] = KINDS) -> BaseModel:
    """An entry with its nested kinds' entries left out: a routing domain without its
    subnets, a node without its served domains, which are entries of their own."""
    return entry.model_copy(update={child.section: () for child in children(kind, kinds)})
