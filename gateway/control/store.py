"""The policy store: one interface, whatever keeps the policy.

A store holds the policy at a revision and changes it one validated revision at a
time. What keeps it is a backend, picked by ``--store`` (``open_backend``):

- ``sqlite:PATH`` (the default, ``sqlite_store.py``): a database with a row per
  entry, a revision counter and a log of changes; several daemons may share one
  (a lab) and each follows the others' writes as its files change (inotify,
  ``file_changes.py``), asking its revision then;
- ``etcd://HOST:PORT/PREFIX`` (``etcd_store.py``): a key per entry under a prefix of
  an etcd cluster, for a gateway cluster on several machines; each daemon follows
  the others' writes through a watch;
- ``file:PATH`` (``file_store.py``): the YAML config file itself, read-only, re-read
  on SIGHUP.

Every backend keeps the same promises, which this front relies on:

1. a change is applied to the policy as it is committed now (another daemon may
   have moved it on), conditional on the caller's revision (``RevisionMismatch``);
2. it is validated, with the config loader's checks (a change of lookup records
   against the policy's indexes, ``incremental.py``; any other whole) and then the
   daemon's own (``prepare``: IPv6 it cannot forward, provider addresses it cannot
   rebind);
3. it is made durable, and only then
4. swapped into the data plane (``commit``, here, on the event loop).

A refusal at 1 or 2 leaves the store and the running policy exactly as they were,
and so does a write that fails at 3 (``NotSaved``, ``StoreBusy``). A crash after 3
comes back with the change. Steps 1 to 3 run in a worker thread, so a large
policy's validation never stalls the packet loop; writers in this process queue on
an anyio lock, writers in others on the backend's own (a database lock, an flock).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, Final, Generic, NamedTuple, Protocol, TypeVar

import anyio
import structlog

import gateway
from gateway.errors import ConfigError, ConfigIssue
from gateway.policy import Policy, kept_build, load_policy

from .config_file import to_plain
from .edits import Edit
from .incremental import RecordChanges, advanced
from .policy_rows import (
    Delta,
    Placed,
    Row,
    Rows,
    digest_after,
    moved,
    net,
    placed_document,
    rows,
)

Prepared = TypeVar("Prepared")
DEFAULT_STORE: Final = "sqlite:/var/lib/nvgw/policy.db"
SCHEMES: Final = ("sqlite", "etcd", "file")


class RevisionMismatch(Exception):
    """The change was conditional on a revision the policy has moved past."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(
            f"the policy is at revision {actual}, not {expected}: "
            "read it again and retry against the new revision"
        )
        self.expected = expected
        self.actual = actual


class ApplyError(Exception):
    """The change is saved and in force, but the node could not apply all of it (a
    TAP it could not create): the message says what is missing and why."""


class StoreBusy(Exception):
    """Another writer held the store's lock for longer than we wait."""


class StoreUnavailable(StoreBusy):
    """The store's server cannot be reached, did not answer in time or refused us:
    nothing was changed; the message names the store and what to do (503, as for a
    busy store: the same request may succeed later)."""


class NotSaved(Exception):
    """A valid change the store could not take (disk full, an I/O error, a read-only
    filesystem): nothing of it is kept, in the store, the running policy or the
    store's cache. ``errno`` says which (the API answers 507 for a full disk, 500
    otherwise)."""

    def __init__(self, where: str, reason: str, errno: int | None) -> None:
        super().__init__(f"the change was not saved: cannot write {where}: {reason}")
        self.errno = errno

    @classmethod
    def of(cls, path: Path, error: OSError) -> NotSaved:
        return cls(str(path), error.strerror or str(error), error.errno)


class ReadOnly(Exception):
    """The store takes no changes (``file:``, a GitOps deployment): the message names
    the alternative. Nothing was changed."""


class StoreConflict(Exception):
    """A database store and ``--config`` both hold a policy, and they differ: neither
    is overwritten; the message names both and the two ways out."""


# What a verb that opens a store directly reports as a message (exit 1); a
# StoreUnavailable is a StoreBusy.
STORE_ERRORS: Final = (ReadOnly, RevisionMismatch, StoreBusy, StoreConflict, NotSaved)


@dataclass(frozen=True)
class Accepted:
    """An applied change: the new policy, and what the edit reports (the entry added,
    the entries removed, where a VM went)."""

    policy: Policy
    result: Any


@dataclass(frozen=True)
class Loaded(Generic[Prepared]):
    """A policy as a backend read or wrote it, prepared by the daemon."""

    policy: Policy
    prepared: Prepared
    result: Any = None


class Backend(Protocol[Prepared]):
    """What keeps the policy. Every method but ``__init__`` runs in a worker thread
    (it may block on disk and on other processes' locks) and raises ConfigError for
    a policy that does not validate or that ``prepare`` refuses."""

    url: str  # sqlite:/var/lib/nvgw/policy.db: names the store in messages
    path: Path | None  # the file that holds it (the daemon checks its user may write
    # it); None: a server holds it (etcd)
    follows: bool  # whether a daemon follows others' writes (``PolicyStore.moves``)
    writable: bool  # whether ``change`` may succeed (file: never, it is ReadOnly)

    def read(self, seed: tuple[Policy, str] | None = None) -> Loaded[Prepared]:
        """The policy committed now, validated and prepared. ``seed`` (a policy and
        where it came from: ``--config``) is committed first into an empty store;
        a store holding another policy is a ``StoreConflict``."""
        ...

    def change(self, edit: Edit, if_revision: int | None) -> Loaded[Prepared]:
        """Apply ``edit`` to the policy committed now as the next revision, or
        refuse it (RevisionMismatch, NotFound, Exists, ConfigError, StoreBusy,
        NotSaved, ReadOnly) and change nothing."""
        ...

    def revision(self) -> int | None:
        """The revision committed now, cheaply (None: no policy yet)."""
        ...

    def change_feed(self) -> ChangeFeed | None:
        """What says, with no query, that another writer may have committed (the
        event loop's call, not a worker thread's: it opens at most an fd); None:
        ``revision()`` is asked every ``POLL_S``. OSError when it cannot be had."""
        ...

    def close(self) -> None: ...


class ChangeFeed(Protocol):
    """An fd that becomes readable when the store may have moved
    (``file_changes.FileChanges``, ``etcd_watch.Feed``)."""

    def fileno(self) -> int: ...

    def drain(self) -> bool:
        """Read what is queued; whether any of it may be a commit."""
        ...

    def close(self) -> None: ...


def parse_store(url: str | Path) -> tuple[str, str]:
    """``sqlite:PATH``, ``etcd://HOST:PORT/PREFIX`` or ``file:PATH`` as (scheme, the
    rest: a path, or the etcd URL whole); a bare Path is a file (the in-process
    callers that hand a config path). ValueError names the forms."""
    if isinstance(url, Path):
        return "file", str(url)
    scheme, colon, rest = url.partition(":")
    if not colon or scheme not in SCHEMES or not rest:
        raise ValueError(
            f"{url!r} is not a store: sqlite:PATH (a database, the default "
            f"{DEFAULT_STORE}), etcd://HOST:PORT/PREFIX (a cluster's) or file:PATH "
            "(a YAML config, read-only)"
        )
    if scheme == "etcd":
        from .etcd_store import parse_etcd

        parse_etcd(url)
        return scheme, url
    return scheme, rest.removeprefix("//")


def open_backend(url: str | Path, prepare: Callable[[Policy], Prepared]) -> Backend[Prepared]:
    """The backend ``url`` names. Opens nothing yet: the first read does, in a thread."""
    scheme, where = parse_store(url)
    if scheme == "sqlite":
        from .sqlite_store import SqliteBackend

        return SqliteBackend(Path(where), prepare)
    if scheme == "etcd":
        from .etcd_store import EtcdBackend

        return EtcdBackend(where, prepare)
    from .file_store import FileBackend

    return FileBackend(Path(where), prepare)


POLL_S: Final = 0.02  # a backend with no feed: its revision asked this often
BACKSTOP_S: Final = 1.0  # with one, asked this often all the same (an event missed)
SETTLE_S: Final = 0.25  # and every POLL_S this long after an event (the commit's sync)

log = structlog.get_logger("nvgw.store")


class PolicyStore(Generic[Prepared]):
    """A backend and the running policy read from it.

    ``prepare`` turns a validated policy into what the daemon will swap in (and may
    refuse it with a ConfigError); ``commit`` swaps it in. Both come from the daemon,
    so the store knows nothing of data planes.
    """

    def __init__(
        self,
        url: str | Path,
        prepare: Callable[[Policy], Prepared],
        commit: Callable[[Prepared], Awaitable[None]],
    ) -> None:
        self.backend: Backend[Prepared] = open_backend(url, prepare)
        self.url = self.backend.url
        self.path = self.backend.path
        self._commit = commit
        self._lock = anyio.Lock()
        self.policy: Policy | None = None
        self.changes = {"applied": 0, "refused": 0}  # through change(), for /metrics

    async def load(
        self, seed: tuple[Policy, str] | None = None, *, moved_only: bool = False
    ) -> Policy | None:
        """Read, validate and swap in the policy as committed now (start-up, SIGHUP,
        another daemon's write: a database backend takes that by its delta, where it
        can, ``followed``); ``seed`` fills an empty store first (``--config``).
        ``moved_only``: only if the store is at another revision than the running
        policy, else None (a follower that saw this store's own change committed)."""
        async with self._lock:
            if moved_only and self.policy is not None:
                revision = await anyio.to_thread.run_sync(self.backend.revision)
                if revision == self.policy.revision:
                    return None
            loaded = await anyio.to_thread.run_sync(self._read, seed)
            try:
                await self._commit(loaded.prepared)
            finally:
                self.policy = loaded.policy
            return loaded.policy

    def _read(self, seed: tuple[Policy, str] | None) -> Loaded[Prepared]:
        """The backend's read (a worker thread's call), what it builds kept from the
        collector's passes afterwards when it is a whole load (``kept_build``)."""
        with kept_build():
            return self.backend.read(seed)

    def _change(self, edit: Edit, if_revision: int | None) -> Loaded[Prepared]:
        """The backend's change (a worker thread's call), kept as ``_read`` keeps a
        load: a batch of 10^5 records builds as much as a whole load does."""
        with kept_build():
            return self.backend.change(edit, if_revision)

    async def change(self, edit: Edit, if_revision: int | None = None) -> Accepted:
        """Apply one edit as a new revision, or refuse it and change nothing.

        Raises RevisionMismatch, NotFound (from the edit), ConfigError (the edited
        policy is invalid, each issue with the path of the entry at fault), StoreBusy,
        NotSaved, ReadOnly; ApplyError from ``commit`` once the change is saved and
        swapped in.
        """
        async with self._lock:
            try:
                written = await anyio.to_thread.run_sync(self._change, edit, if_revision)
            except Exception:  # ConfigError, NotFound, RevisionMismatch, StoreBusy, NotSaved
                self.changes["refused"] += 1  # and whatever else: nothing was kept
                raise
            try:
                await self._commit(written.prepared)
            finally:  # the store has it, and the data plane runs it, even if partly
                self.policy = written.policy
                self.changes["applied"] += 1
            return Accepted(written.policy, written.result)

    async def committed_revision(self) -> int | None:
        """The revision the backend holds now (another daemon may have moved it on)."""
        return await anyio.to_thread.run_sync(self.backend.revision)

    @contextlib.asynccontextmanager
    async def moves(self) -> AsyncIterator[Callable[[], Awaitable[None]]]:
        """A ``wait()`` for a follower (the daemon's, ``bench/api_follow.py``'s):
        it returns when another writer may have committed, after which the follower
        asks ``committed_revision``. With the backend's feed (SQLite's files,
        ``file_changes.py``; etcd's watch, ``etcd_watch.Signals``): at an event,
        then every ``POLL_S`` until ``SETTLE_S`` after the last one, since a
        SQLite commit's writes come before it can be seen (SQLite syncs the WAL,
        then publishes the commit in shared memory, which raises no event), and
        after ``BACKSTOP_S`` at the latest; without one, every ``POLL_S``. The waits
        also poll for ``SETTLE_S`` after the feed opens, so a commit made before it
        did (after the follower's last read) is seen as soon."""
        try:
            feed = self.backend.change_feed()
        except OSError as error:  # inotify's limits reached: poll, and say so
            log.warning("store changes not watched: polling", store=self.url, reason=str(error))
            feed = None
        if feed is None:
            yield partial(anyio.sleep, POLL_S)
            return
        fd = feed.fileno()
        settled = anyio.current_time() + SETTLE_S  # until when a commit may still show

        async def wait() -> None:
            nonlocal settled
            if anyio.current_time() < settled:
                await anyio.sleep(POLL_S)
                event = feed.drain()
            else:
                event = False
                with anyio.move_on_after(BACKSTOP_S):
                    while not feed.drain():
                        await anyio.wait_readable(fd)
                    event = True
            if event:
                settled = anyio.current_time() + SETTLE_S

        try:
            yield wait
        finally:
            feed.close()

    def read(self) -> tuple[Policy, Prepared]:
        """The store's policy, validated and prepared but not swapped in (a worker
        thread's call)."""
        loaded = self.backend.read()
        return loaded.policy, loaded.prepared

    def close(self) -> None:
        self.backend.close()


# ---------------------------------------------------------------- what database backends share


class Written(NamedTuple):
    """A change as a database backend commits it: the new policy, prepared, what the
    edit reports, the rows that differ (``delta``) with each new row's place, and,
    for a change validated whole, the rows after it."""

    policy: Policy
    prepared: Any
    result: Any
    delta: Delta
    seqs: Mapping[Row, int]
    whole: Placed | None

    def rows(self, state: Placed) -> Placed:
        """The rows once it is committed (``state``'s own, updated in place, for a
        change of lookup records: O(change)). Only after the commit."""
        if self.whole is not None:
            return self.whole
        return advanced(state, self.policy.revision, self.delta, self.seqs)


def written(
    records: RecordChanges, state: Placed, edit: Edit, prepare: Callable[[Policy], Prepared]
) -> Written:
    """``edit`` on the rows of ``state``, validated and prepared: against the index
    (``records``) when it adds or removes entries of a kind the API serves or
    migrates a VM, whole otherwise (a replacement). Refusals as ``edited``'s; the caller
    forgets ``records`` if it does not commit."""
    taken = records.change(state, edit, prepare)
    if taken is not None:
        return Written(*taken, None)
    policy, prepared, result = edited(state, edit, prepare)
    new, delta = moved(state, policy)
    return Written(policy, prepared, result, delta, new.seqs, new)


def followed(
    records: RecordChanges,
    state: Placed,
    now: Mapping[Row, tuple[int, str] | None],
    revision: int,
    seals: tuple[str | None, str | None],
    schema: int,
) -> tuple[Policy, Placed] | None:
    """The policy and rows another writer's changes made of ``state`` (``now``: each
    row they touched, as committed at ``revision``), in O(change), or None: read
    the whole policy. ``seals``: the store's seal of ``state`` and its seal now;
    the delta must move the one to the other, which proves that the rows it reads
    are those a writer of this nvgw validated and sealed (a row edited behind the
    store's back, or sealed by another nvgw, breaks it). The new records are still
    judged by the index's checks (cheap), as a change of them is on the writer."""
    change, seqs = net(state, now)
    before, after = seals
    if before is None or sealed_after(before, schema, state.entries, change) != after:
        return None
    try:
        policy = records.follow(state, change, seqs, revision)
    except ConfigError:  # the whole read reports it, naming the store
        return None
    if policy is None:
        return None
    return policy, advanced(state, revision, change, seqs)


def edited(
    state: Placed, edit: Edit, prepare: Callable[[Policy], Prepared]
) -> tuple[Policy, Prepared, Any]:
    """The policy ``edit`` makes of the rows committed now, as the next revision,
    validated and prepared, and what the edit reports: what every database backend
    commits, or the refusal (ConfigError, NotFound, Exists) that changes nothing.
    Whole-policy validation: issues name the entry at fault, not a line."""
    trial = placed_document(state)
    result = edit(trial)
    trial["revision"] = state.revision + 1
    policy = load_policy(to_plain(trial))
    return policy, prepare(policy), result


def seal(schema: int, rows_digest: int) -> str:
    """What a database store keeps beside rows this nvgw validated together: their
    digest (``policy_rows.digest``) with the store's schema version and nvgw's own
    (whose checks judged them). A start whose rows give back the seal skips the
    cross-entity checks; rows edited behind the store's back, or judged by another
    nvgw, do not, and are validated whole again."""
    return f"{schema}/{_version()}/{rows_digest:032x}"


@cache
def _version() -> str:
    """nvgw's version, read once: ``gateway.__version__`` reads the package's
    metadata at each use (5 ms: twice a change, a quarter of the change's budget)."""
    return gateway.__version__


def sealed_after(
    stored: str | None, schema: int, entries: Mapping[Row, str], change: Delta
) -> str | None:
    """The seal once ``change`` is committed to ``entries``, in O(change), or None
    when ``stored`` is no seal of this nvgw (none, another version's): it stays as
    it is, and the next start validates the rows whole and seals them."""
    if stored is None:
        return None
    versions, _, hex_digest = stored.rpartition("/")
    if versions != seal(schema, 0).rpartition("/")[0]:
        return None
    return seal(schema, digest_after(int(hex_digest, 16), entries, change))


def seeding(state: Placed | None, policy: Policy, source: str, url: str) -> Rows | None:
    """The rows to commit to seed a store holding ``state`` with ``policy`` (from
    ``source``, ``--config``): all of them into an empty store; None when it holds
    the same entries already (a restart with the same ``--config``); a StoreConflict
    when it holds others: never overwritten."""
    seeded = rows(policy)
    if state is None:
        return seeded
    if state.entries != seeded:
        raise conflict(url, state.revision, source)
    return None


def conflict(url: str, revision: int, source: str) -> StoreConflict:
    """A store and ``--config`` both holding a policy, different ones."""
    return StoreConflict(
        f"both {url} (revision {revision}) and {source} hold a policy, and they differ: "
        f"nothing was overwritten. To run the file's, make the store equal to it with "
        f"`nvgw apply --store {url} {source}`; to run the store's, start without --config"
    )


def empty(url: str) -> ConfigError:
    """What reading a database store that holds no policy yet says."""
    message = (
        "the store holds no policy yet: seed it with `nvgw run --config FILE`, "
        f"or `nvgw apply --store {url} FILE`"
    )
    return ConfigError([ConfigIssue("", None, message, url)])


def unreadable(where: str | Path, what: str, reason: str) -> ConfigError:
    """A store that cannot be read, as the ConfigError a reload or a change reports."""
    return ConfigError([ConfigIssue("", None, f"cannot read {what}: {reason}", str(where))])


def refusal(error: ConfigError) -> list[dict[str, Any]]:
    """A ConfigError's issues as JSON for the API's answers."""
    return [_issue_json(issue) for issue in error.issues]


def _issue_json(issue: ConfigIssue) -> dict[str, Any]:
    out: dict[str, Any] = {"path": issue.path, "message": issue.message}
    if issue.value is not None:
        out["value"] = issue.value if isinstance(issue.value, int | str) else str(issue.value)
    if issue.file:
        out["file"] = issue.file
    if issue.line:
        out["line"] = issue.line
    return out
