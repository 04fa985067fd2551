"""A database store beside a test's config file, seeded from it, and how a test
looks at what the database holds without going through the store under test.

SQLite by default: a test that asks for the ``each_store`` fixture
(tests/conftest.py) runs once on SQLite and once on a prefix of a real etcd
(``use``), the prefix named after the config's path, so every helper here names the
same store; the stores ``seeded`` opened are closed after it (``close_opened``)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

from gateway.control import etcd_store, load_config, sqlite_store
from gateway.control.policy_rows import digest, placed
from gateway.control.store import PolicyStore, open_backend, seal
from gateway.policy import Policy

from ._etcd import Etcd

Prepared = TypeVar("Prepared")
TABLES = ("meta", "entries", "changes")
_etcd: list[Etcd] = []  # the etcd the helpers use instead of SQLite, while set
_opened: list[PolicyStore[Any]] = []  # by ``seeded``, until ``close_opened``


def use(etcd: Etcd | None) -> None:
    """Name stores in ``etcd`` from now on (None: SQLite again)."""
    _etcd[:] = [] if etcd is None else [etcd]


def close_opened() -> None:
    """Close every store ``seeded`` opened (an etcd store's watch is a thread and a
    connection to etcd): ``each_store`` does, after its test."""
    while _opened:
        _opened.pop().close()


def database(config: Path) -> Path:
    return config.with_suffix(".db")


def url(config: Path) -> str:
    if _etcd:
        return _etcd[0].url(_prefix(config))
    return f"sqlite:{database(config)}"


def _prefix(config: Path) -> str:
    return f"nvgw-{hashlib.sha256(str(config).encode()).hexdigest()[:16]}"


async def seeded(
    config: Path,
    prepare: Callable[[Policy], Prepared],
    commit: Callable[[Prepared], Awaitable[None]],
) -> PolicyStore[Prepared]:
    """A store on the config's database, loaded: seeded from the config if empty."""
    return await loaded(config, prepare, commit, seed=True)


async def loaded(
    config: Path,
    prepare: Callable[[Policy], Prepared],
    commit: Callable[[Prepared], Awaitable[None]],
    seed: bool = False,
) -> PolicyStore[Prepared]:
    """A store on the config's database, loaded as it is (``seed``: seeded from the
    config if empty; a store that changed since refuses that seed)."""
    store = PolicyStore(url(config), prepare, commit)
    _opened.append(store)
    await store.load((load_config(config), str(config)) if seed else None)
    return store


def held(config: Path) -> Policy:
    """The policy the database holds now, read afresh."""
    backend = open_backend(url(config), lambda policy: policy)
    try:
        return backend.read().policy
    finally:
        backend.close()


def state(config: Path) -> Any:
    """What a refused change must leave as it was: the revision, the rows, the log
    (etcd: every key under the prefix, with its value and mod revision)."""
    if _etcd:
        return _etcd[0].keys(f"/{_prefix(config)}/")
    with closing(sqlite3.connect(database(config))) as db:
        return [list(db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")) for table in TABLES]


def contents(config: Path) -> Any:
    """What the store holds, comparable with another store's that took the same
    changes: SQLite's revision, rows, log and seal; etcd's keys under the prefix
    (named from it) with their values, without their mod revisions (etcd counts
    every write to its cluster, not the store's changes)."""
    if _etcd:
        under = f"/{_prefix(config)}/"
        return {key.removeprefix(under): value for key, (value, _) in _etcd[0].keys(under).items()}
    with closing(sqlite3.connect(database(config))) as db:
        return [
            list(db.execute("SELECT revision, log_from FROM meta")),
            list(db.execute("SELECT kind, key, seq, value FROM entries ORDER BY kind, key")),
            list(db.execute("SELECT revision, kind, key, op, value FROM changes ORDER BY id")),
            list(db.execute("SELECT seal FROM trust")),
        ]


def seals(config: Path) -> tuple[str | None, str]:
    """The seal the store keeps beside its rows (None: none; SQLite's ``trust`` table,
    etcd's meta key), and the seal of those rows computed from scratch."""
    if _etcd:
        under = f"/{_prefix(config)}/"
        found: list[tuple[str, str, int, str]] = []
        stored = None
        for key, (value, _) in _etcd[0].keys(under).items():
            if key == f"{under}meta":
                stored = json.loads(value).get("seal")
            else:
                kind, name = key.removeprefix(f"{under}entries/").split("/", 1)
                seq, _, text = value.partition(" ")
                found.append((kind, name, int(seq), text))
        return stored, seal(etcd_store.SCHEMA_VERSION, digest(placed(0, found).entries))
    with closing(sqlite3.connect(database(config))) as db:
        kept = db.execute("SELECT seal FROM trust").fetchone()
        rows = placed(0, db.execute("SELECT kind, key, seq, value FROM entries"))
    return (kept[0] if kept else None), seal(sqlite_store.SCHEMA_VERSION, digest(rows.entries))


def seed(config: Path) -> None:
    """Seed the config's database now, without a running store (a sync test's)."""
    backend = open_backend(url(config), lambda policy: policy)
    try:
        backend.read((load_config(config), str(config)))
    finally:
        backend.close()
