"""``nvgw policy diff``: what a new policy adds, removes and alters, and what it breaks.

Entries are matched by what identifies them to an HNV admin, the key each kind has
in the registry (``kinds.py``: a lookup record by VSID and CA, a customer route by
RDID, destination and next hop, a port by node and name), so a live migration shows
as one record whose PA changed, not as a removal and an addition. A new policy that
does not validate is refused before any diff (the loader's ConfigError); warnings
name what a valid change still leaves without a way to work: records of a VSID whose
last customer route goes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.policy import Policy

from .kinds import KINDS, Kind, walk, without_children


@dataclass(frozen=True)
class Change:
    kind: str  # "+", "-" or "~"
    what: str  # "lookup record", "customer route", ...
    key: str
    detail: str = ""

    def __str__(self) -> str:
        text = f"{self.kind} {self.what} {self.key}"
        return f"{text}: {self.detail}" if self.detail else text


@dataclass
class PolicyDiff:
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _entries(policy: Policy, kinds: Sequence[Kind]) -> dict[str, dict[str, Any]]:
    """Every entry of a policy, by kind and by the key that identifies it (entries
    nested in it left out: they are compared as entries of their own)."""
    return {
        kind.what: {
            kind.key_of(refs, entry): without_children(entry, kind, kinds)
            for refs, entry in walk(policy, kind)
        }
        for kind in kinds
    }


def diff(old: Policy, new: Policy, kinds: Sequence[Kind] = KINDS) -> PolicyDiff:
    """What ``new`` adds, removes and alters, kind by kind in the registry's order."""
    result = PolicyDiff()
    before, after = _entries(old, kinds), _entries(new, kinds)
    for what in before:
        old_entries, new_entries = before[what], after[what]
        for key in sorted(old_entries.keys() - new_entries.keys()):
            result.changes.append(Change("-", what, key))
        for key in sorted(new_entries.keys() - old_entries.keys()):
            result.changes.append(Change("+", what, key))
        for key in sorted(old_entries.keys() & new_entries.keys()):
            altered = _altered(old_entries[key], new_entries[key])
            if altered:
                result.changes.append(Change("~", what, key, altered))
    result.warnings = list(_breaks(old, new))
    return result


def _altered(old: Any, new: Any) -> str:
    fields = type(old).model_fields
    return ", ".join(
        f"{name} {_value(getattr(old, name))} -> {_value(getattr(new, name))}"
        for name in fields
        if getattr(old, name) != getattr(new, name)
    )


def _value(value: Any) -> str:
    label = getattr(value, "label", None)
    return label if isinstance(label, str) else str(value)


def _breaks(old: Policy, new: Policy) -> Iterable[str]:
    """Records the new policy keeps in a VSID whose last customer route it removes."""
    lost = {r.vsid for r in old.customer_routes} - {r.vsid for r in new.customer_routes}
    for record in new.lookup_records:
        if record.vsid in lost:
            yield (
                f"lookup record {record.vsid}/{record.ca} ({record.vm or 'no VM name'}): "
                f"VSID {record.vsid} loses its last customer route"
            )
