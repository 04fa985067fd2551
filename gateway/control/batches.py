"""Many entries of one kind added in one change: one revision, all or nothing.

``POST /v1/KIND`` with a JSON list (``nvgw KIND add --from FILE.jsonl``,
``nvgw import-hnv --apply``) is one ``AddAll`` edit: the entries are placed as
``edits.Add`` places each one, and the store validates the edited policy once (by
the indexes, ``incremental.RecordChanges``: a batch of lookup records in O(batch),
of another kind with every entry of the few kinds and the records and ports they
reach) and commits it as one revision. A refusal names
every bad entry at once: each issue carries the index of the entry it is about in
the batch (``entry``), beside the usual path and value, so a client can point at
the line of its file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import ConfigError, ConfigIssue
from gateway.policy import format_path

from .edits import Add, Exists, _holder
from .kinds import KINDS, Kind


class BatchRefused(ConfigError):
    """A batch's refusal: ``entries[i]`` is the index (in the batch) of the entry
    ``issues[i]`` is about, or None for an issue elsewhere in the policy."""

    def __init__(self, issues: Sequence[ConfigIssue], entries: Sequence[int | None]) -> None:
        super().__init__(list(issues))
        self.entries = list(entries)


@dataclass(frozen=True, eq=False)
class AddAll:
    """Every entry of ``entries`` added, in order, as ``Add`` adds one. Remembers
    where each landed in the document (``paths``) so that a refusal can name the
    entry by its index in the batch. Says how many it added."""

    kind: Kind
    entries: Sequence[Mapping[str, Any]]
    kinds: Sequence[Kind] = KINDS
    paths: list[str] = field(default_factory=list)

    def __call__(self, document: Any) -> dict[str, int]:
        self.paths.clear()
        issues: list[ConfigIssue] = []
        numbers: list[int | None] = []
        placed: list[Any] = []
        for number, entry in enumerate(self.entries):
            try:
                Add(self.kind, entry, self.kinds)(document)
            except ConfigError as error:
                issues += error.issues
                numbers += [number] * len(error.issues)
                placed.append(None)
                continue
            except Exists as error:  # in a batch, one refusal names every bad entry
                issues.append(ConfigIssue(self.kind.keyed_by or "", None, str(error)))
                numbers.append(number)
                placed.append(None)
                continue
            placed.append(_last_placed(document, self.kind, entry))
        if issues:
            raise BatchRefused(issues, numbers)
        found = _paths_of(document, {id(p) for p in placed if p is not None})
        self.paths.extend(found.get(id(p), "") for p in placed)
        return {"added": len(self.entries)}

    def placed_at(self, section: str, first: int) -> None:
        """Where a store that adds the entries without the document put them: the
        list ``section``, from index ``first`` on (a batch of lookup records)."""
        self.paths[:] = [f"{section}[{first + n}]" for n in range(len(self.entries))]

    def numbered(self, error: ConfigError) -> BatchRefused:
        """``error`` with each issue's entry of the batch, found by its path."""
        if isinstance(error, BatchRefused):
            return error
        index = {path: number for number, path in enumerate(self.paths) if path}
        return BatchRefused(error.issues, [_entry_of(i.path, index) for i in error.issues])


def _entry_of(path: str, index: Mapping[str, int]) -> int | None:
    """The batch entry whose path ``path`` is, or lies under."""
    for end in range(len(path), 0, -1):
        if (end == len(path) or path[end] in ".[") and path[:end] in index:
            return index[path[:end]]
    return None


def _last_placed(document: Any, kind: Kind, entry: Mapping[str, Any]) -> Any:
    """The mapping ``Add`` just put in the document (the last of its list, or the
    one under its key)."""
    holder = _holder(document, kind, dict(entry))
    entries = holder[kind.section]
    if kind.keyed_by is None:
        return entries[len(entries) - 1]
    return entries[entry[kind.keyed_by]]


def _paths_of(document: Any, wanted: set[int]) -> dict[int, str]:
    """The path of each mapping of the document whose id is in ``wanted``."""
    found: dict[int, str] = {}
    stack: list[tuple[tuple[object, ...], Any]] = [((), document)]
    while stack and len(found) < len(wanted):
        loc, node = stack.pop()
        if id(node) in wanted:
            found[id(node)] = format_path(loc)
        children: Iterable[tuple[object, Any]]
        if isinstance(node, Mapping):
            children = node.items()
        elif isinstance(node, list):
            children = enumerate(node)
        else:
            continue
        stack.extend(((*loc, key), child) for key, child in children)
    return found
