"""Reading YAML and JSON written by someone else: one bounded reader per format.

Config files, the API's bodies and Windows exports all come from outside the daemon
(an editor, a script, an API client, another system), and the daemon parses them in
the process that forwards packets. Whatever they hold, reading one costs memory and
time in proportion to its size, and fails only with ``ConfigError`` naming the
source (a file, or the request body) and the line, never with a traceback:

- **Size**: at most ``MAX_DOCUMENT_BYTES``, checked while reading (``read_bounded``;
  the API counts a request's body as it streams in).
- **Nesting**: at most ``MAX_DEPTH`` collections inside each other, checked before
  anything recurses: a 5000-deep YAML or a 200,000-deep JSON would otherwise end in
  ``RecursionError``.
- **YAML aliases** (``*name``) are refused, each with its line. Expanding them is how
  a 400-byte document becomes ten million leaves (a "billion laughs"), and no config
  needs them: nothing in ``configs/`` or the tests uses one. They would also make the
  API's edits wrong, since an edit of the document changes every place an alias
  points to while validation saw independent copies. Anchors alone are harmless.
- Scalars that cannot be built (a 5000-digit integer, the 13th month) are refused
  with their line, as a syntax error is.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Final

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from ruamel.yaml.nodes import ScalarNode

from gateway.errors import ConfigError, ConfigIssue

# A deployment of 100,000 lookup records (bench/snapshot_build.py's generator) is about
# 18 MiB of YAML or JSON: twice that leaves room for comments and long names, while a
# document the round-trip parser holds in memory (about 25 times its size) stays
# within what a node can spare.
MAX_DOCUMENT_BYTES: Final = 32 * 1024 * 1024
# A policy nests 7 deep (document, routing_domains, a domain, virtual_subnets, a
# subnet, prefixes, a prefix); a Windows export 4. 64 is far past any real document
# and far below where Python's recursion limit (1000 frames, a few per level) bites.
MAX_DEPTH: Final = 64
_MIB: Final = 1024 * 1024


def read_bounded(path: str | os.PathLike[str], limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """A file's bytes, or ``ConfigError`` naming it when it cannot be read or is
    larger than ``limit`` (read no further than that: ``/dev/zero`` ends too)."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as error:
        raise _error(name, f"cannot read the file: {error.strerror or error}") from None
    if len(data) > limit:
        raise _error(name, f"larger than {_size(limit)}: {_TOO_LARGE}")
    return data


_TOO_LARGE = "no policy or export is that large"


def _size(limit: int) -> str:
    return f"{limit // _MIB} MiB" if limit % _MIB == 0 else f"{limit} bytes"


def parse_yaml(text: str, source: str) -> Any:
    """The round-trip document of untrusted YAML (comments and line numbers kept),
    or ``ConfigError`` naming ``source`` and the line at fault."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True  # a value written quoted is written back quoted
    yaml.Composer = _BoundedComposer
    yaml.Constructor = _BoundedConstructor
    try:
        return yaml.load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = error.problem or error.context or type(error).__name__
        raise _error(source, f"not valid YAML: {problem}", line) from None
    except YAMLError as error:  # unmarked (e.g. a reader error): no line to give
        raise _error(source, f"not valid YAML: {error}") from None
    except _UNBUILDABLE as error:  # built outside the methods above (an !!omap, a !!set)
        raise _error(source, f"not valid YAML: cannot read a value: {_reason(error)}") from None


class _BoundedComposer(Composer):  # type: ignore[misc]
    """ruamel's composer, refusing aliases and collections nested past MAX_DEPTH
    before it recurses into them."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.warn_double_anchors = False  # an anchor is harmless: no noise on stderr
        self._levels = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        if isinstance(event, AliasEvent):
            raise ComposerError(
                None,
                None,
                f"alias *{event.anchor}: YAML aliases are not accepted, write the entry out "
                "in full (an alias can expand without bound)",
                event.start_mark,
            )
        if not isinstance(event, MappingStartEvent | SequenceStartEvent):
            return super().compose_node(parent, index)
        if self._levels >= MAX_DEPTH:
            raise ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark
            )
        self._levels += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._levels -= 1


_UNBUILDABLE: Final = (ValueError, TypeError, LookupError, ArithmeticError, AttributeError)


class _BoundedConstructor(RoundTripConstructor):  # type: ignore[misc]
    """ruamel's round-trip constructor, with what it cannot build refused at its
    line: a scalar (Python refuses ints of more than 4300 digits; ``2001-13-45`` is
    no date), a mapping with an unhashable key (``{[1, [2]]: x}``)."""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except _UNBUILDABLE as error:
            raise _unbuildable(node, error) from None

    def construct_mapping(self, node: Any, maptyp: Any, deep: bool = False) -> Any:
        try:
            return super().construct_mapping(node, maptyp, deep)
        except _UNBUILDABLE as error:
            # Only a collection can be an unhashable key: point at the first one.
            key = next((k for k, _ in node.value if not isinstance(k, ScalarNode)), node)
            raise _unbuildable(key, error) from None


def _unbuildable(node: Any, error: Exception) -> ConstructorError:
    return ConstructorError(
        None, None, f"cannot read this value: {_reason(error)}", node.start_mark
    )


def _reason(error: Exception) -> str:
    """Python's message, without its advice to raise its own limit (which is for
    programmers, not for whoever wrote the document)."""
    return str(error).split("; use sys.set_int_max_str_digits()")[0]


# Strings whole (so that brackets inside them do not count), and brackets.
_JSON_NESTING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def parse_json(text: str | bytes, source: str) -> Any:
    """Untrusted JSON as Python values, or ``ConfigError`` naming ``source`` and the
    line at fault (bytes must be UTF-8)."""
    if isinstance(text, bytes | bytearray):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise _error(source, f"not JSON: not UTF-8 (at byte {error.start})") from None
    depth = 0
    for match in _JSON_NESTING.finditer(text):
        char = text[match.start()]
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                raise _error(source, f"not JSON: nested deeper than {MAX_DEPTH} levels", line)
        elif char in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise _error(source, f"not JSON: {error.msg}", error.lineno) from None
    except ValueError as error:  # a number Python will not convert (over 4300 digits)
        raise _error(source, f"not JSON: {_reason(error)}") from None


def _error(source: str, message: str, line: int | None = None) -> ConfigError:
    return ConfigError([ConfigIssue("", None, message, source, line)])
