"""The file store (``file:PATH``): a node run read-only from its YAML config, for
small deployments and GitOps, where the file in a repository is the truth and a
tool rolls it out.

The file is read, validated and prepared at start and on every SIGHUP (in a worker
thread: a large policy's parse never stalls the packet loop); a file that does not
validate, or is gone or unreadable, is a ConfigError naming it, and the running
policy stays. The API reads the policy as it does from any store, but a change is
refused (``ReadOnly``, which the API answers with 405) naming the alternative: a
database store, seeded from this file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Final, Generic, TypeVar

from gateway.errors import ConfigError
from gateway.policy import Policy

from .config_file import line_of, policy_from_document, read_document
from .edits import Edit
from .store import Loaded, ReadOnly, unreadable

Prepared = TypeVar("Prepared")


class FileBackend(Generic[Prepared]):
    """One config file, read whole.

    A ``path`` that is a symlink is resolved here, once: from then on the store reads
    the file it pointed to, so a link re-pointed later is not followed silently (a
    reload names it, and a restart follows it).
    """

    follows = False  # SIGHUP re-reads it
    writable = False

    def __init__(self, path: Path, prepare: Callable[[Policy], Prepared]) -> None:
        self.path = path.resolve()
        self.url = f"file:{self.path}"
        self._prepare = prepare
        self._revision: int | None = None  # the policy's, as last read

    def read(self, seed: tuple[Policy, str] | None = None) -> Loaded[Prepared]:
        """The file's policy, validated and prepared. What ``prepare`` refuses is
        located in the file too (file and line per issue)."""
        if seed is not None:
            raise ValueError("a file store is its own config: it takes no seed")
        _check_still_a_file(self.path)
        document = read_document(self.path)
        policy = policy_from_document(document, self.path)
        try:
            prepared = self._prepare(policy)
        except ConfigError as error:
            name = str(self.path)
            issues = [replace(i, file=name, line=line_of(document, i.path)) for i in error.issues]
            raise ConfigError(issues) from None
        self._revision = policy.revision
        return Loaded(policy, prepared)

    def change(self, edit: Edit, if_revision: int | None) -> Loaded[Prepared]:
        raise ReadOnly(
            f"the policy is read from {self.url}, which the API does not change "
            "(edit the file and send SIGHUP): to change it through the API, run the "
            f"daemon with --store sqlite:PATH --config {self.path} (a database seeded "
            "from this file)"
        )

    def revision(self) -> int | None:
        return self._revision

    def change_feed(self) -> None:
        """None: nothing follows a file (SIGHUP re-reads it)."""
        return None

    def close(self) -> None:
        pass


def _check_still_a_file(path: Path) -> None:
    """A file gone (deleted, renamed away mid-save) or unreadable is a ConfigError
    naming it: a reload refused, never a daemon stopped. So is a link put where the
    file was: the store resolved the path's links once, at start, and follows no
    later one."""
    try:
        st = os.lstat(path)
    except OSError as error:
        raise unreadable(path, "the file", error.strerror or str(error)) from None
    if stat.S_ISLNK(st.st_mode):
        raise unreadable(path, "the file", _NOW_A_LINK)


_NOW_A_LINK: Final = (
    "it is now a symbolic link; --config's links are resolved once, at start: "
    "restart the daemon to follow this one"
)
