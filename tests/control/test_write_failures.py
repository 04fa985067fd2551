"""A change the file could not take (disk full, read-only) is answered with the reason
and leaves no trace: not in the file, not in the running policy, not in the store's
cached document, where it would ride along with the next, unrelated change. A config
gone from under the API is a refusal naming it, not a 500 with a traceback.

The disk is real: a 64 KiB tmpfs (conftest.py), filled to the last byte or remounted
read-only. The API runs in process, on both anyio backends.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.control import load_config
from gateway.control.api import build_api
from gateway.control.store import PolicyStore
from gateway.policy import Policy

from ._disk import fill, mount
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
    config = small_disk / "two-hosts.yaml"
    shutil.copyfile(CONFIGS / "two-hosts.yaml", config)
    running = Node()
    running.store = PolicyStore(config, host1_prepare(), running.commit)
    await running.store.load()
    app = build_api(running.store, "host1", dict)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nvgw") as client:
        yield running, client


async def vms(api: httpx.AsyncClient) -> set[str]:
    answer = await api.get("/v1/lookup-records")
    return {item.get("vm") for item in answer.json()["items"]}


async def test_a_change_the_full_disk_refused_is_507_and_never_applied_later(
    node: tuple[Node, httpx.AsyncClient], small_disk: Path
) -> None:
    """The failing change is a whole policy larger than the page left free: the temp
    file is created, and the write into it fails."""
    running, api = node
    config = running.store.path
    before = config.read_bytes()
    filler = fill(small_disk)
    bigger = before.decode().replace(
        "lookup_records:\n",
        "lookup_records:\n"
        + "# a comment long enough not to fit\n" * 200
        + "  - {vsid: 5010, ca: 10.10.10.13, mac: 00-00-00-00-00-13, pa: 198.18.0.2, "
        "rule: encap, vm: blue3}\n",
    )
    failed = await api.put("/v1/policy", content=bigger.encode())
    assert failed.status_code == 507, failed.text
    error = failed.json()["error"]
    assert error == f"the change was not saved: cannot write {config}: No space left on device"
    assert config.read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "two-hosts.yaml"]
    assert (await api.get("/v1/health")).json()["revision"] == 0
    assert running.committed == [0] and running.store.changes["refused"] == 1

    filler.unlink()  # room again: an unrelated change goes through, alone
    added = await api.post("/v1/lookup-records", json=record("10.10.10.14", "blue4"))
    assert added.status_code == 201, added.text
    on_disk = load_config(config)
    assert on_disk.revision == 1 and running.committed == [0, 1]
    assert {r.vm for r in on_disk.lookup_records} == {"blue1", "blue2", "red1", "red2", "blue4"}
    assert "a comment long enough" not in config.read_text()
    assert await vms(api) == {"blue1", "blue2", "red1", "red2", "blue4"}
    assert on_disk == running.store.policy


async def test_a_change_a_read_only_disk_refused_is_500_with_the_reason(
    node: tuple[Node, httpx.AsyncClient], small_disk: Path
) -> None:
    running, api = node
    config = running.store.path
    before = config.read_bytes()
    mount("-o", "remount,ro", str(small_disk))
    failed = await api.post("/v1/lookup-records", json=record("10.10.10.13", "blue3"))
    assert failed.status_code == 500, failed.text
    assert failed.json()["error"] == (
        f"the change was not saved: cannot write {config}: Read-only file system"
    )
    assert config.read_bytes() == before and running.committed == [0]

    mount("-o", "remount,rw", str(small_disk))
    added = await api.post("/v1/lookup-records", json=record("10.10.10.14", "blue4"))
    assert added.status_code == 201, added.text
    on_disk = load_config(config)
    assert on_disk.revision == 1
    assert {r.vm for r in on_disk.lookup_records} == {"blue1", "blue2", "red1", "red2", "blue4"}
    assert await vms(api) == {"blue1", "blue2", "red1", "red2", "blue4"}


async def test_a_config_gone_under_the_api_is_a_422_naming_it(
    node: tuple[Node, httpx.AsyncClient],
) -> None:
    running, api = node
    config = running.store.path
    config.rename(config.with_name("aside.yaml"))  # an editor's save, caught midway
    failed = await api.post("/v1/lookup-records", json=record("10.10.10.13", "blue3"))
    assert failed.status_code == 422, failed.text
    [issue] = failed.json()["issues"]
    assert issue == {
        "path": "",
        "message": "cannot read the file: No such file or directory",
        "file": str(config),
    }
    assert not config.exists() and running.committed == [0]
