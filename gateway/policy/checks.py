"""Rules that relate entries to each other: the cross-entity half of validation.

The schema (``model.py``) judges each entry alone; this module judges the document
as a whole (a VSID used twice, a CA outside its subnet, a port on the wrong host) and
reports every problem, each at the path of the entry that breaks the rule, naming the
entry it clashes with.

It runs even when some entries failed the schema, on those that passed, so that one
run reports everything. An entry that failed still says what it would have defined
(``Parsed.unresolved_*``), so that references to it are not reported a second time as
"unknown": one mistake, one message.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.errors import ConfigIssue

from ._paths import Loc, format_path
from ._values import IPAddress, IPNetwork
from .model import (
    CustomerRoute,
    LookupRecord,
    Port,
    ProviderAddress,
    RecordType,
    RoutingDomain,
    Rule,
)
from .model import VirtualSubnet as Subnet


@dataclass(slots=True)
class Parsed:
    """The entries that passed the schema, each with its path, and what the entries
    that failed it would have defined."""

    domains: list[tuple[Loc, RoutingDomain]] = field(default_factory=list)
    # (path, subnet, its domain's RDID, or None when the domain entry failed the schema)
    subnets: list[tuple[Loc, Subnet, str | None]] = field(default_factory=list)
    records: list[tuple[Loc, LookupRecord]] = field(default_factory=list)
    routes: list[tuple[Loc, CustomerRoute]] = field(default_factory=list)
    provider_addresses: list[tuple[Loc, str, ProviderAddress]] = field(default_factory=list)
    ports: list[tuple[Loc, str, Port]] = field(default_factory=list)
    unresolved_vsids: set[int] = field(default_factory=set)
    unresolved_rdids: set[str] = field(default_factory=set)
    unresolved_records: list[tuple[int | None, bytes | None]] = field(default_factory=list)
    unresolved_nodes: set[str] = field(default_factory=set)  # a provider address failed
    # An RDID or VSID too broken to read may be the one any reference meant.
    unreadable_rdid: bool = False
    unreadable_vsid: bool = False


def check(parsed: Parsed) -> list[ConfigIssue]:
    """Every cross-entity problem in ``parsed``, in rule order, then document order."""
    issues: list[ConfigIssue] = []
    _check_domains(parsed, issues)
    subnets = _check_subnets(parsed, issues)
    records = _check_records(parsed, subnets, issues)
    _check_routes(parsed, subnets, issues)
    _check_nodes(parsed, records, issues)
    return issues


def _issue(issues: list[ConfigIssue], loc: Loc, value: object, message: str) -> None:
    issues.append(ConfigIssue(format_path(loc), value, message))


def _check_domains(parsed: Parsed, issues: list[ConfigIssue]) -> None:
    rdids: dict[str, Loc] = {}
    names: dict[str, Loc] = {}
    for loc, domain in parsed.domains:
        first = rdids.setdefault(domain.rdid, loc)
        if first != loc:
            message = f"duplicate RDID: {format_path(first)} has it"
            _issue(issues, (*loc, "rdid"), domain.rdid, message)
        if domain.name is not None:
            first = names.setdefault(domain.name, loc)
            if first != loc:
                message = f"duplicate routing domain name: {format_path(first)} has it"
                _issue(issues, (*loc, "name"), domain.name, message)


_SubnetIndex = dict[int, tuple[Loc, Subnet, str | None]]


def _check_subnets(parsed: Parsed, issues: list[ConfigIssue]) -> _SubnetIndex:
    by_vsid: _SubnetIndex = {}
    ambiguous: set[int] = set()
    groups: dict[tuple[object, int], list[tuple[IPNetwork, Loc]]] = defaultdict(list)
    for loc, subnet, rdid in parsed.subnets:
        # Overlap is judged per RDID; a subnet whose domain has no valid RDID is judged
        # with the other subnets of its own entry.
        group = rdid if rdid is not None else loc[:2]
        first = by_vsid.setdefault(subnet.vsid, (loc, subnet, rdid))
        if first[0] != loc:
            message = (
                f"VSID already used by {format_path(first[0])}: "
                "a VSID belongs to one routing domain, once"
            )
            _issue(issues, (*loc, "vsid"), subnet.vsid, message)
            ambiguous.add(subnet.vsid)
        for index, prefix in enumerate(subnet.prefixes):
            groups[group, prefix.version].append((prefix, (*loc, "prefixes", index)))
        gateway = subnet.gateway
        if gateway is not None:
            prefix = subnet.prefix_for(gateway.version)
            if prefix is None or gateway not in prefix:
                shown = ", ".join(str(p) for p in subnet.prefixes)
                message = f"the gateway is not inside the subnet's prefixes ({shown})"
                _issue(issues, (*loc, "gateway"), str(gateway), message)
            elif (reserved := reserved_address(gateway, prefix)) is not None:
                _issue(issues, (*loc, "gateway"), str(gateway), f"the gateway is {reserved}")
    reported: set[Loc] = set()
    for entries in groups.values():
        for inner, inner_loc, outer, outer_loc in _overlaps(entries):
            # Report the later of the two in the document: usually the one just added;
            # and a prefix once, however many others it overlaps.
            if inner_loc < outer_loc:
                inner, inner_loc, outer, outer_loc = outer, outer_loc, inner, inner_loc
            if inner_loc in reported:
                continue
            reported.add(inner_loc)
            message = (
                f"overlaps {outer} ({format_path(outer_loc)}): "
                "virtual subnets of one routing domain must not overlap"
            )
            _issue(issues, inner_loc, str(inner), message)
    # Which of two subnets a reference to a duplicated VSID means is anyone's guess:
    # judge no reference to it (as for a subnet that failed the schema).
    for vsid in ambiguous:
        del by_vsid[vsid]
    parsed.unresolved_vsids |= ambiguous
    return by_vsid


def _overlaps(
    entries: list[tuple[IPNetwork, Loc]],
) -> Iterator[tuple[IPNetwork, Loc, IPNetwork, Loc]]:
    """Each prefix that lies inside an earlier one (prefixes of one family are nested
    or disjoint, so one sweep over them sorted by start address finds them all)."""
    entries.sort(key=lambda entry: (int(entry[0].network_address), entry[0].prefixlen))
    enclosing: list[tuple[IPNetwork, Loc]] = []
    for prefix, loc in entries:
        start = int(prefix.network_address)
        while enclosing and int(enclosing[-1][0].broadcast_address) < start:
            enclosing.pop()
        if enclosing:
            yield prefix, loc, *enclosing[-1]
        enclosing.append((prefix, loc))


def reserved_address(address: IPAddress, prefix: IPNetwork) -> str | None:
    """What makes ``address`` unusable as a host of ``prefix``, if anything: the
    network and broadcast addresses of an IPv4 prefix up to /30 (RFC 3021 leaves /31
    without them), the subnet-router anycast address of an IPv6 prefix up to /126."""
    if prefix.version == 4 and prefix.prefixlen <= 30:
        if address == prefix.network_address:
            return f"the network address of {prefix}"
        if address == prefix.broadcast_address:
            return f"the broadcast address of {prefix}"
    elif prefix.version == 6 and prefix.prefixlen <= 126 and address == prefix.network_address:
        return f"the subnet-router anycast address of {prefix}"
    return None


# (VSID, MAC) -> the records that give that MAC a CA (at most one IPv4, one IPv6),
# in document order; the wildcard records (CA 0.0.0.0 or ::) are no port's.
_RecordIndex = dict[tuple[int, bytes], list[tuple[Loc, LookupRecord]]]


class _Span(NamedTuple):
    """A subnet prefix as ints, so that checking 100,000 CAs costs int compares rather
    than ``ipaddress`` method calls (measured: several times faster)."""

    prefix: IPNetwork
    first: int
    last: int
    reserved: bool  # the first (and for IPv4 the last) address is not a host
    gateway: int | None
    gateway_loc: Loc


def _spans(subnets: _SubnetIndex) -> dict[tuple[int, int], _Span]:
    spans = {}
    for vsid, (loc, subnet, _) in subnets.items():
        for prefix in subnet.prefixes:
            gateway = subnet.gateway
            same_family = gateway is not None and gateway.version == prefix.version
            spans[vsid, 4 if prefix.version == 4 else 16] = _Span(
                prefix,
                int(prefix.network_address),
                int(prefix.broadcast_address),
                reserved_address(prefix.network_address, prefix) is not None,
                int(gateway) if same_family else None,  # type: ignore[arg-type]
                (*loc, "gateway"),
            )
    return spans


def _check_records(
    parsed: Parsed, subnets: _SubnetIndex, issues: list[ConfigIssue]
) -> _RecordIndex:
    spans = _spans(subnets)
    by_ca: dict[tuple[int, bytes], Loc] = {}
    by_mac: _RecordIndex = defaultdict(list)
    wildcards: dict[tuple[object, ...], Loc] = {}
    pa_users: dict[bytes, list[Loc]] = defaultdict(list)
    for loc, record in parsed.records:
        vsid, ca = record.vsid, record.ca
        packed = ca.packed
        if vsid not in subnets:
            if not _unresolved_vsid(parsed, vsid):
                _issue(issues, (*loc, "vsid"), vsid, f"no virtual subnet has VSID {vsid}")
        elif not ca.is_unspecified:
            span = spans.get((vsid, len(packed)))
            message = _ca_problem(record, packed, span)
            if message is not None:
                _issue(issues, (*loc, "ca"), str(ca), message)
        if ca.is_unspecified:
            _check_wildcard(loc, record, wildcards, issues)
        else:
            first = by_ca.setdefault((vsid, packed), loc)
            if first != loc:
                message = f"duplicate CA in VSID {vsid}: {format_path(first)} has it"
                _issue(issues, (*loc, "ca"), str(ca), message)
            same_mac = by_mac[vsid, record.mac]
            clash = next((o for o in same_mac if o[1].ca.version == ca.version), None)
            if clash is not None:
                message = (
                    f"VSID {vsid} already gives this MAC an IPv{ca.version} CA: "
                    f"{format_path(clash[0])} (a MAC holds one IPv4 and one IPv6 CA at most)"
                )
                _issue(issues, (*loc, "mac"), str(record.mac), message)
            else:
                same_mac.append((loc, record))
        users = pa_users[record.pa.packed]
        if len(users) < 2:
            users.append(loc)
        if record.rule is Rule.IP_REWRITE and record.type is RecordType.GATEWAY:
            # Rewriting replaces the destination with the gateway's PA, and the far
            # side puts back the gateway's own CA: the real destination is lost.
            message = (
                "a gateway record takes any destination, which IP-Rewrite cannot carry "
                "(it replaces the destination with the PA): use rule encap"
            )
            _issue(issues, (*loc, "rule"), record.rule.value, message)
        elif record.rule is Rule.IP_REWRITE and ca.is_unspecified:
            message = f"IP-Rewrite swaps a CA for a PA, and {ca} is no CA: use rule encap"
            _issue(issues, (*loc, "rule"), record.rule.value, message)
        elif record.rule is Rule.IP_REWRITE and len(record.pa.packed) != len(packed):
            message = "IP-Rewrite swaps addresses in place: the CA and PA must be of one family"
            _issue(issues, (*loc, "pa"), str(record.pa), message)
    for loc, record in parsed.records:
        if record.rule is not Rule.IP_REWRITE:
            continue
        users = pa_users[record.pa.packed]
        if len(users) > 1:
            other = users[1] if users[0] == loc else users[0]
            message = (
                f"an IP-Rewrite (nat) record needs a PA of its own (1 CA = 1 PA), "
                f"and {format_path(other)} uses it too"
            )
            _issue(issues, (*loc, "pa"), str(record.pa), message)
    return dict(by_mac)


def _check_wildcard(
    loc: Loc,
    record: LookupRecord,
    seen: dict[tuple[object, ...], Loc],
    issues: list[ConfigIssue],
) -> None:
    """A record on CA 0.0.0.0 or ``::`` stands for no address of its own: a gateway's
    (the cmdlet's GatewayWildcard: its VSID's off-subnet traffic goes to it) or an
    L2-only MAC (OpenStack writes one beside each port). A VM's (static) record names
    the VM's address, so it may not; a VSID has one gateway wildcard per family, or
    which gateway its traffic takes would be a guess."""
    vsid, ca = record.vsid, record.ca
    if record.type is RecordType.STATIC:
        message = (
            f"{ca} is the wildcard CA, for gateway and l2only records only: "
            "a static record needs the VM's own address"
        )
        _issue(issues, (*loc, "ca"), str(ca), message)
        return
    if record.type is RecordType.GATEWAY:
        key: tuple[object, ...] = (vsid, ca.version, record.type)
        message = f"VSID {vsid} already has a gateway record on {ca}"
    else:
        key = (vsid, ca.version, record.type, record.mac)
        message = f"duplicate l2only record on {ca} for this MAC in VSID {vsid}"
    first = seen.setdefault(key, loc)
    if first != loc:
        _issue(issues, (*loc, "ca"), str(ca), f"{message}: {format_path(first)}")


def _ca_problem(record: LookupRecord, packed: bytes, span: _Span | None) -> str | None:
    """What is wrong with a record's CA in its (known) VSID, if anything."""
    if span is None:
        return f"VSID {record.vsid} has no IPv{record.ca.version} prefix"
    value = int.from_bytes(packed, "big")
    if not span.first <= value <= span.last:
        return f"not inside VSID {record.vsid}'s prefix {span.prefix}"
    if span.reserved and (value == span.first or (value == span.last and len(packed) == 4)):
        return f"the CA is {reserved_address(record.ca, span.prefix)}"
    if value == span.gateway:
        return f"the CA is VSID {record.vsid}'s gateway address ({format_path(span.gateway_loc)})"
    return None


def _check_routes(parsed: Parsed, subnets: _SubnetIndex, issues: list[ConfigIssue]) -> None:
    subnets_of: dict[str, list[Subnet]] = defaultdict(list)
    for _, subnet, rdid in parsed.subnets:
        if rdid is not None:
            subnets_of[rdid].append(subnet)
    known = {domain.rdid for _, domain in parsed.domains}
    seen: dict[tuple[str, IPNetwork, IPAddress], Loc] = {}
    for loc, route in parsed.routes:
        rdid, vsid = route.rdid, route.vsid
        destination, next_hop = route.destination, route.next_hop
        resolved = rdid in known
        unresolved = rdid in parsed.unresolved_rdids or parsed.unreadable_rdid
        if not resolved and not unresolved:
            _issue(issues, (*loc, "rdid"), rdid, "no routing domain has this RDID")
        entry = subnets.get(vsid)
        if entry is None:
            if not _unresolved_vsid(parsed, vsid):
                _issue(issues, (*loc, "vsid"), vsid, f"no virtual subnet has VSID {vsid}")
        elif resolved and entry[2] is not None and entry[2] != rdid:
            message = f"VSID {vsid} is not in routing domain {rdid}: it belongs to {entry[2]}"
            _issue(issues, (*loc, "vsid"), vsid, message)
        if destination.version != next_hop.version:
            message = (
                f"an IPv{next_hop.version} next hop for an IPv{destination.version} destination"
            )
            _issue(issues, (*loc, "next_hop"), str(next_hop), message)
        elif resolved and not route.on_link:
            prefixes = (subnet.prefix_for(next_hop.version) for subnet in subnets_of[rdid])
            if not any(prefix is not None and next_hop in prefix for prefix in prefixes):
                unspecified = "0.0.0.0" if next_hop.version == 4 else "::"
                message = (
                    f"the next hop is neither on-link ({unspecified}) nor inside "
                    f"a virtual subnet of routing domain {rdid}"
                )
                _issue(issues, (*loc, "next_hop"), str(next_hop), message)
        first = seen.setdefault((rdid, destination, next_hop), loc)
        if first != loc:
            message = f"duplicate route: {format_path(first)} has this rdid, destination, next_hop"
            _issue(issues, (*loc, "destination"), str(destination), message)


def _check_nodes(parsed: Parsed, records: _RecordIndex, issues: list[ConfigIssue]) -> None:
    owners: dict[IPAddress, tuple[str, Loc]] = {}
    pas_of: dict[str, set[IPAddress]] = defaultdict(set)
    interfaces_of: dict[str, set[str]] = defaultdict(set)
    for loc, node, entry in parsed.provider_addresses:
        pa = entry.pa
        limit = 32 if pa.version == 4 else 128
        if entry.prefix_length > limit:
            message = f"out of range: an IPv{pa.version} prefix length is 1..{limit}"
            _issue(issues, (*loc, "prefix_length"), entry.prefix_length, message)
        owner, owner_loc = owners.setdefault(pa, (node, loc))
        if owner_loc != loc:
            if owner == node:
                message = f"duplicate provider address: {format_path(owner_loc)} has it"
            else:
                message = (
                    f"already a provider address of node {owner} ({format_path(owner_loc)}): "
                    "a PA belongs to one node"
                )
            _issue(issues, (*loc, "pa"), str(pa), message)
        pas_of[node].add(pa)
        interfaces_of[node].add(entry.interface)

    names: dict[tuple[str, str], Loc] = {}
    placed: dict[tuple[int, bytes], Loc] = {}
    for loc, node, port in parsed.ports:
        first = names.setdefault((node, port.name), loc)
        if first != loc:
            message = f"duplicate port name in node {node}: {format_path(first)} has it"
            _issue(issues, (*loc, "name"), port.name, message)
        if port.name in interfaces_of[node]:
            message = f"also a provider interface of node {node}: a TAP needs a name of its own"
            _issue(issues, (*loc, "name"), port.name, message)
        key = (port.vsid, port.mac)
        other_loc = placed.setdefault(key, loc)
        if other_loc != loc:
            message = f"VSID {port.vsid} already has a port with this MAC: {format_path(other_loc)}"
            _issue(issues, (*loc, "mac"), str(port.mac), message)
            continue  # one mistake, one message: not also "on the wrong node"
        found = records.get(key)
        if found is None:
            if not _unresolved_record(parsed, key):
                message = f"no lookup record gives VSID {port.vsid} and this MAC a CA"
                _issue(issues, (*loc, "mac"), str(port.mac), message)
            continue
        # Each of the port's CAs (IPv4, IPv6) must be reached at one of this node's PAs.
        elsewhere = [e for e in found if e[1].pa not in pas_of[node]]
        if elsewhere and node not in parsed.unresolved_nodes:
            record_loc, pa = elsewhere[0][0], elsewhere[0][1].pa
            owner = owners.get(pa)
            hint = f"node {owner[0]} owns it" if owner else "no node owns it"
            message = (
                f"the port is on the wrong node: its lookup record ({format_path(record_loc)}) "
                f"has PA {pa}, which is not a provider address of node {node} ({hint})"
            )
            _issue(issues, (*loc, "name"), port.name, message)


def _unresolved_vsid(parsed: Parsed, vsid: int) -> bool:
    return parsed.unreadable_vsid or vsid in parsed.unresolved_vsids


def _unresolved_record(parsed: Parsed, key: tuple[int, bytes]) -> bool:
    vsid, mac = key
    return any(
        (other_vsid is None or other_vsid == vsid) and (other_mac is None or other_mac == mac)
        for other_vsid, other_mac in parsed.unresolved_records
    )
