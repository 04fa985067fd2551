"""The control API in process (httpx's ASGI transport), on both anyio backends: the
answers, status codes and headers a client relies on, and the file behind them."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from gateway.control import load_config
from gateway.control.api import OPENAPI, BearerToken, build_api, counters_json
from gateway.control.edits import KINDS
from gateway.control.store import PolicyStore
from gateway.dataplane import Counters
from gateway.errors import Drop

pytestmark = pytest.mark.anyio
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BLUE = "{11111111-2222-3333-4444-000000005010}"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "two-hosts.yaml"
    shutil.copyfile(CONFIGS / "two-hosts.yaml", path)
    return path


@pytest.fixture
def counters() -> Counters:
    counters = Counters()
    counters.drops[Drop.SPOOFED_PA] = 3
    counters.port("blue1").to_vm_packets = 7
    return counters


@pytest.fixture
async def api(config: Path, counters: Counters) -> AsyncIterator[httpx.AsyncClient]:
    async def swap(policy: Any) -> None:
        pass

    store: PolicyStore[Any] = PolicyStore(config, lambda policy: policy, swap)
    await store.load()
    app = build_api(store, "host1", lambda: counters_json(counters))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nvgw") as client:
        yield client


NEW_RECORD = {
    "vsid": 5010,
    "ca": "10.10.10.13",
    "mac": "00-00-00-00-00-13",
    "pa": "198.18.0.2",
    "rule": "encap",
    "vm": "blue3",
}


async def test_get_filters_like_the_cmdlets_and_carries_the_revision(api) -> None:
    answer = await api.get("/v1/lookup-records", params={"vsid": "5010", "ca": "10.10.10.12"})
    assert answer.status_code == 200 and answer.headers["etag"] == '"0"'
    body = answer.json()
    assert body["revision"] == 0
    assert body["items"] == [
        {
            "vsid": 5010,
            "ca": "10.10.10.12",
            "mac": "00-00-00-00-00-12",
            "pa": "198.18.0.2",
            "rule": "encap",
            "type": "static",
            "vm": "blue2",
        }
    ]
    subnets = (await api.get("/v1/virtual-subnets", params={"rdid": BLUE.upper()})).json()
    assert [s["vsid"] for s in subnets["items"]] == [5010]
    pas = (await api.get("/v1/provider-addresses", params={"node": "host2"})).json()
    assert [(p["pa"], p["interface"]) for p in pas["items"]] == [("198.18.0.2", "pa0")]


async def test_an_unknown_filter_is_a_400_naming_the_known_ones(api) -> None:
    answer = await api.get("/v1/customer-routes", params={"color": "blue"})
    assert answer.status_code == 400
    assert "color" in answer.json()["error"] and "destination" in answer.json()["error"]


async def test_post_then_delete_round_trips_through_the_file(api, config: Path) -> None:
    added = await api.post("/v1/lookup-records", json=NEW_RECORD)
    assert added.status_code == 201 and added.headers["etag"] == '"1"'
    assert added.json()["item"] == NEW_RECORD
    assert any(r.vm == "blue3" for r in load_config(config).lookup_records)
    gone = await api.delete("/v1/lookup-records", params={"vm": "blue3"})
    assert gone.status_code == 200 and gone.json()["revision"] == 2
    assert [r["ca"] for r in gone.json()["removed"]] == ["10.10.10.13"]
    assert not any(r.vm == "blue3" for r in load_config(config).lookup_records)


async def test_a_refused_change_answers_422_with_every_reason_and_changes_nothing(
    api, config: Path
) -> None:
    before = config.read_bytes()
    bad = {**NEW_RECORD, "rule": "tunnel", "mac": "ff-ff-ff-ff-ff-ff"}
    answer = await api.post("/v1/lookup-records", json=bad)
    assert answer.status_code == 422
    issues = answer.json()["issues"]
    assert {i["path"] for i in issues} == {"lookup_records[4].rule", "lookup_records[4].mac"}
    assert config.read_bytes() == before
    assert (await api.get("/v1/policy")).json()["revision"] == 0


async def test_if_match_makes_a_change_conditional(api, config: Path) -> None:
    stale = await api.post("/v1/lookup-records", json=NEW_RECORD, headers={"If-Match": '"5"'})
    assert stale.status_code == 412 and stale.json()["revision"] == 0
    fresh = await api.post("/v1/lookup-records", json=NEW_RECORD, headers={"If-Match": '"0"'})
    assert fresh.status_code == 201
    nonsense = await api.delete(
        "/v1/lookup-records", params={"vm": "blue3"}, headers={"If-Match": "latest"}
    )
    assert nonsense.status_code == 400 and "If-Match" in nonsense.json()["error"]


async def test_delete_needs_a_filter_and_something_to_match(api) -> None:
    assert (await api.delete("/v1/customer-routes")).status_code == 400
    missing = await api.delete("/v1/customer-routes", params={"vsid": "6000"})
    assert missing.status_code == 404 and "vsid=6000" in missing.json()["error"]


async def test_malformed_bodies_are_400(api) -> None:
    not_json = await api.post("/v1/lookup-records", content=b"{vsid: ")
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    a_list = await api.post("/v1/lookup-records", json=[NEW_RECORD])
    assert a_list.status_code == 400
    no_vm = await api.post("/v1/migrate", json={"pa": "198.18.0.1"})
    assert no_vm.status_code == 400 and "vm" in no_vm.json()["error"]


async def test_nested_kinds_go_under_their_parent(api, config: Path) -> None:
    domain = {"rdid": "{11111111-2222-3333-4444-000000005099}", "name": "green"}
    assert (await api.post("/v1/routing-domains", json=domain)).status_code == 201
    subnet = {"rdid": domain["rdid"], "vsid": 5099, "prefixes": ["10.99.0.0/24"]}
    assert (await api.post("/v1/virtual-subnets", json=subnet)).status_code == 201
    route = {
        "rdid": domain["rdid"],
        "vsid": 5099,
        "destination": "10.99.0.0/24",
        "next_hop": "0.0.0.0",
        "metric": 255,
    }
    assert (await api.post("/v1/customer-routes", json=route)).status_code == 201
    policy = load_config(config)
    assert policy.rdid_of(5099) == domain["rdid"]
    orphan = {
        "rdid": "{11111111-2222-3333-4444-000000005098}",
        "vsid": 5098,
        "prefixes": ["10.98.0.0/24"],
    }
    refused = await api.post("/v1/virtual-subnets", json=orphan)
    assert refused.status_code == 422 and "add it first" in refused.json()["issues"][0]["message"]
    pa = {"node": "host2", "interface": "pa0", "pa": "198.18.0.22", "prefix_length": 24}
    assert (await api.post("/v1/provider-addresses", json=pa)).status_code == 201
    assert "198.18.0.22" in {
        str(a.pa) for a in load_config(config).node("host2").provider_addresses
    }


async def test_migrate_and_trace_against_the_live_policy(api) -> None:
    before = await api.post("/v1/trace", json={"from": "blue1", "to": "10.10.10.12"})
    assert before.json()["delivered_to"] == "blue2"
    assert any(h["step"] == "encapsulate" for h in before.json()["hops"])
    moved = await api.post("/v1/migrate", json={"vm": "blue2", "pa": "198.18.0.1"})
    assert moved.status_code == 200 and moved.json()["migrated"]["node"] == "host1"
    after = await api.post("/v1/trace", json={"from": "blue1", "to": "10.10.10.12"})
    assert after.json()["delivered_to"] == "blue2"
    assert not any(h["step"] == "encapsulate" for h in after.json()["hops"])  # now local
    red = await api.post("/v1/trace", json={"from": "blue1", "to": "10.10.10.99"})
    assert red.json()["delivered_to"] is None and red.json()["dropped"]
    bad = await api.post("/v1/trace", json={"from": "blue1", "to": "x", "sport": "1"})
    assert bad.status_code == 400


async def test_put_policy_replaces_it_whole_keeping_the_new_files_comments(
    api, config: Path
) -> None:
    text = (CONFIGS / "routing.yaml").read_text()
    answer = await api.put("/v1/policy", content=text.encode(), headers={"If-Match": '"0"'})
    assert answer.status_code == 200 and answer.json()["revision"] == 1
    assert (
        load_config(config).virtual_subnets == load_config(CONFIGS / "routing.yaml").virtual_subnets
    )
    first_comment = next(line for line in text.splitlines() if line.startswith("#"))
    assert first_comment in config.read_text()
    policy = (await api.get("/v1/policy")).json()["policy"]
    assert policy["revision"] == 1 and {r["vsid"] for r in policy["lookup_records"]} >= {5012}


async def test_counters_and_health(api) -> None:
    counters = (await api.get("/v1/counters")).json()["counters"]
    assert counters["drops"] == {"spoofed_pa": 3}
    assert counters["ports"]["blue1"]["to_vm_packets"] == 7
    health = (await api.get("/v1/health")).json()
    assert health == {"revision": 0, "status": "ok", "node": "host1"}


async def test_the_openapi_document_describes_every_route(api) -> None:
    served = (await api.get("/v1/openapi.json")).json()
    assert served == OPENAPI and served["openapi"].startswith("3.")
    app = api._transport.app  # type: ignore[attr-defined]
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path == "/v1/openapi.json":
            continue
        for method in route.methods - {"HEAD"}:
            assert method.lower() in served["paths"][route.path], (method, route.path)
    record = served["components"]["schemas"]["lookup-records"]
    assert set(record["required"]) == {"vsid", "ca", "mac", "pa", "rule"}
    assert record["properties"]["ca"]["type"] == "string"
    assert record["properties"]["rule"]["enum"] == ["encap", "nat"]


async def test_a_bearer_token_guards_tcp(config: Path) -> None:
    async def swap(policy: Any) -> None:
        pass

    store: PolicyStore[Any] = PolicyStore(config, lambda policy: policy, swap)
    await store.load()
    app = BearerToken(build_api(store, "host1", dict), "s3cret-token-of-enough-length")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nvgw") as client:
        none = await client.get("/v1/health")
        assert none.status_code == 401 and none.headers["www-authenticate"].startswith("Bearer")
        wrong = await client.get("/v1/health", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await client.get(
            "/v1/health", headers={"Authorization": "Bearer s3cret-token-of-enough-length"}
        )
        assert right.status_code == 200


# ---------------------------------------------------------------- hostile input

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=40)
    | st.sampled_from(["10.10.10.13", "198.18.0.2", "00-00-00-00-00-13", BLUE, "encap", "::"])
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)


def _bodies(kind_name: str) -> st.SearchStrategy[Any]:
    known = list(OPENAPI["components"]["schemas"][kind_name]["properties"])
    keys = st.sampled_from([*known, "color", ""])
    return st.dictionaries(keys, VALUES, max_size=8) | VALUES


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_body_makes_the_api_fail_or_half_apply(tmp_path_factory, data) -> None:
    """Whatever arrives, the answer is a 2xx or 4xx with a reason, and the file changes
    only with a 2xx."""
    config = tmp_path_factory.mktemp("fuzz") / "two-hosts.yaml"
    shutil.copyfile(CONFIGS / "two-hosts.yaml", config)
    kind = data.draw(st.sampled_from(KINDS))
    body = data.draw(_bodies(kind.name))
    query = data.draw(st.dictionaries(st.sampled_from([*kind.filters, "x"]), st.text(max_size=12)))

    async def exchange() -> httpx.Response:
        async def swap(policy: Any) -> None:
            pass

        store: PolicyStore[Any] = PolicyStore(config, lambda policy: policy, swap)
        await store.load()
        transport = httpx.ASGITransport(app=build_api(store, "host1", dict))
        async with httpx.AsyncClient(transport=transport, base_url="http://nvgw") as client:
            if data.draw(st.booleans()):
                # Python's encoder, not httpx's: NaN and Infinity must reach the API too.
                return await client.post(f"/v1/{kind.name}", content=json.dumps(body))
            return await client.delete(f"/v1/{kind.name}", params=query)

    before = config.read_bytes()
    answer = anyio.run(exchange)
    assert answer.status_code in (200, 201, 400, 404, 422), answer.text
    assert answer.json().get("error") or answer.status_code < 300
    if answer.status_code >= 300:
        assert config.read_bytes() == before
    else:
        load_config(config)  # what was accepted is a valid config
