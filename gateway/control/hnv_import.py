"""Import of HNV policy exported from Windows: ``ConvertTo-Json`` files in, a config out.

Existing HNV users hold their policy in the Windows hosts' WNV tables, and the only
export PowerShell offers is ``Get-NetVirtualizationLookupRecord | ConvertTo-Json`` (and
the same for customer routes and provider addresses). This module turns those files
into an nvgw config document, so that a migration starts from the policy in force
rather than from retyped cmdlets.

What Windows writes is taken as it is: UTF-16 from Windows PowerShell 5.1's ``>``, a
bare object when the cmdlet returned one item, nothing at all when it returned none,
enums as integers (or as names with ``-EnumsAsStrings``), and the CIM bookkeeping
properties next to the real ones. What Windows does not know, the caller says: which
provider addresses make up which nvgw node (an export has no hosts), and the Linux
interface that carries them.

The result is checked with ``load_policy`` before it is returned, so an import never
writes a file ``nvgw check`` refuses; each problem is reported at the export entry (or
command-line option) it came from, such as ``lookup-records.json[3].MACAddress``, and
all of them in one pass.
"""

from __future__ import annotations

import codecs
import dataclasses
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from gateway.errors import ConfigError, ConfigIssue
from gateway.policy import format_path, load_policy, parse_path
from gateway.policy.model import IfName, MacAddress

from .config_file import to_plain
from .untrusted import parse_json, read_bounded

IPAddress = IPv4Address | IPv6Address
Loc = tuple[object, ...]

# Added by PowerShell and CIM to every object they hand out, not part of the policy:
# the class, the property list, the WMI path, and (through -CimSession or
# Invoke-Command) the host the object came from.
CIM_NOISE = frozenset(
    {
        "CimClass",
        "CimInstanceProperties",
        "CimSystemProperties",
        "PSComputerName",
        "PSShowComputerName",
        "PSSourceJobInstanceId",
        "RunspaceId",
    }
)

# The NetWNV enums as the CIM classes store them (uint8). The integers are those the
# OpenStack Hyper-V agent writes through WMI (os-win's nvgreutils: Nat 0, Encap 1;
# Static 0, L2Only 3); the others follow the cmdlets' documented order of the names.
RULE_NAMES = {0: "TranslationMethodNat", 1: "TranslationMethodEncap", 2: "TranslationMethodNone"}
TYPE_NAMES = {0: "Static", 1: "Dynamic", 2: "GatewayWildcard", 3: "L2Only"}
_NVGW_VALUES = {
    "TranslationMethodNat": "nat",
    "TranslationMethodEncap": "encap",
    "Static": "static",
    "L2Only": "l2only",
    "GatewayWildcard": "gateway",
}
_REFUSED = {
    "TranslationMethodNone": "a record that translates nothing carries no traffic; nvgw "
    "carries a CA by NVGRE (TranslationMethodEncap) or IP-Rewrite (TranslationMethodNat)",
    "Dynamic": "a dynamic record is one the Windows host learned (guest DHCP or IP address "
    "learning); nvgw learns no addresses, so it has no equivalent",
}

# Export property -> nvgw key, in the order the shipped configs write the keys.
_RECORD_KEYS = {
    "VirtualSubnetID": "vsid",
    "CustomerAddress": "ca",
    "MACAddress": "mac",
    "ProviderAddress": "pa",
}
_ROUTE_KEYS = {
    "RoutingDomainID": "rdid",
    "VirtualSubnetID": "vsid",
    "DestinationPrefix": "destination",
    "NextHop": "next_hop",
    "Metric": "metric",
}
# nvgw key -> export property, to report a problem where the operator can find it.
_RECORD_FIELDS = {
    **{key: prop for prop, key in _RECORD_KEYS.items()},
    "rule": "Rule",
    "type": "Type",
    "vm": "VMName",
}
_ROUTE_FIELDS = {key: prop for prop, key in _ROUTE_KEYS.items()}
_PORT_FIELDS = {"name": "VMName", "vsid": "VirtualSubnetID", "mac": "MACAddress"}
_PROVIDER_FIELDS = {"pa": "ProviderAddress", "prefix_length": "PrefixLength", "vlan": "VlanID"}
_SUBNET_FIELDS = {"vsid": "VirtualSubnetID", "prefixes": "DestinationPrefix"}

NODE_OPTION = "--node"
INTERFACE_OPTION = "--interface"
_NODE_SYNTAX = "expected NAME=PA[,PA...], each PA optionally with /PREFIX_LENGTH"
_OPTIONS = (NODE_OPTION, INTERFACE_OPTION)
_UNLOCATED = "<import>"  # an issue no export entry or option explains (never expected)
_SECTIONS = ("routing_domains", "lookup_records", "customer_routes", "nodes")
# A place in the built document, as load_policy's messages name another entry.
_DOCUMENT_PATH = re.compile(
    rf"\b(?:{'|'.join(_SECTIONS)})(?:\.[A-Za-z0-9_][A-Za-z0-9_-]*|\[[^\]]*\])+"
)

_IFNAME = TypeAdapter(IfName)
_MAC = TypeAdapter(MacAddress)


# --- Reading export files -----------------------------------------------------------


def read_export(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The objects of one ``ConvertTo-Json`` file, without their CIM noise.

    Raises ``ConfigError`` naming the file for an unreadable or oversized file, text
    that is not JSON (or nests too deep: ``untrusted``), and JSON that is not an
    object or a list of objects.
    """
    name = os.fspath(path)
    text = _decode(read_bounded(path), name)
    if not text.strip():
        return []  # ConvertTo-Json writes nothing at all when the cmdlet returned nothing
    return _objects(parse_json(text, name), name)


def _decode(raw: bytes, name: str) -> str:
    """Text by its byte-order mark: Windows PowerShell 5.1 writes UTF-16 LE with ``>``
    and ``Out-File``, UTF-8 with a BOM with ``-Encoding UTF8``; PowerShell 7 writes
    UTF-8 without one."""
    encoding = "utf-8"
    if raw.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"  # reads the BOM to pick the byte order, and drops it
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as error:
        message = f"cannot decode the file as {encoding} ({error.reason} at byte {error.start})"
        if encoding == "utf-8":
            message += ": expected UTF-8, or UTF-16 with a byte-order mark"
        raise _file_error(name, message) from None


def _objects(data: Any, name: str) -> list[dict[str, Any]]:
    if _is_wrapped_array(data):
        data = data["value"]
    if isinstance(data, dict):
        data = [data]  # ConvertTo-Json writes a bare object for a single result
    if not isinstance(data, list):
        raise _file_error(name, "expected a JSON object or a list of objects (ConvertTo-Json)")
    objects, issues = [], []
    for index, item in enumerate(data):
        if isinstance(item, dict):
            objects.append({key: value for key, value in item.items() if key not in CIM_NOISE})
        else:
            message = "not an object: each entry of an export is one cmdlet result"
            issues.append(ConfigIssue(_entry_path(name, index), _brief(item), message, name))
    if issues:
        raise ConfigError(issues)
    return objects


def _is_wrapped_array(data: Any) -> bool:
    """Windows PowerShell 5.1 writes some arrays as ``{"value": [...], "Count": n}``
    (its extended type data for arrays leaks into the JSON)."""
    return (
        isinstance(data, dict)
        and set(data) == {"value", "Count"}
        and isinstance(data["value"], list)
    )


def _file_error(name: str, message: str) -> ConfigError:
    return ConfigError([ConfigIssue("", None, message, name)])


def _entry_path(file: str, *loc: object) -> str:
    """``lookup-records.json[3].MACAddress``: the file's name, then the entry."""
    return Path(file).name + format_path(loc)


def _brief(value: Any) -> Any:
    if isinstance(value, dict):
        return "{...}" if value else {}
    if isinstance(value, list):
        return "[...]" if value else []
    return value


# --- What the caller says ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Export:
    """The objects of one export file, with the file's name for the issues they raise."""

    file: str
    objects: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """A provider address named on the command line, with its prefix length if given
    there (otherwise the provider-address export has to give it)."""

    pa: IPAddress
    prefix_length: int | None = None


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """An nvgw node and the provider addresses it owns: the export has no hosts, so
    which PAs make up one daemon is the operator's to say."""

    name: str
    addresses: tuple[NodeAddress, ...]


def parse_nodes(texts: Iterable[str]) -> list[NodeSpec]:
    """Each ``NAME=PA[,PA...]`` (a PA optionally ``/PREFIX_LENGTH``) as ``--node``
    takes it. Raises ``ConfigError`` (file ``--node``) listing every bad part."""
    specs, issues = [], []
    for text in texts:
        try:
            specs.append(_parse_node(text))
        except ConfigError as error:
            issues.extend(error.issues)
    if issues:
        raise ConfigError(issues)
    return specs


def _parse_node(text: str) -> NodeSpec:
    name, equals, rest = text.partition("=")
    if not equals or not name or not rest:
        raise ConfigError([ConfigIssue("", None, f"{text!r}: {_NODE_SYNTAX}", NODE_OPTION)])
    addresses, issues = [], []
    for part in rest.split(","):
        address_text, slash, length_text = part.partition("/")
        try:
            pa = ip_address(address_text)
        except ValueError:
            issues.append(ConfigIssue(name, part, "not an IP address", NODE_OPTION))
            continue
        if slash and not (length_text.isascii() and length_text.isdigit()):
            issues.append(ConfigIssue(name, part, "the prefix length is not a number", NODE_OPTION))
            continue
        addresses.append(NodeAddress(pa, int(length_text) if slash else None))
    if issues:
        raise ConfigError(issues)
    return NodeSpec(name, tuple(addresses))


# --- Building the document -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Origin:
    """Where an entry of the built document came from: the export entry (or option)
    to name when the entry is refused, and its property names."""

    file: str
    loc: Loc  # the entry in that file (an index), or under that option (a node name)
    fields: Mapping[str, str] = field(default_factory=dict)  # nvgw key -> property
    whole: str | None = None  # the property the whole entry stands for, if one

    def path(self, rest: Loc) -> str:
        if rest:
            head = rest[0]
            rest = (self.fields.get(head, head) if isinstance(head, str) else head, *rest[1:])
        elif self.whole is not None:
            rest = (self.whole,)
        if self.file in _OPTIONS:
            return format_path((*self.loc, *rest))
        return _entry_path(self.file, *self.loc, *rest)


@dataclass(slots=True)
class _Record:
    """A lookup record of the export, with the parts the import works with."""

    index: int
    source: Mapping[str, Any]
    rule: str | None  # None: the export has no Rule (the schema says it is missing)
    kind: str
    vsid: int | None
    mac: str | None  # canonical text, when it is a usable MAC
    pa: IPAddress | None
    wildcard: bool  # CA 0.0.0.0 or ::, HNV's way of letting a MAC use any CA

    def entry(self) -> CommentedMap:
        entry = CommentedMap()
        for prop, key in _RECORD_KEYS.items():
            if self.source.get(prop) is not None:
                entry[key] = self.source[prop]
        if self.mac is not None:
            entry["mac"] = self.mac
        if self.rule is not None:
            entry["rule"] = self.rule
        if self.kind != "static":
            entry["type"] = self.kind
        if self.source.get("VMName"):
            entry["vm"] = self.source["VMName"]
        entry.fa.set_flow_style()
        return entry


class _Refused(Exception):
    """An export value nvgw cannot take: the property, and why."""

    def __init__(self, prop: str, message: str) -> None:
        super().__init__(message)
        self.prop = prop
        self.message = message


def import_hnv(
    records: Export,
    routes: Export | None,
    nodes: Sequence[NodeSpec],
    *,
    provider_addresses: Export | None = None,
    interface: str = "pa0",
) -> tuple[CommentedMap, list[str]]:
    """A config document (in the shipped files' style) from Windows exports, and
    warnings about what it leaves out. Raises ``ConfigError`` with every problem."""
    routes = routes or Export("", ())
    provider_addresses = provider_addresses or Export("", ())
    importer = _Importer(records.file, interface)
    importer.read_records(records.objects)
    importer.read_routes(routes)
    importer.place_records()
    importer.build_nodes(nodes, provider_addresses)
    sources = [export.file for export in (records, routes, provider_addresses) if export.file]
    return importer.finish(sources), importer.warnings


class _Importer:
    """One import: what has been built, where each part came from, what went wrong."""

    def __init__(self, records_file: str, interface: str) -> None:
        self.records_file = records_file
        self.interface = interface
        self.issues: list[ConfigIssue] = []
        self.warnings: list[str] = []
        self.origins: dict[Loc, _Origin] = {}
        self.explained: set[Loc] = set()  # places whose problem this import reported itself
        self.records: list[_Record] = []
        self.kept: list[_Record] = []
        self.routes: list[CommentedMap] = []
        self.domains: dict[str, CommentedMap] = {}  # RDID -> routing domain entry
        self.positions: dict[str, int] = {}  # RDID -> index in routing_domains
        self.subnets: dict[int, tuple[Loc, CommentedMap, str]] = {}  # VSID -> loc, entry, RDID
        self.nodes = CommentedMap()
        self.adapters: set[tuple[int, str]] = set()  # (VSID, MAC) that have a port

    def _issue(self, file: str, loc: Loc, value: Any, message: str) -> None:
        self.issues.append(ConfigIssue(_entry_path(file, *loc), value, message, file))

    # Lookup records -------------------------------------------------------------

    def read_records(self, objects: Sequence[Mapping[str, Any]]) -> None:
        for index, source in enumerate(objects):
            record = self._record(index, source)
            if record is not None:
                self.records.append(record)

    def _record(self, index: int, source: Mapping[str, Any]) -> _Record | None:
        """The record, or None after reporting what nvgw cannot take in it."""
        refusals, values = [], {}
        for prop, names in (("Rule", RULE_NAMES), ("Type", TYPE_NAMES)):
            try:
                values[prop] = _nvgw_enum(source.get(prop), names, prop)
            except _Refused as refused:
                refusals.append(refused)
        ca = _address(source.get("CustomerAddress"))
        wildcard = ca is not None and ca.is_unspecified
        if wildcard and values.get("Type") == "l2only":
            message = (
                "an L2Only record without a customer address has no nvgw equivalent: "
                "nvgw's l2only records need the VM's CA"
            )
            refusals.append(_Refused("CustomerAddress", message))
        for refused in refusals:
            value = source.get(refused.prop)
            self._issue(self.records_file, (index, refused.prop), value, refused.message)
        if refusals:
            return None
        vsid = source.get("VirtualSubnetID")
        return _Record(
            index,
            source,
            values["Rule"],
            values["Type"] or "static",
            vsid if type(vsid) is int else None,
            _canonical_mac(source.get("MACAddress")),
            _address(source.get("ProviderAddress")),
            wildcard,
        )

    # Customer routes, and the subnets their on-link routes define ---------------

    def read_routes(self, routes: Export) -> None:
        for index, source in enumerate(routes.objects):
            route = CommentedMap()
            for prop, key in _ROUTE_KEYS.items():
                if source.get(prop) is not None:
                    route[key] = _rdid(source[prop]) if key == "rdid" else source[prop]
            self.origins["customer_routes", len(self.routes)] = _Origin(
                routes.file, (index,), _ROUTE_FIELDS
            )
            self.routes.append(route)
            rdid = route.get("rdid")
            if isinstance(rdid, str):
                self._domain(rdid, _Origin(routes.file, (index,), {"rdid": "RoutingDomainID"}))
                if _on_link(route.get("next_hop")):
                    self._on_link_prefix(routes.file, index, rdid, route)

    def _domain(self, rdid: str, origin: _Origin) -> CommentedMap:
        domain = self.domains.get(rdid)
        if domain is None:
            domain = CommentedMap(rdid=rdid)
            domain["virtual_subnets"] = CommentedSeq()
            self.positions[rdid] = len(self.domains)
            self.origins["routing_domains", self.positions[rdid]] = origin
            self.domains[rdid] = domain
        return domain

    def _on_link_prefix(self, file: str, index: int, rdid: str, route: CommentedMap) -> None:
        """An on-link route (next hop 0.0.0.0 or ::) is what gives a VSID its prefix."""
        vsid, prefix = route.get("vsid"), route.get("destination")
        if type(vsid) is not int or prefix is None:
            return  # the schema reports the route
        if vsid not in self.subnets:
            self._add_subnet(file, index, rdid, vsid)
        loc, subnet, _ = self.subnets[vsid]
        prefixes = subnet["prefixes"]
        if prefix in prefixes:
            return  # the same route twice: reported as a duplicate route
        family = _family(prefix)
        clash = next((p for p in prefixes if family is not None and _family(p) == family), None)
        if clash is not None:
            message = (
                f"VSID {vsid} already has the on-link prefix {clash}: "
                "nvgw gives a virtual subnet one prefix per IP version"
            )
            self._issue(file, (index, "DestinationPrefix"), prefix, message)
            return
        self.origins[(*loc, "prefixes", len(prefixes))] = _Origin(
            file, (index,), whole="DestinationPrefix"
        )
        prefixes.append(prefix)

    def _add_subnet(self, file: str, index: int, rdid: str, vsid: int) -> None:
        domain = self.domains[rdid]
        subnets = domain["virtual_subnets"]
        loc = ("routing_domains", self.positions[rdid], "virtual_subnets", len(subnets))
        subnet = CommentedMap(vsid=vsid, prefixes=CommentedSeq())
        subnet["prefixes"].fa.set_flow_style()
        subnets.append(subnet)
        self.origins[loc] = _Origin(file, (index,), _SUBNET_FIELDS)
        self.subnets[vsid] = (loc, subnet, rdid)

    # Which records the output keeps ------------------------------------------------

    def place_records(self) -> None:
        """Keeps the records whose VSID has a subnet (warning about the others), and
        folds each wildcard record into the records it widens."""
        unplaced: dict[int, int] = defaultdict(int)
        mismatched: dict[tuple[int, str], int] = defaultdict(int)
        wildcards = []
        for record in self.records:
            mismatch = self._customer_domain(record)
            if mismatch is not None:
                mismatched[mismatch] += 1
            if record.vsid is not None and record.vsid not in self.subnets:
                unplaced[record.vsid] += 1
            elif record.wildcard:
                wildcards.append(record)
            else:
                self.kept.append(record)
        self._widen(wildcards)
        for vsid, count in unplaced.items():
            self.warnings.append(
                f"{Path(self.records_file).name}: VSID {vsid} has {count} lookup record(s) "
                "but no on-link customer route (NextHop 0.0.0.0) to give its prefix: "
                "they and their ports are left out"
            )
        for (vsid, customer), count in mismatched.items():
            self.warnings.append(
                f"{Path(self.records_file).name}: {count} record(s) of VSID {vsid} have "
                f"CustomerID {customer}, but the customer routes put VSID {vsid} in routing "
                f"domain {self.subnets[vsid][2]}: the routes' is used"
            )
        for position, record in enumerate(self.kept):
            self.origins["lookup_records", position] = self._origin(record, _RECORD_FIELDS)

    def _customer_domain(self, record: _Record) -> tuple[int, str] | None:
        """A record's CustomerID is its routing domain: one that no route names is
        still a routing domain of the output. Returns (VSID, CustomerID) when the
        routes put the record's VSID in another one."""
        customer = record.source.get("CustomerID")
        if not isinstance(customer, str) or not customer:
            return None
        rdid = _rdid(customer)
        self._domain(rdid, self._origin(record, {"rdid": "CustomerID"}))
        if record.vsid is None or record.vsid not in self.subnets:
            return None
        return None if self.subnets[record.vsid][2] == rdid else (record.vsid, rdid)

    def _widen(self, wildcards: list[_Record]) -> None:
        """HNV lets a MAC use any CA (a gateway, a router VM) with a second record of CA
        0.0.0.0 or ::; nvgw says the same with ``type: gateway`` on the MAC's record."""
        by_adapter: dict[tuple[object, ...], list[_Record]] = defaultdict(list)
        for record in self.kept:
            by_adapter[record.vsid, record.mac, record.pa].append(record)
        for wildcard in wildcards:
            key = (wildcard.vsid, wildcard.mac, wildcard.pa)
            widened = by_adapter.get(key, []) if None not in key else []
            if not widened:
                message = (
                    "a wildcard record (any CA) widens the record of the same VSID, MAC "
                    "and PA that has the VM's own CA, and there is none: nvgw marks that "
                    "record type: gateway"
                )
                ca = wildcard.source.get("CustomerAddress")
                self._issue(self.records_file, (wildcard.index, "CustomerAddress"), ca, message)
            for record in widened:
                record.kind = "gateway"

    def _origin(self, record: _Record, fields: Mapping[str, str]) -> _Origin:
        return _Origin(self.records_file, (record.index,), fields)

    # Nodes ----------------------------------------------------------------------

    def build_nodes(self, specs: Sequence[NodeSpec], exported: Export) -> None:
        by_pa: dict[IPAddress, int] = {}
        for index, source in enumerate(exported.objects):
            pa = _address(source.get("ProviderAddress"))
            if pa is not None:
                by_pa.setdefault(pa, index)
        used: set[int] = set()
        for spec in specs:
            if spec.name in self.nodes:
                message = "the same node twice: give all its PAs in one --node"
                self.issues.append(ConfigIssue(spec.name, spec.name, message, NODE_OPTION))
                continue
            self.origins["nodes", spec.name] = _Origin(NODE_OPTION, (spec.name,))
            node = CommentedMap(role="host")
            node["provider_addresses"] = self._provider_addresses(spec, exported, by_pa, used)
            node["ports"] = self._ports(spec)
            self.nodes[spec.name] = node
        owned = {address.pa for spec in specs for address in spec.addresses}
        self._warn_unowned(owned, exported.file, by_pa, used)

    def _provider_addresses(
        self, spec: NodeSpec, exported: Export, by_pa: Mapping[IPAddress, int], used: set[int]
    ) -> CommentedSeq:
        entries = CommentedSeq()
        for address in spec.addresses:
            index = by_pa.get(address.pa)
            source = exported.objects[index] if index is not None else {}
            loc = ("nodes", spec.name, "provider_addresses", len(entries))
            entry = CommentedMap(interface=self.interface, pa=str(address.pa))
            length = self._prefix_length(spec.name, address, source.get("PrefixLength"))
            if length is not None:
                entry["prefix_length"] = length
            else:
                self.explained.add((*loc, "prefix_length"))
            if source.get("VlanID"):  # 0 (or none) is no VLAN
                entry["vlan"] = source["VlanID"]
            entry.fa.set_flow_style()
            if index is not None:
                used.add(index)
                self.origins[loc] = _Origin(exported.file, (index,), _PROVIDER_FIELDS)
            # One --interface for every PA: a bad one is one problem, however many PAs.
            self.origins[(*loc, "interface")] = _Origin(INTERFACE_OPTION, ("interface",))
            entries.append(entry)
        return entries

    def _prefix_length(self, node: str, address: NodeAddress, exported: Any) -> Any:
        given = address.prefix_length
        if given is None and exported is None:
            message = (
                "no prefix length: write it as PA/LENGTH, or give the PA's "
                "Get-NetVirtualizationProviderAddress export with --provider-addresses"
            )
            self.issues.append(ConfigIssue(node, str(address.pa), message, NODE_OPTION))
        elif given is not None and exported not in (None, given):
            message = f"the provider-address export gives this PA prefix length {exported}"
            self.issues.append(ConfigIssue(node, f"{address.pa}/{given}", message, NODE_OPTION))
        return given if given is not None else exported

    def _ports(self, spec: NodeSpec) -> CommentedSeq:
        """One port per VM adapter (VSID and MAC) whose record has a PA of this node,
        and only one in all: a dual-stack VM has two records and one adapter, and a PA
        given to two nodes (reported as such) must not also make two ports."""
        pas = {address.pa for address in spec.addresses}
        ports = CommentedSeq()
        taken = {self.interface}
        for record in self.kept:
            if record.pa not in pas or record.vsid is None or record.mac is None:
                continue
            if (record.vsid, record.mac) in self.adapters:
                continue
            self.adapters.add((record.vsid, record.mac))
            name = self._port_name(spec.name, record, taken)
            taken.add(name)
            port = CommentedMap(name=name, vsid=record.vsid, mac=record.mac)
            port.fa.set_flow_style()
            self.origins["nodes", spec.name, "ports", len(ports)] = self._origin(
                record, _PORT_FIELDS
            )
            ports.append(port)
        return ports

    def _port_name(self, node: str, record: _Record, taken: set[str]) -> str:
        """The VM's name when it can name a TAP device, else ``vnicN``: a Hyper-V VM
        name may be longer than Linux's 15 bytes or hold spaces."""
        vm = record.source.get("VMName")
        if isinstance(vm, str) and vm not in taken and _is_ifname(vm):
            return vm
        number = 0
        while f"vnic{number}" in taken:
            number += 1
        name = f"vnic{number}"
        if vm:
            why = "not a Linux interface name"
            if vm == self.interface:
                why = "the provider interface's name"
            elif vm in taken:
                why = "another port's name"
            self.warnings.append(
                f"{_entry_path(self.records_file, record.index)}: VM {vm!r} ({why}): "
                f"its port on node {node} is named {name}"
            )
        return name

    def _warn_unowned(
        self, owned: set[IPAddress], file: str, by_pa: Mapping[IPAddress, int], used: set[int]
    ) -> None:
        counts: dict[IPAddress, int] = defaultdict(int)
        for record in self.kept:
            if record.pa is not None and record.pa not in owned:
                counts[record.pa] += 1
        for pa, count in counts.items():
            self.warnings.append(
                f"PA {pa} ({count} lookup record(s)) is on no --node: "
                "its VMs get no port in the output"
            )
        for pa, index in by_pa.items():
            if index not in used:
                self.warnings.append(f"{_entry_path(file, index)}: PA {pa} is on no --node")

    # The document -----------------------------------------------------------------

    def finish(self, sources: Sequence[str]) -> CommentedMap:
        """The document, once ``load_policy`` accepts it; otherwise every problem,
        this import's own first, each at the place it came from."""
        document = CommentedMap(revision=0)
        document["routing_domains"] = CommentedSeq(self.domains.values())
        document["lookup_records"] = CommentedSeq(record.entry() for record in self.kept)
        document["customer_routes"] = CommentedSeq(self.routes)
        document["nodes"] = self.nodes
        for key in _SECTIONS:
            document.yaml_set_comment_before_after_key(key, before="\n")
        names = ", ".join(Path(source).name for source in sources)
        document.yaml_set_start_comment(
            f"Imported by nvgw import-hnv from {names}.\n"
            "A Windows export names no routing domain: add name: to each to tell them apart."
        )
        issues = list(self.issues)
        try:
            load_policy(to_plain(document))
        except ConfigError as error:
            issues.extend(
                self._relocate(issue)
                for issue in error.issues
                if parse_path(issue.path) not in self.explained
            )
        if issues:
            # One export value can break two entries built from it (a route and the
            # subnet it defines): say it once.
            unique = {(issue.file, issue.path, issue.message): issue for issue in issues}
            raise ConfigError(list(unique.values()))
        return document

    def _relocate(self, issue: ConfigIssue) -> ConfigIssue:
        """The issue at the export entry (or option) the document's entry came from,
        and naming the others it mentions the same way."""
        message = _DOCUMENT_PATH.sub(self._mention, issue.message)
        found = self._source(parse_path(issue.path))
        file, path = found if found is not None else (_UNLOCATED, issue.path)
        return dataclasses.replace(issue, file=file, path=path, message=message)

    def _source(self, loc: Loc) -> tuple[str, str] | None:
        """(file or option, path there) of a place in the built document."""
        for cut in range(len(loc), 0, -1):
            origin = self.origins.get(loc[:cut])
            if origin is not None:
                return origin.file, origin.path(loc[cut:])
        return None

    def _mention(self, match: re.Match[str]) -> str:
        found = self._source(parse_path(match.group()))
        if found is None:
            return match.group()
        file, path = found
        return f"{file} {path}" if file in _OPTIONS else path


# --- Values --------------------------------------------------------------------------


def _nvgw_enum(value: Any, names: Mapping[int, str], prop: str) -> str | None:
    """The nvgw value of a NetWNV enum written as its integer (ConvertTo-Json's
    default) or its name (PowerShell 7's -EnumsAsStrings, any case); None when the
    export has none. Raises ``_Refused`` for what nvgw cannot take."""
    if value is None:
        return None
    name = None
    if type(value) is int:
        name = names.get(value)
    elif isinstance(value, str):
        name = next((known for known in names.values() if known.lower() == value.lower()), None)
    if name is None:
        choices = ", ".join(f"{number} ({text})" for number, text in names.items())
        raise _Refused(prop, f"not a {prop}: expected one of {choices}, or the name")
    if name in _REFUSED:
        raise _Refused(prop, f"{name} is not supported: {_REFUSED[name]}")
    return _NVGW_VALUES[name]


def _address(value: Any) -> IPAddress | None:
    if not isinstance(value, str):
        return None
    try:
        return ip_address(value)
    except ValueError:
        return None


def _family(prefix: Any) -> int | None:
    try:
        return ip_network(prefix, strict=False).version
    except (TypeError, ValueError):
        return None


def _on_link(next_hop: Any) -> bool:
    address = _address(next_hop)
    return address is not None and address.is_unspecified


def _rdid(value: Any) -> Any:
    """RDIDs compare in lower case (as nvgw stores them), and are written in double
    quotes (as the shipped files do: unquoted, YAML reads ``{...}`` as a mapping);
    anything else is left for the schema to report."""
    return DoubleQuotedScalarString(value.lower()) if isinstance(value, str) else value


def _canonical_mac(value: Any) -> str | None:
    """``000000000011`` (how Windows prints a MAC) as ``00-00-00-00-00-11``; None for
    anything that is not a usable MAC (the schema reports it)."""
    try:
        return str(_MAC.validate_python(value))
    except ValidationError:
        return None


def _is_ifname(name: str) -> bool:
    try:
        _IFNAME.validate_python(name)
    except ValidationError:
        return False
    return True
