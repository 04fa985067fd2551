"""What says, with no query, that a database file may have been committed to: inotify
on its directory, for its names.

A daemon following a store others write (``PolicyStore.moves``) used to ask the
database for its revision every 20 ms, in a worker thread: on the project's machine
that poll alone kept an idle daemon at about 3.5 % of a core (the thread's round
trip, 0.4 ms of CPU each), and under load took the GIL from the packet loop fifty
times a second. A commit writes its files with ``write(2)`` (SQLite's WAL, or the
database itself when it checkpoints or runs without one), and every such write is an
inotify event, so the follower can sleep until one comes.

The directory is watched, not the files: SQLite creates the WAL and removes it as
connections come and go, and a watch on a file ends with it. Events for other names
in the directory are read and ignored. A full event queue (``IN_Q_OVERFLOW``) says
"maybe", as any event for the names does. Writes through a shared mapping raise no
event (SQLite's ``-shm`` index), and none comes from another machine: SQLite's WAL
mode needs every connection on one host, and the follower still asks the database
now and then (``BACKSTOP_S`` in ``store.py``), so a missed event costs delay, not the
change.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Final

from inotify_simple import INotify, flags

# A file written, created, moved in or removed (the WAL comes and goes); the watched
# directory itself removed or moved away (no more events: the backstop's query says).
WATCHED: Final = (
    flags.MODIFY
    | flags.CLOSE_WRITE
    | flags.CREATE
    | flags.MOVED_TO
    | flags.DELETE
    | flags.DELETE_SELF
    | flags.MOVE_SELF
)


class FileChanges:
    """inotify on ``directory`` for ``names``: ``fileno()`` becomes readable when
    something happened there; ``drain()`` reads every event and says whether one
    may have been a write to those names. Opened at once (OSError: no directory,
    or the user's inotify watches used up); ``close()`` is the caller's."""

    def __init__(self, directory: Path, names: Collection[str]) -> None:
        self._names = frozenset(names)
        self._inotify = INotify(nonblocking=True)
        try:
            self._inotify.add_watch(directory, WATCHED)
        except BaseException:
            self._inotify.close()
            raise

    def fileno(self) -> int:
        return self._inotify.fileno()

    def drain(self) -> bool:
        """Read what is queued; whether any of it may be a write to the names."""
        maybe = False
        while events := self._inotify.read(timeout=0):
            for event in events:
                if event.name in self._names or event.mask & (
                    flags.Q_OVERFLOW | flags.DELETE_SELF | flags.MOVE_SELF | flags.IGNORED
                ):
                    maybe = True
        return maybe

    def close(self) -> None:
        self._inotify.close()
