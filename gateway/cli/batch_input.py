"""``--from FILE.jsonl``: a batch of entries of one kind, read, checked line by line
and sent as one request (``POST /v1/KIND`` with a JSON list: one revision, all or
nothing), with a progress bar for large ones.

The file holds one JSON object per line (blank lines skipped), ``-`` being stdin.
What can be told without the daemon is refused here, with its line number, before
anything is sent: a line that is not JSON or not an object, a line whose fields are
another kind's, an empty file. The daemon judges the rest and names each bad entry
by its index in the batch, which is printed back as its line.

The progress bar (rich) shows the reading and the sending, then "committing..."
while the daemon validates and commits the batch in one transaction (which has no
progress to show); it is off when stdout is not a terminal, and with ``--quiet``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from gateway.cli.verbs import Field, Target, console, talking
from gateway.control import ApiError, Kind, schema

CHUNK: Final = 256 * 1024  # bytes of the body per progress step


class BatchFileError(ValueError):
    """A batch file the CLI refuses before sending: the message names the line."""


@dataclass(frozen=True)
class Batch:
    """The entries of a batch file, and the line each came from."""

    entries: list[dict[str, Any]]
    lines: list[int]

    def line_of(self, entry: int) -> int | None:
        return self.lines[entry] if 0 <= entry < len(self.lines) else None


def add_batch(
    kind: Kind,
    fields: list[Field],
    values: dict[str, Any],
    source: str,
    quiet: bool,
    target: Target,
    if_revision: int | None,
    as_json: bool,
) -> None:
    """``add --from``: the file read and checked, then sent as one batch."""
    given = [f.option for f in fields if values[f.key] not in (None, f.default)]
    if given:
        raise typer.BadParameter(f"--from takes every field from the file, not {', '.join(given)}")
    defaults = {f.body: f.default for f in fields if f.default is not None}
    with progress(quiet) as shown:
        reading = shown.add_task("reading", total=size_of(source))
        try:
            batch = read_batch(source, kind, defaults, lambda n: shown.advance(reading, n))
        except BatchFileError as error:
            raise fail(str(error)) from None
        body = json.dumps(batch.entries, separators=(",", ":")).encode()
        chunks = body_chunks(body, shown)
        with talking(target) as api:
            try:
                answer = api.request(
                    "POST",
                    f"/v1/{kind.name}",
                    content=chunks,
                    size=len(body),
                    if_revision=if_revision,
                )
            except ApiError as error:
                refused_lines(batch, error.body.get("issues", []), source)
                raise
    if as_json:
        console.print_json(json.dumps(answer))
    else:
        console.print(f"added {answer['added']} {kind.name} (policy revision {answer['revision']})")


def read_batch(
    source: str, kind: Kind, defaults: dict[str, Any], advance: Callable[[int], None]
) -> Batch:
    """The entries of ``source`` (a path, or ``-``: stdin), each with the kind's
    defaults for the fields it lacks (as ``add`` sends them); ``advance`` is told
    how many bytes each line took. BatchFileError for what is wrong, by line."""
    fields = set(schema(kind)["properties"])
    entries: list[dict[str, Any]] = []
    lines: list[int] = []
    name = "stdin" if source == "-" else source
    with _opened(source) as stream:
        for number, line in enumerate(stream, start=1):
            advance(len(line))
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                reason = getattr(error, "msg", None) or str(error)
                raise BatchFileError(f"{name}:{number}: not JSON: {reason}") from None
            if not isinstance(entry, dict):
                raise BatchFileError(f"{name}:{number}: not a JSON object, one {kind.what}")
            foreign = sorted(set(entry) - fields)
            if foreign:
                raise BatchFileError(
                    f"{name}:{number}: a {kind.what} has no {', '.join(foreign)} "
                    f"(its fields: {', '.join(sorted(fields))}): is it another kind's?"
                )
            entries.append({**defaults, **entry})
            lines.append(number)
    if not entries:
        raise BatchFileError(f"{name}: no {kind.what} in it (one JSON object per line)")
    return Batch(entries, lines)


@contextmanager
def _opened(source: str) -> Iterator[IO[bytes]]:
    if source == "-":
        yield sys.stdin.buffer
        return
    try:
        stream = Path(source).open("rb")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise BatchFileError(f"cannot read {source}: {error.strerror or error}") from None
    with stream:
        yield stream


def size_of(source: str) -> int | None:
    """The file's size, for the reading bar (None: stdin, whose size is unknown)."""
    try:
        return None if source == "-" else Path(source).stat().st_size
    except OSError:
        return None


@contextmanager
def progress(quiet: bool) -> Iterator[Progress]:
    """The bar's display: on stdout's terminal, unless ``quiet``."""
    console = Console(stderr=False)
    shown = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
    )
    with shown:
        yield shown


def body_chunks(body: bytes, shown: Progress) -> Iterator[bytes]:
    """A request's body in chunks; the sending bar moves as the chunks go, and says
    "committing..." once the last has gone (the daemon's one transaction, which has
    no progress to show)."""
    task = shown.add_task("sending", total=len(body))
    for start in range(0, len(body), CHUNK):
        chunk = body[start : start + CHUNK]
        yield chunk
        shown.advance(task, len(chunk))
    shown.update(task, description="committing...")


def refused_lines(batch: Batch, issues: list[dict[str, Any]], source: str) -> None:
    """Each issue the daemon names an entry for gets that entry's line (in place)."""
    name = "stdin" if source == "-" else source
    for issue in issues:
        line = batch.line_of(issue["entry"]) if "entry" in issue else None
        if line is not None:
            issue["path"] = f"{name}:{line}: {issue['path']}"


def fail(message: str) -> typer.Exit:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"nvgw: {message}", markup=False)
    return typer.Exit(1)
