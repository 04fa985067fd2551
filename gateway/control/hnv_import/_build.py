"""Building the policy of an import: records, routes and the virtual subnets their
on-link routes define, routing domains, the nodes; then ``load_policy`` judges it.

Windows keeps a VSID's prefix in its on-link customer route (next hop 0.0.0.0), not in
a subnet object, and a routing domain is only an ID on routes and records; so the
routing domains and virtual subnets of the output are gathered from those.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from gateway.errors import ConfigError
from gateway.policy import load_policy

from ..config_file import to_plain
from ._decode import Entry, Export, IPAddress, Record, address_of, decode_record
from ._gateways import default_gateway_ca, mark_gateways, set_default_gateways
from ._locate import (
    RECORD_FIELDS,
    ROUTE_FIELDS,
    ROUTE_KEYS,
    SECTIONS,
    SUBNET_FIELDS,
    Loc,
    Origin,
    Report,
)
from ._merge import address_compared, address_key, merge, route_compared, route_key
from ._nodes import NodeBuilder, NodeSpec


def import_hnv(
    records: Sequence[Export],
    routes: Sequence[Export] = (),
    nodes: Sequence[NodeSpec] = (),
    *,
    provider_addresses: Sequence[Export] = (),
    interface: str = "pa0",
) -> tuple[CommentedMap, list[str]]:
    """A config document (in the shipped files' style) from Windows exports, and
    warnings about what it leaves out. Each kind of export may come as several files
    (one per host), each listing the same entries: they are merged (``_merge``).
    Raises ``ConfigError`` with every problem."""
    importer = _Importer()
    importer.read_records(records)
    importer.read_routes(routes)
    importer.place_records()
    addresses = merge(
        _entries(provider_addresses),
        address_key,
        address_compared,
        importer.report,
        "provider address",
    )
    builder = NodeBuilder(importer.kept, interface, importer.report)
    importer.nodes = builder.build(nodes, addresses)
    sources = [export.file for export in (*records, *routes, *provider_addresses) if export.file]
    return importer.finish(sources), importer.report.warnings


def _entries(exports: Sequence[Export]) -> list[Entry]:
    return [entry for export in exports for entry in export.entries()]


class _Importer:
    """One import: what has been built, and its report (where each part came from,
    what went wrong)."""

    def __init__(self) -> None:
        self.report = Report()
        self.records: list[Record] = []
        self.kept: list[Record] = []
        self.routes: list[CommentedMap] = []
        self.domains: dict[str, CommentedMap] = {}  # RDID -> routing domain entry
        self.positions: dict[str, int] = {}  # RDID -> index in routing_domains
        self.subnets: dict[int, tuple[Loc, CommentedMap, str]] = {}  # VSID -> loc, entry, RDID
        self.nodes = CommentedMap()

    # Lookup records -------------------------------------------------------------

    def read_records(self, exports: Sequence[Export]) -> None:
        decoded = []
        for entry in _entries(exports):
            record = decode_record(entry)
            if isinstance(record, Record):
                decoded.append(record)
                continue
            for refused in record:  # reported; the record is left out
                value = entry.source.get(refused.prop)
                loc = (entry.index, refused.prop)
                self.report.issue(entry.file, loc, value, refused.message)
        self.records = merge(decoded, Record.key, Record.compared, self.report, "lookup record")

    # Customer routes, and the subnets their on-link routes define ---------------

    def read_routes(self, exports: Sequence[Export]) -> None:
        entries = merge(_entries(exports), route_key, route_compared, self.report, "customer route")
        for entry in entries:
            route = CommentedMap()
            for prop, key in ROUTE_KEYS.items():
                if entry.source.get(prop) is not None:
                    value = entry.source[prop]
                    route[key] = _rdid(value) if key == "rdid" else value
            self.report.origins["customer_routes", len(self.routes)] = Origin(
                entry.file, (entry.index,), ROUTE_FIELDS
            )
            self.routes.append(route)
            rdid = route.get("rdid")
            if isinstance(rdid, str):
                self._domain(rdid, Origin(entry.file, (entry.index,), {"rdid": "RoutingDomainID"}))
                if _on_link(route.get("next_hop")):
                    self._on_link_prefix(entry.file, entry.index, rdid, route)

    def _domain(self, rdid: str, origin: Origin) -> CommentedMap:
        domain = self.domains.get(rdid)
        if domain is None:
            domain = CommentedMap(rdid=rdid)
            domain["virtual_subnets"] = CommentedSeq()
            self.positions[rdid] = len(self.domains)
            self.report.origins["routing_domains", self.positions[rdid]] = origin
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
            self.report.issue(file, (index, "DestinationPrefix"), prefix, message)
            return
        self.report.origins[(*loc, "prefixes", len(prefixes))] = Origin(
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
        self.report.origins[loc] = Origin(file, (index,), SUBNET_FIELDS)
        self.subnets[vsid] = (loc, subnet, rdid)

    # Which records the output keeps ------------------------------------------------

    def place_records(self) -> None:
        """Keeps the records whose VSID has a subnet (warning about the others), makes
        each default-gateway record its subnet's ``gateway:``, and marks the records of
        gateways' interfaces ``type: gateway`` (``_gateways``)."""
        unplaced: dict[int, list[Record]] = defaultdict(list)
        mismatched: dict[tuple[int, str], list[Record]] = defaultdict(list)
        gateways: dict[int, list[tuple[IPAddress, Record]]] = defaultdict(list)
        for record in self.records:
            mismatch = self._customer_domain(record)
            if mismatch is not None:
                mismatched[mismatch].append(record)
            if record.vsid is None:
                self.kept.append(record)  # the schema reports it
            elif record.vsid not in self.subnets:
                unplaced[record.vsid].append(record)
            else:
                subnet = self.subnets[record.vsid][1]
                ca = default_gateway_ca(record, subnet["prefixes"])
                if ca is None:
                    self.kept.append(record)
                else:
                    gateways[record.vsid].append((ca, record))
        set_default_gateways(gateways, self.subnets, self.report)
        mark_gateways(self.kept, self.routes, self.subnets)
        for vsid, records in unplaced.items():
            self.report.warnings.append(
                f"{_names(records)}: VSID {vsid} has {len(records)} lookup record(s) "
                "but no on-link customer route (NextHop 0.0.0.0) to give its prefix: "
                "they and their ports are left out"
            )
        for (vsid, customer), records in mismatched.items():
            self.report.warnings.append(
                f"{_names(records)}: {len(records)} record(s) of VSID {vsid} have "
                f"CustomerID {customer}, but the customer routes put VSID {vsid} in routing "
                f"domain {self.subnets[vsid][2]}: the routes' is used"
            )
        for position, record in enumerate(self.kept):
            self.report.origins["lookup_records", position] = self._origin(record, RECORD_FIELDS)

    def _customer_domain(self, record: Record) -> tuple[int, str] | None:
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

    def _origin(self, record: Record, fields: Mapping[str, str]) -> Origin:
        return Origin(record.file, (record.index,), fields)

    # The document -----------------------------------------------------------------

    def finish(self, sources: Sequence[str]) -> CommentedMap:
        """The document, once ``load_policy`` accepts it; otherwise every problem,
        this import's own first, each at the place it came from."""
        document = CommentedMap(revision=0)
        document["routing_domains"] = CommentedSeq(self.domains.values())
        document["lookup_records"] = CommentedSeq(record.entry() for record in self.kept)
        document["customer_routes"] = CommentedSeq(self.routes)
        document["nodes"] = self.nodes
        for key in SECTIONS:
            document.yaml_set_comment_before_after_key(key, before="\n")
        names = [Path(source).name for source in sources]
        shown = ", ".join(names if len(set(names)) == len(names) else sources)
        document.yaml_set_start_comment(
            f"Imported by nvgw import-hnv from {shown}.\n"
            "A Windows export names no routing domain: add name: to each to tell them apart."
        )
        issues = list(self.report.issues)
        try:
            load_policy(to_plain(document))
        except ConfigError as error:
            issues.extend(self.report.relocated(error.issues))
        if issues:
            # One export value can break two entries built from it (a route and the
            # subnet it defines): say it once.
            unique = {(issue.file, issue.path, issue.message): issue for issue in issues}
            raise ConfigError(list(unique.values()))
        return document


# --- Values --------------------------------------------------------------------------


def _names(records: Sequence[Record]) -> str:
    """The export files ``records`` came from, by name, for a warning."""
    return ", ".join(dict.fromkeys(Path(record.file).name for record in records))


def _family(prefix: Any) -> int | None:
    try:
        return ip_network(prefix, strict=False).version
    except (TypeError, ValueError):
        return None


def _on_link(next_hop: Any) -> bool:
    hop = address_of(next_hop)
    return hop is not None and hop.is_unspecified


def _rdid(value: Any) -> Any:
    """RDIDs compare in lower case (as nvgw stores them), and are written in double
    quotes (as the shipped files do: unquoted, YAML reads ``{...}`` as a mapping);
    anything else is left for the schema to report."""
    return DoubleQuotedScalarString(value.lower()) if isinstance(value, str) else value
