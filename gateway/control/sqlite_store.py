"""The embedded database store (``sqlite:PATH``, the default): SQLite from the
standard library, no server, shared by every daemon of a machine that names it.

Tables (``SCHEMA``): ``meta`` holds the one revision counter (no row: the store
holds no policy yet); ``entries`` a row per entry per kind of the registry, keyed by
(kind, key) as ``policy_rows`` makes them, with ``seq`` keeping document order; and
``changes`` the log of committed changes (revision, kind, key, op, value), trimmed
to ``CHANGES_KEPT`` rows by whole revisions, from which ``changes()`` answers a
watcher that is not too far behind (None: read the whole policy again); ``trust``
the seal of the rows this nvgw validated (``store.seal``: their order-independent
digest with the schema's and nvgw's versions), moved by each change's delta in the
change's transaction. A read whose rows give back the seal (a start: 100,000
records) skips the cross-entity checks (each entry's schema is still validated: it
builds the entries); rows edited behind the store's back, or written by an nvgw
that keeps no seal or another version's, are validated whole, then sealed.

A change (``change``) is one ``BEGIN IMMEDIATE`` transaction: it takes the write
lock first, so no other writer, in this process or another, can commit between the
revision check and the commit (they wait ``busy_timeout``, then ``StoreBusy``). In
it: check the revision, build the document from the rows, apply the edit, validate
the whole policy and ``prepare`` it (whole-policy validation: O(change) indexes are
the next step), then write only the rows that differ, the log and the revision, and
commit. Anything raised before the commit rolls everything back, so a refused
change leaves the rows and the revision as they were; SIGKILL at any point leaves
the old revision or the new one, which is what SQLite's journal guarantees.

Durability: WAL mode with ``synchronous=FULL``, which syncs the WAL at every
commit. ``NORMAL`` would be faster and still never corrupt the database, but a
power cut could take back the last commits: the API answers a change only once it
is durable, so it must be ``FULL``.

Readers never block writers in WAL mode: a daemon following another's writes asks
``revision()`` (a one-row read, from a worker thread) when the database's files were
written (``change_feed``: inotify, ``file_changes.py``; ``store.PolicyStore.moves``),
and ``read`` takes the rows the log names since the rows it holds, as committed now,
to them and to its index (``store.followed``: O(change)), or reads them all when the
log no longer reaches back.
One connection per backend, used from worker threads one at a time (``_lock``).
"""

from __future__ import annotations

import errno
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Generic, NamedTuple, TypeVar

from gateway.policy import Policy

from .edits import Edit
from .file_changes import FileChanges
from .incremental import RecordChanges
from .policy_rows import Delta, Placed, Row, digest, placed
from .store import (
    Loaded,
    NotSaved,
    RevisionMismatch,
    StoreBusy,
    empty,
    followed,
    seal,
    sealed_after,
    seeding,
    unreadable,
    written,
)

Prepared = TypeVar("Prepared")
SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_S: Final = 10.0  # how long a writer waits for another's lock: StoreBusy after
CHANGES_KEPT: Final = 100_000  # log rows kept (whole revisions): a watcher further behind resyncs
SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta ("
    " id INTEGER PRIMARY KEY CHECK (id = 0), schema INTEGER NOT NULL,"
    " revision INTEGER NOT NULL, log_from INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS entries ("
    " kind TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY (kind, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS changes ("
    " id INTEGER PRIMARY KEY, revision INTEGER NOT NULL, kind TEXT NOT NULL,"
    " key TEXT NOT NULL, op TEXT NOT NULL, value TEXT)",
    "CREATE TABLE IF NOT EXISTS trust ( id INTEGER PRIMARY KEY CHECK (id = 0), seal TEXT NOT NULL)",
)
# SQLite's primary result codes (sqlite3.h) for what a full or failing disk says
_SQLITE_BUSY, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 5, 8, 10, 13, 14
_ERRNO: Final = {
    _SQLITE_FULL: errno.ENOSPC,
    _SQLITE_READONLY: errno.EROFS,
    _SQLITE_IOERR: errno.EIO,
    _SQLITE_CANTOPEN: errno.EACCES,
}


class Change(NamedTuple):
    """One row of the log: ``op`` is ``put`` (``value`` the row's JSON) or ``delete``."""

    revision: int
    kind: str
    key: str
    op: str
    value: str | None


class SqliteBackend(Generic[Prepared]):
    """One SQLite database holding the policy."""

    follows = True
    writable = True

    def __init__(self, path: Path, prepare: Callable[[Policy], Prepared]) -> None:
        self.path = path.absolute()
        self.url = f"sqlite:{self.path}"
        self._prepare = prepare
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._state: Placed | None = None  # a cache, checked against the revision
        self._records = RecordChanges()  # its index, for adds and removals of entries
        self._sealed: str | None = None  # the seal of _state's rows (None: unknown)
        self.trusted = False  # whether the last read found its rows under our seal

    # ---------------------------------------------------------------- the interface

    def read(self, seed: tuple[Policy, str] | None = None) -> Loaded[Prepared]:
        if seed is not None:
            self._seed(*seed)
        else:
            followed = self._followed()
            if followed is not None:
                return followed
        with self._lock, self._transaction("BEGIN") as db:
            state = self._current(db)
            stored = _seal_of(db)
        if state is None:
            raise empty(self.url)
        found = seal(SCHEMA_VERSION, digest(state.entries))
        self.trusted = stored == found
        with self._lock:
            policy = self._records.policy(state, self.url, judged=not self.trusted)
        if not self.trusted:
            self._reseal(state.revision, found)
        self._sealed = found
        return Loaded(policy, self._prepare(policy))

    def change(self, edit: Edit, if_revision: int | None) -> Loaded[Prepared]:
        try:
            with self._lock, self._transaction("BEGIN IMMEDIATE") as db:
                state = self._current(db)
                if state is None:
                    raise empty(self.url)
                if if_revision is not None and if_revision != state.revision:
                    raise RevisionMismatch(if_revision, state.revision)
                change = written(self._records, state, edit, self._prepare)
                sealed = sealed_after(_seal_of(db), SCHEMA_VERSION, state.entries, change.delta)
                self._write(db, change.policy.revision, change.seqs, change.delta)
                if sealed is not None:
                    db.execute("UPDATE trust SET seal = ?", (sealed,))
                self._sealed = sealed
        except BaseException:  # up to COMMIT: the index may have moved past the rows
            self._records.forget()
            raise
        self._state = change.rows(state)  # committed: the transaction above raised otherwise
        return Loaded(change.policy, change.prepared, change.result)

    def revision(self) -> int | None:
        with self._lock:
            try:
                found = self._connection().execute("SELECT revision FROM meta").fetchone()
            except sqlite3.Error as error:
                raise _store_error(error, self.url) from None
        return None if found is None else int(found[0])

    def change_feed(self) -> FileChanges:
        """Writes to the database or its WAL or rollback journal, as they happen."""
        name = self.path.name
        return FileChanges(self.path.parent, (name, f"{name}-wal", f"{name}-journal"))

    def changes(self, since: int) -> list[Change] | None:
        """Every change committed after revision ``since``, oldest first; None when
        the log no longer reaches back that far (read the whole policy again)."""
        with self._lock, self._transaction("BEGIN") as db:
            meta = db.execute("SELECT revision, log_from FROM meta").fetchone()
            if meta is None or since + 1 < meta[1]:
                return None
            found = db.execute(
                "SELECT revision, kind, key, op, value FROM changes WHERE revision > ? ORDER BY id",
                (since,),
            )
            return [Change(*row) for row in found]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _followed(self) -> Loaded[Prepared] | None:
        """Another writer's changes since the rows held (``_state``), read from the
        log and applied to them and to the index (``store.followed``), in O(change):
        the rows the log names since, as committed now; None for the whole read (no
        rows held, nothing moved, the log trimmed past them, a change the index
        cannot take, a seal that does not follow)."""
        state, sealed = self._state, self._sealed
        if state is None or sealed is None:
            return None
        with self._lock, self._transaction("BEGIN") as db:
            meta = db.execute("SELECT schema, revision, log_from FROM meta").fetchone()
            if meta is None or meta[0] != SCHEMA_VERSION or not state.revision < meta[1]:
                return None
            if state.revision + 1 < meta[2]:  # trimmed: the log no longer reaches back
                return None
            touched: set[Row] = set()
            newest_first = db.execute("SELECT revision, kind, key FROM changes ORDER BY id DESC")
            for revision, kind, key in newest_first:
                if revision <= state.revision:
                    break
                touched.add((kind, key))
            now = {row: self._row_now(db, row) for row in touched}
            stored = _seal_of(db)
            taken = followed(self._records, state, now, meta[1], (sealed, stored), SCHEMA_VERSION)
            if taken is None:
                return None
            policy, self._state = taken
            self._sealed = stored
        return Loaded(policy, self._prepare(policy))

    @staticmethod
    def _row_now(db: sqlite3.Connection, row: Row) -> tuple[int, str] | None:
        found = db.execute("SELECT seq, value FROM entries WHERE kind = ? AND key = ?", row)
        place = found.fetchone()
        return None if place is None else (int(place[0]), str(place[1]))

    # ---------------------------------------------------------------- seeding

    def _seed(self, policy: Policy, source: str) -> None:
        """Commit ``policy`` (``--config``) into an empty store. A store that holds
        the same entries is left as it is (a restart with the same ``--config``);
        one that holds others is a StoreConflict: never overwritten."""
        with self._lock, self._transaction("BEGIN IMMEDIATE") as db:
            seeded = seeding(self._current(db), policy, source, self.url)
            if seeded is None:
                return
            db.executemany(
                "INSERT INTO entries (kind, key, seq, value) VALUES (?, ?, ?, ?)",
                ((*row, seq, value) for seq, (row, value) in enumerate(seeded.items())),
            )
            db.execute(
                "INSERT INTO meta (id, schema, revision, log_from) VALUES (0, ?, ?, ?)",
                (SCHEMA_VERSION, policy.revision, policy.revision + 1),
            )
            db.execute(
                "INSERT OR REPLACE INTO trust (id, seal) VALUES (0, ?)",
                (seal(SCHEMA_VERSION, digest(seeded)),),
            )
        self._state = None

    # ---------------------------------------------------------------- the seal

    def _reseal(self, revision: int, sealed: str) -> None:
        """Seal rows just validated whole (judged by another nvgw, edited by hand),
        if the store is still at their revision, so that the next start trusts
        them. A store we cannot write (busy, read-only) keeps its seal: the next
        start validates whole again, which is all it costs."""
        try:
            with self._lock, self._transaction("BEGIN IMMEDIATE") as db:
                db.execute(
                    "INSERT OR REPLACE INTO trust (id, seal)"
                    " SELECT 0, ? FROM meta WHERE revision = ?",
                    (sealed, revision),
                )
        except (StoreBusy, NotSaved):
            pass

    # ---------------------------------------------------------------- inside a transaction

    def _current(self, db: sqlite3.Connection) -> Placed | None:
        """The rows at the revision committed now: the cache if nothing moved since
        this backend last read or wrote them, else read again."""
        meta = db.execute("SELECT schema, revision FROM meta").fetchone()
        if meta is None:
            return None
        schema, revision = meta
        if schema != SCHEMA_VERSION:
            reason = f"its schema is version {schema}; this nvgw reads {SCHEMA_VERSION}"
            raise unreadable(self.url, "the store", reason)
        if self._state is not None and self._state.revision == revision:
            return self._state
        found = db.execute("SELECT kind, key, seq, value FROM entries")
        self._state = placed(revision, found)
        self._sealed = None  # not read with them: the next read is whole
        return self._state

    def _write(
        self, db: sqlite3.Connection, revision: int, seqs: dict[Row, int], delta: Delta
    ) -> None:
        """The rows that differ (each written at its place in ``seqs``), the log and
        the revision."""
        put, gone = delta
        db.executemany("DELETE FROM entries WHERE kind = ? AND key = ?", gone)
        db.executemany(
            "INSERT OR REPLACE INTO entries (kind, key, seq, value) VALUES (?, ?, ?, ?)",
            ((kind, key, seqs[(kind, key)], value) for (kind, key), value in put.items()),
        )
        log = [(revision, kind, key, "delete", None) for kind, key in gone]
        log += [(revision, kind, key, "put", value) for (kind, key), value in put.items()]
        db.executemany(
            "INSERT INTO changes (revision, kind, key, op, value) VALUES (?, ?, ?, ?, ?)", log
        )
        db.execute("UPDATE meta SET revision = ?", (revision,))
        self._trim(db)

    def _trim(self, db: sqlite3.Connection) -> None:
        """Keep the log's last ``CHANGES_KEPT`` rows, cut at a revision's boundary.
        Each step goes by id (the log's ids run on without gaps, rows leaving from
        the oldest end only, and revisions rise with them): the row to cut at is
        looked up in the id's b-tree, and the rows to delete are those before the
        first of a later revision. By ``OFFSET``, or by revision (no index), each
        change stepped over the whole log, 10^5 rows."""
        cut = db.execute(
            "SELECT id, revision FROM changes WHERE id <= (SELECT max(id) FROM changes) - ?"
            " ORDER BY id DESC LIMIT 1",
            (CHANGES_KEPT,),
        ).fetchone()
        if cut is None:
            return
        cut_id, revision = cut
        later = db.execute(
            "SELECT id FROM changes WHERE id > ? AND revision > ? ORDER BY id LIMIT 1",
            (cut_id, revision),
        ).fetchone()
        if later is None:  # one revision holds the whole log: it goes too
            db.execute("DELETE FROM changes")
        else:
            db.execute("DELETE FROM changes WHERE id < ?", later)
        db.execute("UPDATE meta SET log_from = ?", (revision + 1,))

    # ---------------------------------------------------------------- the connection

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = _open(self.path, self.url)
        return self._db

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        """One transaction, committed when the block ends and rolled back when it
        raises; SQLite's errors become the store's (StoreBusy, NotSaved)."""
        db = self._connection()
        try:
            db.execute(begin)
        except sqlite3.Error as error:
            raise _store_error(error, self.url) from None
        try:
            yield db
            db.execute("COMMIT")
        except BaseException as error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._state = None if isinstance(error, sqlite3.Error) else self._state
            if isinstance(error, sqlite3.Error):
                raise _store_error(error, self.url) from None
            raise


def _seal_of(db: sqlite3.Connection) -> str | None:
    found = db.execute("SELECT seal FROM trust").fetchone()
    return None if found is None else str(found[0])


def _open(path: Path, url: str) -> sqlite3.Connection:
    """The database, created with its tables if new, in WAL mode with FULL sync."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    except (OSError, sqlite3.Error) as error:
        raise unreadable(url, "the store", str(error)) from None
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        for statement in SCHEMA:
            db.execute(statement)
    except sqlite3.Error as error:
        db.close()
        raise unreadable(url, "the store", str(error)) from None
    return db


def _store_error(error: sqlite3.Error, url: str) -> Exception:
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if code == _SQLITE_BUSY:
        return StoreBusy(f"another writer has held {url} for {BUSY_TIMEOUT_S:.0f} s; try again")
    return NotSaved(url, str(error), _ERRNO.get(code, errno.EIO))
