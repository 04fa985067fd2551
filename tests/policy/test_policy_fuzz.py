"""Hostile documents: load_policy raises ConfigError and nothing else (style.md,
testing habit 2). Arbitrary JSON-like values, and the valid base document with one
random place replaced, deleted or added to, so that the generated inputs also get
deep into the validators and the cross-entity checks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.control import load_config
from gateway.errors import ConfigError
from gateway.policy import (
    NodeRole,
    Policy,
    compile_gateway,
    compile_policy,
    load_policy,
    parse_path,
)

from ._documents import emit_yaml
from ._gateway_document import gateway_document
from ._tunnel_document import tunnel_document

SECTIONS = ["revision", "routing_domains", "lookup_records", "customer_routes", "tunnels", "nodes"]
KEYS = [
    *SECTIONS,
    *["rdid", "name", "virtual_subnets", "vsid", "prefixes", "gateway", "ca", "mac", "pa"],
    *["rule", "type", "vm", "destination", "next_hop", "metric", "role", "interface"],
    *["prefix_length", "vlan", "ports", "provider_addresses", "host1"],
    *["mss_clamp", "routing_domains", "taps", "routes", "address", "gw", "blue"],
    *["node", "listen_port", "public_key", "preshared_key_file", "endpoint", "allowed_ips"],
    *["persistent_keepalive", "tunnel_keys", 51820],
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "10.10.10.0/24",
            "10.10.10.1",
            "fd00::1",
            "0.0.0.0",
            "00-00-00-00-00-11",
            "{11111111-2222-3333-4444-000000005010}",
            "encap",
            "nat",
            "host",
            "gateway",
            "auto",
            "tap:gw-blue",
            "tunnel:site",
            "tunnel:onprem-blue",
            "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
            "192.0.2.11:51820",
            "[2001:db8::1]:51820",
            "/etc/nvgw/wg.key",
            "172.16.50.0/24",
            51820,
            "172.16.0.1/24",
            5010,
            4095,
            255,
        ]
    )
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(KEYS) | st.text(max_size=8) | st.integers(), children, max_size=5
        )
    ),
    max_leaves=25,
)


def _check(document: Any) -> None:
    try:
        policy = load_policy(document)
    except ConfigError as error:
        for issue in error.issues:
            assert isinstance(issue.path, str) and isinstance(issue.message, str)
            parse_path(issue.path)
            str(issue)
    else:
        assert isinstance(policy, Policy)
        snapshot = compile_policy(policy)
        for node in policy.nodes:
            if node.role is NodeRole.GATEWAY:
                compile_gateway(snapshot, node.name)


@given(JSON)
@settings(max_examples=300, deadline=None)
def test_arbitrary_values_raise_only_config_error(document: Any) -> None:
    _check(document)


@given(st.dictionaries(st.sampled_from(SECTIONS), JSON, max_size=5))
@settings(max_examples=300, deadline=None)
def test_arbitrary_sections_raise_only_config_error(document: Any) -> None:
    _check(document)


def _places(node: Any, path: tuple = ()) -> list[tuple]:
    places = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            places.extend(_places(value, (*path, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            places.extend(_places(value, (*path, index)))
    return places


_BASE = tunnel_document()  # the base document, a gateway node and its tunnels
_PLACES = _places(_BASE)[1:]


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    document = copy.deepcopy(_BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        place = draw(st.sampled_from(_PLACES))
        parent: Any = document
        try:
            for part in place[:-1]:
                parent = parent[part]
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[place[-1]] = draw(JSON)
            elif action == "delete":
                del parent[place[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.sampled_from(KEYS))] = draw(JSON)
            elif isinstance(parent, list):
                parent.append(draw(JSON))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this place
    return document


@given(mutated())
@settings(max_examples=400, deadline=None)
def test_mutated_documents_raise_only_config_error(document: dict[str, Any]) -> None:
    _check(document)


@given(document=mutated())
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_mutated_files_raise_only_config_error(document: dict[str, Any], tmp_path: Path) -> None:
    text, _ = emit_yaml(document)
    config = tmp_path / "fuzz.yaml"
    config.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(config)
    except ConfigError as error:
        assert all(issue.file == str(config) for issue in error.issues)


@pytest.mark.parametrize("document", [None, [], "text", 5, [{"vsid": 1}], {1: 2}, {None: []}])
def test_not_a_policy_mapping(document: Any) -> None:
    with pytest.raises(ConfigError):
        load_policy(document)


def test_huge_integers_are_shown_briefly() -> None:
    document = gateway_document()
    document["lookup_records"][0]["vsid"] = 10**5000
    document["revision"] = -(10**5000)
    with pytest.raises(ConfigError) as caught:
        load_policy(document)
    assert all(len(str(issue)) < 400 for issue in caught.value.issues)
