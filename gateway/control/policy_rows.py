"""A policy as rows: one per entry per kind of the registry, keyed by the kind's key.

A database store keeps the policy this way (``sqlite_store.py``) so that a change
touches the rows of the entries it changes and nothing else, and so that a later
store can validate and apply a change by its delta. Each row is (kind, key, value):
the kind's name (``lookup-records``), the entry's key as ``kind.key`` formats it and
``nvgw policy diff`` prints it (``5010/10.10.10.12``), and the entry as JSON in the
config file's own shape (``entries.entry_json``), with the names it carries beside
its fields (``Kind.names``: a subnet's ``rdid``), and without the entries of kinds
nested in it, which are rows of their own. A nested section the entry has is kept
as an empty list or mapping, so that "none" and "not set" (a host node's
``routing_domains``) come back as they went.

``document()`` builds the plain document back from rows, in row order, which the
config loader turns into the same policy: the round trip is exact (tested on every
shipped config) because ``entry_json`` writes what ``load_policy`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from hashlib import blake2b
from typing import Any, Final, NamedTuple

from gateway.errors import ConfigError, ConfigIssue
from gateway.policy import Policy

from .entries import entry_json
from .kinds import KINDS, Kind, children, walk

Row = tuple[str, str]  # (kind name, key): a row's identity
Rows = dict[Row, str]  # identity -> value (JSON text), in document order


class Placed(NamedTuple):
    """The rows of a policy at a revision, in document order, each with its place
    (``seqs``: kept by a database store so that rows read back in any order come
    back in the order the config had them, and a new entry goes last)."""

    revision: int
    entries: Rows
    seqs: dict[Row, int]


class Delta(NamedTuple):
    """What turns one set of rows into another: the rows to write (new or altered,
    with their value) and the rows to delete."""

    put: dict[Row, str]
    gone: list[Row]


def rows(policy: Policy, kinds: Sequence[Kind] = KINDS) -> Rows:
    """Every entry of the policy as a row, parents before their children. Two
    entries with one key (which the policy's checks refuse for every shipped kind)
    are refused here too, naming the key: a row is one entry."""
    out: Rows = {}
    for kind in _parents_first(kinds):
        nested = children(kind, kinds)
        for names, entry in walk(policy, kind):
            identity, value = entry_row(kind, names, entry, nested)
            if identity in out:
                raise two_entries(kind, identity[1])
            out[identity] = value
    return out


def entry_row(
    kind: Kind, names: Mapping[str, Any], entry: Any, nested: Sequence[Kind] = ()
) -> tuple[Row, str]:
    """One entry's row: its identity and its JSON text (``nested``: the kinds whose
    entries sit in it, rows of their own)."""
    identity = (kind.name, kind.key_of(names, entry))
    bare = entry.model_copy(update={child.section: None for child in nested}) if nested else entry
    value = entry_json(bare, **{n: _name(v) for n, v in names.items()})
    for child in nested:
        if getattr(entry, child.section) is not None:
            value[child.section] = {} if child.keyed_by else []
    return identity, json.dumps(value, sort_keys=False, separators=(",", ":"))


def two_entries(kind: Kind, key: str) -> ConfigError:
    """Two entries of ``kind`` under one key: a row is one entry."""
    message = f"two {kind.what} entries have the key {key!r}"
    return ConfigError([ConfigIssue(kind.section, key, message)])


def document(rows: Iterable[tuple[str, str]], revision: int, kinds: Sequence[Kind] = KINDS) -> Any:
    """The plain document (what a config file would hold) of rows given as (kind
    name, value) in an order where parents come before their children."""
    by_name = {kind.name: kind for kind in kinds}
    root: dict[str, Any] = {"revision": revision}
    holders: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}  # (kind, names) -> entry
    for kind_name, text in rows:
        kind = by_name[kind_name]
        fields = json.loads(text)
        names = tuple(str(fields.pop(name)) for name in kind.names)
        refs = names[: len(kind.refs)]
        holder = root if kind.parent is None else holders[(kind.parent.name, refs)]
        if kind.ref is not None or kind.keyed_by is not None:
            merged = dict(zip(kind.names, names, strict=True)) | fields
            own = str(merged[kind.keyed_by or kind.ref])  # type: ignore[index]
            holders[(kind.name, (*refs, own))] = fields
        if kind.keyed_by is not None:
            key = names[-1] if kind.key_apart else fields.pop(kind.keyed_by)
            holder.setdefault(kind.section, {})[key] = fields
        else:
            holder.setdefault(kind.section, []).append(fields)
    return root


def delta(old: Mapping[Row, str], new: Mapping[Row, str]) -> Delta:
    """The rows that differ: written when new or altered, deleted when gone."""
    put = {row: value for row, value in new.items() if old.get(row) != value}
    return Delta(put, [row for row in old if row not in new])


def net(state: Placed, now: Mapping[Row, tuple[int, str] | None]) -> tuple[Delta, dict[Row, int]]:
    """What moved ``state``'s rows to those of ``now`` (each row some changes touched:
    its place and value now, or None, gone), and each written row's place. A row
    placed again (removed, then added) is written even if its value is the same."""
    entries, places = state.entries, state.seqs
    put = {
        row: found[1]
        for row, found in now.items()
        if found is not None and (entries.get(row) != found[1] or places.get(row) != found[0])
    }
    gone = [row for row, found in now.items() if found is None and row in entries]
    return Delta(put, gone), {row: now[row][0] for row in put}  # type: ignore[index]


def placed(revision: int, found: Iterable[tuple[str, str, int, str]]) -> Placed:
    """Rows read back as (kind, key, place, value), in any order, put in document
    order: parents' kinds first, then by place."""
    order = kind_order()
    ordered = sorted(found, key=lambda row: (order.get(row[0], len(order)), row[2]))
    entries = {(kind, key): value for kind, key, _, value in ordered}
    return Placed(revision, entries, {(kind, key): seq for kind, key, seq, _ in ordered})


def placed_document(state: Placed) -> Any:
    """The plain document of rows in document order."""
    return document(((kind, value) for (kind, _), value in state.entries.items()), state.revision)


def moved(state: Placed, policy: Policy) -> tuple[Placed, Delta]:
    """What a store holding ``state`` writes to hold ``policy``: the rows that differ
    (``delta``), and the new state, where a new row's place follows every other."""
    new = rows(policy)
    change = delta(state.entries, new)
    seqs = {row: seq for row, seq in state.seqs.items() if row in new}
    next_seq = max(state.seqs.values(), default=-1) + 1
    for row in change.put:
        if row not in seqs:
            seqs[row], next_seq = next_seq, next_seq + 1
    order = kind_order()
    ordered = dict(sorted(new.items(), key=lambda item: (order[item[0][0]], seqs[item[0]])))
    return Placed(policy.revision, ordered, seqs), change


# ---------------------------------------------------------------- the rows' digest

_DIGEST_MOD: Final = 1 << 128


def row_hash(row: Row, value: str) -> int:
    """One row's hash (128 bits of BLAKE2b over its kind, key and value)."""
    kind, key = row
    data = f"{kind}\0{key}\0{value}".encode()
    return int.from_bytes(blake2b(data, digest_size=16).digest(), "little")


def digest(entries: Mapping[Row, str]) -> int:
    """The rows' digest: the sum of their hashes modulo 2^128, so the order they
    are read in does not matter and a change moves it in O(change) (``digest_after``)."""
    return sum(row_hash(row, value) for row, value in entries.items()) % _DIGEST_MOD


def digest_after(before: int, entries: Mapping[Row, str], change: Delta) -> int:
    """The digest of ``entries`` (whose digest is ``before``) once ``change`` is
    applied to them: the hashes of the rows it replaces or deletes taken out, those
    of the rows it writes put in."""
    moved = -sum(row_hash(row, entries[row]) for row in change.gone)
    for row, value in change.put.items():
        old = entries.get(row)
        moved += row_hash(row, value) - (0 if old is None else row_hash(row, old))
    return (before + moved) % _DIGEST_MOD


def _parents_first(kinds: Sequence[Kind]) -> list[Kind]:
    """The kinds in an order where each comes after its parent (the registry lists
    nodes last, after the kinds nested in them)."""
    ordered: list[Kind] = []

    def visit(kind: Kind) -> None:
        if kind in ordered:
            return
        if kind.parent is not None:
            visit(kind.parent)
        ordered.append(kind)

    for kind in kinds:
        visit(kind)
    return ordered


def kind_order(kinds: Sequence[Kind] = KINDS) -> dict[str, int]:
    """Each kind's place among ``_parents_first``: how rows are read back in order."""
    return {kind.name: index for index, kind in enumerate(_parents_first(kinds))}


def _name(value: Any) -> Any:
    """A name an entry carries (a parent's rdid, a node's name) as JSON: a string."""
    return value if isinstance(value, str) else str(value)
