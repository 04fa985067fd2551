"""What a database store's change costs beside its rows (issue 14's 20 ms at 10^5
records, slice V1): nothing in it may grow with the policy or the store's history.
Counted, not timed: package metadata reads, SQLite's virtual-machine steps."""

from __future__ import annotations

import importlib.metadata
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from gateway.control import load_config
from gateway.control import sqlite_store as sqlite_module
from gateway.control import store as store_module
from gateway.control.edits import add, remove
from gateway.control.incremental import RecordChanges, advanced
from gateway.control.kinds import LOOKUP_RECORDS
from gateway.control.policy_rows import Placed, rows
from gateway.policy import Policy

from ._sqlite_writer import record

ROOT = Path(__file__).resolve().parents[2]


def test_the_seal_reads_nvgw_s_version_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``gateway.__version__`` reads the package's metadata at each use (5 ms); each
    change seals twice (the store's seal checked, then moved)."""
    reads = []
    real = importlib.metadata.version

    def counted(name: str) -> str:
        reads.append(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", counted)
    store_module._version.cache_clear()
    seals = {store_module.seal(1, digest) for digest in range(3)}
    assert len(seals) == 3 and len(reads) == 1


def _trim_steps(path: Path, kept: int, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """SQLite's VM steps (in hundreds) to trim a log of ``kept`` + 10 rows to
    ``kept``, two rows a revision, and the revision the log then starts from."""
    monkeypatch.setattr(sqlite_module, "CHANGES_KEPT", kept)

    def prepare(policy: Policy) -> Any:
        return policy

    backend = sqlite_module.SqliteBackend(path, prepare)
    db = backend._connection()
    db.execute("BEGIN")  # one transaction: not a sync per row
    db.execute("INSERT INTO meta (id, schema, revision, log_from) VALUES (0, 1, 0, 1)")
    db.executemany(
        "INSERT INTO changes (revision, kind, key, op, value) VALUES (?, ?, ?, ?, ?)",
        ((1 + n // 2, "lookup-records", f"5010/{n}", "put", "{}") for n in range(kept + 10)),
    )
    db.execute("COMMIT")
    steps = []
    db.set_progress_handler(lambda: steps.append(1) and 0, 100)
    backend._trim(db)
    db.set_progress_handler(None, 100)
    with closing(sqlite3.connect(path)) as check:
        (log_from,) = check.execute("SELECT log_from FROM meta").fetchone()
        (oldest,) = check.execute("SELECT min(revision) FROM changes").fetchone()
    backend.close()
    assert oldest == log_from
    return len(steps), log_from


def test_trimming_the_log_does_not_step_over_the_rows_it_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log's cut is found by id: as cheap with 20,000 rows kept as with 1,000
    (an ``OFFSET`` stepped over every row kept, 10^5 at each change), and the same
    cut (at a revision's boundary, the newest ``CHANGES_KEPT`` rows kept)."""
    small, small_from = _trim_steps(tmp_path / "small.db", 1_000, monkeypatch)
    large, large_from = _trim_steps(tmp_path / "large.db", 20_000, monkeypatch)
    assert (small_from, large_from) == (6, 6)  # rows 0..9 (revisions 1..5) cut
    assert large <= small + 5


class _Unread(dict):  # type: ignore[type-arg]
    """Rows' places that must not be passed over (each row's, 10^5 of them)."""

    def items(self) -> Any:
        raise AssertionError("a pass over every row's place")

    values = items
    __iter__ = items


def test_removing_the_row_placed_last_reads_no_other_row_s_place() -> None:
    """A record added, then removed: its place is given back (the next new row
    takes it, as the whole path's would) without a pass over every row's place (28
    ms a removal at 10^5 records); and the next record added takes that place."""
    policy = load_config(ROOT / "configs/two-hosts.yaml")
    entries = rows(policy)
    state = Placed(policy.revision, entries, {row: n for n, row in enumerate(entries)})
    changes = RecordChanges()
    changes.policy(state, "two-hosts")
    places = []
    for edit in (add(LOOKUP_RECORDS, record(40)), remove(LOOKUP_RECORDS, {"ca": "10.10.10.40"})):
        taken = changes.change(state, edit, lambda policy: policy)
        assert taken is not None
        state = advanced(state, taken.policy.revision, taken.delta, taken.seqs)
        state = Placed(state.revision, state.entries, _Unread(state.seqs))
        places += taken.seqs.values()
    taken = changes.change(state, add(LOOKUP_RECORDS, record(41)), lambda policy: policy)
    assert taken is not None
    assert places == [len(entries)] and list(taken.seqs.values()) == places
