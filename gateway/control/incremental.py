"""A database store's change of any kind in O(change): validated against the
indexes of ``gateway.policy.incremental``, written as the rows it touches.

A database backend keeps one ``RecordChanges`` beside its rows: ``policy(state)``
reads the stored policy (validated whole, and indexed) and ``change(state, edit,
prepare)`` takes an edit that adds or removes entries (``edits.Add``,
``batches.AddAll``, ``edits.Remove``) or migrates a VM (``edits.Migrate``) straight
to the rows: lookup records by the indexes' checks (``change_records``; a
migration's records replaced in place and its port moved), every other kind the
API serves by its section of the policy's skeleton with the records and ports it
reaches (``change_others``), each with the same issues as whole-policy validation
(tested against it); then the new policy and the rows of the edited kind (and the
kinds nested in it) that differ, without building the document of every row,
validating it whole or writing every row again; a node added or removed is one of
those kinds (its rows, its provider addresses' and ports', and the removal's answer
read back from them: the index's skeleton holds no host's ports). Any other edit
(``nvgw apply``'s replacement, ports alone, a port migrated to a gateway node,
which its schema refuses whole) answers None, for the backend's whole path
(``store.edited``), after which the index is built again on the next change.

The index must describe exactly the rows the change starts from: it is kept per
revision, and dropped (``forget``) whenever a change fails after it moved on.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar

from gateway.errors import ConfigError, ConfigIssue
from gateway.policy import IndexedPolicy, Node, Policy, filter_value, paused_gc

from .batches import AddAll
from .edits import Add, Edit, Migrate, Remove, not_found
from .kinds import KINDS, LOOKUP_RECORDS, NODES, PORTS, Kind, children, holders
from .kinds import _named_objects as _named
from .policy_rows import (
    Delta,
    Placed,
    Row,
    document,
    entry_row,
    kind_order,
    placed_document,
    two_entries,
)

Prepared = TypeVar("Prepared")


class Changed(NamedTuple):
    """A change taken by ``RecordChanges.change``: what the backend commits."""

    policy: Policy
    prepared: Any
    result: Any
    delta: Delta
    seqs: dict[Row, int]  # the place of each row written (a new one: after all others)


class RecordChanges:
    """The index of the policy a backend's rows hold, at one revision."""

    def __init__(self) -> None:
        self._indexed: IndexedPolicy | None = None
        self._next_seq = 0  # the place of the next new row
        # Every row's place, ascending: the last one left after a removal, in
        # O(log n) (a pass over 10^5 rows' places took 28 ms a removal).
        self._places: list[int] = []

    def policy(self, state: Placed, url: str, *, judged: bool = True) -> Policy:
        """The policy of the rows (validated whole, indexed); a refusal names the
        store (a newer nvgw's rows, a hand edit). ``judged=False``: rows this nvgw
        validated together already (the store's digest says so): each entry's
        schema only, not the cross-entity checks."""
        self._indexed = None
        try:  # the rows' JSON is plain already: no to_plain (3-4 s at 10^5 records)
            with paused_gc():  # the indexes too, not only the parse (IndexedPolicy's)
                indexed = IndexedPolicy(placed_document(state), judged=judged)
        except ConfigError as error:
            issues = [ConfigIssue(i.path, i.value, i.message, url) for i in error.issues]
            raise ConfigError(issues) from None
        self._indexed = indexed
        self._places = sorted(state.seqs.values())
        self._next_seq = self._places[-1] + 1 if self._places else 0
        return indexed.policy

    def forget(self) -> None:
        self._indexed = None

    def follow(
        self, state: Placed, delta: Delta, seqs: Mapping[Row, int], revision: int
    ) -> Policy | None:
        """The policy of ``state``'s rows once another writer's committed ``delta``
        (each row it writes at its place in ``seqs``) moved them to ``revision``, by
        the index, whose checks judge it (a refusal is the whole read's to report):
        routing domains, customer routes and tunnels by their sections rebuilt from
        their rows (``change_others``), then lookup records removed, replaced and
        added by their rows, and a live migration's port moved (``change_records``;
        its rows paired by ``_moved_port``). None when the index cannot take it: it
        describes other rows, the delta touches nodes or what sits in them but one
        migrated port, or a row it writes is not where a change leaves it (in its
        own place, or new after every other): the caller reads the whole policy."""
        indexed = self._indexed
        if indexed is None or indexed.policy.revision != state.revision:
            return None
        last = self._places[-1] if self._places else -1
        new = sorted((row for row in delta.put if row not in state.entries), key=seqs.__getitem__)
        if any(seqs[row] <= last for row in new) or any(
            seqs[row] != state.seqs[row] for row in delta.put if row in state.entries
        ):
            return None
        kinds = {_KIND.get(kind) for kind, _ in (*delta.put, *delta.gone)}
        if None in kinds:  # a kind this nvgw does not know: the whole read refuses it
            return None
        sections = {_top(kind) for kind in kinds if kind is not None}
        move = None
        if NODES in sections:  # a migration's port, or the whole read's
            move = _moved_port(indexed, state, delta)
            if move is None:
                return None
            sections.discard(NODES)
        records = [row for row in (*delta.put, *delta.gone) if row[0] == LOOKUP_RECORDS.name]
        at = {
            row: self._position(indexed, state.entries[row])
            for row in records
            if row in state.entries
        }
        if None in at.values():
            return None
        self._indexed = None  # until it has taken the change
        policy = None
        with paused_gc():
            for top in sorted(sections - {LOOKUP_RECORDS}, key=KINDS.index):
                rebuilt = _section(top, state, delta, seqs)
                taken = indexed.change_others(
                    revision, lambda doc, rebuilt=rebuilt: doc.update(rebuilt), top.section
                )
                if taken is None:
                    return None
                policy = taken[0]
            if records or move or policy is None:  # none at all: the next revision as it is
                policy = indexed.change_records(
                    revision,
                    removed=[at[row] for row in delta.gone if row in at],
                    replaced={at[row]: json.loads(v) for row, v in delta.put.items() if row in at},
                    added=[
                        json.loads(delta.put[row]) for row in new if row[0] == LOOKUP_RECORDS.name
                    ],
                    moved=[move] if move else (),
                )
        self._indexed = indexed
        places = self._places  # the writer's places: ascending, new ones after all others
        for row in delta.gone:
            del places[bisect_left(places, state.seqs[row])]
        places.extend(seqs[row] for row in new)
        self._next_seq = places[-1] + 1 if places else 0
        return policy

    @staticmethod
    def _position(indexed: IndexedPolicy, value: str) -> int | None:
        """The position of the record a row holds among the policy's (by its key)."""
        fields = json.loads(value)
        wanted = {field: filter_value(field, fields[field]) for field in ("vsid", "ca")}
        found = indexed.positions(wanted)
        return found[0] if len(found) == 1 else None

    def change(
        self, state: Placed, edit: Edit, prepare: Callable[[Policy], Prepared]
    ) -> Changed | None:
        """``edit`` applied to the rows of ``state`` when the index takes it (None:
        the whole path's, the module says which); refused as whole-policy
        validation refuses it (ConfigError, NotFound), and then nothing changed."""
        if isinstance(edit, Migrate):
            return self._migrate(state, edit, prepare)
        if not isinstance(edit, Add | AddAll | Remove) or edit.kind is PORTS:
            return None
        with paused_gc():  # a batch of 10^5 records: 3x faster (gateway/policy/_gc.py)
            if edit.kind is not LOOKUP_RECORDS:
                return self._change_others(state, edit, prepare)
            return self._change(state, edit, prepare)

    def _indexed_at(self, state: Placed) -> IndexedPolicy:
        """The index of ``state``'s rows, built again if it describes others."""
        indexed = self._indexed
        if indexed is None or indexed.policy.revision != state.revision:
            self.policy(state, "")
            indexed = self._indexed
            assert indexed is not None
        self._indexed = None  # until the change is taken whole
        return indexed

    def _change_others(
        self, state: Placed, edit: Add | AddAll | Remove, prepare: Callable[[Policy], Prepared]
    ) -> Changed | None:
        indexed = self._indexed_at(state)
        before = indexed.policy
        top = edit.kind
        while top.parent is not None:
            top = top.parent
        taken = indexed.change_others(state.revision + 1, edit, top.section)
        if taken is None:  # a section no policy has: the whole path's (it refuses)
            self._indexed = indexed
            return None
        policy, result = taken
        put: dict[Row, str] = {}
        gone: list[Row] = []
        for kind in (edit.kind, *_nested(edit.kind)):
            _rows_changed(kind, before, policy, state, put, gone)
        if isinstance(edit, Remove) and edit.kind is NODES:  # as the whole document has them
            result = _removed_nodes(state, gone, result)
        prepared = prepare(policy)
        self._indexed = indexed
        delta = Delta(put, gone)
        return Changed(policy, prepared, result, delta, self._placed(state, delta))

    def _migrate(
        self, state: Placed, edit: Migrate, prepare: Callable[[Policy], Prepared]
    ) -> Changed | None:
        """A live migration: the VM's records' rows written again with the new PA,
        and the rows of the ports it moved (the two nodes' alone are compared)."""
        indexed = self._indexed_at(state)
        before = indexed.policy
        records = before.lookup_records

        def raw(position: int) -> Any:
            return json.loads(state.entries[entry_row(LOOKUP_RECORDS, {}, records[position])[0]])

        taken = edit.indexed(indexed, state.revision + 1, raw)
        if taken is None:  # a port to a gateway node: the whole path's
            self._indexed = indexed
            return None
        policy, result = taken
        assert policy.derived is not None  # change_records' always
        put: dict[Row, str] = {}
        gone: list[Row] = []
        for position, _ in policy.derived.replaced:
            row, value = entry_row(LOOKUP_RECORDS, {}, policy.lookup_records[position])
            if state.entries[row] != value:  # to the PA it had: nothing to write
                put[row] = value
        # The ports of the nodes the migration changed (a pass over all: 14 ms).
        pairs = [(old, new) for old, new in zip(before.nodes, policy.nodes, strict=True)]
        moved = [pair for pair in pairs if pair[0] is not pair[1]]
        was, now = _Nodes(tuple(o for o, _ in moved)), _Nodes(tuple(n for _, n in moved))
        _rows_changed(PORTS, was, now, state, put, gone)
        prepared = prepare(policy)
        self._indexed = indexed
        delta = Delta(put, gone)
        return Changed(policy, prepared, result, delta, self._placed(state, delta))

    def _placed(self, state: Placed, delta: Delta) -> dict[Row, int]:
        """The place of each row ``delta`` writes, as ``store.moved`` gives it: a row
        there keeps its own, new ones follow the last place there is, in order. Then
        the next new row's place: after the last place left (a removal of the last
        row gives its place back, as the whole path's next change would)."""
        seqs = {}
        places = self._places
        for row in delta.put:
            if row in state.entries:
                seqs[row] = state.seqs[row]
            else:
                seqs[row] = self._next_seq
                places.append(self._next_seq)  # after every other: still ascending
                self._next_seq += 1
        for row in delta.gone:
            del places[bisect_left(places, state.seqs[row])]
        self._next_seq = places[-1] + 1 if places else 0
        return seqs

    def _change(
        self, state: Placed, edit: Add | AddAll | Remove, prepare: Callable[[Policy], Prepared]
    ) -> Changed:
        indexed = self._indexed_at(state)
        revision = state.revision + 1
        if isinstance(edit, Add | AddAll):
            raws = [dict(edit.entry)] if isinstance(edit, Add) else list(edit.entries)
            if isinstance(edit, AddAll):  # a refusal names each entry by its place
                edit.placed_at(LOOKUP_RECORDS.section, len(indexed.policy.lookup_records))
            policy = indexed.change_records(revision, added=raws)
            added = policy.lookup_records[len(policy.lookup_records) - len(raws) :]
            rows = [entry_row(LOOKUP_RECORDS, {}, record) for record in added]
            delta = Delta(dict(rows), [])
            if len(delta.put) < len(rows):  # what store.moved refuses: a row is one entry
                raise two_entries(LOOKUP_RECORDS, _twice([key for (_, key), _ in rows]))
            result = dict(edit.entry) if isinstance(edit, Add) else {"added": len(raws)}
        else:
            records = indexed.policy.lookup_records
            wanted = {field: filter_value(field, v) for field, v in edit.filters.items()}
            doomed = indexed.positions(wanted)
            if not doomed:
                raise not_found(edit.kind, edit.filters)
            gone = [entry_row(LOOKUP_RECORDS, {}, records[p])[0] for p in doomed]
            result = [json.loads(state.entries[row]) for row in gone]
            policy = indexed.change_records(revision, removed=doomed)
            delta = Delta({}, gone)
        prepared = prepare(policy)
        for row in delta.put:
            if row in state.entries:  # what store.moved refuses: a row is one entry
                raise two_entries(LOOKUP_RECORDS, row[1])
        self._indexed = indexed
        return Changed(policy, prepared, result, delta, self._placed(state, delta))


_KIND = {kind.name: kind for kind in KINDS}


def _top(kind: Kind) -> Kind:
    """The kind whose section of the document holds ``kind``'s entries."""
    while kind.parent is not None:
        kind = kind.parent
    return kind


def _section(top: Kind, state: Placed, delta: Delta, seqs: Mapping[Row, int]) -> dict[str, Any]:
    """``top``'s section of the document (``{section: entries}``) once ``delta`` is
    applied to ``state``'s rows, built from the rows of its kinds in their order."""
    family = {kind.name for kind in (top, *_nested(top))}
    gone = set(delta.gone)
    found = [
        (row, state.seqs[row], delta.put.get(row, value))
        for row, value in state.entries.items()
        if row[0] in family and row not in gone
    ]
    found += [
        (row, seqs[row], v)
        for row, v in delta.put.items()
        if row[0] in family and row not in state.entries
    ]
    order = kind_order()
    found.sort(key=lambda item: (order[item[0][0]], item[1]))
    built = document(((kind, value) for (kind, _), _, value in found), state.revision)
    return {top.section: built.get(top.section, [])}


def _removed_nodes(state: Placed, gone: list[Row], removed: list[Any]) -> list[Any]:
    """The nodes a removal reports, as whole from their rows (``gone``: theirs and
    what sat in them) as the whole path's document has them: the skeleton the
    index edited holds no host's ports."""
    order = kind_order()
    rows = sorted(gone, key=lambda row: (order[row[0]], state.seqs[row]))
    nodes = document(((row[0], state.entries[row]) for row in rows), state.revision)["nodes"]
    return [{"name": entry["name"], **nodes[entry["name"]]} for entry in removed]


def _moved_port(indexed: IndexedPolicy, state: Placed, delta: Delta) -> tuple[Any, int, Any] | None:
    """The port a live migration moved, paired from ``delta``'s rows of nodes (its
    row gone from one node, a new row of its name, its fields otherwise the same, on
    a host node), as ``change_records``' ``moved`` takes it; None for anything else
    there (another node change, a port edited, several ports), the whole read's."""
    rows = [row for row in (*delta.put, *delta.gone) if _top(_KIND[row[0]]) is NODES]
    if len(rows) != 2 or any(row[0] != PORTS.name for row in rows):
        return None
    gone = [row for row in rows if row not in delta.put]
    new = [row for row in rows if row in delta.put and row not in state.entries]
    if len(gone) != 1 or len(new) != 1:
        return None
    was, now = json.loads(state.entries[gone[0]]), json.loads(delta.put[new[0]])
    node, target = was.pop("node", None), now.pop("node", None)
    if was != now:  # edited on its way
        return None
    return indexed.port_move(was.get("name"), node, target)


def _nested(kind: Kind) -> list[Kind]:
    """The kinds whose entries sit in ``kind``'s, at any depth."""
    return [inner for child in children(kind) for inner in (child, *_nested(child))]


class _Nodes(NamedTuple):
    """Some of a policy's nodes: what holds their ports' rows, for ``_rows_changed``."""

    nodes: tuple[Node, ...]


def _rows_changed(
    kind: Kind,
    before: Policy | _Nodes,
    after: Policy | _Nodes,
    state: Placed,
    put: dict[Row, str],
    gone: list[Row],
) -> None:
    """The rows of ``kind`` that differ between two policies (``put``: new or
    altered, with their value; ``gone``), found by the entries that are not the
    very objects they were (the others are not even keyed): a holder (a node) left
    as it was is skipped whole."""
    nested = children(kind)
    old_holders = {
        tuple(refs.values()): (holder, refs) for holder, refs in holders(before, kind, _named)
    }
    written: set[Row] = set()  # each row of a new entry, whether its value changed or not
    for holder, refs in holders(after, kind, _named):
        old, _ = old_holders.pop(tuple(refs.values()), (None, None))
        if old is holder:
            continue
        old_ids = set() if old is None else {id(entry) for _, entry in _named(old, kind)}
        kept: set[int] = set()
        for name, entry in _named(holder, kind):
            if id(entry) in old_ids:
                kept.add(id(entry))
                continue
            identity, value = entry_row(kind, _names(kind, refs, name), entry, nested)
            if identity in written:  # what store.moved refuses: a row is one entry
                raise two_entries(kind, identity[1])
            written.add(identity)
            if state.entries.get(identity) != value:
                put[identity] = value
        if old is not None:
            gone.extend(_keys(old, kind, refs, kept))
    for old, refs in old_holders.values():
        gone.extend(_keys(old, kind, refs, set()))
    gone[:] = [row for row in gone if row not in written]


def _names(kind: Kind, refs: dict[str, Any], name: Any) -> dict[str, Any]:
    """What an entry's row carries beside its fields: its parents' refs, its key."""
    return {**refs, kind.key_apart: name} if kind.key_apart else refs


def _keys(holder: Any, kind: Kind, refs: dict[str, Any], kept: set[int]) -> Iterator[Row]:
    """The rows of a holder's entries of ``kind``, but those in ``kept`` (by id)."""
    for name, entry in _named(holder, kind):
        if id(entry) not in kept:
            yield kind.name, kind.key_of(_names(kind, refs, name), entry)


def _twice(keys: list[str]) -> str:
    seen: set[str] = set()
    return next(key for key in keys if key in seen or seen.add(key))


def advanced(state: Placed, revision: int, delta: Delta, seqs: Mapping[Row, int]) -> Placed:
    """The rows of ``state`` once ``delta`` is committed, at ``revision``: a new row
    last, where its place puts it. Updates ``state``'s mappings in place (a backend's
    cache of the rows it committed: O(change), not a copy of every row)."""
    entries, places = state.entries, state.seqs
    for row in delta.gone:
        del entries[row], places[row]
    for row, value in delta.put.items():
        entries[row] = value
        places[row] = seqs[row]
    return Placed(revision, entries, places)
