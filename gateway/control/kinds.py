"""The one registry of the policy's entry kinds: what each is and where it sits.

An entry kind (lookup records, customer routes, ...) is described here once: its
model, where its entries sit in the document (top level, or nested in a parent's
entries: a routing domain's subnets, a node's provider addresses), the key an HNV
admin knows an entry by, the filters the cmdlets take, and how its fields read on
the command line. Everything else is derived from this table: the edits (add,
remove, find), the API's JSON listing, its routes and OpenAPI document, the keys
``nvgw policy diff`` matches entries by, and the CLI's ``nvgw KIND add|get|remove``.
Adding a kind is one entry in ``KINDS`` plus its pydantic model.

The order of ``KINDS`` is the order a diff lists changes in and the CLI lists its
verbs: the policy as the document holds it (routing domains, their subnets, lookup
records, customer routes), then what nodes hold, then the nodes themselves.
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
    Port,
    ProviderAddress,
    RoutingDomain,
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
    by_name: bool = False  # its entries are a mapping from their ``name`` (nodes:), not a list
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

    def key_of(self, refs: Mapping[str, Any], entry: BaseModel) -> str:
        """The entry's key, as ``nvgw policy diff`` prints it: ``5010/10.10.10.12``."""
        return self.key.format_map({**refs, **_fields(entry)})

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
# Nodes and their ports are not API resources (a port moves with ``nvgw migrate``;
# a node's own settings only change with its config): they are here for the diff.
NODES = Kind(
    "nodes", "node", Node, section="nodes", key="{name}", ref="node", by_name=True, api=False
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

KINDS: tuple[Kind, ...] = (
    ROUTING_DOMAINS,
    VIRTUAL_SUBNETS,
    LOOKUP_RECORDS,
    CUSTOMER_ROUTES,
    PROVIDER_ADDRESSES,
    PORTS,
    NODES,
)


def served(kinds: Iterable[Kind] = KINDS) -> list[Kind]:
    """The kinds the API and the CLI manage."""
    return [kind for kind in kinds if kind.api]


def children(kind: Kind, kinds: Iterable[Kind] = KINDS) -> list[Kind]:
    """The kinds whose entries sit inside an entry of ``kind``."""
    return [other for other in kinds if other.parent is kind]


def schema(kind: Kind) -> dict[str, Any]:
    """The JSON schema of one entry as the API takes it: the model's, with the
    parents' refs first (strings) for nested kinds."""
    found = kind.model.model_json_schema(ref_template="#/components/schemas/{model}")
    found.pop("$defs", None)
    found["properties"] = {**{ref: {"type": "string"} for ref in kind.refs}, **found["properties"]}
    return found


def walk(policy: Any, kind: Kind) -> Iterator[tuple[dict[str, Any], BaseModel]]:
    """Every entry of ``kind`` in a policy, in document order, with its parents' refs
    (``{"rdid": ...}`` for a subnet)."""
    for holder, refs in holders(policy, kind, _named_objects):
        for entry in getattr(holder, kind.section):
            yield refs, entry


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
    for entry in getattr(holder, kind.section):
        yield (entry.name if kind.by_name else getattr(entry, str(kind.ref))), entry


def without_children(entry: BaseModel, kind: Kind, kinds: Sequence[Kind] = KINDS) -> BaseModel:
    """An entry with its nested kinds' entries left out: a routing domain without its
    subnets, which are entries of their own."""
    return entry.model_copy(update={child.section: () for child in children(kind, kinds)})
