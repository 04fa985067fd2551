"""A writer process for the database stores' crash and concurrency tests.

``python -m tests.control._sqlite_writer DB add FIRST COUNT``: add COUNT lookup
records (10.10.10.FIRST on), one change each, printing each change's revision.

``python -m tests.control._sqlite_writer DB crash POINT``: add one record and
SIGKILL this process at POINT of the change: ``validated`` (in ``prepare``, nothing
written), ``rows-written`` (the rows and the log written, the commit not begun),
``committing`` (inside SQLite's COMMIT, from its progress handler) or ``committed``
(the commit done, the daemon's swap not yet).

DB may be an etcd store's URL (``etcd://...``) instead: its points are
``validated``, ``sent`` (etcd answered the transaction, the writer never read the
answer) and ``committed``.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import anyio

from gateway.control import etcd_store, sqlite_store
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


async def main(database: str, mode: str, *args: str) -> None:
    point = args[0] if mode == "crash" else None
    started = False

    def prepare(policy: Policy) -> Policy:
        if started and point == "validated":
            die()
        return policy

    async def commit(policy: Policy) -> None:
        if started and point == "committed":
            die()

    url = database if database.startswith("etcd://") else f"sqlite:{database}"
    store = PolicyStore(url, prepare, commit)
    await store.load()
    started = True
    if mode == "add":
        first, count = int(args[0]), int(args[1])
        for n in range(first, first + count):
            accepted = await store.change(add(LOOKUP_RECORDS, record(n)))
            print(accepted.policy.revision, flush=True)
        return
    backend = store.backend
    if isinstance(backend, etcd_store.EtcdBackend):
        call = backend._call

        def call_then(path: str, body: dict[str, Any], **options: Any) -> dict[str, Any]:
            answer = call(path, body, **options)
            if path == "/v3/kv/txn" and point == "sent":
                die()
            return answer

        backend._call = call_then  # type: ignore[method-assign]
        await store.change(add(LOOKUP_RECORDS, record(200)))
        return
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
    anyio.run(main, sys.argv[1], *sys.argv[2:])
