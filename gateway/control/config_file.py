"""Config files: YAML in, a ``Policy`` out, and every error with its file and line.

The file is read with ruamel.yaml's round-trip loader, which keeps comments and
positions (``import-hnv -o`` writes a document back with it). The policy layer takes
plain dicts and lists, so ``to_plain()`` strips ruamel's wrappers first; the wrapped
document stays useful for its line numbers (``line_of()``), which turn each issue's
path into ``file:line``.

YAML 1.2 (ruamel's default) keeps ``00-00-00-00-00-11``, ``00:00:00:00:00:11`` and
``0.0.0.0`` as strings, but reads ``000000000011`` as the integer 11. A number
written with leading zeros therefore comes out of ``to_plain()`` as its original text:
a MAC spelled as 12 digits stays a MAC, and ``vsid: 05010`` is refused ("without
leading zeros") instead of being read one way here and as octal by YAML 1.1 tools.
(A 12-digit number without a leading zero is accepted as a MAC by the policy itself.)
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import TaggedScalar
from ruamel.yaml.scalarbool import ScalarBoolean
from ruamel.yaml.scalarfloat import ScalarFloat
from ruamel.yaml.scalarint import ScalarInt

from gateway.errors import ConfigError, ConfigIssue
from gateway.policy import Policy, load_policy, parse_path

from .safe_files import replace_file
from .untrusted import parse_yaml, read_bounded


def new_yaml() -> YAML:
    """The round-trip YAML writer every config file goes through, set to the
    shipped files' style (lists indented under their key, long flow mappings kept
    on one line), so that writing a file back changes only what was changed.
    Reading goes through ``untrusted.parse_yaml``, which bounds what a file may cost."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def load_config(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a config file. Raises ``ConfigError`` (each issue with this
    file and its line) for unreadable files, bad YAML and invalid policies alike."""
    return policy_from_document(read_document(path), path)


def read_document(path: str | os.PathLike[str]) -> Any:
    """The file's round-trip YAML document (comments and line numbers kept), read
    within the bounds of ``untrusted`` (size, nesting, no aliases)."""
    name = os.fspath(path)
    data = read_bounded(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        message = f"cannot read the file: not UTF-8 ({error.reason} at byte {error.start})"
        raise ConfigError([ConfigIssue("", None, message, name)]) from None
    return parse_yaml(text, name)


def policy_from_document(document: Any, path: str | os.PathLike[str]) -> Policy:
    """Validate a round-trip document read from ``path``, adding file and line to
    every issue (sorted by line, so they read top to bottom)."""
    name = os.fspath(path)
    if document is None:
        message = "the file holds no document: a policy is a mapping (routing_domains:, ...)"
        raise ConfigError([ConfigIssue("", None, message, name, 1)])
    try:
        return load_policy(to_plain(document))
    except ConfigError as error:
        located = [
            dataclasses.replace(issue, file=name, line=line_of(document, issue.path))
            for issue in error.issues
        ]
        located.sort(key=lambda issue: issue.line or 0)
        raise ConfigError(located) from None


def to_plain(node: Any) -> Any:
    """ruamel's ``Commented*`` containers and scalar wrappers as plain dict, list,
    str, int, float and bool (other scalars, such as dates, stay as they are)."""
    if isinstance(node, Mapping):
        return {_plain_key(key): to_plain(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [to_plain(item) for item in node]
    if isinstance(node, bool | ScalarBoolean):
        return bool(node)
    if isinstance(node, ScalarInt):
        return _plain_int(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float | ScalarFloat):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, TaggedScalar):
        return node.value
    return node


def _plain_int(node: ScalarInt) -> int | str:
    # A decimal written with leading zeros: ruamel keeps its width (to write it back
    # the same way); give back the text as written. See the module docstring.
    width = getattr(node, "_width", None)
    value = int(node)
    if type(node) is ScalarInt and width and value >= 0 and width > len(str(value)):
        return f"{value:0{width}d}"
    return value


def _plain_key(key: Any) -> Any:
    plain = to_plain(key)
    if isinstance(plain, list):
        plain = tuple(plain)  # a YAML sequence as a key
    try:
        hash(plain)
    except TypeError:  # a mapping as a key (``? {a: 1}``): no policy key, shown as text
        return repr(plain)
    return plain


def line_of(document: Any, path: str) -> int:
    """The 1-based line of the key or item that ``path`` names, or of its nearest
    parent present in the document (a missing key is reported at its entry; a
    document without positions, such as a bare scalar, at line 1)."""
    line = _start_line(document) or 0
    node = document
    for part in parse_path(path):
        found = _child_line(node, part)
        if found is None:
            break
        line, node = found
    return line + 1


def _start_line(node: Any) -> int | None:
    position = getattr(node, "lc", None)
    return getattr(position, "line", None)


def _child_line(node: Any, part: object) -> tuple[int, Any] | None:
    try:
        if isinstance(node, Mapping) and part in node:
            return node.lc.key(part)[0], node[part]
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            return node.lc.item(part)[0], node[part]
    except (AttributeError, KeyError, TypeError, IndexError):
        return None  # no position recorded (e.g. a key merged in with <<)
    return None


def write_document(path: str | os.PathLike[str], document: Any) -> os.stat_result:
    """Replace the file with ``document`` atomically and durably, its mode and owner
    kept (``replace_file``: a unique temp file, never a planted link followed).
    Returns the new file's status; raises OSError with the old file untouched."""
    text = io.StringIO()
    new_yaml().dump(document, text)
    return replace_file(path, text.getvalue().encode("utf-8"))
