"""The policy store: the config file, changed one validated revision at a time.

The ``--config`` file is the policy's only durable copy (no database, no second
file). A change is made like this, under one lock:

1. take the file as it is on disk now (another daemon sharing it, or a hand edit,
   may have moved it on: it is parsed again if so) and check the caller's revision
   condition;
2. apply the edit to a plain copy, bump ``revision:``, and validate the whole result
   with the config loader, then with the daemon's own checks (``prepare``: IPv6 it
   cannot forward, provider addresses it cannot rebind); then to the document;
3. write it atomically and durably (``replace_file``: a unique temp file, fsync,
   rename, fsync the directory; the file's mode and owner kept);
4. only then swap it into the data plane (``commit``).

A refusal at 1 or 2 leaves the file and the running policy exactly as they were, and
so does a write that fails at 3 (disk full: ``NotSaved``), whose half-edited cached
document is dropped; a file gone or unreadable is a ConfigError naming it, like a
file that does not validate. A crash after 3 comes back with the change, because the
file already holds it. Steps 1 to 3 run in a worker thread, so a large policy's parse
and validation never stall the packet loop. Writers in this process queue on an
anyio lock; daemons sharing one file (a lab) also take an flock on its directory,
which the rename leaves in place.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import anyio
import structlog

from gateway.errors import ConfigError, ConfigIssue
from gateway.policy import Policy, load_policy

from .config_file import line_of, policy_from_document, read_document, to_plain, write_document
from .edits import Edit
from .safe_files import NotDurable

log = structlog.get_logger("nvgw.store")
LOCK_TIMEOUT_S: Final = 10.0
Prepared = TypeVar("Prepared")


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
    """Another writer held the file's lock for longer than we wait."""


class NotSaved(Exception):
    """A valid change the file could not take (disk full, an I/O error, a read-only
    filesystem): nothing of it is kept, in the file, the running policy or the
    store's cached document. ``errno`` says which (the API answers 507 for a full
    disk, 500 otherwise)."""

    def __init__(self, path: Path, error: OSError) -> None:
        super().__init__(
            f"the change was not saved: cannot write {path}: {error.strerror or error}"
        )
        self.errno = error.errno


@dataclass(frozen=True)
class Accepted:
    """An applied change: the new policy, and what the edit reports (the entry added,
    the entries removed, where a VM went)."""

    policy: Policy
    result: Any


class PolicyStore(Generic[Prepared]):
    """One config file and the running policy read from it.

    ``prepare`` turns a validated policy into what the daemon will swap in (and may
    refuse it with a ConfigError); ``commit`` swaps it in. Both come from the daemon,
    so the store knows nothing of data planes.

    A ``path`` that is a symlink is resolved here, once: from then on the store reads
    and writes the file it pointed to (which keeps its link), so a link re-pointed
    later can never steer a write, made as root, to another file.
    """

    def __init__(
        self,
        path: Path,
        prepare: Callable[[Policy], Prepared],
        commit: Callable[[Prepared], Awaitable[None]],
    ) -> None:
        self.path = path.resolve()
        self._prepare = prepare
        self._commit = commit
        self._lock = anyio.Lock()
        self.policy: Policy | None = None
        self._document: Any = None  # the round-trip document the running policy came from
        self._identity: tuple[int, ...] | None = None  # the file's, when read or written
        self.changes = {"applied": 0, "refused": 0}  # through change(), for /metrics

    async def load(self) -> Policy:
        """Read, validate and swap in the file as it is (start-up and SIGHUP)."""
        async with self._lock:
            loaded = await anyio.to_thread.run_sync(self._read)
            try:
                await self._commit(loaded.prepared)
            finally:
                self._keep(loaded)
            return loaded.policy

    async def change(self, edit: Edit, if_revision: int | None = None) -> Accepted:
        """Apply one edit as a new revision, or refuse it and change nothing.

        Raises RevisionMismatch, NotFound (from the edit), ConfigError (the edited
        policy is invalid, each issue with the path of the entry at fault), StoreBusy;
        ApplyError from ``commit`` once the change is saved and swapped in.
        """
        async with self._lock:
            try:
                written = await anyio.to_thread.run_sync(self._edit_and_write, edit, if_revision)
            except Exception:  # ConfigError, NotFound, RevisionMismatch, StoreBusy, NotSaved
                self.changes["refused"] += 1  # and whatever else: nothing was kept
                raise
            try:
                await self._commit(written.prepared)
            finally:  # the file has it, and the data plane runs it, even if partly
                self._keep(written)
                self.changes["applied"] += 1
            return Accepted(written.policy, written.result)

    def _keep(self, state: _FileState[Prepared]) -> None:
        self.policy = state.policy
        self._document, self._identity = state.document, state.identity

    # ------------------------------------------------ worker thread: no event loop here

    def read(self) -> tuple[Policy, Prepared]:
        """The file's policy, validated and prepared but not swapped in. What
        ``prepare`` refuses is located in the file too (file and line per issue)."""
        loaded = self._read()
        return loaded.policy, loaded.prepared

    def _read(self) -> _FileState[Prepared]:
        identity = _identity(self.path)  # before reading: a later write then differs
        document = read_document(self.path)
        policy = policy_from_document(document, self.path)
        try:
            prepared = self._prepare(policy)
        except ConfigError as error:
            name = str(self.path)
            issues = [replace(i, file=name, line=line_of(document, i.path)) for i in error.issues]
            raise ConfigError(issues) from None
        return _FileState(policy, prepared, document, identity)

    def _edit_and_write(self, edit: Edit, if_revision: int | None) -> _FileState[Prepared]:
        """The edit is tried on a plain copy first and validated; only a valid change
        touches the round-trip document, which therefore never holds a refused one.
        The file is parsed again only if it changed since this store last read or
        wrote it (a hand edit, another daemon): parsing YAML is the slow part."""
        with _locked_directory(self.path):
            if self._document is not None and _identity(self.path) == self._identity:
                assert self.policy is not None
                document, revision = self._document, self.policy.revision
            else:
                document = read_document(self.path)
                revision = policy_from_document(document, self.path).revision  # broken: stop
            if if_revision is not None and if_revision != revision:
                raise RevisionMismatch(if_revision, revision)
            trial = to_plain(document)
            result = edit(trial)
            trial["revision"] = revision + 1
            policy = load_policy(to_plain(trial))  # issues name the entry, not a line
            prepared = self._prepare(policy)
            try:
                edit(document)
                _set_revision(document, revision + 1)
                written = write_document(self.path, document)
            except NotDurable as error:  # in place, every reader sees it: it stands
                log.warning("config written but not yet durable", reason=str(error))
                written = error.written
            except OSError as error:
                self._forget()
                raise NotSaved(self.path, error) from None
            except BaseException:
                self._forget()
                raise
            return _FileState(policy, prepared, document, _identity_of(written), result)

    def _forget(self) -> None:
        """The cached document may hold part of a change that was not saved: drop it,
        so that the next change reads the file (which never got it) again."""
        self._document, self._identity = None, None


@dataclass(frozen=True)
class _FileState(Generic[Prepared]):
    """A policy as read from or written to the file, and what the store keeps of it."""

    policy: Policy
    prepared: Prepared
    document: Any
    identity: tuple[int, ...]
    result: Any = None


def _identity(path: Path) -> tuple[int, ...]:
    """What changes when anyone replaces or rewrites the file. A file gone (deleted,
    renamed away mid-save) or unreadable is a ConfigError naming it: a reload or a
    change refused, never a daemon stopped. So is a link put where the file was: the
    store resolved the path's links once, at start, and follows no later one."""
    try:
        st = os.lstat(path)
    except OSError as error:
        raise _unreadable(path, "the file", error.strerror or str(error)) from None
    if stat.S_ISLNK(st.st_mode):
        raise _unreadable(path, "the file", _NOW_A_LINK)
    return _identity_of(st)


_NOW_A_LINK: Final = (
    "it is now a symbolic link; --config's links are resolved once, at start: "
    "restart the daemon to follow this one"
)


def _identity_of(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _unreadable(path: Path, what: str, reason: str) -> ConfigError:
    return ConfigError([ConfigIssue("", None, f"cannot read {what}: {reason}", str(path))])


def _set_revision(document: Any, revision: int) -> None:
    if "revision" in document:
        document["revision"] = revision
    else:
        document.insert(0, "revision", revision)


@contextmanager
def _locked_directory(path: Path) -> Iterator[None]:
    """An exclusive flock on the config's directory: the one thing every process
    writing that file shares, since each write replaces the file's inode."""
    directory = path.parent
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as error:
        reason = error.strerror or str(error)
        raise _unreadable(path, f"its directory {directory}", reason) from None
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreBusy(
                        f"another writer has held the lock on {directory} for "
                        f"{LOCK_TIMEOUT_S:.0f} s; try again"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing the fd releases the lock


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
