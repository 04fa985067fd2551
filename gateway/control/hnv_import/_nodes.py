"""The nodes of an import: what ``--node`` says, and the nodes built from it.

A Windows export has no hosts: which provider addresses make up one nvgw daemon is
the operator's to say (``--node host1=198.18.0.1/24``). Each node gets its provider
addresses (prefix length and VLAN from the provider-address export when given) and a
port per VM adapter whose lookup record has one of its PAs. A gateway's interface is
no VM adapter (``_gateways``): it gets no port.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from gateway.errors import ConfigError, ConfigIssue
from gateway.netnames import ifname_problem

from ._decode import Entry, IPAddress, Record, address_of
from ._locate import (
    INTERFACE_OPTION,
    NODE_OPTION,
    PORT_FIELDS,
    PROVIDER_FIELDS,
    Origin,
    Report,
    entry_path,
)

_NODE_SYNTAX = "expected NAME=PA[,PA...], each PA optionally with /PREFIX_LENGTH"


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


class NodeBuilder:
    """The ``nodes:`` of one import, from the records it keeps (``kept``, in the
    document's order) and the operator's ``--node`` options."""

    def __init__(self, kept: Sequence[Record], interface: str, report: Report) -> None:
        self.kept = kept
        self.interface = interface
        self.report = report
        self.nodes = CommentedMap()
        self.adapters: set[tuple[int, str]] = set()  # (VSID, MAC) that have a port

    def build(self, specs: Sequence[NodeSpec], exported: Sequence[Entry]) -> CommentedMap:
        """The nodes; ``exported`` is the provider-address exports' entries, each PA
        once (``_merge``)."""
        by_pa: dict[IPAddress, Entry] = {}
        for entry in exported:
            pa = address_of(entry.source.get("ProviderAddress"))
            if pa is not None:
                by_pa.setdefault(pa, entry)
        used: set[IPAddress] = set()  # PAs a node took from the export
        for spec in specs:
            if spec.name in self.nodes:
                message = "the same node twice: give all its PAs in one --node"
                self.report.issues.append(ConfigIssue(spec.name, spec.name, message, NODE_OPTION))
                continue
            self.report.origins["nodes", spec.name] = Origin(NODE_OPTION, (spec.name,))
            node = CommentedMap(role="host")
            node["provider_addresses"] = self._provider_addresses(spec, by_pa, used)
            node["ports"] = self._ports(spec)
            if not node["ports"]:
                self._warn_gateway_only(spec)
            self.nodes[spec.name] = node
        owned = {address.pa for spec in specs for address in spec.addresses}
        self._warn_unowned(owned, by_pa, used)
        self._warn_l2only()
        return self.nodes

    def _provider_addresses(
        self, spec: NodeSpec, by_pa: Mapping[IPAddress, Entry], used: set[IPAddress]
    ) -> CommentedSeq:
        entries = CommentedSeq()
        for address in spec.addresses:
            exported = by_pa.get(address.pa)
            source = exported.source if exported is not None else {}
            loc = ("nodes", spec.name, "provider_addresses", len(entries))
            entry = CommentedMap(interface=self.interface, pa=str(address.pa))
            length = self._prefix_length(spec.name, address, source.get("PrefixLength"))
            if length is not None:
                entry["prefix_length"] = length
            else:
                self.report.explained.add((*loc, "prefix_length"))
            if source.get("VlanID"):  # 0 (or none) is no VLAN
                entry["vlan"] = source["VlanID"]
            entry.fa.set_flow_style()
            if exported is not None:
                used.add(address.pa)
                self.report.origins[loc] = Origin(exported.file, (exported.index,), PROVIDER_FIELDS)
            # One --interface for every PA: a bad one is one problem, however many PAs.
            self.report.origins[(*loc, "interface")] = Origin(INTERFACE_OPTION, ("interface",))
            entries.append(entry)
        return entries

    def _prefix_length(self, node: str, address: NodeAddress, exported: Any) -> Any:
        given = address.prefix_length
        if given is None and exported is None:
            message = (
                "no prefix length: write it as PA/LENGTH, or give the PA's "
                "Get-NetVirtualizationProviderAddress export with --provider-addresses"
            )
            self.report.issues.append(ConfigIssue(node, str(address.pa), message, NODE_OPTION))
        elif given is not None and exported not in (None, given):
            message = f"the provider-address export gives this PA prefix length {exported}"
            issue = ConfigIssue(node, f"{address.pa}/{given}", message, NODE_OPTION)
            self.report.issues.append(issue)
        return given if given is not None else exported

    def _ports(self, spec: NodeSpec) -> CommentedSeq:
        """One port per VM adapter (VSID and MAC) whose record has a PA of this node,
        and only one in all: a dual-stack VM has two records and one adapter, and a PA
        given to two nodes (reported as such) must not also make two ports. A record
        without a CA of its own (a wildcard) or a gateway's makes none."""
        pas = {address.pa for address in spec.addresses}
        ports = CommentedSeq()
        taken = {self.interface}
        for record in self.kept:
            if record.pa not in pas or record.vsid is None or record.mac is None:
                continue
            if not _makes_port(record):
                continue
            if (record.vsid, record.mac) in self.adapters:
                continue
            self.adapters.add((record.vsid, record.mac))
            name = self._port_name(spec.name, record, taken)
            taken.add(name)
            port = CommentedMap(name=name, vsid=record.vsid, mac=record.mac)
            port.fa.set_flow_style()
            self.report.origins["nodes", spec.name, "ports", len(ports)] = Origin(
                record.file, (record.index,), PORT_FIELDS
            )
            ports.append(port)
        return ports

    def _port_name(self, node: str, record: Record, taken: set[str]) -> str:
        """The VM's name when it can name a TAP device, else ``vnicN``: a Hyper-V VM
        name may be longer than Linux's 15 bytes or hold spaces."""
        vm = record.source.get("VMName")
        if isinstance(vm, str) and vm not in taken and ifname_problem(vm) is None:
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
            self.report.warnings.append(
                f"{entry_path(record.file, record.index)}: VM {vm!r} ({why}): "
                f"its port on node {node} is named {name}"
            )
        return name

    def _warn_gateway_only(self, spec: NodeSpec) -> None:
        """A node on a gateway's PA gets no port: the gateway is not a VM."""
        pas = {address.pa for address in spec.addresses}
        gateways = [
            f"{record.ca} in VSID {record.vsid}"
            for record in self.kept
            if record.pa in pas and record.kind == "gateway"
        ]
        if gateways:
            self.report.warnings.append(
                f"node {spec.name} gets no port: its PAs carry only gateway records "
                f"({', '.join(gateways)}), and a gateway's interface is no VM port"
            )

    def _warn_l2only(self) -> None:
        """A MAC with an L2Only record and no CA gets no port: Windows learns its
        address (from DHCP), and nvgw learns none."""
        with_ca = {(r.vsid, r.mac) for r in self.kept if not r.wildcard}
        for record in self.kept:
            alone = (record.vsid, record.mac) not in with_ca
            if record.wildcard and record.kind == "l2only" and alone:
                self.report.warnings.append(
                    f"{entry_path(record.file, record.index)}: MAC {record.mac} in VSID "
                    f"{record.vsid} has an L2Only record and no CA: nvgw learns no "
                    "addresses, so it gets no port"
                )

    def _warn_unowned(
        self, owned: set[IPAddress], by_pa: Mapping[IPAddress, Entry], used: set[IPAddress]
    ) -> None:
        counts: dict[IPAddress, int] = defaultdict(int)
        for record in self.kept:
            if _makes_port(record) and record.pa is not None and record.pa not in owned:
                counts[record.pa] += 1
        for pa, count in counts.items():
            self.report.warnings.append(
                f"PA {pa} ({count} lookup record(s)) is on no --node: "
                "its VMs get no port in the output"
            )
        for pa, entry in by_pa.items():
            if pa not in used:
                where = entry_path(entry.file, entry.index)
                self.report.warnings.append(f"{where}: PA {pa} is on no --node")


def _makes_port(record: Record) -> bool:
    """A VM's record: one with a CA of its own (not a wildcard) and not a gateway's."""
    return not record.wildcard and record.kind != "gateway"
