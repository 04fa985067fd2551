"""Validating a change of the policy against indexes, not the whole policy.

A policy holds few routing domains, subnets and routes and many lookup records (one
per VM: 10^5 on a gateway), and an HNV cloud changes records far more often than
anything else (every VM start, every live migration). ``IndexedPolicy`` keeps a valid
policy together with what its last whole validation found (every entry that passed
the schema, with its path: ``_load.Parse``) and indexes over it (records by VSID, PA
and CA; ports and subnets by VSID; provider addresses by node and PA), and judges a
change of records by running the very same checks (``_load.judge``: ``checks.py``
and the gateway's) over the part of the policy the change can break, never over the
rest. So a change is judged with exactly the messages and paths of whole-policy
validation (a record's path is its place in the edited document), and no check is
written twice.

Every check of whole-policy validation, and how a change of records meets it (the
policy before the change was valid, and only records changed):

- a changed record's own schema (fields, formats): the loader's, on that record;
- ``checks.py`` on records (the VSID exists; the CA inside the VSID's prefix of its
  family, not its network, broadcast or anycast address, not its gateway; one
  gateway wildcard per VSID and family, no static record on a wildcard, one l2only
  wildcard per MAC; a CA once per VSID; a MAC with one CA per family; IP-Rewrite not
  on a gateway or wildcard record, with a CA and PA of one family): re-checked over
  the scope (these rules are all within one VSID), with the VSIDs' subnets. In a VSID
  where only records changed, the scope is the records of the changed records' CAs
  and MACs: the others raised nothing against each other before, and a changed
  record can clash only with those (a CA once, a MAC's CA of each family). A VSID
  with a changed wildcard, a record that failed the schema or a migration's port
  brings every record of it;
- an IP-Rewrite record's PA of its own: re-checked over the first two records of
  each PA the change touches (the message names the other user);
- ports (each has a record of its VSID and MAC; on the node that owns the record's
  PA; names, MACs once): re-checked for the ports of the changed records' MACs (of
  every port of a VSID whose records all came), with the provider addresses of their
  nodes and of the scope's records' PAs;
- a migration's port moved to the end of another node's ports (``moved``): its
  VSID, and that of any port of its name on its new node, join the scope (every
  record and port of theirs), and the ports after it on its old node are judged at
  their new paths; a port to a gateway node is the whole path's (the schema's);
- a gateway's served routing domain reached by a ``gateway`` record with one of the
  node's PAs: re-checked with every gateway record; on a policy with gateway
  nodes, the gateway's checks run whole (TAPs, routes, NAT, tunnels read no record
  and raise nothing new), with every subnet and provider address;
- routing domains (RDIDs, names once), subnets (a VSID once and in one RDID,
  prefixes not overlapping within an RDID, the gateway inside and not reserved),
  customer routes (their RDID, VSID, next hop), provider addresses (one node each,
  prefix lengths), tunnels: read no record, so a change of records cannot break
  them.

A change of any other kind but ports (``change_others``: an edit of the policy's
*skeleton*, every kind but records and host ports, ``_other_kinds.py``) is judged
with every entry of those kinds, which are few, and the records and ports it can
reach, since only these checks read them (the rest of the records and ports were
valid and nothing they are judged by changed):

- the records' rules against their subnet (a VSID known, the CA inside its prefix,
  not reserved, not the gateway): the records of each VSID whose subnets (with their
  RDIDs) changed or failed the schema;
- the ports' (on the node owning their records' PAs, not named as one of the node's
  provider interfaces): the ports of each node whose mapping changed, with every
  record of their VSIDs (what gives each port's MAC a CA);
- a gateway's served routing domain reached by a ``gateway`` record: every gateway
  record, when a gateway serves any;
- the other rules of records (duplicates, wildcards, IP-Rewrite's PA) read records
  alone, which did not change;
- a node added (last, with its provider addresses and, a host, its ports) or
  removed (with what sat in it): its provider addresses with every other node's
  (the skeleton's, all of them), and every port and record of each VSID that has
  a record at one of its PAs (which node owns a PA decides where their ports
  belong; a removed node's own ports are gone, nothing else needs them) or a port
  on the added node (a VSID's MACs once, each port's record and node); gateway
  records whole when a gateway served anything before or after. The nodes kept
  in another order (no edit does it) are the whole path's.

``tests/policy/test_incremental.py`` checks, over random sequences of changes of
records, that this accepts and refuses exactly what whole-policy validation does,
with the same issues in the same order; ``test_incremental_kinds.py`` over sequences
mixing them with adds and removals of every other kind. A check's cost is its scope's: a VSID's
records (250 in the benchmark) and their subnets, ports and nodes' addresses; the
indexes are updated in O(log n) per record plus a list deletion (a memmove).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from gateway.errors import ConfigError, ConfigIssue

from ._gateway_checks import GatewayParts
from ._gc import paused_gc
from ._load import _Loader, judge, parse_document
from ._other_kinds import NodePart, Sections
from ._paths import Loc
from .checks import Parsed
from .model import LookupRecord, Node, NodeRole, Policy, Port, RecordDelta, RecordType

PortEntry = tuple[Loc, str, Port]  # a port as parsed: its path, its node's name, itself


class IndexedPolicy:
    """A valid policy and the indexes a change of it is judged against.

    Built by validating a whole document (``ConfigError`` if it does not validate;
    ``judged=False``: each entry's schema only, for a document known to have passed
    the cross-entity checks, ``parse_document``'s), whose sections other than the
    records it keeps, uncopied (the caller leaves the document as it is);
    ``change_records`` then applies a change of records, ``change_others`` an edit
    of another kind, or refuses it and keeps everything as it was.
    """

    def __init__(self, document: Mapping[str, Any], *, judged: bool = True) -> None:
        with paused_gc():  # as load_policy: 10^5 entries' objects are no garbage
            parse = parse_document(document, judged=judged)
        if parse.issues:
            raise ConfigError(parse.issues)
        self.policy = parse.policy()
        self._parse = parse
        records = [record for _, record in parse.parsed.records]
        self._ids: list[int] = list(range(len(records)))  # document order, ascending
        self._records: dict[int, LookupRecord] = dict(enumerate(records))
        self._next_id = len(records)
        # Record ids (ascending) by VSID, by PA and by CA (packed), and the gateway
        # records'.
        self._by_vsid: dict[int, list[int]] = defaultdict(list)
        self._by_pa: dict[bytes, list[int]] = defaultdict(list)
        self._by_ca: dict[bytes, list[int]] = defaultdict(list)
        self._by_vm: dict[str | None, list[int]] = defaultdict(list)
        self._gateway_ids: list[int] = []
        for index, record in enumerate(records):
            self._file(index, record)
        # Ports by VSID, and the nodes that have a port of each name (a migration
        # moves a VM's port by its name); ports sort by their node's place and theirs.
        self._ports: dict[int, list[PortEntry]] = defaultdict(list)
        self._port_nodes: dict[str, list[Any]] = defaultdict(list)
        for entry in parse.parsed.ports:
            self._ports[entry[2].vsid].append(entry)
            self._port_nodes[entry[2].name].append(entry[0][1])
        self._index_others(parse.parsed, parse.gateways)
        # Every kind but records and ports, for a change of those (``_other_kinds.py``).
        self._sections = Sections.of(document, parse)
        self._node_order = {name: order for order, name in enumerate(self._sections.nodes)}

    def _index_others(
        self, parsed: Parsed, gateways: GatewayParts, subnets: bool = True, pas: bool = True
    ) -> None:
        """Subnets by VSID, provider addresses by node and PA (each filed again only
        when ``subnets``, ``pas``: they changed), each with its place among its
        kind's entries (document order), and the gateways' parts."""
        self._parse.parsed, self._parse.gateways = parsed, gateways
        if subnets:
            self._subnets = {
                entry[1].vsid: (order, entry) for order, entry in enumerate(parsed.subnets)
            }
        if pas:
            self._pas: dict[str, list[tuple[int, Any]]] = defaultdict(list)
            self._pa_owner: dict[Any, str] = {}
            for order, entry in enumerate(parsed.provider_addresses):
                self._pas[entry[1]].append((order, entry))
                self._pa_owner[entry[2].pa] = entry[1]
        # A gateway's checks read every subnet and provider address: then all are judged.
        self._everything = bool(gateways.served or gateways.nats or gateways.tunnels)

    def positions(self, wanted: Mapping[str, Any]) -> list[int]:
        """The positions of the records whose fields equal every value of ``wanted``
        (each in the form the policy holds it: ``filter_value``'s), looked up by CA,
        VSID or PA when one of them is given."""
        ids: Sequence[int] = self._ids
        for field, index in (
            ("ca", self._by_ca),
            ("vsid", self._by_vsid),
            ("pa", self._by_pa),
            ("vm", self._by_vm),
        ):
            if field in wanted:
                key = getattr(wanted[field], "packed", wanted[field])
                ids = index.get(key, ())
                break
        records = self._records
        found = [
            index
            for index in ids
            if all(getattr(records[index], field, None) == v for field, v in wanted.items())
        ]
        return [bisect_left(self._ids, index) for index in sorted(found)]

    def change_records(
        self,
        revision: int,
        *,
        replaced: Mapping[int, Any] | None = None,
        removed: Collection[int] = (),
        added: Sequence[Any] = (),
        moved: Sequence[tuple[Any, int, Any]] = (),
    ) -> Policy:
        """The policy at ``revision`` with the records at positions ``removed`` (of
        ``policy.lookup_records``) gone, those at ``replaced`` given new fields in
        place, ``added`` appended (plain mappings, as a document holds them), and
        the ports ``moved`` (node, place among its ports, target node: each to the
        end of its target's, in this order; what a migration does, ``migration``).
        ``ConfigError`` with the issues whole-policy validation would report for the
        edited document; nothing changes then. A position both removed and replaced
        is removed."""
        gone = sorted(set(removed))
        kept = {p: fields for p, fields in (replaced or {}).items() if p not in removed}
        trial = _Trial(self, gone, kept, added, _Moves(self, moved))
        issues = trial.issues()
        if issues:
            raise ConfigError(issues)
        ids = {position: self._ids[position] for position in sorted(trial.new_at)}
        self._commit(trial)
        nodes = trial.moves.commit()
        old = self.policy
        # Each replaced record's place among its PA's records, for the snapshot's table.
        places = tuple(
            (p, bisect_left(self._by_pa[self._records[index].pa.packed], index))
            for p, index in ids.items()
        )
        derived = RecordDelta(
            old.revision, len(old.lookup_records), tuple(gone), len(added), places
        )
        replacing = [self._records[index] for index in ids.values()]
        self.policy = self._policy(revision, derived, replacing, nodes)
        return self.policy

    def migration(self, vm: str, node: Any) -> tuple[list[int], list[tuple[Any, int, Any]]] | None:
        """What a live migration of ``vm`` to ``node`` changes (``edits.migrate``):
        the positions of every record naming the VM (each to take the new PA), and
        the first port named ``vm`` of each other node that has one, moved to the
        end of ``node``'s ports (``change_records``' ``moved``), in the nodes'
        order. None when a port would move to a node that is not a host (a
        gateway's ports are its schema's to refuse, whole)."""
        holders = sorted(set(self._port_nodes.get(vm, ())), key=self._node_order.__getitem__)
        moved = [(h, self._port_place(h, vm), node) for h in holders if h != node]
        if moved and not self.is_host(node):
            return None
        return self.positions({"vm": vm}), moved

    def port_move(self, name: str, node: Any, target: Any) -> tuple[Any, int, Any] | None:
        """The move of ``node``'s first port named ``name`` to the end of
        ``target``'s ports, as ``change_records``' ``moved`` takes it (a follower
        pairs a migration's rows by it); None when ``node`` has no such port or
        ``target`` is not a host (a migration's whole path, as ``migration``'s)."""
        if node not in self._sections.nodes or not self.is_host(target):
            return None
        place = self._port_place(node, name)
        return None if place is None else (node, place, target)

    def _port_place(self, node: Any, name: str) -> int | None:
        """The place of ``node``'s first port named ``name`` among its ports (None: none)."""
        ports = self._sections.nodes[node].ports
        return next((i for i, entry in enumerate(ports) if entry[2].name == name), None)

    def vms(self) -> list[str]:
        """Every VM a record names (``None``'s records as "None"), sorted."""
        return sorted(str(vm) for vm, ids in self._by_vm.items() if ids)

    def change_others(
        self, revision: int, edit: Callable[[Any], Any], section: str
    ) -> tuple[Policy, Any] | None:
        """The policy at ``revision`` once ``edit`` (a change of a document, as
        ``control/edits.py`` makes them, of its ``section`` alone: the top-level
        key its kind sits under) is applied to every kind but lookup records and
        ports (nodes may come, last, and go), and what the edit reports; None
        when the nodes kept come in another order (no edit does it), or
        ``section`` is none a policy has (a registry's kind the loader does not
        know): the caller validates it whole, which refuses it by its key.
        ``ConfigError`` with the issues of whole-policy validation, or the edit's
        own refusal; nothing changes then."""
        sections = self._sections
        if section not in sections.skeleton:
            return None
        new, result, issues, nodes = sections.edited(edit, section)
        added = [name for name in new.nodes if name not in sections.nodes]
        removed = [name for name in sections.nodes if name not in new.nodes]
        if [name for name in new.nodes if name not in added] != [
            name for name in sections.nodes if name not in removed
        ]:
            return None  # the nodes kept, reordered: no edit does it
        vsids = _changed_vsids(sections.parsed, new.parsed)
        ports = [entry for name, part in new.nodes.items() if name in nodes for entry in part.ports]
        if added or removed:  # every record and port its PAs and ports reach
            ports = self._ports_reached(new, [*added, *removed], sections, ports)
        ids: set[int] = set()
        for vsid in vsids | {port.vsid for _, _, port in ports}:
            ids.update(self._by_vsid.get(vsid, ()))
        served = any(part.served for part in new.nodes.values())
        if served or self._parse.gateways.served:
            ids.update(self._gateway_ids)
        records = [
            (("lookup_records", bisect_left(self._ids, index)), self._records[index])
            for index in sorted(ids)
        ]
        parsed, gateways = new.judged(records, ports)
        issues.extend(judge(parsed, gateways))
        if issues:
            raise ConfigError(issues)
        old = self.policy
        self._sections = new
        moved = new.parsed.subnets is not sections.parsed.subnets
        self._index_others(parsed, gateways, moved, bool(nodes))
        if added or removed:
            self._file_nodes(new, added, [sections.nodes[name] for name in removed])
        # The records keep their compiled form when each keeps its VSID's RDID: the
        # snapshot then keeps their tables (``compile_policy``).
        rdids = {
            subnet.vsid: rdid for _, subnet, rdid in new.parsed.subnets if subnet.vsid in vsids
        }
        kept = all(
            not self._by_vsid.get(vsid) or rdids.get(vsid) == old.rdid_of(vsid) for vsid in vsids
        )
        derived = RecordDelta(old.revision, len(old.lookup_records), (), 0) if kept else None
        self.policy = Policy(
            revision=revision,
            routing_domains=old.routing_domains
            if new.domains is sections.domains
            else tuple(domain for domain in new.domains if domain is not None),
            lookup_records=old.lookup_records,
            customer_routes=old.customer_routes
            if new.routes is sections.routes
            else tuple(new.routes),
            nodes=tuple(part.built for part in new.nodes.values() if part.built is not None),
            tunnels=tuple(new.built_tunnels),
            derived=derived,
        )
        return self.policy, result

    def _ports_reached(
        self, new: Sections, came: Sequence[Any], old: Sections, ports: list[PortEntry]
    ) -> list[PortEntry]:
        """The ports a node added or removed (``came``) can break or be judged with,
        in document order: every port of each VSID with a record at one of its
        provider addresses (which node owns the PA decides where its ports belong)
        or with a port of an added node, those of a removed node gone, and
        ``ports`` (the changed nodes')."""
        parts = [new.nodes.get(name) or old.nodes[name] for name in came]
        vsids = {port.vsid for part in parts for _, _, port in part.ports}
        for part in parts:
            for _, _, address in part.addresses:
                vsids.update(self._records[i].vsid for i in self._by_pa.get(address.pa.packed, ()))
        found = {id(entry): entry for entry in ports}
        for vsid in vsids:
            for entry in self._ports.get(vsid, ()):
                if entry[0][1] in new.nodes:
                    found.setdefault(id(entry), entry)
        for name in came:
            if name in new.nodes:
                for entry in new.nodes[name].ports:
                    if entry[2].vsid in vsids:
                        found.setdefault(id(entry), entry)
        order = {name: place for place, name in enumerate(new.nodes)}
        return sorted(found.values(), key=lambda entry: (order[entry[0][1]], entry[0][3]))

    def _file_nodes(self, new: Sections, added: Sequence[Any], gone: Sequence[NodePart]) -> None:
        """The port indexes once nodes ``added`` came (last) and those ``gone`` went."""
        for part in gone:
            for entry in part.ports:
                self._ports[entry[2].vsid].remove(entry)
                self._port_nodes[entry[2].name].remove(entry[0][1])
        for name in added:
            for entry in new.nodes[name].ports:
                self._ports[entry[2].vsid].append(entry)
                self._port_nodes[entry[2].name].append(entry[0][1])
        self._node_order = {name: order for order, name in enumerate(new.nodes)}

    # ---------------------------------------------------------------- the indexes

    def _lists(self, record: LookupRecord) -> list[list[int]]:
        """The id lists a record is filed in."""
        lists = [
            self._by_vsid[record.vsid],
            self._by_pa[record.pa.packed],
            self._by_ca[record.ca.packed],
            self._by_vm[record.vm],
        ]
        if record.type is RecordType.GATEWAY:
            lists.append(self._gateway_ids)
        return lists

    def _file(self, index: int, record: LookupRecord) -> None:
        for ids in self._lists(record):
            ids.append(index)

    def _unfile(self, index: int, record: LookupRecord) -> None:
        for ids in self._lists(record):
            del ids[bisect_left(ids, index)]

    def _refile(self, index: int, record: LookupRecord) -> None:
        """File a record under an id not the largest (a replaced one keeps its own)."""
        for ids in self._lists(record):
            ids.insert(bisect_left(ids, index), index)

    def _commit(self, trial: _Trial) -> None:
        for position, record in trial.new_at.items():
            index = self._ids[position]
            self._unfile(index, self._records[index])
            self._records[index] = record
            self._refile(index, record)
        for position in reversed(trial.removed):
            index = self._ids.pop(position)
            self._unfile(index, self._records.pop(index))
        for record in trial.appended:
            index = self._next_id
            self._next_id += 1
            self._ids.append(index)
            self._records[index] = record
            self._file(index, record)

    def _policy(
        self,
        revision: int,
        derived: RecordDelta,
        replacing: Sequence[LookupRecord],
        nodes: Mapping[str, Node],
    ) -> Policy:
        old = self.policy
        added = [self._records[index] for index in self._ids[len(self._ids) - derived.added :]]
        records = derived.spliced(old.lookup_records, added, replacing)
        return old.with_records(revision, records, derived, nodes)

    def is_host(self, node: Any) -> bool:
        """Whether ``node`` is a host node (the one role whose ports the index keeps)."""
        part = self._sections.nodes.get(node)
        return part is not None and part.built is not None and part.built.role is NodeRole.HOST


class _Trial:
    """One change of records, judged without touching the indexes."""

    def __init__(
        self,
        indexed: IndexedPolicy,
        removed: list[int],
        replaced: dict[int, Any],
        added: Sequence[Any],
        moves: _Moves,
    ) -> None:
        self.indexed = indexed
        self.removed = removed
        self.replaced = replaced
        self.added = added
        self.moves = moves
        count = len(indexed._ids)
        for position in (*removed, *replaced):
            if not 0 <= position < count:
                raise IndexError(f"no lookup record at position {position} (of {count})")
        self.new_at: dict[int, LookupRecord] = {}  # old position -> its new record
        self.appended: list[LookupRecord] = []

    def _loc(self, position: int) -> Loc:
        """The path, in the edited document, of the record at old ``position``."""
        return ("lookup_records", position - bisect_left(self.removed, position))

    def issues(self) -> list[ConfigIssue]:
        indexed = self.indexed
        base = indexed._parse.parsed
        issues: list[ConfigIssue] = []
        scope = Parsed(domains=base.domains)
        loader = _Loader(scope, issues)
        # The changed records' own schema, in document order (replaced, then added).
        touched: list[tuple[Loc, LookupRecord]] = []
        for position in sorted(self.replaced):
            loc = self._loc(position)
            record = loader.record(loc, self.replaced[position])
            if record is not None:
                self.new_at[position] = record
                touched.append((loc, record))
        first_added = len(indexed._ids) - len(self.removed)
        for offset, raw in enumerate(self.added):
            loc = ("lookup_records", first_added + offset)
            record = loader.record(loc, raw)
            if record is not None:
                self.appended.append(record)
                touched.append((loc, record))
        scope.records, scope.ports = self._in_scope(touched, scope.unresolved_records)
        if indexed._everything:
            scope.subnets, scope.provider_addresses = base.subnets, base.provider_addresses
        else:
            self._scope_parts(scope)
        issues.extend(judge(scope, indexed._parse.gateways))
        return issues

    def _scope_parts(self, scope: Parsed) -> None:
        """The subnets of the scope's records (unchanged, so they raise nothing: they
        judge the records), and the provider addresses of its ports' nodes and of
        its records' PAs (which node a port's record says it is on)."""
        indexed = self.indexed
        vsids = {record.vsid for _, record in scope.records}
        vsids |= {vsid for vsid, _ in scope.unresolved_records if vsid is not None}
        subnets = sorted(indexed._subnets[v] for v in vsids if v in indexed._subnets)
        scope.subnets = [entry for _, entry in subnets]
        nodes = {node for _, node, _ in scope.ports}
        owner = indexed._pa_owner
        nodes |= {owner[record.pa] for _, record in scope.records if record.pa in owner}
        pas = sorted(entry for node in nodes for entry in indexed._pas.get(node, ()))
        scope.provider_addresses = [entry for _, entry in pas]

    def _in_scope(
        self, touched: list[tuple[Loc, LookupRecord]], unresolved: Iterable[tuple[Any, Any]]
    ) -> tuple[list[tuple[Loc, LookupRecord]], list[PortEntry]]:
        """Every record the change can break or be judged against, and every port,
        each in document order.

        The policy before the change is valid, so its records raise nothing against
        each other: in a VSID where only records changed (no migration, no record
        that failed the schema, no wildcard CA among them) the change can clash only
        with the records of its CAs and MACs (a duplicate CA; a MAC's CA of each
        family, which also gives a port of that MAC its CA), and break only the ports
        of its MACs. Those are judged, found by the CA index and one pass over the
        VSID's records (no judging of them); any other VSID is judged with all its
        records and ports."""
        indexed = self.indexed
        old = [indexed._records[indexed._ids[p]] for p in (*self.removed, *self.replaced)]
        changed = [*old, *(record for _, record in touched)]
        vsids = {record.vsid for record in changed}
        whole = {vsid for vsid, _ in unresolved if vsid is not None} | self.moves.vsids
        if any(vsid is None for vsid, _ in unresolved):
            whole |= vsids  # a record of no readable VSID: it may clash in any of them
        whole |= {record.vsid for record in changed if record.ca.is_unspecified}
        keyed = vsids - whole
        cas = {(record.vsid, record.ca.packed) for record in changed if record.vsid in keyed}
        macs = {(record.vsid, record.mac) for record in changed if record.vsid in keyed}
        pas = {record.pa.packed for record in changed}
        gone = {indexed._ids[p] for p in (*self.removed, *self.replaced)}
        records = indexed._records
        ids: set[int] = set()
        for vsid in whole:
            ids.update(indexed._by_vsid.get(vsid, ()))
        for vsid, ca in cas:
            ids.update(i for i in indexed._by_ca.get(ca, ()) if records[i].vsid == vsid)
        for vsid in keyed:
            ids.update(i for i in indexed._by_vsid.get(vsid, ()) if (vsid, records[i].mac) in macs)
        for pa in pas:
            ids.update(_first(indexed._by_pa.get(pa, ()), gone, 2))
        if indexed._parse.gateways.served:
            ids.update(indexed._gateway_ids)
        kept = sorted(ids - gone)
        positions = [bisect_left(indexed._ids, index) for index in kept]
        found = [(self._loc(p), records[i]) for p, i in zip(positions, kept, strict=True)]
        found.extend(touched)
        found.sort(key=lambda entry: entry[0][1])
        return found, self.moves.ports(whole, macs)


class _Moves:
    """Ports moved to the end of another node's ports (a migration), judged before
    anything changes: each node's ports after the moves, and the entries whose path
    changed with them (the moved ones, and those after them on their old node)."""

    def __init__(self, indexed: IndexedPolicy, moved: Sequence[tuple[Any, int, Any]]) -> None:
        self.indexed = indexed
        nodes = indexed._sections.nodes
        lists: dict[Any, list[PortEntry]] = {}
        self.vsids: set[int] = set()  # whose records and ports the moves can break
        self.names: list[tuple[str, Any, Any]] = []  # (port name, from node, to node)
        for node, place, target in moved:
            for name in (node, target):
                lists.setdefault(name, list(nodes[name].ports))
            entry = lists[node].pop(place)
            lists[target].append(entry)
            port = entry[2]
            self.names.append((port.name, node, target))
            self.vsids.add(port.vsid)  # and those of a port of its name already there
            self.vsids.update(p.vsid for _, _, p in nodes[target].ports if p.name == port.name)
        self.relocated: dict[int, tuple[PortEntry, PortEntry]] = {}  # by id: old, new
        self.after: dict[Any, list[PortEntry]] = {}
        for node, entries in lists.items():
            self.after[node] = placed = []
            for index, entry in enumerate(entries):
                loc = ("nodes", node, "ports", index)
                if entry[0] != loc:
                    new = (loc, node, entry[2])
                    self.relocated[id(entry)] = (entry, new)
                    entry = new
                placed.append(entry)

    def ports(
        self, vsids: Collection[int], macs: Collection[tuple[int, bytes]] = ()
    ) -> list[PortEntry]:
        """Every port of ``vsids``, and those of the (VSID, MAC) keys ``macs`` (of
        other VSIDs), after the moves (at the places they leave them), in document
        order."""
        relocated, order, ports = self.relocated, self.indexed._node_order, self.indexed._ports
        chosen = [entry for vsid in vsids for entry in ports.get(vsid, ())]
        for vsid in {vsid for vsid, _ in macs}:
            chosen += [entry for entry in ports.get(vsid, ()) if (vsid, entry[2].mac) in macs]
        found = [relocated[id(entry)][1] if id(entry) in relocated else entry for entry in chosen]
        found.sort(key=lambda entry: (order[entry[0][1]], entry[0][3]))
        return found

    def commit(self) -> dict[str, Node]:
        """The moves made in the indexes; the nodes they changed, by name."""
        indexed = self.indexed
        sections = indexed._sections
        parts, nodes = {}, {}
        for node, entries in self.after.items():
            part = sections.nodes[node]
            assert part.built is not None  # a valid policy's
            built = part.built.model_copy(update={"ports": tuple(p for _, _, p in entries)})
            parts[node] = replace(part, ports=entries, built=built)
            nodes[built.name] = built
        if parts:
            indexed._sections = replace(sections, nodes={**sections.nodes, **parts})
        for old, new in self.relocated.values():
            same = indexed._ports[old[2].vsid]
            same[next(i for i, entry in enumerate(same) if entry is old)] = new
        for name, node, target in self.names:
            holders = indexed._port_nodes[name]
            holders.remove(node)
            holders.append(target)
        return nodes


def _changed_vsids(old: Parsed, new: Parsed) -> set[int]:
    """The VSIDs whose subnets (with their RDIDs) differ, or failed the schema."""
    if new.subnets is old.subnets:
        return set()
    before: dict[int, list[Any]] = defaultdict(list)
    after: dict[int, list[Any]] = defaultdict(list)
    for found, parsed in ((before, old), (after, new)):
        for _, subnet, rdid in parsed.subnets:
            found[subnet.vsid].append((subnet, rdid))
    changed = {vsid for vsid in before.keys() | after.keys() if before[vsid] != after[vsid]}
    return changed | new.unresolved_vsids


def _first(ids: Sequence[int], skip: Collection[int], count: int) -> list[int]:
    found: list[int] = []
    for index in ids:
        if index not in skip:
            found.append(index)
            if len(found) == count:
                break
    return found
