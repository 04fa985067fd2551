"""``file_changes.FileChanges``: inotify on a directory for some names. A write to
one of them, its creation or removal makes the fd readable and ``drain`` say so; a
write to another name is read and ignored; nothing queued is nothing; the directory
itself removed says "maybe" (nothing will come from it again); a flood of events
larger than the kernel's queue ends in its overflow event, which says "maybe" too,
and is read whole."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.control.file_changes import FileChanges

NAMES = ("policy.db", "policy.db-wal")


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[FileChanges]:
    (tmp_path / "policy.db").write_bytes(b"")
    changes = FileChanges(tmp_path, NAMES)
    yield changes
    changes.close()


def readable(changes: FileChanges) -> bool:
    return bool(select.select([changes], [], [], 0)[0])


def test_nothing_written_is_nothing(watched: FileChanges) -> None:
    assert not readable(watched)
    assert watched.drain() is False


def test_a_write_to_a_watched_name_says_so_once(tmp_path: Path, watched: FileChanges) -> None:
    with open(tmp_path / "policy.db", "ab") as db:
        db.write(b"a commit")
    assert readable(watched)
    assert watched.drain() is True
    assert not readable(watched) and watched.drain() is False, "read whole the first time"


def test_the_wal_created_written_and_removed_is_seen(tmp_path: Path, watched: FileChanges) -> None:
    wal = tmp_path / "policy.db-wal"
    wal.write_bytes(b"frames")
    assert watched.drain() is True
    wal.unlink()
    assert watched.drain() is True


def test_another_name_in_the_directory_is_ignored(tmp_path: Path, watched: FileChanges) -> None:
    (tmp_path / "other.log").write_bytes(b"not the store")
    (tmp_path / "policy.db-shm").write_bytes(b"SQLite's index: written through a mapping")
    assert readable(watched)
    assert watched.drain() is False
    assert not readable(watched)


def test_the_directory_removed_says_maybe(tmp_path: Path) -> None:
    directory = tmp_path / "store"
    directory.mkdir()
    changes = FileChanges(directory, NAMES)
    try:
        directory.rmdir()
        assert changes.drain() is True
    finally:
        changes.close()


def test_a_flood_of_events_ends_in_the_overflow_and_is_read_whole(
    tmp_path: Path, watched: FileChanges
) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 1 << 17:
        pytest.skip(f"max_queued_events is {limit}: too many writes to overflow it here")
    # The kernel merges an event with the one queued last if they are the same: two
    # files written in turn queue one IN_MODIFY per write, more than the queue holds.
    fds = [os.open(tmp_path / name, os.O_WRONLY | os.O_CREAT) for name in ("a.log", "b.log")]
    try:
        for n in range(limit + 10):
            os.write(fds[n % 2], b"x")
    finally:
        for fd in fds:
            os.close(fd)
    assert watched.drain() is True  # the overflow: anything may have been missed
    assert not readable(watched)


def test_no_directory_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        FileChanges(tmp_path / "absent", NAMES)
