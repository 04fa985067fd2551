"""The SQLite store: rows that round-trip every shipped config, seeding, a change
that touches only what differs, the log a watcher reads, and a store that holds
the old revision or the new one whatever kills its writer, with writers in
several processes at once.

The behaviours every backend shares (a change is a new revision or nothing,
If-Match, concurrent writers in one process, migrate, a follower's reads) are
test_store.py's, run against both backends; each test here says why it is SQLite's
(its tables, log, locks and file), and where etcd's counterpart is.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from gateway.control import load_config, read_document, to_plain
from gateway.control import sqlite_store as sqlite_module
from gateway.control.edits import add, remove, replace_all
from gateway.control.kinds import LOOKUP_RECORDS
from gateway.control.policy_rows import document, rows
from gateway.control.store import PolicyStore, StoreBusy, StoreConflict
from gateway.errors import ConfigError
from gateway.policy import Policy, load_policy

from ._sqlite_writer import record

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
WRITER_TIMEOUT_S = 60


def keep(policy: Policy) -> Policy:
    return policy


async def swap(policy: Policy) -> None:
    pass


def two_hosts() -> Policy:
    return load_config(CONFIGS / "two-hosts.yaml")


async def seeded(database: Path, policy: Policy | None = None) -> PolicyStore[Policy]:
    store = PolicyStore(f"sqlite:{database}", keep, swap)
    await store.load((policy or two_hosts(), "two-hosts.yaml"))
    return store


async def fresh(database: Path) -> Policy:
    """The policy a store that just opened the database reads (a restarted daemon)."""
    policy = await PolicyStore(f"sqlite:{database}", keep, swap).load()
    assert policy is not None
    return policy


def tables(database: Path) -> list[list[tuple[Any, ...]]]:
    with closing(sqlite3.connect(database)) as db:
        return [
            list(db.execute(f"SELECT * FROM {table} ORDER BY 1, 2"))
            for table in ("meta", "entries", "changes")
        ]


def log_of(database: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(database)) as db:
        return list(db.execute("SELECT revision, kind, key, op FROM changes ORDER BY id"))


# The rows themselves, no store: etcd's keys of them are test_etcd_store's.
@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_rows_give_back_the_same_policy_for_every_shipped_config(name: str) -> None:
    policy = load_config(CONFIGS / name)
    stored = rows(policy)
    back = load_policy(document(((kind, value) for (kind, _), value in stored.items()), 0))
    assert back == policy
    assert rows(back) == stored


# SQLite's empty database file; an empty etcd prefix is test_etcd_store's.
async def test_an_empty_store_says_how_to_seed_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"holds no policy yet.*--config FILE.*nvgw apply"):
        await fresh(tmp_path / "p.db")


# Compared table by table (SQLite's); the same on etcd's keys in test_etcd_store.
async def test_a_seed_fills_an_empty_store_and_the_same_seed_again_is_no_change(
    tmp_path: Path,
) -> None:
    database = tmp_path / "p.db"
    store = await seeded(database)
    assert store.policy == two_hosts() and await fresh(database) == two_hosts()
    before = tables(database)
    await seeded(database)  # a restart with the same --config
    assert tables(database) == before


# Compared table by table (SQLite's); the same on etcd's keys in test_etcd_store.
async def test_a_seed_never_overwrites_a_store_holding_another_policy(tmp_path: Path) -> None:
    database = tmp_path / "p.db"
    store = await seeded(database)
    await store.change(add(LOOKUP_RECORDS, record(13)))
    before = tables(database)
    with pytest.raises(StoreConflict) as conflict:
        await seeded(database)
    message = str(conflict.value)
    assert f"sqlite:{database}" in message and "two-hosts.yaml" in message
    assert "nvgw apply --store" in message and "without --config" in message
    assert tables(database) == before


# SQLite's log of changes; etcd's keys written per transaction are test_etcd_store's.
async def test_a_change_writes_only_the_rows_that_differ(tmp_path: Path) -> None:
    database = tmp_path / "p.db"
    store = await seeded(database)
    await store.change(add(LOOKUP_RECORDS, record(13)))
    await store.change(remove(LOOKUP_RECORDS, {"ca": "10.10.10.13"}))
    assert log_of(database) == [
        (1, "lookup-records", "5010/10.10.10.13", "put"),
        (2, "lookup-records", "5010/10.10.10.13", "delete"),
    ]


# SQLite's log of changes; etcd's keys written per transaction are test_etcd_store's.
async def test_applying_a_whole_file_touches_only_what_differs(tmp_path: Path) -> None:
    """``nvgw apply``: the store becomes equal to the file, removals included, in one
    revision whose log names exactly the entries that differ."""
    database = tmp_path / "p.db"
    store = await seeded(database)
    await store.change(add(LOOKUP_RECORDS, record(13)))  # which the file lacks
    text = (CONFIGS / "two-hosts.yaml").read_text()
    edited = tmp_path / "edited.yaml"
    edited.write_text(text.replace("metric: 255", "metric: 100", 1))
    new = to_plain(read_document(edited))
    accepted = await store.change(replace_all(new))
    assert accepted.policy.revision == 2
    assert accepted.policy == load_policy({**new, "revision": 2})
    assert [(kind, op) for revision, kind, _, op in log_of(database) if revision == 2] == [
        ("lookup-records", "delete"),
        ("customer-routes", "put"),
    ]
    assert await fresh(database) == accepted.policy


# SQLite's log and its trimming; etcd's compaction is test_etcd_store's.
async def test_the_log_answers_a_watcher_until_trimmed_past_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "CHANGES_KEPT", 3)
    store = await seeded(tmp_path / "p.db")
    backend = store.backend
    assert isinstance(backend, sqlite_module.SqliteBackend)
    assert backend.changes(0) == []
    for n in range(13, 17):
        await store.change(add(LOOKUP_RECORDS, record(n)))
    assert backend.changes(0) is None  # trimmed past revision 1: read everything again
    changes = backend.changes(2)
    assert changes is not None
    assert [(c.revision, c.key, c.op) for c in changes] == [
        (3, "5010/10.10.10.15", "put"),
        (4, "5010/10.10.10.16", "put"),
    ]
    assert changes[0].value is not None and '"ca":"10.10.10.15"' in changes[0].value


# SQLite's write lock (BEGIN IMMEDIATE); etcd has none: racing writers, test_etcd_store.
async def test_a_writer_kept_waiting_too_long_gets_busy_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "p.db"
    await seeded(database)
    monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT_S", 0.2)
    store = PolicyStore(f"sqlite:{database}", keep, swap)
    await store.load()
    other = sqlite3.connect(database, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreBusy, match="another writer has held"):
            await store.change(add(LOOKUP_RECORDS, record(13)))
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert (await fresh(database)).revision == 0
    assert (await store.change(add(LOOKUP_RECORDS, record(13)))).policy.revision == 1


def writer(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tests.control._sqlite_writer", str(database), *args]
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=WRITER_TIMEOUT_S
    )


KILLED_AT = {  # where the writer dies, and whether its change must be in the store
    "validated": False,
    "rows-written": False,
    "committing": False,
    "committed": True,
}


# Killed at SQLite's own points (rows written, inside COMMIT); etcd's in test_etcd_store.
@pytest.mark.parametrize("point", KILLED_AT)
async def test_a_writer_killed_at_any_point_leaves_the_old_or_the_new_revision(
    tmp_path: Path, point: str
) -> None:
    database = tmp_path / "p.db"
    await seeded(database)
    old = await fresh(database)
    died = writer(database, "crash", point)
    assert died.returncode == -signal.SIGKILL, died.stderr
    restarted = await fresh(database)  # what a restarted daemon runs
    cas = {str(r.ca) for r in restarted.lookup_records}
    if KILLED_AT[point]:
        assert restarted.revision == 1 and "10.10.10.200" in cas
        assert {(r, op) for r, _, _, op in log_of(database)} == {(1, "put")}
    else:
        assert restarted == old and log_of(database) == []
    with closing(sqlite3.connect(database)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = PolicyStore(f"sqlite:{database}", keep, swap)  # and it takes changes on
    await store.load()
    assert (await store.change(add(LOOKUP_RECORDS, record(13)))).policy.revision == (
        restarted.revision + 1
    )


# SQLite's file lock between processes; etcd's transactions in test_etcd_store.
async def test_writers_in_several_processes_lose_nothing(tmp_path: Path) -> None:
    database = tmp_path / "p.db"
    await seeded(database)
    count, each = 4, 5
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.control._sqlite_writer",
                str(database),
                "add",
                str(100 + n * each),
                str(each),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]
    revisions = []
    for process in processes:
        out, err = process.communicate(timeout=WRITER_TIMEOUT_S)
        assert process.returncode == 0, err
        revisions += [int(line) for line in out.split()]
    assert sorted(revisions) == list(range(1, count * each + 1))  # each one a revision
    held = await fresh(database)
    assert held.revision == count * each
    assert {str(r.ca) for r in held.lookup_records} >= {
        f"10.10.10.{n}" for n in range(100, 100 + count * each)
    }


# SQLite's revision read from the file; etcd's watch in test_etcd_store.
async def test_a_second_store_on_the_database_sees_the_first_ones_revision(
    tmp_path: Path,
) -> None:
    database = tmp_path / "p.db"
    one = await seeded(database)
    two = PolicyStore(f"sqlite:{database}", keep, swap)
    await two.load()
    await one.change(add(LOOKUP_RECORDS, record(13)))
    assert await two.committed_revision() == 1
    assert (await two.load()) == one.policy


# A file's place: SQLite's alone.
def test_a_database_in_an_unwritable_place_is_a_refusal_naming_it(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    store = PolicyStore(f"sqlite:{blocked}/p.db", keep, swap)
    with pytest.raises(ConfigError, match=f"sqlite:{blocked}/p.db"):
        store.read()
