"""The HNV objects, frozen, and the schema that builds them from plain mappings.

The pydantic models *are* the objects the rest of nvgw uses: one definition gives the
document's keys, their types, the canonical values (GUIDs in lower case, MACs as
6-byte ``Mac``, addresses as ``ipaddress`` objects) and immutability. Every model
forbids unknown keys, so a misspelt key is an error naming it, never a value that
nothing reads. Rules that relate two fields or two entries live in ``checks.py`` (a
gateway node's in ``_gateway_checks.py``); ``load_policy()`` in ``_load.py`` runs them
all and is the only way to get a ``Policy``.
"""

from __future__ import annotations

import copy
import enum
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from ._tunnel_values import (
    parse_endpoint,
    parse_key_file,
    parse_port,
    parse_port_key,
    parse_wg_key,
)
from ._values import (
    IPAddress,
    IPInterface,
    IPNetwork,
    Mac,
    NextHop,
    invalid,
    parse_ifname,
    parse_interface_address,
    parse_ip,
    parse_label,
    parse_mac,
    parse_mss_clamp,
    parse_next_hop,
    parse_node_name,
    parse_prefix,
    parse_prefixes,
    parse_provider_ip,
    parse_rdid,
    parse_vsid,
)

# A route without a metric loses to any route the seed's cmdlets would write (they
# use 255) and wins over one written with a larger metric: 256 sits just past it.
DEFAULT_METRIC = 256


class Rule(enum.Enum):
    """How a lookup record carries a CA: NVGRE (``TranslationMethodEncap``) or
    IP-Rewrite (``TranslationMethodNat``: the CA is swapped for a PA of its own). In
    code and metrics it is ``ip_rewrite``, because nvgw's internet NAT is ``napt``."""

    ENCAP = "encap"
    IP_REWRITE = "nat"

    @property
    def label(self) -> str:
        return self.name.lower()


class RecordType(enum.Enum):
    """The cmdlet's ``-Type``: a VM (static), an L2-only entry, or a gateway's NIC."""

    STATIC = "static"
    L2ONLY = "l2only"
    GATEWAY = "gateway"

    @property
    def label(self) -> str:
        return self.name.lower()


class NodeRole(enum.Enum):
    """What a daemon does: serve VMs' ports (host), or route tenants' traffic out of
    their virtual networks and back (gateway)."""

    HOST = "host"
    GATEWAY = "gateway"


def _enum_parser(kind: str, table: Mapping[str, enum.Enum], help_text: str) -> Any:
    def parse(value: Any) -> enum.Enum:
        if isinstance(value, str):
            found = table.get(value) or table.get(value.lower())
            if found is not None:
                return found
        elif isinstance(value, enum.Enum) and value in table.values():
            return value
        raise invalid(kind, help_text)

    return parse


# Case-insensitive, and the cmdlets' own spellings too, so a Windows export maps over.
_RULES = {
    "encap": Rule.ENCAP,
    "nat": Rule.IP_REWRITE,
    "translationmethodencap": Rule.ENCAP,
    "translationmethodnat": Rule.IP_REWRITE,
}
_TYPES = {member.value: member for member in RecordType}


_ROLES = {member.value: member for member in NodeRole}


def _parse_role(value: Any) -> NodeRole:
    if isinstance(value, NodeRole):
        return value
    found = _ROLES.get(value) if isinstance(value, str) else None
    if found is None:
        raise invalid("role", "must be 'host' or 'gateway'")
    return found


def _int_range(low: int, high: int, what: str) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise invalid("range", f"out of range: {what} is {low}..{high}")
        return value

    return AfterValidator(check)


Vsid = Annotated[int, Strict(), AfterValidator(parse_vsid)]
Address = Annotated[IPAddress, PlainValidator(parse_ip, json_schema_input_type=str)]
ProviderIP = Annotated[IPAddress, PlainValidator(parse_provider_ip, json_schema_input_type=str)]
Prefix = Annotated[IPNetwork, PlainValidator(parse_prefix, json_schema_input_type=str)]
MacAddress = Annotated[Mac, PlainValidator(parse_mac, json_schema_input_type=str)]
Rdid = Annotated[str, PlainValidator(parse_rdid, json_schema_input_type=str)]
IfName = Annotated[str, PlainValidator(parse_ifname, json_schema_input_type=str)]
Label = Annotated[str, PlainValidator(parse_label, json_schema_input_type=str)]
InterfaceAddress = Annotated[
    IPInterface, PlainValidator(parse_interface_address, json_schema_input_type=str)
]
NextHopField = Annotated[NextHop, PlainValidator(parse_next_hop, json_schema_input_type=str)]
MssClamp = Annotated[
    str | int,
    PlainValidator(parse_mss_clamp, json_schema_input_type=Literal["auto", "off"] | int),
]
_parse_rule = _enum_parser("rule", _RULES, "must be 'encap' or 'nat'")
RuleField = Annotated[
    Rule, PlainValidator(_parse_rule, json_schema_input_type=Literal["encap", "nat"])
]
TypeField = Annotated[
    RecordType,
    PlainValidator(
        _enum_parser("type", _TYPES, "must be 'static', 'l2only' or 'gateway'"),
        json_schema_input_type=Literal["static", "l2only", "gateway"],
    ),
]


_FILTER_PARSERS: Mapping[str, Any] = {
    "vsid": int,
    "ca": parse_ip,
    "pa": parse_ip,
    "next_hop": parse_ip,
    "gateway": parse_ip,
    "destination": parse_prefix,
    "mac": parse_mac,
    "rdid": parse_rdid,
    "rule": _parse_rule,
    # A gateway's routing_domains key: a name or an RDID, matched in any case as the
    # loader matches it (domains_matching).
    "routing_domain": str.lower,
    # A port forward's external endpoint.
    "protocol": str.lower,
    "address": parse_ip,
    "port": int,
}


def filter_value(field: str, value: Any) -> Any:
    """A field's value in the form entries are compared in, by the same parsers as the
    config: what an admin types (``--mac 00:00:00:00:00:11``, ``--vsid 5010`` as text,
    ``--rule TranslationMethodEncap``) equals what the file holds, in any spelling the
    file accepts. A value that does not parse stays as it is: it then matches nothing,
    which is the honest answer."""
    parse = _FILTER_PARSERS.get(field)
    if parse is None:
        return value
    try:
        return parse(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError):
        return value


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class VirtualSubnet(_Frozen):
    """An IP subnet and broadcast domain (VSID) inside one routing domain."""

    vsid: Vsid
    prefixes: Annotated[tuple[Prefix, ...], AfterValidator(parse_prefixes)]
    gateway: Address | None = None  # the subnet's default-gateway CA, if it has one

    def prefix_for(self, version: int) -> IPNetwork | None:
        """This subnet's prefix of IP version 4 or 6, if it has one."""
        for prefix in self.prefixes:
            if prefix.version == version:
                return prefix
        return None


class RoutingDomain(_Frozen):
    """One customer network: the isolation boundary nothing crosses."""

    rdid: Rdid
    name: Label | None = None
    virtual_subnets: tuple[VirtualSubnet, ...]


class LookupRecord(_Frozen):
    """VSID + CA + MAC -> PA: where a VM is, and how its packets get there."""

    vsid: Vsid
    ca: Address
    mac: MacAddress
    pa: ProviderIP
    rule: RuleField
    type: TypeField = RecordType.STATIC
    vm: Label | None = None


class CustomerRoute(_Frozen):
    """Within one routing domain: destination prefix -> next hop (a CA, or on-link)."""

    rdid: Rdid
    vsid: Vsid
    destination: Prefix
    next_hop: Address  # 0.0.0.0 or :: = on-link (the destination is in the VSID itself)
    metric: Annotated[int, Strict(), _int_range(0, 65535, "a metric")] = DEFAULT_METRIC

    @property
    def on_link(self) -> bool:
        return self.next_hop.is_unspecified


class ProviderAddress(_Frozen):
    """A PA this node owns, on one of its interfaces (the cmdlet's ProviderAddress)."""

    interface: IfName
    pa: ProviderIP
    prefix_length: Annotated[int, Strict(), _int_range(1, 128, "a prefix length")]
    vlan: Annotated[int, Strict(), _int_range(1, 4094, "a VLAN ID")] | None = None


class Port(_Frozen):
    """A VM network adapter this node serves: a TAP device named ``name``."""

    name: IfName
    vsid: Vsid
    mac: MacAddress


class Tap(_Frozen):
    """A gateway's TAP in one routing domain (private cloud): the on-prem side's
    link. ``address`` is the gateway's own on it (the daemon answers ARP for it, not
    the kernel) with the TAP subnet's prefix length: ``172.16.0.1/24``."""

    name: IfName
    address: InterfaceAddress


class NodeRoute(_Frozen):
    """A gateway's own route in one routing domain: destination -> a TAP, a neighbour
    on a TAP, ``nat`` or ``tunnel:NAME``. It wins over a customer route of the same
    prefix (decisions.md, "Routes and where they lead")."""

    destination: Prefix
    next_hop: NextHopField


# A NAT session limit's range: up to 2**24 sessions (a few GB of table: past what one
# Python process forwards for anyway).
_SESSIONS = _int_range(1, 1 << 24, "a NAT session limit")
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class NatTimeouts(_Frozen):
    """Idle timeouts of NAT sessions per state, in seconds: the NAPT core's ``Timeouts``
    (``gateway/dataplane/napt/states.py``, Linux conntrack's defaults); one not written
    keeps its default."""

    tcp_syn_sent_s: Seconds | None = None
    tcp_syn_recv_s: Seconds | None = None
    tcp_established_s: Seconds | None = None
    tcp_fin_wait_s: Seconds | None = None
    tcp_close_wait_s: Seconds | None = None
    tcp_last_ack_s: Seconds | None = None
    tcp_time_wait_s: Seconds | None = None
    tcp_close_s: Seconds | None = None
    udp_unreplied_s: Seconds | None = None
    udp_stream_s: Seconds | None = None
    icmp_s: Seconds | None = None


def _some_address(value: tuple[IPInterface, ...]) -> tuple[IPInterface, ...]:
    if not value:
        raise invalid("addresses", "at least one external address (203.0.113.10/24)")
    return value


# The external ports the NAT hands out to sessions unless configured (RFC 6335 sec. 6:
# the registered and dynamic ports); a port forward's port lies outside the range.
DYNAMIC_PORTS: Final = (1024, 65535)
NetPort = Annotated[int, Strict(), _int_range(1, 65535, "a port")]


def _port_range(value: tuple[int, int]) -> tuple[int, int]:
    if value[0] > value[1]:
        raise invalid("port_range", "the first port comes first: [first, last]")
    return value


class NodeNat(_Frozen):
    """A gateway's internet egress (source NAPT, ``napt`` in code): the external TAP
    ``tap``, the external ``addresses`` (the daemon's own, answered on the TAP, each
    with the TAP subnet's prefix length), the internet router ``next_hop`` on it, the
    node's session limit (None: the core's), the idle timeouts, and the range of
    external ports sessions get (``dynamic_ports``, [first, last]: port forwards sit
    outside it, so a forward never meets a session's port)."""

    tap: IfName
    addresses: Annotated[tuple[InterfaceAddress, ...], AfterValidator(_some_address)]
    next_hop: Address
    max_sessions: Annotated[int, Strict(), _SESSIONS] | None = None
    timeouts: NatTimeouts = NatTimeouts()
    dynamic_ports: Annotated[tuple[NetPort, NetPort], AfterValidator(_port_range)] = DYNAMIC_PORTS


class DomainNat(_Frozen):
    """What one routing domain gets of its gateway's NAT: its session limit (None: the
    core's share) and whether its sessions are logged (translation log)."""

    max_sessions: Annotated[int, Strict(), _SESSIONS] | None = None
    log: Annotated[bool, Strict()] = False


class PortForward(_Frozen):
    """A static port forward of a gateway's NAT (a destination NAT): what the
    internet sends to ``address:port`` over ``protocol`` goes to ``ca:ca_port`` in
    the routing domain it is written under, and the replies leave from there."""

    protocol: Literal["tcp", "udp"]
    address: Address  # one of the node's nat.addresses
    port: NetPort
    ca: Address
    ca_port: NetPort


class ServedDomain(_Frozen):
    """What a gateway node does for one routing domain it serves."""

    taps: tuple[Tap, ...] = ()
    routes: tuple[NodeRoute, ...] = ()
    nat: DomainNat | None = None
    port_forwards: tuple[PortForward, ...] = ()


UdpPort = Annotated[int, PlainValidator(parse_port, json_schema_input_type=int)]
KeyFile = Annotated[str, PlainValidator(parse_key_file, json_schema_input_type=str)]
WgKey = Annotated[str, PlainValidator(parse_wg_key, json_schema_input_type=str)]


class Tunnel(_Frozen):
    """A site-to-site tunnel (WireGuard) of one routing domain, served by gateway node
    ``node`` on UDP ``listen_port`` (whose private key is the node's ``tunnel_keys``).
    ``public_key`` is the peer's; the preshared key, if any, is read by the daemon from
    ``preshared_key_file`` on the node, so no export or apply ever carries it. Without
    an ``endpoint`` the peer must reach us first (roaming). ``allowed_ips`` are the
    peer's prefixes: routes of the routing domain to the tunnel, and the only sources
    accepted from it (cryptokey routing)."""

    name: Label
    rdid: Rdid
    node: Annotated[str, PlainValidator(parse_node_name, json_schema_input_type=str)]
    listen_port: UdpPort
    public_key: WgKey
    preshared_key_file: KeyFile | None = None
    endpoint: Annotated[str, PlainValidator(parse_endpoint, json_schema_input_type=str)] | None = (
        None
    )
    allowed_ips: tuple[Prefix, ...]
    # Seconds between keepalives when nothing else is sent (wg's 1..65535); None: off.
    persistent_keepalive: Annotated[int, Strict(), _int_range(1, 65535, "a keepalive")] | None = (
        None
    )


def _port_keys(value: Mapping[Any, str]) -> Mapping[int, str]:
    """Port -> key file, frozen; a key that is no port is named in the message (the
    schema's path cannot point into a mapping's keys)."""
    keys = {}
    for port, path in value.items():
        try:
            keys[parse_port_key(port)] = path
        except PydanticCustomError:
            raise invalid("port", f"{port!r} is not a UDP port (1..65535)") from None
    return MappingProxyType(keys)


def domains_matching(key: str, domains: Iterable[RoutingDomain]) -> list[RoutingDomain]:
    """The routing domains a gateway's ``routing_domains:`` key names, in any case: the
    one with that RDID (RDIDs are unique), else those with that name (a valid policy
    has exactly one: names differing only in case make the key ambiguous)."""
    wanted = key.lower()
    domains = list(domains)
    for domain in domains:
        if domain.rdid == wanted:
            return [domain]
    return [d for d in domains if d.name is not None and d.name.lower() == wanted]


def _frozen_mapping(value: Mapping[str, ServedDomain]) -> Mapping[str, ServedDomain]:
    return MappingProxyType(dict(value))


# Handshake messages in one batch of a listen port past which it is under load
# (WireGuard paper 5.3); a node's ``tunnel_load_threshold`` changes it.
TUNNEL_LOAD_THRESHOLD: Final = 16

# A node's fields that belong to one role: written on a node of another role they are
# refused (never accepted and ignored); absent, they get the role's default.
_ROLE_FIELDS: Mapping[str, tuple[NodeRole, str, Any]] = {
    "ports": (NodeRole.HOST, "a gateway node serves no VM ports (a host's ports: do)", ()),
    "mss_clamp": (NodeRole.GATEWAY, "only a gateway node clamps TCP MSS", "auto"),
    "routing_domains": (
        NodeRole.GATEWAY,
        "only a gateway node serves routing domains (role: gateway)",
        MappingProxyType({}),
    ),
    "nat": (NodeRole.GATEWAY, "only a gateway node translates to the internet", None),
    "tunnel_keys": (
        NodeRole.GATEWAY,
        "only a gateway node serves tunnels",
        MappingProxyType({}),
    ),
    "tunnel_load_threshold": (
        NodeRole.GATEWAY,
        "only a gateway node serves tunnels",
        TUNNEL_LOAD_THRESHOLD,
    ),
}


class Node(_Frozen):
    """One daemon of the deployment; its name is its key under ``nodes:``.

    One model for both roles (not a union per role): every consumer of nodes reads
    the same fields (a gateway's ``ports`` is empty, a host's ``routing_domains`` and
    ``mss_clamp`` are None), and a field of the other role is refused at its own path
    by ``_role_field``."""

    name: Annotated[str, PlainValidator(parse_node_name, json_schema_input_type=str)]
    role: Annotated[
        NodeRole,
        PlainValidator(_parse_role, json_schema_input_type=Literal["host", "gateway"]),
    ]
    provider_addresses: tuple[ProviderAddress, ...] = ()
    ports: tuple[Port, ...] = ()
    # Gateway only: ``auto`` (from the path MTU), ``off``, or the MSS to clamp to.
    mss_clamp: MssClamp | None = Field(None, validate_default=True)
    # Gateway only: by the routing domain's name or RDID, as written.
    routing_domains: (
        Annotated[Mapping[str, ServedDomain], AfterValidator(_frozen_mapping)] | None
    ) = Field(None, validate_default=True)
    # Gateway only: internet egress (None: the node has none).
    nat: NodeNat | None = Field(None, validate_default=True)
    # Gateway only: the private key file of each tunnel listen port (a key per port,
    # as a wg interface has one), read by the daemon on this node.
    tunnel_keys: Annotated[Mapping[Any, KeyFile], AfterValidator(_port_keys)] | None = Field(
        None, validate_default=True
    )
    # Gateway only: a tunnel listen port is under load (handshakes then need a cookie)
    # past this many handshake messages in one batch of its socket (64 datagrams).
    tunnel_load_threshold: int | None = Field(None, ge=0, validate_default=True)

    @field_validator(
        "ports",
        "mss_clamp",
        "routing_domains",
        "nat",
        "tunnel_keys",
        "tunnel_load_threshold",
        mode="before",
    )
    @classmethod
    def _role_field(cls, value: Any, info: ValidationInfo) -> Any:
        role = info.data.get("role")  # absent when the role itself was refused
        if role is None:
            return value
        assert info.field_name is not None
        owner, message, default = _ROLE_FIELDS[info.field_name]
        if role is not owner:
            if value in (None, (), [], {}):
                return None if owner is NodeRole.GATEWAY else value
            raise invalid("role_field", f"not on a {role.value} node: {message}")
        return default if value is None else value


@dataclass(frozen=True, slots=True)
class RecordDelta:
    """A policy made of the one at ``base_revision`` (which had ``base_count`` lookup
    records) by giving the records at ``replaced`` new fields in place, removing
    those at ``removed`` (positions there, ascending) and appending its last
    ``added`` records; nothing else of the records differs (a migration also moves
    ports: the nodes are the policy's to say). Each replaced position comes with its
    record's place among the records of its new PA (document order), which the
    snapshot's table by PA keeps."""

    base_revision: int
    base_count: int
    removed: tuple[int, ...]
    added: int
    replaced: tuple[tuple[int, int], ...] = ()  # (position, place among its PA's), ascending

    def position(self, replaced: int) -> int:
        """Where the record replaced at base position ``replaced`` sits now."""
        return replaced - bisect_left(self.removed, replaced)

    def spliced(
        self, old: tuple[Any, ...], added: Iterable[Any], replacing: Iterable[Any] = ()
    ) -> tuple[Any, ...]:
        """``old`` (one item per record of the base) with ``replacing`` at the
        replaced positions, without the removed ones, then ``added``: the slices
        between them copied by C's list and tuple copies (at 10^5 items several
        times faster than an iterator over them, ``chain``)."""
        if self.replaced:
            items = list(old)
            for (position, _), item in zip(self.replaced, replacing, strict=True):
                items[position] = item
            old = tuple(items)
        if not self.removed:
            return old + tuple(added)
        kept: list[Any] = []
        for start, end in pairwise((-1, *self.removed, len(old))):
            kept += old[start + 1 : end]
        kept += added
        return tuple(kept)


@dataclass(frozen=True, slots=True)
class Policy:
    """A whole deployment, validated. Get one from ``load_policy()``: building it
    directly skips every check."""

    revision: int
    routing_domains: tuple[RoutingDomain, ...]
    lookup_records: tuple[LookupRecord, ...]
    customer_routes: tuple[CustomerRoute, ...]
    nodes: tuple[Node, ...]
    tunnels: tuple[Tunnel, ...] = ()
    # How ``incremental.py`` made it of the previous revision, when only lookup
    # records went and came: ``compile_policy`` then updates that revision's snapshot.
    derived: RecordDelta | None = field(default=None, repr=False, compare=False)
    _domains: Mapping[str, RoutingDomain] = field(init=False, repr=False, compare=False)
    _subnets: Mapping[int, VirtualSubnet] = field(init=False, repr=False, compare=False)
    _rdids: Mapping[int, str] = field(init=False, repr=False, compare=False)
    _nodes: Mapping[str, Node] = field(init=False, repr=False, compare=False)
    # What ``counts`` passes over records and nodes for (IP-Rewrite records, provider
    # addresses, ports), once it or ``with_records`` knew.
    _tallies: tuple[int, int, int] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        subnets: dict[int, VirtualSubnet] = {}
        rdids: dict[int, str] = {}
        for domain in self.routing_domains:
            for subnet in domain.virtual_subnets:
                subnets[subnet.vsid] = subnet
                rdids[subnet.vsid] = domain.rdid
        domains = {domain.rdid: domain for domain in self.routing_domains}
        nodes = {node.name: node for node in self.nodes}
        object.__setattr__(self, "_domains", MappingProxyType(domains))
        object.__setattr__(self, "_subnets", MappingProxyType(subnets))
        object.__setattr__(self, "_rdids", MappingProxyType(rdids))
        object.__setattr__(self, "_nodes", MappingProxyType(nodes))
        object.__setattr__(self, "_tallies", None)

    def with_records(
        self,
        revision: int,
        records: tuple[LookupRecord, ...],
        derived: RecordDelta | None,
        nodes: Mapping[str, Node] | None = None,
    ) -> Policy:
        """This policy at ``revision`` with ``records`` as its lookup records, and
        nothing else changed but the ``nodes`` given by name (a migration's ports
        moved between them, none added or removed: ``IndexedPolicy``; ``derived``
        says how, when it can): every other entry, and what ``__post_init__``
        indexed of them, shared rather than indexed again, and ``counts``' tallies
        moved by the change, so that a change of records makes no pass over the
        nodes (one per 50 records in the benchmark) or over every record."""
        new = copy.copy(self)
        tallies = self._tallies
        if tallies is not None and derived is not None:
            old = self.lookup_records
            gone = [old[position] for position in derived.removed]
            added = list(records[len(records) - derived.added :])
            for position, _ in derived.replaced:
                gone.append(old[position])
                added.append(records[derived.position(position)])
            rewrites, addresses, ports = tallies
            for name, node in (nodes or {}).items():
                was = self._nodes[name]
                addresses += len(node.provider_addresses) - len(was.provider_addresses)
                ports += len(node.ports) - len(was.ports)
            tallies = (rewrites + _ip_rewrites(added) - _ip_rewrites(gone), addresses, ports)
        else:
            tallies = None
        changes: list[tuple[str, Any]] = [
            ("revision", revision),
            ("lookup_records", records),
            ("derived", derived),
            ("_tallies", tallies),
        ]
        if nodes:
            named = {**self._nodes, **nodes}
            changes.append(("nodes", tuple(named.values())))
            changes.append(("_nodes", MappingProxyType(named)))
        for name, value in changes:
            object.__setattr__(new, name, value)
        return new

    @property
    def virtual_subnets(self) -> tuple[VirtualSubnet, ...]:
        """Every virtual subnet, in document order."""
        return tuple(self._subnets.values())

    def routing_domain(self, rdid: str) -> RoutingDomain:
        """The routing domain with this RDID (any case); ``KeyError`` if none."""
        return self._domains[rdid.lower()]

    def virtual_subnet(self, vsid: int) -> VirtualSubnet:
        """The virtual subnet with this VSID; ``KeyError`` if none."""
        return self._subnets[vsid]

    def rdid_of(self, vsid: int) -> str:
        """The RDID that VSID belongs to; ``KeyError`` if none."""
        return self._rdids[vsid]

    def node(self, name: str) -> Node:
        """The node with this name; ``KeyError`` if none."""
        return self._nodes[name]

    def counts(self) -> dict[str, int]:
        """What the policy holds, for summaries and log events."""
        if self._tallies is None:  # passes over every record and node, once per policy
            addresses = sum(len(node.provider_addresses) for node in self.nodes)
            ports = sum(len(node.ports) for node in self.nodes)
            object.__setattr__(
                self, "_tallies", (_ip_rewrites(self.lookup_records), addresses, ports)
            )
        rewrite, addresses, ports = self._tallies  # type: ignore[misc]
        return {
            "routing_domains": len(self.routing_domains),
            "virtual_subnets": len(self._subnets),
            "lookup_records": len(self.lookup_records),
            "encap_records": len(self.lookup_records) - rewrite,
            "ip_rewrite_records": rewrite,
            "customer_routes": len(self.customer_routes),
            "nodes": len(self.nodes),
            "provider_addresses": addresses,
            "ports": ports,
        }


def _ip_rewrites(records: Iterable[LookupRecord]) -> int:
    return sum(1 for record in records if record.rule is Rule.IP_REWRITE)
