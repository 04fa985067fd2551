"""A change the database could not take (a full disk) is answered with the reason
and leaves no trace: not in the database, not in the running policy, not in
the store's cached rows, where it would ride along with the next, unrelated change.

The disk is real: a 256 KiB tmpfs (conftest.py), filled to the last byte. (A
read-only remount, as the file store's tests made, is refused while SQLite holds
the database open for writing.) The API runs in process, on both anyio backends.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.control import load_config
from gateway.control.api import build_api
from gateway.control.store import PolicyStore
from gateway.policy import Policy

from ._disk import fill
from ._node import host1_prepare

pytestmark = pytest.mark.anyio
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def record(ca: str, vm: str) -> dict[str, Any]:
    mac = f"00-00-00-00-00-{ca.rsplit('.', 1)[1]}"
    return {"vsid": 5010, "ca": ca, "mac": mac, "pa": "198.18.0.2", "rule": "encap", "vm": vm}


class Node:
    """What the daemon would run: every policy swapped in, in order."""

    def __init__(self) -> None:
        self.committed: list[int] = []
        self.store: PolicyStore[Policy]

    async def commit(self, policy: Policy) -> None:
        self.committed.append(policy.revision)


@pytest.fixture
async def node(small_disk: Path) -> AsyncIterator[tuple[Node, httpx.AsyncClient]]:
    running = Node()
    running.store = PolicyStore(f"sqlite:{small_disk}/p.db", host1_prepare(), running.commit)
    await running.store.load((load_config(CONFIGS / "two-hosts.yaml"), "two-hosts.yaml"))
    app = build_api(running.store, "host1", dict)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://nvgw") as client:
            yield running, client
    finally:
        running.store.close()  # the disk is unmounted next


async def vms(api: httpx.AsyncClient) -> set[str]:
    answer = await api.get("/v1/lookup-records")
    return {item.get("vm") for item in answer.json()["items"]}


def held(database: Path) -> list[list[tuple[Any, ...]]]:
    """The database's revision, rows and log, read by another connection."""
    with closing(sqlite3.connect(database)) as db:
        return [
            list(db.execute(f"SELECT * FROM {table} ORDER BY 1, 2"))
            for table in ("meta", "entries", "changes")
        ]


def records(database: Path) -> set[str]:
    with closing(sqlite3.connect(database)) as db:
        return {
            key for (key,) in db.execute("SELECT key FROM entries WHERE kind = 'lookup-records'")
        }


async def test_a_change_the_full_disk_refused_is_507_and_never_applied_later(
    node: tuple[Node, httpx.AsyncClient], small_disk: Path
) -> None:
    running, api = node
    database = running.store.path
    before = held(database)
    filler = fill(small_disk, spare=0)
    failed = await api.post("/v1/lookup-records", json=record("10.10.10.13", "blue3"))
    assert failed.status_code == 507, failed.text
    error = failed.json()["error"]
    assert error.startswith(f"the change was not saved: cannot write sqlite:{database}: ")
    assert "full" in error
    assert (await api.get("/v1/health")).json()["revision"] == 0
    assert running.committed == [0] and running.store.changes["refused"] == 1
    filler.unlink()  # room again: an unrelated change goes through, alone
    assert held(database) == before
    added = await api.post("/v1/lookup-records", json=record("10.10.10.14", "blue4"))
    assert added.status_code == 201, added.text
    assert running.committed == [0, 1]
    assert "5010/10.10.10.13" not in records(database) and "5010/10.10.10.14" in records(database)
    assert await vms(api) == {"blue1", "blue2", "red1", "red2", "blue4"}
