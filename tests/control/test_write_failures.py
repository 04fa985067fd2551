"""A change the store could not take (out of space) is answered with the reason and
leaves no trace: not in the store, not in the running policy, not in the store's
cached rows, where it would ride along with the next, unrelated change. On SQLite and
on etcd.

The space is real: for SQLite a 256 KiB tmpfs (conftest.py) under the database,
filled to the last byte (a read-only remount, as the file store's tests made, is
refused while SQLite holds the database open for writing); for etcd an etcd of the
test's own with a 1 MiB space quota, filled with keys of another prefix until it
raises its NOSPACE alarm. The API runs in process, on both anyio backends.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.control.api import build_api
from gateway.control.store import PolicyStore
from gateway.policy import Policy

from . import _stores
from ._disk import fill
from ._etcd import running_etcd
from ._node import host1_prepare

pytestmark = pytest.mark.anyio
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
QUOTA_BYTES = 1 << 20  # etcd's space quota: a few filler keys exceed it
FILLER = "/filler/"  # the keys that fill etcd: another prefix than the store's


def record(ca: str, vm: str) -> dict[str, Any]:
    mac = f"00-00-00-00-00-{ca.rsplit('.', 1)[1]}"
    return {"vsid": 5010, "ca": ca, "mac": mac, "pa": "198.18.0.2", "rule": "encap", "vm": vm}


@dataclass
class Space:
    """A store's config (``_stores`` names the store after it) where space can run
    out: ``fill`` it, then ``make_room``; ``says`` is in the refusal's reason."""

    config: Path
    fill: Callable[[], object]
    make_room: Callable[[], None]
    says: str


@pytest.fixture(params=["sqlite", "etcd"])
def space(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Space]:
    if request.param == "sqlite":
        disk: Path = request.getfixturevalue("small_disk")
        config = disk / "two-hosts.yaml"
        filler = disk / "filler"
        yield Space(config, lambda: fill(disk, spare=0), filler.unlink, "full")
        return
    config = tmp_path / "two-hosts.yaml"
    with running_etcd(tmp_path, quota_bytes=QUOTA_BYTES) as etcd:
        _stores.use(etcd)
        try:
            yield Space(
                config,
                lambda: etcd.fill(FILLER),
                lambda: etcd.make_room(FILLER),
                "--quota-backend-bytes",
            )
        finally:
            _stores.use(None)


class Node:
    """What the daemon would run: every policy swapped in, in order."""

    def __init__(self) -> None:
        self.committed: list[int] = []
        self.store: PolicyStore[Policy]

    async def commit(self, policy: Policy) -> None:
        self.committed.append(policy.revision)


@pytest.fixture
async def node(space: Space) -> AsyncIterator[tuple[Node, httpx.AsyncClient]]:
    shutil.copyfile(CONFIGS / "two-hosts.yaml", space.config)
    running = Node()
    running.store = await _stores.seeded(space.config, host1_prepare(), running.commit)
    app = build_api(running.store, "host1", dict)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://nvgw") as client:
            yield running, client
    finally:
        _stores.close_opened()  # before the disk is unmounted, or etcd stopped


async def vms(api: httpx.AsyncClient) -> set[str]:
    answer = await api.get("/v1/lookup-records")
    return {item.get("vm") for item in answer.json()["items"]}


def cas(config: Path) -> set[str]:
    return {str(r.ca) for r in _stores.held(config).lookup_records}


async def test_a_change_the_full_store_refused_is_507_and_never_applied_later(
    node: tuple[Node, httpx.AsyncClient], space: Space
) -> None:
    running, api = node
    before = _stores.state(space.config)
    space.fill()
    failed = await api.post("/v1/lookup-records", json=record("10.10.10.13", "blue3"))
    assert failed.status_code == 507, failed.text
    error = failed.json()["error"]
    assert error.startswith(f"the change was not saved: cannot write {running.store.url}: ")
    assert space.says in error
    assert (await api.get("/v1/health")).json()["revision"] == 0
    assert running.committed == [0] and running.store.changes["refused"] == 1
    space.make_room()  # room again: an unrelated change goes through, alone
    assert _stores.state(space.config) == before
    added = await api.post("/v1/lookup-records", json=record("10.10.10.14", "blue4"))
    assert added.status_code == 201, added.text
    assert running.committed == [0, 1]
    assert "10.10.10.13" not in cas(space.config) and "10.10.10.14" in cas(space.config)
    assert await vms(api) == {"blue1", "blue2", "red1", "red2", "blue4"}
