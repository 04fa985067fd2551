"""Turn pydantic's ``ValidationError`` into ``ConfigIssue``s an operator can act on.

pydantic reports ``('lookup_records', 0, 'vsdi')`` / ``extra_forbidden`` / "Extra inputs
are not permitted"; the operator should read ``lookup_records[0].vsdi = 5010: unknown
key; did you mean 'vsid'?``. This module owns that translation: the path in document
terms, the value that was found, and a message without pydantic's vocabulary.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.errors import ConfigIssue

from ._paths import Loc, format_path, issue_value

_LIST = "must be a list (write [] for none)"
_MAPPING = "must be a mapping of key: value"
_SIMPLE = {
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": _LIST,
    "tuple_type": _LIST,
    "set_type": _LIST,
    "model_type": _MAPPING,
    "model_attributes_type": _MAPPING,
    "dict_type": _MAPPING,
    "mapping_type": _MAPPING,
}
_INT = {"int_type", "int_parsing", "int_from_float", "int_parsing_size"}


def schema_issues(error: ValidationError, where: Loc, model: type[BaseModel]) -> list[ConfigIssue]:
    """One issue per pydantic error, for a ``model`` validated at ``where``."""
    details = error.errors(include_url=False)
    # A misspelt key shows up twice: as an unknown key and as a missing one. When the
    # unknown key's suggestion names the missing one, say it once ("did you mean").
    suggested = set()
    for detail in details:
        if detail["type"] == "extra_forbidden":
            relative = tuple(detail["loc"])
            close = _closest(relative[-1], _fields_at(model, relative[:-1]))
            if close is not None:
                suggested.add((*relative[:-1], close))
    issues = []
    for detail in details:
        relative = tuple(detail["loc"])
        if detail["type"] == "missing" and relative in suggested:
            continue
        value = None if detail["type"] == "missing" else detail.get("input")
        message = _message(detail, relative, model)
        issues.append(ConfigIssue(format_path(where + relative), _plain(value), message))
    return issues


def unknown_key_message(key: object, known: typing.Iterable[str]) -> str:
    """The message for an unknown key, naming the nearest known key if one is close."""
    known = sorted(known)
    close = _closest(key, known)
    if close is not None:
        return f"unknown key; did you mean '{close}'?"
    return f"unknown key; known keys here: {', '.join(known)}"


def _closest(key: object, known: typing.Iterable[str]) -> str | None:
    if not isinstance(key, str):
        return None
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def _message(detail: Any, relative: Loc, model: type[BaseModel]) -> str:
    kind = detail["type"]
    value = detail.get("input")
    context = detail.get("ctx") or {}
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        fields = _fields_at(model, relative[:-1])
        key = relative[-1] if relative else None
        return unknown_key_message(key, fields) if fields else "unknown key"
    if kind in _INT:
        if isinstance(value, str) and value.strip().isdigit():
            return "must be an integer (without quotes or leading zeros)"
        return "must be an integer"
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        return "must be a string (quote it: YAML reads it as a number)"
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind in {"too_short", "too_long"}:
        return f"must have {context.get('min_length', 0)} to {context.get('max_length')} items"
    if kind in {"enum", "literal_error"}:
        return f"must be {context.get('expected', 'one of the listed values')}"
    if kind == "value_error":
        error = context.get("error")
        return str(error) if error is not None else str(detail["msg"])
    # Our own validators raise PydanticCustomError with an operator's message.
    return str(detail["msg"])


def _fields_at(model: type[BaseModel], relative: Loc) -> list[str]:
    """The keys allowed at ``relative`` inside ``model`` (for "did you mean")."""
    current: Any = model
    for part in relative:
        if isinstance(part, int):
            continue  # an item of a tuple of models: still that model
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return []
        current = _model_in(fields[part].annotation)
    fields = getattr(current, "model_fields", None)
    if fields is None:
        return []
    hidden = _NOT_WRITTEN.get(current.__name__, set())
    return [name for name in fields if name not in hidden]


# Fields a document never writes as keys: a node's name is its key under ``nodes:``.
_NOT_WRITTEN = {"Node": {"name"}}


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _plain(value: Any) -> Any:
    """The value as the operator wrote it (pydantic may hand back its own wrappers)."""
    if isinstance(value, str | int | float | bool | type(None) | list | dict | tuple):
        return issue_value(value)
    return issue_value(str(value))
