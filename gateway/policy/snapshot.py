"""The compiled snapshot: what the data plane asks, answered by hash lookups.

The wire parser hands out addresses as 4- or 16-byte ``bytes`` and MACs as 6-byte
``bytes``, so every key here is packed the same way: the per-packet path never builds
an ``ipaddress`` object. A snapshot is immutable (its mappings are persistent maps or
read-only views), built from a validated ``Policy`` whole or from the snapshot before
it by a change of records; control builds a new one for each change and io/ rebinds
one attribute between batches, so a lookup never sees half a change.
(Measured here: a view's ``[key]`` costs about 10 ns more than a dict's, its ``.get()``
about 60 ns more; per-packet code that counts nanoseconds indexes in a ``try``.)

Compiled records and routes are ``NamedTuple``s: immutable, built by one short call,
and read through C field descriptors as fast as ``__slots__``. (A slots class with a
guarded ``__setattr__``, or a frozen dataclass, costs about three times as much to
build: 100,000 records per snapshot make that count.)

Longest-prefix match, per routing domain and address family: one dict per prefix
length, keyed by the masked destination as an int, lengths tried longest first. A
tenant has few distinct prefix lengths, so a lookup is a handful of dict probes; a
trie in Python would cost a function call or a loop step per bit.

The record tables (by CA, by MAC, by PA, the wildcards and the anti-spoofing
lookups) are ``immutables.Map``s: hash array mapped tries (the HAMT of CPython's
``contextvars``, by the same author, in C) and persistent, so a change of records
makes the next snapshot's tables in O(log n) per record it touches, sharing every
other node with the old ones, which stay exactly as they were (a batch still
running on the old snapshot sees it whole). Why a HAMT rather than the others
weighed: a dict copied per change (what this did first) costs C time per entry,
about 2 ms per table at 10^5 records and seven tables a change, and freeing the old
ones as much again; per-VSID shards would put a second lookup, and a Python
``get``, on the per-packet path; a delta applied in place at swap time would change
the old snapshot under whoever still holds it (a trace, the API) and tie the swap to
every role's tables. A HAMT's ``get`` costs about what a dict's does (the method
call dominates), its ``[key]`` a few tens of ns more; building one whole takes
longer than a dict (a compile: a start or a reload, not a change).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, NamedTuple

from immutables import Map, MapMutation

from ._gc import paused_gc
from ._values import IPNetwork
from .model import CustomerRoute, LookupRecord, Policy, RecordDelta, RecordType, Rule

_IPV4_SIZE = 4  # bytes in a packed IPv4 address
_WILDCARD_CAS = frozenset((bytes(4), bytes(16)))  # 0.0.0.0 and ::, packed
# (mask, {masked destination: value}) per prefix length present, longest first.
_Table = tuple[tuple[int, dict[int, object]], ...]


class CompiledRecord(NamedTuple):
    """A lookup record with every field the data plane compares already packed."""

    vsid: int
    rdid: str
    ca_bytes: bytes  # 4 or 16 bytes
    mac_bytes: bytes  # 6 bytes (a ``Mac``: prints as 00-00-00-00-00-11)
    pa_bytes: bytes  # 4 or 16 bytes
    rule: Rule
    type: RecordType
    vm: str | None
    record: LookupRecord  # the policy object, for tracing and the API

    @property
    def wildcard(self) -> bool:
        """On CA 0.0.0.0 or ``::``: a gateway's or an L2-only MAC's, no address's."""
        return self.ca_bytes in _WILDCARD_CAS


class CompiledRoute(NamedTuple):
    """A customer route as the LPM returns it."""

    rdid: str
    vsid: int
    destination: IPNetwork
    metric: int
    next_hop_bytes: bytes | None  # None: on-link, deliver to the destination itself
    next_hop_vsid: int  # the VSID that holds the next hop (``vsid`` when on-link)
    route: CustomerRoute


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """Everything the data plane looks up, for one revision of the policy.

    Keys: ``record_by_ca[(vsid, ca_bytes)]``, ``record_by_mac[(vsid, mac_bytes)]``,
    ``records_by_mac[(vsid, mac_bytes)]``, ``gateway_wildcard[(vsid, address size)]``,
    ``rdid_by_vsid[vsid]``, ``records_by_pa[pa_bytes]`` (a tuple, document order), and
    ``route(rdid, dst_bytes)``. RDIDs are the policy's canonical lower-case strings.

    A MAC may have several records in its VSID (decisions.md, "Which records may
    coexist"): an IPv4 and an IPv6 CA (a dual-stack VM), and ``gateway`` or ``l2only``
    records on the wildcard CA 0.0.0.0 / ``::``. ``records_by_mac`` holds them all,
    ranked: IPv4 before IPv6 (the data plane forwards IPv4, and an IPv4 frame must
    never reach a record whose CA is IPv6), then a CA before the wildcard, then
    ``gateway`` before ``l2only``. ``record_by_mac`` is the first of each: the record a
    frame to or from that MAC is judged by. A wildcard CA is no address: the
    wildcard records are in no ``record_by_ca``; a VSID's ``gateway`` record on it (the
    cmdlet's GatewayWildcard, one per family) is its ``gateway_wildcard``, where its
    off-subnet traffic goes when no customer route says otherwise.
    """

    revision: int
    policy: Policy
    records: tuple[CompiledRecord, ...]
    routes: tuple[CompiledRoute, ...]
    record_by_ca: Map[tuple[int, bytes], CompiledRecord]
    record_by_mac: Map[tuple[int, bytes], CompiledRecord]
    records_by_mac: Map[tuple[int, bytes], tuple[CompiledRecord, ...]]
    gateway_wildcard: Map[tuple[int, int], CompiledRecord]
    rdid_by_vsid: Mapping[int, str]
    records_by_pa: Map[bytes, tuple[CompiledRecord, ...]]
    _lpm: Mapping[tuple[str, int], _Table]
    # The anti-spoofing lookups every role's tables share (``dataplane/senders.py``
    # says what each answers): persistent maps like the others, kept here so that a
    # change of records updates them rather than a pass over every record.
    sender_by_mac: Map[tuple[int, bytes], CompiledRecord]  # the MAC's best IPv4 record
    sender_by_rdid_ca: Map[tuple[str, bytes], CompiledRecord]  # wildcards left out
    gateway_by_rdid_pa: Map[tuple[str, bytes], CompiledRecord]  # the first in the file

    def route(self, rdid: str, destination: bytes) -> CompiledRoute | None:
        """The best route of routing domain ``rdid`` to ``destination`` (4 or 16
        packed bytes): the longest prefix, then the lowest metric, then on-link before
        a next hop, then the numerically lowest next hop. None when nothing matches."""
        return _lookup(self._lpm, rdid, destination)  # type: ignore[return-value]


def compile_policy(policy: Policy, previous: Snapshot | None = None) -> Snapshot:
    """Build the snapshot of a validated policy (what ``load_policy()`` returned).

    Relies on the policy's invariants (unique VSIDs, CAs per VSID, one CA per family
    and MAC, one gateway wildcard per VSID and family, routes inside known routing
    domains); it checks none of them again. ``previous``: the snapshot running now;
    when ``policy`` was made of its policy by a change of lookup records (and of
    the ports a migration moves, which no table holds: ``Policy.derived``), the new
    snapshot is that one with the record tables the change touches updated
    (``_with_records``), in O(change), never built again from every record.
    """
    derived = policy.derived
    with paused_gc():
        if (
            previous is not None
            and derived is not None
            and previous.revision == derived.base_revision
            and len(previous.records) == derived.base_count
        ):
            if not (derived.removed or derived.added or derived.replaced):
                return _with_others(previous, policy)
            return _with_records(previous, policy, derived)
        return _compile(policy)


def _compiled(record: LookupRecord, rdid_by_vsid: Mapping[int, str]) -> CompiledRecord:
    return CompiledRecord(
        record.vsid,
        rdid_by_vsid[record.vsid],
        record.ca.packed,
        record.mac,
        record.pa.packed,
        record.rule,
        record.type,
        record.vm,
        record,
    )


def _compile(policy: Policy) -> Snapshot:
    rdid_by_vsid = {
        subnet.vsid: domain.rdid
        for domain in policy.routing_domains
        for subnet in domain.virtual_subnets
    }
    records = tuple(_compiled(record, rdid_by_vsid) for record in policy.lookup_records)
    # One pass (100,000 records: every step here costs milliseconds). A MAC rarely
    # has two records, so re-sorting its tuple on each addition costs nothing.
    by_pa: dict[bytes, list[CompiledRecord]] = defaultdict(list)
    by_ca: dict[tuple[int, bytes], CompiledRecord] = {}
    by_mac: dict[tuple[int, bytes], tuple[CompiledRecord, ...]] = {}
    wildcards: dict[tuple[int, int], CompiledRecord] = {}
    for compiled in records:
        by_pa[compiled.pa_bytes].append(compiled)
        _file(compiled, by_ca, by_mac, wildcards)
    routes = _compile_routes(policy)
    first_by_mac = {key: found[0] for key, found in by_mac.items()}
    by_rdid_ca = {(r.rdid, r.ca_bytes): r for r in records if r.ca_bytes not in _WILDCARD_CAS}
    return Snapshot(
        revision=policy.revision,
        policy=policy,
        records=records,
        routes=routes,
        record_by_ca=_persistent(by_ca),
        record_by_mac=_persistent(first_by_mac),
        records_by_mac=_persistent(by_mac),
        gateway_wildcard=_persistent(wildcards),
        rdid_by_vsid=MappingProxyType(rdid_by_vsid),
        records_by_pa=_persistent({pa: tuple(found) for pa, found in by_pa.items()}),
        _lpm=MappingProxyType(_tables([(r.rdid, r.destination, r) for r in routes], _rank)),
        sender_by_mac=_persistent(
            {k: r for k, r in first_by_mac.items() if len(r.ca_bytes) == _IPV4_SIZE}
        ),
        sender_by_rdid_ca=_persistent(by_rdid_ca),
        gateway_by_rdid_pa=_persistent(
            {(r.rdid, r.pa_bytes): r for r in reversed(records) if r.type is RecordType.GATEWAY}
        ),
    )


def _persistent(table: dict[Any, Any]) -> Map[Any, Any]:
    """A dict as a persistent map: inserted one by one through a mutation, about a
    quarter cheaper than ``Map(table)`` (60 against 78 ms of CPU at 10^5 entries)."""
    building = Map().mutate()
    for key, value in table.items():
        building[key] = value
    return building.finish()


def _file(
    compiled: CompiledRecord,
    by_ca: dict[tuple[int, bytes], CompiledRecord] | MapMutation[tuple[int, bytes], CompiledRecord],
    by_mac: dict[tuple[int, bytes], tuple[CompiledRecord, ...]]
    | MapMutation[tuple[int, bytes], tuple[CompiledRecord, ...]],
    wildcards: dict[tuple[int, int], CompiledRecord] | MapMutation[tuple[int, int], CompiledRecord],
) -> None:
    """A record into the tables keyed by its CA, its MAC and its wildcard (a dict
    being built, or a persistent map's mutation)."""
    key = (compiled.vsid, compiled.mac_bytes)
    found = by_mac.get(key)
    by_mac[key] = (compiled,) if found is None else tuple(sorted((*found, compiled), key=_mac_rank))
    if compiled.ca_bytes not in _WILDCARD_CAS:
        by_ca[compiled.vsid, compiled.ca_bytes] = compiled
    elif compiled.type is RecordType.GATEWAY:
        wildcards[compiled.vsid, len(compiled.ca_bytes)] = compiled


def _with_records(previous: Snapshot, policy: Policy, derived: RecordDelta) -> Snapshot:
    """``previous`` with the records ``derived`` names replaced in place, removed
    and appended (a replaced record is removed from the tables and filed again, in
    document order where a table keeps it): each record table they touch updated as
    a persistent map (O(log n) per record, the rest of the map shared), every other
    table (routes, the LPM, VSIDs' RDIDs) shared as it is. The old snapshot is never
    changed: a batch still running on it sees it whole."""
    rdids = previous.rdid_by_vsid
    new = policy.lookup_records
    swapped = [(p, _compiled(new[derived.position(p)], rdids)) for p, _ in derived.replaced]
    added = [_compiled(r, rdids) for r in new[len(new) - derived.added :]]
    records = derived.spliced(previous.records, added, [r for _, r in swapped])
    gone = [previous.records[p] for p in (*derived.removed, *(p for p, _ in swapped))]
    refiled = [r for _, r in swapped]
    by_ca = previous.record_by_ca.mutate()
    by_mac = previous.records_by_mac.mutate()
    first_by_mac = previous.record_by_mac.mutate()
    wildcards = previous.gateway_wildcard.mutate()
    by_pa = previous.records_by_pa.mutate()
    for compiled in gone:
        key = (compiled.vsid, compiled.mac_bytes)
        left = tuple(r for r in by_mac[key] if r is not compiled)
        if left:
            by_mac[key] = left
        else:
            del by_mac[key]
        if compiled.ca_bytes not in _WILDCARD_CAS:
            del by_ca[compiled.vsid, compiled.ca_bytes]
        elif wildcards.get((compiled.vsid, len(compiled.ca_bytes))) is compiled:
            del wildcards[compiled.vsid, len(compiled.ca_bytes)]
        users = tuple(r for r in by_pa[compiled.pa_bytes] if r is not compiled)
        if users:
            by_pa[compiled.pa_bytes] = users
        else:
            del by_pa[compiled.pa_bytes]
    for compiled, (_, place) in zip(refiled, derived.replaced, strict=True):
        _file(compiled, by_ca, by_mac, wildcards)
        users = by_pa.get(compiled.pa_bytes, ())
        by_pa[compiled.pa_bytes] = (*users[:place], compiled, *users[place:])
    for compiled in added:
        _file(compiled, by_ca, by_mac, wildcards)
        by_pa[compiled.pa_bytes] = (*by_pa.get(compiled.pa_bytes, ()), compiled)
    senders = previous.sender_by_mac.mutate()
    for compiled in (*gone, *refiled, *added):
        key = (compiled.vsid, compiled.mac_bytes)
        found = by_mac.get(key)
        if found:
            first_by_mac[key] = found[0]
        else:
            first_by_mac.pop(key, None)
        if found and len(found[0].ca_bytes) == _IPV4_SIZE:
            senders[key] = found[0]
        else:
            senders.pop(key, None)
    by_rdid_ca = previous.sender_by_rdid_ca.mutate()
    gateways = previous.gateway_by_rdid_pa.mutate()
    for compiled in gone:  # a CA is one record's within its routing domain
        if compiled.ca_bytes not in _WILDCARD_CAS:
            del by_rdid_ca[compiled.rdid, compiled.ca_bytes]
        key = (compiled.rdid, compiled.pa_bytes)
        if gateways.get(key) is compiled:  # the next of that domain and PA, if any
            del gateways[key]
            for other in by_pa.get(compiled.pa_bytes, ()):
                if other.type is RecordType.GATEWAY and other.rdid == compiled.rdid:
                    gateways[key] = other
                    break
    for compiled in refiled:  # filed mid-file: the first of its domain and PA, maybe
        if compiled.ca_bytes not in _WILDCARD_CAS:
            by_rdid_ca[compiled.rdid, compiled.ca_bytes] = compiled
        if compiled.type is RecordType.GATEWAY:
            gateways[compiled.rdid, compiled.pa_bytes] = next(
                other
                for other in by_pa[compiled.pa_bytes]
                if other.type is RecordType.GATEWAY and other.rdid == compiled.rdid
            )
    for compiled in added:
        if compiled.ca_bytes not in _WILDCARD_CAS:
            by_rdid_ca[compiled.rdid, compiled.ca_bytes] = compiled
        key = (compiled.rdid, compiled.pa_bytes)
        if compiled.type is RecordType.GATEWAY and key not in gateways:
            gateways[key] = compiled
    return Snapshot(
        revision=policy.revision,
        policy=policy,
        records=records,
        routes=previous.routes,
        record_by_ca=by_ca.finish(),
        record_by_mac=first_by_mac.finish(),
        records_by_mac=by_mac.finish(),
        gateway_wildcard=wildcards.finish(),
        rdid_by_vsid=rdids,
        records_by_pa=by_pa.finish(),
        _lpm=previous._lpm,
        sender_by_mac=senders.finish(),
        sender_by_rdid_ca=by_rdid_ca.finish(),
        gateway_by_rdid_pa=gateways.finish(),
    )


def _with_others(previous: Snapshot, policy: Policy) -> Snapshot:
    """``previous`` for a policy whose records are those of its own and keep their
    VSIDs' RDIDs (a change of routing domains, subnets, routes, nodes, tunnels:
    ``IndexedPolicy.change_others`` says so by a delta that removes and adds no
    record), so every record table is shared as it is. What reads the other kinds
    is compiled again from the policy: the VSIDs' RDIDs, the routes and their LPM
    tables (O(subnets + routes), no step per record), unless those are the very
    ones of ``previous`` (a node's provider address changed: they are shared too)."""
    old = previous.policy
    rdid_by_vsid, routes, lpm = previous.rdid_by_vsid, previous.routes, previous._lpm
    if policy.routing_domains is not old.routing_domains:
        rdid_by_vsid = MappingProxyType(
            {s.vsid: d.rdid for d in policy.routing_domains for s in d.virtual_subnets}
        )
    if (
        rdid_by_vsid is not previous.rdid_by_vsid
        or policy.customer_routes is not old.customer_routes
    ):
        routes = _compile_routes(policy)
        lpm = MappingProxyType(_tables([(r.rdid, r.destination, r) for r in routes], _rank))
    return replace(
        previous,
        revision=policy.revision,
        policy=policy,
        routes=routes,
        rdid_by_vsid=rdid_by_vsid,
        _lpm=lpm,
    )


def _mac_rank(record: CompiledRecord) -> tuple[bool, bool, bool]:
    """How records of one MAC sort (lowest first; ``Snapshot`` says why): IPv4
    before IPv6, a CA before the wildcard, ``gateway`` before ``l2only``."""
    return (
        len(record.ca_bytes) != _IPV4_SIZE,
        record.wildcard,
        record.type is RecordType.L2ONLY,
    )


def _compile_routes(policy: Policy) -> tuple[CompiledRoute, ...]:
    subnets = _tables(
        (domain.rdid, prefix, subnet.vsid)
        for domain in policy.routing_domains
        for subnet in domain.virtual_subnets
        for prefix in subnet.prefixes
    )
    compiled = []
    for route in policy.customer_routes:
        if route.on_link:
            next_hop, next_hop_vsid = None, route.vsid
        else:
            next_hop = route.next_hop.packed
            found = _lookup(subnets, route.rdid, next_hop)
            next_hop_vsid = route.vsid if found is None else found  # type: ignore[assignment]
        compiled.append(
            CompiledRoute(
                route.rdid,
                route.vsid,
                route.destination,
                route.metric,
                next_hop,
                next_hop_vsid,
                route,
            )
        )
    return tuple(compiled)


def _rank(route: CompiledRoute) -> tuple[int, bytes]:
    """Among routes of one prefix, the lowest sorts first: metric, then on-link (no
    next hop), then the next hop's address. (rdid, destination, next hop) is unique in
    a valid policy, so this order is total and the choice never depends on document
    order."""
    return route.metric, route.next_hop_bytes or b""


def _tables(
    entries: Iterable[tuple[str, IPNetwork, Any]], rank: Callable[[Any], Any] | None = None
) -> dict[tuple[str, int], _Table]:
    """Per (rdid, address size) LPM tables. For two values on one prefix, ``rank``
    (a key function) keeps the lowest; without it the first one stays."""
    by_length: dict[tuple[str, int], dict[int, dict[int, object]]] = defaultdict(dict)
    for rdid, prefix, value in entries:
        size = 4 if prefix.version == 4 else 16
        slot = by_length[rdid, size].setdefault(prefix.prefixlen, {})
        key = int(prefix.network_address)
        current = slot.get(key)
        if current is None or (rank is not None and rank(value) < rank(current)):
            slot[key] = value
    return {
        key: tuple(
            (_mask(key[1] * 8, length), slot)
            for length, slot in sorted(lengths.items(), reverse=True)
        )
        for key, lengths in by_length.items()
    }


def _mask(bits: int, length: int) -> int:
    return ((1 << length) - 1) << (bits - length)


def _lookup(tables: Mapping[tuple[str, int], _Table], rdid: str, address: bytes) -> object:
    table = tables.get((rdid, len(address)))
    if table is None:
        return None
    value = int.from_bytes(address, "big")
    for mask, slot in table:
        found = slot.get(value & mask)
        if found is not None:
            return found
    return None
