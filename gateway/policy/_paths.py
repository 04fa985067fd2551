"""Paths that name a place in a policy document: ``routing_domains[0].virtual_subnets[1].vsid``.

A path is a tuple of keys and list indexes while the code works (``Loc``), and text
in a ``ConfigIssue``. The text form reads back into the same tuple, which is how the
file loader finds the line of an issue: ``.name`` is a string key, ``[3]`` an index
(or an int key), and a key that is not a plain word is quoted: ``nodes["a b"]``.
"""

from __future__ import annotations

import json
import re

Loc = tuple[object, ...]

_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_TOKEN = re.compile(
    r'\.?([A-Za-z0-9_][A-Za-z0-9_-]*)|\[(-?\d+)\]|\[("(?:[^"\\]|\\.)*")\]|\[([^]]*)\]'
)


def format_path(loc: Loc) -> str:
    """The text form of a path (the empty tuple is the document itself: "")."""
    parts: list[str] = []
    for key in loc:
        if isinstance(key, str) and _WORD.fullmatch(key):
            parts.append(f".{key}" if parts else key)
        elif isinstance(key, int) and not isinstance(key, bool):
            parts.append(f"[{shown_int(key)}]")
        elif isinstance(key, str):
            parts.append(f"[{json.dumps(key)}]")
        else:
            parts.append(f"[{key!r}]")  # a YAML key that is neither str nor int
    return "".join(parts)


def shown_int(value: int) -> str:
    """An int as text, even one Python refuses to convert (over 4300 digits)."""
    try:
        return str(value)
    except ValueError:
        return f"<an integer of {value.bit_length()} bits>"


def issue_value(value: object) -> object:
    """A value found in a document, as an issue may carry it: unchanged, unless it
    cannot be printed (it holds an int too long to convert to text)."""
    try:
        repr(value)
    except (ValueError, RecursionError):
        return "<too large to show>"
    return value


def parse_path(path: str) -> Loc:
    """The tuple form of a path made by ``format_path`` (best effort for others:
    an unreadable tail is dropped, so callers fall back to the nearest parent)."""
    loc: list[object] = []
    position = 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None:
            break
        word, index, quoted, other = match.groups()
        if word is not None:
            loc.append(word)
        elif index is not None:
            loc.append(int(index))
        elif quoted is not None:
            loc.append(json.loads(quoted))
        else:
            loc.append(other)
        position = match.end()
    return tuple(loc)
