"""The control API in process (httpx's ASGI transport), on both anyio backends: the
answers, status codes and headers a client relies on, and the file behind them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from gateway.control import kinds, load_config
from gateway.control.api import (
    MAX_BATCH_BODY,
    MAX_ENTRY_BODY,
    BearerToken,
    build_api,
    counters_json,
)
from gateway.control.openapi import openapi_document
from gateway.control.store import PolicyStore
from gateway.control.untrusted import MAX_DOCUMENT_BYTES
from gateway.dataplane import Counters
from gateway.errors import ConfigError, Drop

from ._gateway_config import RED, gateway_config, gateway_text
from ._node import host1_prepare
from ._stores import close_opened, held, seed, seeded, state
from .test_untrusted import YAML_PIECES, billion_laughs, deep_block_yaml

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("each_store")]
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BLUE = "{11111111-2222-3333-4444-000000005010}"


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

    store: PolicyStore[Any] = await seeded(config, host1_prepare(), swap)
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
    assert any(r.vm == "blue3" for r in held(config).lookup_records)
    gone = await api.delete("/v1/lookup-records", params={"vm": "blue3"})
    assert gone.status_code == 200 and gone.json()["revision"] == 2
    assert [r["ca"] for r in gone.json()["removed"]] == ["10.10.10.13"]
    assert not any(r.vm == "blue3" for r in held(config).lookup_records)


async def test_a_refused_change_answers_422_with_every_reason_and_changes_nothing(
    api, config: Path
) -> None:
    before = state(config)
    bad = {**NEW_RECORD, "rule": "tunnel", "mac": "ff-ff-ff-ff-ff-ff"}
    answer = await api.post("/v1/lookup-records", json=bad)
    assert answer.status_code == 422
    issues = answer.json()["issues"]
    assert {i["path"] for i in issues} == {"lookup_records[4].rule", "lookup_records[4].mac"}
    assert state(config) == before
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
    a_number = await api.post("/v1/lookup-records", json=7)  # a list is a batch (test_batches)
    assert a_number.status_code == 400 and "JSON object" in a_number.json()["error"]
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
    policy = held(config)
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
    assert "198.18.0.22" in {str(a.pa) for a in held(config).node("host2").provider_addresses}


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


async def test_put_policy_replaces_it_whole(api, config: Path) -> None:
    text = (CONFIGS / "routing.yaml").read_text()
    answer = await api.put("/v1/policy", content=text.encode(), headers={"If-Match": '"0"'})
    assert answer.status_code == 200 and answer.json()["revision"] == 1
    assert held(config).virtual_subnets == load_config(CONFIGS / "routing.yaml").virtual_subnets
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
    assert served == openapi_document() and served["openapi"].startswith("3.")
    app = api._transport.app  # type: ignore[attr-defined]
    for route in app.routes:
        assert isinstance(route, Route)
        if route.path == "/v1/openapi.json":
            continue
        for method in route.methods - {"HEAD"}:
            assert method.lower() in served["paths"][route.path], (method, route.path)
    for resource in ("gateway-routing-domains", "gateway-taps", "gateway-routes"):
        assert set(served["paths"][f"/v1/{resource}"]) == {"get", "post", "delete"}
    keyed = served["paths"]["/v1/gateway-routing-domains"]["post"]["responses"]
    assert "409" in keyed and "409" not in served["paths"]["/v1/gateway-taps"]["post"]["responses"]
    record = served["components"]["schemas"]["lookup-records"]
    assert set(record["required"]) == {"vsid", "ca", "mac", "pa", "rule"}
    assert record["properties"]["ca"]["type"] == "string"
    assert record["properties"]["rule"]["enum"] == ["encap", "nat"]


async def test_a_bearer_token_guards_tcp(config: Path) -> None:
    async def swap(policy: Any) -> None:
        pass

    store: PolicyStore[Any] = await seeded(config, host1_prepare(), swap)
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
    | st.sampled_from(
        ["10.10.10.13", "198.18.0.2", "00-00-00-00-00-13", BLUE, "encap", "::", "gw", "blue"]
    )
    | st.sampled_from(["172.16.1.1/24", "172.16.1.0/24", "tap:gw-blue", "nat", "gw-x"])
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
FUZZED_CONFIGS = [(CONFIGS / "two-hosts.yaml").read_text(), gateway_text()]


def _bodies(kind_name: str) -> st.SearchStrategy[Any]:
    known = list(openapi_document()["components"]["schemas"][kind_name]["properties"])
    keys = st.sampled_from([*known, "color", ""])
    return st.dictionaries(keys, VALUES, max_size=8) | VALUES


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")  # what a server decodes header bytes with


# What else a hostile client may send: headers and query strings of any bytes, bodies
# nested at and past the bound, bodies past the size limit, YAML for the whole policy.
HEADER_BYTES = st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b)
REVISIONS = st.from_regex(r'\A(W/)?"?[0-9\xb2\xb9-]{0,6}"?\Z').map(_latin1) | HEADER_BYTES
ODD_BODIES = st.sampled_from(
    [_deep(63), _deep(64), _deep(65), _deep(200_000), b"\0" * (MAX_ENTRY_BODY + 1), b"\xff"]
)
YAML_BODIES = st.lists(st.sampled_from(YAML_PIECES) | st.text(max_size=3), max_size=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_request_makes_the_api_fail_or_half_apply(tmp_path_factory, data) -> None:
    """Whatever arrives (body, query, headers, on any route), the answer is a 2xx or
    a 4xx with a reason, and the store changes only with a 2xx; also on a policy with
    a gateway, whose served domains are keyed entries (409 for a key taken)."""
    directory = tmp_path_factory.mktemp("fuzz")
    config = gateway_config(directory, data.draw(st.sampled_from(FUZZED_CONFIGS)))
    kind = data.draw(st.sampled_from(kinds.served()))
    route = data.draw(st.sampled_from(["post", "delete", "get", "migrate", "trace", "put"]))
    keys = st.sampled_from([*kind.filters, "x"]) | st.text(max_size=4)
    query = data.draw(st.dictionaries(keys, st.text(max_size=12), max_size=3))
    headers = {}
    if data.draw(st.booleans()):
        headers["If-Match"] = data.draw(REVISIONS)
    if route in ("post", "migrate", "trace"):
        known = {"migrate": ["vm", "pa"], "trace": ["from", "to", "proto", "sport", "dport"]}
        body = data.draw(_bodies(kind.name) if route == "post" else _entries(known[route]))
        # Python's encoder, not httpx's: NaN and Infinity must reach the API too.
        content = json.dumps(body).encode()
        if data.draw(st.integers(0, 4)) == 0:
            content = data.draw(ODD_BODIES)
    elif route == "put":
        content = "".join(data.draw(YAML_BODIES)).encode()
    else:
        content = b""

    async def exchange() -> httpx.Response:
        async def swap(policy: Any) -> None:
            pass

        store: PolicyStore[Any] = await seeded(config, host1_prepare(), swap)
        transport = httpx.ASGITransport(app=build_api(store, "host1", dict))
        async with httpx.AsyncClient(transport=transport, base_url="http://nvgw") as client:
            method, path = {
                "post": ("POST", f"/v1/{kind.name}"),
                "delete": ("DELETE", f"/v1/{kind.name}"),
                "get": ("GET", f"/v1/{kind.name}"),
                "migrate": ("POST", "/v1/migrate"),
                "trace": ("POST", "/v1/trace"),
                "put": ("PUT", "/v1/policy"),
            }[route]
            return await client.request(
                method, path, params=query, headers=headers, content=content or None
            )

    seed(config)
    before = state(config)
    answer = anyio.run(exchange)
    close_opened()  # each example's store, not all 300 at the end
    assert answer.status_code in (200, 201, 400, 404, 409, 412, 413, 422), answer.text
    assert answer.json().get("error") or answer.status_code < 300
    if answer.status_code >= 300:
        assert state(config) == before
    else:
        held(config)  # what was accepted is a valid policy


def _entries(keys: list[str]) -> st.SearchStrategy[Any]:
    return st.dictionaries(st.sampled_from(keys), VALUES, max_size=6) | VALUES


# ---------------------------------------------------------------- limits on bodies and headers


async def test_a_yaml_bomb_or_a_deep_document_put_is_a_400_with_its_line(api, config) -> None:
    before = state(config)
    bomb = await api.put("/v1/policy", content=billion_laughs().encode())
    assert bomb.status_code == 400
    assert "line 2" in bomb.json()["error"] and "alias *a0" in bomb.json()["error"]
    deep = await api.put("/v1/policy", content=deep_block_yaml(5000).encode())
    assert deep.status_code == 400 and "nested deeper than 64" in deep.json()["error"]
    assert state(config) == before


@pytest.mark.parametrize("path", ["/v1/lookup-records", "/v1/migrate", "/v1/trace"])
async def test_deep_json_bodies_are_a_400(api, path: str) -> None:
    answer = await api.post(path, content=b"[" * 200_000 + b"]" * 200_000)
    assert answer.status_code == 400 and "nested deeper than 64" in answer.json()["error"]


CHUNK = 1024 * 1024


@pytest.mark.parametrize(
    ("method", "path", "limit"),
    [
        ("PUT", "/v1/policy", MAX_DOCUMENT_BYTES),
        ("POST", "/v1/lookup-records", MAX_BATCH_BODY),
        ("POST", "/v1/trace", MAX_ENTRY_BODY),
    ],
)
async def test_a_chunked_body_past_its_limit_is_a_413_read_no_further(
    api, config: Path, method: str, path: str, limit: int
) -> None:
    """No Content-Length to refuse up front: the body is counted as it streams in."""
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < limit + 8 * CHUNK:
            sent += CHUNK
            yield b"\0" * CHUNK

    before = state(config)
    answer = await api.request(method, path, content=chunks())
    assert answer.status_code == 413 and "larger than" in answer.json()["error"]
    assert sent <= limit + 2 * CHUNK  # it stopped reading at the limit
    assert state(config) == before


async def test_a_declared_length_past_the_limit_is_a_413_unread(api) -> None:
    declared = {"Content-Length": str(MAX_BATCH_BODY + 1)}
    answer = await api.post("/v1/lookup-records", content=b"{}", headers=declared)
    assert answer.status_code == 413
    for nonsense in ("12abc", "\xb2", "-1"):
        headers = {"Content-Length": nonsense.encode("latin-1")}
        answer = await api.post("/v1/lookup-records", content=b"{}", headers=headers)
        assert answer.status_code == 400 and "Content-Length" in answer.json()["error"]


@pytest.mark.parametrize("value", ['"\xb2"', "\xb9", '"1' + "0" * 5000 + '"', '"-1"', "W/"])
async def test_an_if_match_that_is_no_ascii_revision_is_a_400(api, value: str) -> None:
    """Header bytes are Latin-1 to the server, and ``str.isdigit`` takes the
    superscripts 0xb2 and 0xb9, which ``int()`` refuses; nor may ``int()`` meet
    more than 4300 digits."""
    headers = {"If-Match": value.encode("latin-1")}
    answer = await api.post("/v1/lookup-records", json=NEW_RECORD, headers=headers)
    assert answer.status_code == 400 and "If-Match" in answer.json()["error"]


@pytest.mark.parametrize("ports", [{"sport": 70000}, {"dport": -1}, {"sport": True}])
async def test_trace_ports_outside_0_to_65535_are_a_400(api, ports: dict[str, Any]) -> None:
    body = {"from": "blue1", "to": "10.10.10.12", "proto": "udp", **ports}
    answer = await api.post("/v1/trace", json=body)
    assert answer.status_code == 400 and "0..65535" in answer.json()["error"]


async def test_the_bearer_scheme_is_case_insensitive_the_token_is_not(config: Path) -> None:
    """RFC 7235 section 2.1: the auth-scheme is a case-insensitive token."""

    async def swap(policy: Any) -> None:
        pass

    store: PolicyStore[Any] = await seeded(config, host1_prepare(), swap)
    token = "s3cret-token-of-enough-length"
    app = BearerToken(build_api(store, "host1", dict), token)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://nvgw") as client:
        for header, status in [
            (f"bearer {token}", 200),
            (f"BEARER {token}", 200),
            (f"Bearer  {token}", 200),
            (f"Bearer {token.upper()}", 401),
            (f"Bearer {token}x", 401),
            (f"Basic {token}", 401),
            ("Bearer", 401),
        ]:
            answer = await client.get("/v1/health", headers={"Authorization": header})
            assert answer.status_code == status, header


async def test_what_the_node_cannot_serve_is_refused_as_the_daemon_refuses_it(
    api, config: Path
) -> None:
    """The store runs host1's real prepare: an IPv6 PA is valid policy (``nvgw check``
    takes it, and host2 may have one), but host1 cannot serve one of its own."""
    v6 = {"interface": "pa1", "pa": "2001:db8::1", "prefix_length": 64}
    before = state(config)
    answer = await api.post("/v1/provider-addresses", json={"node": "host1", **v6})
    assert answer.status_code == 422
    [issue] = answer.json()["issues"]
    assert issue["path"] == "nodes.host1.provider_addresses[1].pa"
    assert "IPv4 only" in issue["message"]
    assert state(config) == before
    assert (await api.post("/v1/provider-addresses", json={"node": "host2", **v6})).is_success


async def test_a_pa_of_its_own_cannot_change_while_the_node_runs(api, config: Path) -> None:
    """As the running daemon: its provider addresses are fixed at start."""
    v4 = {"node": "host1", "interface": "pa0", "pa": "198.18.0.11", "prefix_length": 24}
    before = state(config)
    answer = await api.post("/v1/provider-addresses", json=v4)
    assert answer.status_code == 422
    [issue] = answer.json()["issues"]
    assert "restart the daemon" in issue["message"]
    assert state(config) == before


# ---------------------------------------------------------------- a gateway's TAPs and routes


@pytest.fixture
def gateway_file(tmp_path: Path) -> Path:
    return gateway_config(tmp_path)


@pytest.fixture
async def gateway_api(gateway_file: Path) -> AsyncIterator[httpx.AsyncClient]:
    """host1's API over a policy with a gateway node (any daemon's API edits all of
    the policy, which every daemon of the store shares)."""

    async def swap(policy: Any) -> None:
        pass

    store: PolicyStore[Any] = await seeded(gateway_file, host1_prepare(), swap)
    transport = httpx.ASGITransport(app=build_api(store, "host1", dict))
    async with httpx.AsyncClient(transport=transport, base_url="http://nvgw") as client:
        yield client


TAP = {"node": "gw", "routing_domain": "blue", "name": "gw-blue2", "address": "172.16.1.1/24"}
GW_ROUTE = {
    "node": "gw",
    "routing_domain": "blue",
    "destination": "172.16.1.0/24",
    "next_hop": "tap:gw-blue2",
}


async def test_a_gateways_taps_and_routes_are_added_listed_and_removed(
    gateway_api, gateway_file: Path
) -> None:
    original = held(gateway_file)
    taps = (await gateway_api.get("/v1/gateway-taps")).json()["items"]
    assert taps == [
        {"node": "gw", "routing_domain": "blue", "name": "gw-blue", "address": "172.16.0.1/24"},
        {"node": "gw", "routing_domain": RED, "name": "gw-red", "address": "172.16.0.1/24"},
    ]
    added = await gateway_api.post("/v1/gateway-taps", json=TAP)
    assert added.status_code == 201 and added.json()["item"] == TAP
    routed = await gateway_api.post("/v1/gateway-routes", json=GW_ROUTE)
    assert routed.status_code == 201 and routed.headers["etag"] == '"2"'
    served = held(gateway_file).node("gw").routing_domains
    assert [tap.name for tap in served["blue"].taps] == ["gw-blue", "gw-blue2"]

    # filtered as the file's keys are
    blue = await gateway_api.get("/v1/gateway-routes", params={"routing_domain": "blue"})
    assert [r["destination"] for r in blue.json()["items"]] == [
        "172.16.0.0/24",
        "172.16.50.0/24",
        "172.16.1.0/24",
    ]
    via = await gateway_api.get("/v1/gateway-routes", params={"next_hop": "172.16.0.2"})
    assert [r["destination"] for r in via.json()["items"]] == ["172.16.50.0/24"]
    domains = (await gateway_api.get("/v1/gateway-routing-domains", params={"node": "gw"})).json()
    assert domains["items"][0] == {
        "node": "gw",
        "routing_domain": "blue",
        "taps": ["gw-blue", "gw-blue2"],
        "routes": ["172.16.0.0/24", "172.16.50.0/24", "172.16.1.0/24"],
        "port_forwards": [],
    }

    # removed by the same filters; the policy is back as it was but for its revision
    params = {"routing_domain": "blue", "destination": "172.16.1.0/24"}
    gone = await gateway_api.delete("/v1/gateway-routes", params=params)
    assert gone.status_code == 200 and gone.json()["removed"] == [GW_ROUTE]
    gone = await gateway_api.delete("/v1/gateway-taps", params={"name": "gw-blue2"})
    assert gone.status_code == 200 and gone.json()["removed"] == [TAP]
    back = held(gateway_file)
    assert back.revision == 4 and dataclasses.replace(back, revision=0) == original
    missing = await gateway_api.delete("/v1/gateway-taps", params={"name": "gw-blue2"})
    assert missing.status_code == 404 and "name=gw-blue2" in missing.json()["error"]


async def test_a_served_routing_domain_is_added_once_and_removed_with_its_taps_and_routes(
    gateway_api, gateway_file: Path
) -> None:
    before = state(gateway_file)
    again = await gateway_api.post(
        "/v1/gateway-routing-domains", json={"node": "gw", "routing_domain": "blue"}
    )
    assert again.status_code == 409
    assert again.json()["error"] == "gateway routing domain gw/blue exists already: remove it first"
    assert state(gateway_file) == before

    gone = await gateway_api.delete("/v1/gateway-routing-domains", params={"routing_domain": RED})
    assert gone.status_code == 200
    [removed] = gone.json()["removed"]
    assert removed["taps"] == [{"name": "gw-red", "address": "172.16.0.1/24"}]
    assert [t["name"] for t in (await gateway_api.get("/v1/gateway-taps")).json()["items"]] == [
        "gw-blue"
    ]
    red = {"node": "gw", "routing_domain": "red"}
    assert (await gateway_api.post("/v1/gateway-routing-domains", json=red)).status_code == 201
    fresh = held(gateway_file).node("gw").routing_domains["red"]
    assert fresh.taps == () and fresh.routes == ()
    tap = {**red, "name": "gw-red", "address": "172.16.0.1/24"}
    assert (await gateway_api.post("/v1/gateway-taps", json=tap)).status_code == 201
    route = {**red, "destination": "172.16.0.0/24", "next_hop": "tap:gw-red"}
    assert (await gateway_api.post("/v1/gateway-routes", json=route)).status_code == 201
    assert held(gateway_file).node("gw").routing_domains["red"].taps[0].name == "gw-red"


def _with_route(text: str, route: str) -> str:
    """The gateway config with one more route in Blue's served domain, by hand."""
    anchor = "          - {destination: 172.16.50.0/24, next_hop: 172.16.0.2}\n"
    return text.replace(anchor, anchor + f"          - {route}\n")


async def test_a_route_to_nat_is_refused_as_nvgw_check_refuses_it(
    gateway_api, gateway_file: Path, tmp_path: Path
) -> None:
    before = state(gateway_file)
    nat = {**GW_ROUTE, "destination": "0.0.0.0/0", "next_hop": "nat"}
    answer = await gateway_api.post("/v1/gateway-routes", json=nat)
    assert answer.status_code == 422
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    text = gateway_file.read_text()
    written = _with_route(text, "{destination: 0.0.0.0/0, next_hop: nat}")
    with pytest.raises(ConfigError) as checked:
        load_config(gateway_config(by_hand, written))
    assert answer.json()["issues"] == [
        {"path": i.path, "value": i.value, "message": i.message} for i in checked.value.issues
    ]
    assert answer.json()["issues"][0]["path"] == "nodes.gw.routing_domains.blue.routes[2].next_hop"
    assert "node gw has no NAT" in answer.json()["issues"][0]["message"]
    assert state(gateway_file) == before


@pytest.mark.parametrize(
    ("resource", "entry", "path", "message"),
    [
        (
            "gateway-routes",
            {**GW_ROUTE, "next_hop": "tap:gw-red"},
            "nodes.gw.routing_domains.blue.routes[2].next_hop",
            "a route never leaves its routing domain",
        ),
        (
            "gateway-routes",
            {**GW_ROUTE, "destination": "172.16.0.0/24"},
            "nodes.gw.routing_domains.blue.routes[2].destination",
            "duplicate route to 172.16.0.0/24",
        ),
        (
            "gateway-taps",
            {**TAP, "name": "gw-red"},
            f'nodes.gw.routing_domains["{RED}"].taps[0].name',  # the later in the file
            "duplicate TAP name in node gw: nodes.gw.routing_domains.blue.taps[1] has it",
        ),
        (
            "gateway-taps",
            {**TAP, "name": "gw-blue-far-too-long"},
            "nodes.gw.routing_domains.blue.taps[1].name",
            "15",
        ),
        (
            "gateway-taps",
            {**TAP, "address": "10.10.10.250/24"},
            "nodes.gw.routing_domains.blue.taps[1].address",
            "overlaps virtual subnet 5010",
        ),
        (
            "gateway-routes",
            {**GW_ROUTE, "routing_domain": "green"},
            "routing_domain",
            "no such routing_domain: add it first (known: blue, " + RED + ")",
        ),
        (
            "gateway-routing-domains",
            {"node": "gw", "routing_domain": BLUE},
            f'nodes.gw.routing_domains["{BLUE}"]',
            "is already served here: nodes.gw.routing_domains.blue",
        ),
        (
            "gateway-routing-domains",
            {"node": "host1", "routing_domain": "blue"},
            "nodes.host1.routing_domains",
            "not on a host node",
        ),
    ],
)
async def test_a_refused_gateway_change_says_why_and_leaves_the_file_as_it_was(
    gateway_api, gateway_file: Path, resource: str, entry: dict, path: str, message: str
) -> None:
    before = state(gateway_file)
    answer = await gateway_api.post(f"/v1/{resource}", json=entry)
    assert answer.status_code == 422, answer.text
    issues = answer.json()["issues"]
    assert any(i["path"] == path and message in i["message"] for i in issues), issues
    assert state(gateway_file) == before
    assert (await gateway_api.get("/v1/health")).json()["revision"] == 0
