"""A writer process for the SQLite store's crash and concurrency tests.

``python -m tests.control._sqlite_writer DB add FIRST COUNT``: add COUNT lookup
records (10.10.10.FIRST on), one change each, printing each change's revision.

``python -m tests.control._sqlite_writer DB crash POINT``: add one record and
SIGKILL this process at POINT of the change: ``validated`` (in ``prepare``, nothing
written), ``rows-written`` (the rows and the log written, the commit not begun),
``committing`` (inside SQLite's COMMIT, from its progress handler) or ``committed``
(the commit done, the daemon's swap not yet).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio

from gateway.control import sqlite_store
from gateway.control.edits import add
from gateway.control.kinds import LOOKUP_RECORDS
from gateway.control.store import PolicyStore
from gateway.policy import Policy


def record(n: int) -> dict[str, Any]:
    return {
        "vsid": 5010,
        "ca": f"10.10.10.{n}",
        "mac": f"00-00-00-00-03-{n:02x}",
        "pa": "198.18.0.2",
        "rule": "encap",
    }


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def main(database: Path, mode: str, *args: str) -> None:
    point = args[0] if mode == "crash" else None
    started = False

    def prepare(policy: Policy) -> Policy:
        if started and point == "validated":
            die()
        return policy

    async def commit(policy: Policy) -> None:
        if started and point == "committed":
            die()

    store = PolicyStore(f"sqlite:{database}", prepare, commit)
    await store.load()
    started = True
    if mode == "add":
        first, count = int(args[0]), int(args[1])
        for n in range(first, first + count):
            accepted = await store.change(add(LOOKUP_RECORDS, record(n)))
            print(accepted.policy.revision, flush=True)
        return
    backend = store.backend
    assert isinstance(backend, sqlite_store.SqliteBackend)
    trim = backend._trim

    def trim_then(db: Any) -> None:
        trim(db)
        if point == "rows-written":
            die()
        if point == "committing":  # the next statement run is the COMMIT
            db.set_progress_handler(die, 1)

    backend._trim = trim_then  # type: ignore[method-assign]
    await store.change(add(LOOKUP_RECORDS, record(200)))


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]), *sys.argv[2:])
