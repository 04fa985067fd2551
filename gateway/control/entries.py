"""Policy entries as JSON, in the config file's own shape.

What the API returns for an entry is what one would write in the file for it (the
same keys, MACs as ``00-00-00-00-00-11``, rules as ``encap``/``nat``), so a GET's
output can be pasted into a POST or a config file unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from gateway.policy import Policy

from .kinds import KINDS, Kind, children, walk, without_children


def entry_json(model: BaseModel, **extra: Any) -> dict[str, Any]:
    """A model's fields as JSON values (unset optional fields left out)."""
    out: dict[str, Any] = dict(extra)
    for name in type(model).model_fields:
        value = getattr(model, name)
        if value is not None:
            out[name] = _json(value)
    return out


def _json(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_json(item) for item in value]
    if isinstance(value, Mapping):  # a gateway's routing domains, by name or RDID
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, BaseModel):
        return entry_json(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)  # addresses, prefixes, Mac


def listing(policy: Policy, kind: Kind, kinds: Sequence[Kind] = KINDS) -> list[dict[str, Any]]:
    """Every entry of one kind of a running policy, as JSON: the names it carries
    beside its fields first (a subnet's ``rdid``; a served domain's ``node`` and
    ``routing_domain``), and the entries of kinds nested in it by the one field that
    names them there (a routing domain's ``virtual_subnets: [5010]``, a served
    domain's ``taps: [gw-blue]``), since they are listed as entries of their own."""
    items = []
    for names, entry in walk(policy, kind):
        item = entry_json(without_children(entry, kind, kinds), **names)
        for child in children(kind, kinds):
            own = child.own_key_fields()
            nested = getattr(entry, child.section)
            if len(own) == 1:  # its one field, as JSON (a VSID stays a number)
                item[child.section] = [_json(getattr(i, own[0])) for i in nested]
            else:  # its own part of the key: a port forward's tcp/203.0.113.10:80
                item[child.section] = [child.own_key_of(i) for i in nested]
        items.append(item)
    return items


def policy_json(policy: Policy, kinds: Sequence[Kind] = KINDS) -> dict[str, Any]:
    """A whole running policy in the config file's shape: ``load_policy()`` takes it
    back unchanged, which is how ``nvgw apply --dry-run`` diffs against a live daemon."""
    document: dict[str, Any] = {"revision": policy.revision}
    for kind in kinds:
        if kind.parent is not None:
            continue  # inside their parents' entries
        entries = getattr(policy, kind.section)
        if kind.keyed_by is not None:  # the mapping holds the key, not the entry
            key = kind.keyed_by
            named = ((getattr(e, key), e.model_copy(update={key: None})) for e in entries)
            document[kind.section] = {name: entry_json(entry) for name, entry in named}
        else:
            document[kind.section] = [entry_json(entry) for entry in entries]
    return document
