"""Verbs that open a policy store directly, without a daemon: ``nvgw apply --store``
and ``nvgw policy export``.

``nvgw import-hnv --apply --store`` goes the same way (``apply_document``).
YAML stays the human format, as with ``kubectl apply``: ``nvgw apply --store URL
FILE`` makes the store equal to FILE, removals included, as one transaction that
writes only the entries that differ (an empty store is seeded with it), and every
daemon on that store follows within a fraction of a second; ``nvgw policy export``
writes the store's policy as YAML, its revision first, which ``nvgw check`` and
``nvgw apply`` take back. Opening the database needs no daemon (the one for a
store whose daemon refuses to start: ``--config`` and the store disagree).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from ruamel.yaml.comments import CommentedMap

from gateway.cli.verbs import show_diff
from gateway.control import (
    DEFAULT_STORE,
    STORE_ERRORS,
    Backend,
    new_yaml,
    open_backend,
    parse_store,
    policy_json,
    read_document,
    replace_all,
    replace_file,
    to_plain,
)
from gateway.errors import ConfigError
from gateway.policy import Policy

NOTHING = Policy(0, (), (), (), ())  # what an empty store is diffed as
console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)

StoreOpt = Annotated[
    str,
    typer.Option(
        help="The policy store: sqlite:PATH (a database), etcd://HOST:PORT/PREFIX (a "
        "cluster's) or file:PATH (a YAML config).",
        envvar="NVGW_STORE",
    ),
]


def store_url(value: str) -> str:
    """A ``--store`` checked before anything opens (typer's usage error, exit 2)."""
    try:
        parse_store(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return value


def _unchanged(policy: Policy) -> Policy:
    return policy  # no daemon here: nothing to prepare


def apply_to_store(
    file: Path, store: str, new: Policy, dry_run: bool, if_revision: int | None
) -> None:
    """``nvgw apply --store``: the diff against the store, then one transaction.
    ``new`` is FILE's policy, already validated."""
    apply_document(str(file), read_document(file), new, store, "apply", dry_run, if_revision)


def apply_document(
    source: str,
    document: Any,
    new: Policy,
    store: str,
    command: str,
    dry_run: bool = False,
    if_revision: int | None = None,
) -> None:
    """The store made equal to ``document`` (from ``source``; ``new`` its policy,
    already validated): the diff, then one transaction (``nvgw apply --store``,
    ``nvgw import-hnv --apply --store``). An empty store is seeded with it."""
    with _opened(store, command) as backend:
        empty = backend.writable and backend.revision() is None  # a file is never empty
        live = None if empty else backend.read().policy
        against = "an empty store" if live is None else f"revision {live.revision}"
        show_diff(live or NOTHING, new, dry_run, f"{backend.url} ({against})")
        with console.status("committing...", spinner="dots"):
            if live is None:
                done = backend.read((new, source)).policy
            else:
                done = backend.change(replace_all(to_plain(document)), if_revision).policy
        console.print(f"applied to {backend.url}: policy revision {done.revision}")


@contextmanager
def _opened(store: str, command: str) -> Iterator[Backend[Policy]]:
    """The store's backend, closed after; what it refuses printed, and exit 1."""
    backend = open_backend(store_url(store), _unchanged)
    try:
        yield backend
    except ConfigError as error:
        for issue in error.issues:
            errors.print(str(issue), markup=False)
        raise typer.Exit(1) from None
    except STORE_ERRORS as error:
        errors.print(f"nvgw {command}: {error}", markup=False)
        raise typer.Exit(1) from None
    finally:
        backend.close()


def export(
    store: StoreOpt = DEFAULT_STORE,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
) -> None:
    """Write the store's policy as YAML, its revision first: what ``nvgw check``
    and ``nvgw apply`` take back. Exit 0: written; 1: the store cannot be read."""
    with _opened(store, "policy export") as backend:
        policy = backend.read().policy
    text = io.StringIO()
    new_yaml().dump(_exported(policy, backend.url), text)
    if output is None:
        console.out(text.getvalue(), end="", highlight=False)
        return
    try:
        replace_file(output, text.getvalue().encode("utf-8"))
    except OSError as error:
        errors.print(f"nvgw policy export: cannot write {output}: {error.strerror}", markup=False)
        raise typer.Exit(1) from None


def _exported(policy: Policy, url: str) -> Any:
    document = CommentedMap(policy_json(policy))
    document.yaml_set_start_comment(f"exported from {url} at revision {policy.revision}")
    return document
