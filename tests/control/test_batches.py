"""Batches through the control API (``POST /v1/KIND`` with a JSON list): one
revision, all or nothing, every bad entry named by its index; on SQLite and etcd."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.control.api import build_api
from gateway.control.store import PolicyStore
from gateway.policy import compile_policy

from ._node import host1_prepare
from ._stores import held, seeded, state

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("each_store")]


def record(n: int, vsid: int = 5010) -> dict[str, Any]:
    """A new record of host2's in ``vsid`` (10.10.10.20 on)."""
    mac = f"02-00-00-00-{vsid - 5000:02x}-{n + 0x20:02x}"
    return {
        "vsid": vsid,
        "ca": f"10.10.10.{20 + n}",
        "mac": mac,
        "pa": "198.18.0.2",
        "rule": "encap",
    }


@pytest.fixture
async def running(config: Path) -> AsyncIterator[tuple[httpx.AsyncClient, list[Any]]]:
    """The API of host1, and every policy it swapped in (what the daemon runs)."""
    swapped: list[Any] = []

    async def swap(policy: Any) -> None:
        swapped.append(policy)

    store: PolicyStore[Any] = await seeded(config, host1_prepare(), swap)
    app = build_api(store, "host1", dict)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nvgw") as client:
        yield client, swapped
    store.close()


async def test_a_batch_is_one_revision_and_every_entry_runs(running, config: Path) -> None:
    api, swapped = running
    batch = [record(n, 5010 + n % 2) for n in range(40)]
    answer = await api.post("/v1/lookup-records", json=batch)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"revision": 1, "added": 40}
    assert held(config).revision == 1  # one revision for the forty
    snapshot = compile_policy(swapped[-1])
    for entry in batch:
        octets = bytes(int(x) for x in entry["ca"].split("."))
        assert snapshot.record_by_ca[(entry["vsid"], octets)].pa_bytes == bytes([198, 18, 0, 2])
    got = (await api.get("/v1/lookup-records", params={"pa": "198.18.0.2"})).json()
    assert len(got["items"]) == 2 + 40


async def test_a_batch_with_two_bad_entries_is_refused_whole_naming_both(
    running, config: Path
) -> None:
    api, _ = running
    before = state(config)
    batch = [record(n) for n in range(6)]
    batch[1] = {**batch[1], "ca": "10.10.99.1"}  # outside 5010's prefix
    batch[4] = {**batch[4], "mac": "not-a-mac"}
    answer = await api.post("/v1/lookup-records", json=batch)
    assert answer.status_code == 422, answer.text
    issues = answer.json()["issues"]
    assert {issue["entry"] for issue in issues} == {1, 4}
    by_entry = {issue["entry"]: issue for issue in issues}
    assert by_entry[1]["path"] == "lookup_records[5].ca"  # its place in the policy
    assert by_entry[1]["value"] == "10.10.99.1"
    assert by_entry[4]["path"] == "lookup_records[8].mac"
    assert state(config) == before  # the revision, the rows, the log
    assert (await api.get("/v1/policy")).json()["revision"] == 0


async def test_a_batch_of_another_kind_still_names_its_entries(running, config: Path) -> None:
    """Subnets (judged by the other kinds' path, ``IndexedPolicy.change_others``, not
    the records' indexes): one bad entry of two, named by its index; then both good,
    one revision."""
    api, _ = running
    rdid = "{11111111-2222-3333-4444-000000005010}"
    good = {"rdid": rdid, "vsid": 5030, "prefixes": ["10.30.0.0/24"]}
    overlapping = {"rdid": rdid, "vsid": 5031, "prefixes": ["10.10.10.0/25"]}
    before = state(config)
    answer = await api.post("/v1/virtual-subnets", json=[good, overlapping])
    assert answer.status_code == 422, answer.text
    assert {issue.get("entry") for issue in answer.json()["issues"]} == {1}
    assert state(config) == before
    fine = {**overlapping, "prefixes": ["10.31.0.0/24"]}
    answer = await api.post("/v1/virtual-subnets", json=[good, fine])
    assert answer.status_code == 201 and answer.json()["added"] == 2
    assert {s.vsid for d in held(config).routing_domains for s in d.virtual_subnets} >= {5030, 5031}


@pytest.mark.parametrize(
    ("body", "why"), [([], "has none"), ([{"vsid": 5010}, 7, "x"], "entries 1, 2 are not")]
)
async def test_a_batch_that_is_not_a_list_of_objects_is_a_400(
    running, config: Path, body: Any, why: str
) -> None:
    api, _ = running
    before = state(config)
    answer = await api.post("/v1/lookup-records", json=body)
    assert answer.status_code == 400 and why in answer.json()["error"]
    assert state(config) == before


async def test_the_openapi_document_gives_a_post_a_list_too(running) -> None:
    api, _ = running
    served = (await api.get("/v1/openapi.json")).json()
    post = served["paths"]["/v1/virtual-subnets"]["post"]["requestBody"]["content"]
    one, many = post["application/json"]["schema"]["oneOf"]
    assert many == {"type": "array", "items": one}
