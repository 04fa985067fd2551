"""The file store (``file:PATH``): the config file, changed one validated revision
at a time. The file is the policy's only durable copy. A change is made like this,
under one lock:

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, Generic, TypeVar

import structlog

from gateway.errors import ConfigError
from gateway.policy import Policy, load_policy

from .config_file import line_of, policy_from_document, read_document, to_plain, write_document
from .edits import Edit
from .safe_files import NotDurable
from .store import Loaded, NotSaved, RevisionMismatch, StoreBusy, unreadable

log = structlog.get_logger("nvgw.store")
LOCK_TIMEOUT_S: Final = 10.0
Prepared = TypeVar("Prepared")


class FileBackend(Generic[Prepared]):
    """One config file (``file:PATH``), read and written whole.

    A ``path`` that is a symlink is resolved here, once: from then on the store reads
    and writes the file it pointed to (which keeps its link), so a link re-pointed
    later can never steer a write, made as root, to another file.
    """

    follows = False  # SIGHUP re-reads it: a file has no revision to poll cheaply

    def __init__(self, path: Path, prepare: Callable[[Policy], Prepared]) -> None:
        self.path = path.resolve()
        self.url = f"file:{self.path}"
        self._prepare = prepare
        self._document: Any = None  # the round-trip document last read or written
        self._identity: tuple[int, ...] | None = None  # the file's, when read or written
        self._revision: int | None = None  # the policy's, as last read or written

    def read(self, seed: tuple[Policy, str] | None = None) -> Loaded[Prepared]:
        """The file's policy, validated and prepared. What ``prepare`` refuses is
        located in the file too (file and line per issue)."""
        if seed is not None:
            raise ValueError("a file store is its own config: it takes no seed")
        identity = _identity(self.path)  # before reading: a later write then differs
        document = read_document(self.path)
        policy = policy_from_document(document, self.path)
        try:
            prepared = self._prepare(policy)
        except ConfigError as error:
            name = str(self.path)
            issues = [replace(i, file=name, line=line_of(document, i.path)) for i in error.issues]
            raise ConfigError(issues) from None
        self._keep(document, identity, policy.revision)
        return Loaded(policy, prepared)

    def revision(self) -> int | None:
        return self._revision

    def close(self) -> None:
        pass

    def _keep(self, document: Any, identity: tuple[int, ...], revision: int) -> None:
        self._document, self._identity, self._revision = document, identity, revision

    def change(self, edit: Edit, if_revision: int | None) -> Loaded[Prepared]:
        """The edit is tried on a plain copy first and validated; only a valid change
        touches the round-trip document, which therefore never holds a refused one.
        The file is parsed again only if it changed since this store last read or
        wrote it (a hand edit, another daemon): parsing YAML is the slow part."""
        with _locked_directory(self.path):
            if self._document is not None and _identity(self.path) == self._identity:
                assert self._revision is not None
                document, revision = self._document, self._revision
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
                raise NotSaved.of(self.path, error) from None
            except BaseException:
                self._forget()
                raise
            self._keep(document, _identity_of(written), policy.revision)
            return Loaded(policy, prepared, result)

    def _forget(self) -> None:
        """The cached document may hold part of a change that was not saved: drop it,
        so that the next change reads the file (which never got it) again."""
        self._document, self._identity, self._revision = None, None, None


def _identity(path: Path) -> tuple[int, ...]:
    """What changes when anyone replaces or rewrites the file. A file gone (deleted,
    renamed away mid-save) or unreadable is a ConfigError naming it: a reload or a
    change refused, never a daemon stopped. So is a link put where the file was: the
    store resolved the path's links once, at start, and follows no later one."""
    try:
        st = os.lstat(path)
    except OSError as error:
        raise unreadable(path, "the file", error.strerror or str(error)) from None
    if stat.S_ISLNK(st.st_mode):
        raise unreadable(path, "the file", _NOW_A_LINK)
    return _identity_of(st)


_NOW_A_LINK: Final = (
    "it is now a symbolic link; --config's links are resolved once, at start: "
    "restart the daemon to follow this one"
)


def _identity_of(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


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
        raise unreadable(path, f"its directory {directory}", reason) from None
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
