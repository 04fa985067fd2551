"""``GET /v1/nat/sessions`` and ``nvgw nat sessions``: a gateway's NAT sessions, read
from its running table (driven here through the fabric: the real data plane), listed
with filters and a bound, as a table or JSON; a node without NAT answers 404."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
from scapy.layers.inet import IP

from gateway.control.api import build_api
from gateway.control.nat_sessions import node_sessions
from gateway.dataplane import GatewayNode
from tests._inprocess_api import cli_talks_to
from tests.control._gateway_config import gateway_config, nat_gateway_text
from tests.control._node import host1_prepare
from tests.control._stores import seeded
from tests.dataplane._gateway_lab import BLUE, EXT_ADDRESSES, RED, SERVER_IP, nat_lab
from tests.dataplane._policies import NOW
from tests.dataplane.test_gateway_fabric import VM, VM_IP, from_vm
from tests.dataplane.test_gateway_napt import gw, l4
from tests.test_cli import nvgw


def nat_gateway() -> GatewayNode:
    """The fabric's gateway after Blue opened UDP from 1111 and 2222 and Red from 1111
    (every session's clock: NOW)."""
    network = nat_lab()
    for tenant, sport in (("blue", 1111), ("blue", 2222), ("red", 1111)):
        packet = IP(src=VM_IP, dst=SERVER_IP) / l4("udp", sport)
        network.send(VM[tenant], from_vm(tenant, packet), NOW)
    return gw(network)


@pytest.fixture
def sessions_api(
    each_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[GatewayNode]:
    """The API of a store (SQLite, then etcd) holding the gateway config (its routing
    domains' names, its revision), serving the sessions of ``nat_gateway()``; every
    verb talks to it."""
    node = nat_gateway()
    node.now = NOW + 10  # the clock of its last batch

    async def swap(policy: Any) -> None:
        pass

    config = gateway_config(tmp_path, nat_gateway_text())
    with anyio.from_thread.start_blocking_portal() as portal:
        store = portal.call(seeded, config, host1_prepare(), swap)
        app = build_api(store, "gw", dict, nat_sessions=lambda: node_sessions(node))
        with cli_talks_to(app, portal, monkeypatch):
            yield node


def test_the_sessions_are_listed_with_both_sides_and_filtered(sessions_api: GatewayNode) -> None:
    listed = json.loads(nvgw("nat", "sessions", "--json").output)
    assert listed["matched"] == 3
    first = listed["sessions"][0]
    assert {k: first[k] for k in ("rdid", "routing_domain", "protocol", "ca", "ca_port")} == {
        "rdid": BLUE, "routing_domain": "blue", "protocol": "udp", "ca": VM_IP, "ca_port": 1111,
    }  # fmt: skip
    assert first["external"] in EXT_ADDRESSES and (first["remote"], first["remote_port"]) == (
        SERVER_IP,
        7,
    )
    assert (first["state"], first["opened_by"], first["out_packets"]) == (
        "udp_unreplied",
        "tenant",
        1,
    )
    assert first["age_s"] == 10
    red = json.loads(nvgw("nat", "sessions", "--rdid", RED, "--json").output)
    assert [s["routing_domain"] for s in red["sessions"]] == ["red"]
    by_name = json.loads(nvgw("nat", "sessions", "--rdid", "Blue", "--json").output)
    assert [s["ca_port"] for s in by_name["sessions"]] == [1111, 2222]
    nobody = json.loads(nvgw("nat", "sessions", "--ca", "10.10.10.99", "--json").output)
    assert nobody["matched"] == 0 and nobody["sessions"] == []
    one = json.loads(nvgw("nat", "sessions", "--limit", "1", "--json").output)
    assert one["matched"] == 3 and len(one["sessions"]) == 1
    assert len(sessions_api.napt.by_out) == 3  # type: ignore[union-attr]  (read, not changed)


def test_the_table_names_each_side_and_says_what_the_limit_left_out(
    sessions_api: GatewayNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # a terminal wide enough for a row on one line
    shown = nvgw("nat", "sessions", "--rdid", "red", "--limit", "1")
    assert shown.exit_code == 0, shown.output
    assert f"{VM_IP}:1111" in shown.output and f"{SERVER_IP}:7" in shown.output
    assert "udp_unreplied" in shown.output and "NAT sessions (policy revision 0)" in shown.output
    both = nvgw("nat", "sessions", "--limit", "2")
    assert both.output.endswith("2 of 3 sessions shown (--limit)\n")


def test_bad_filters_are_refused_and_a_node_without_nat_has_no_sessions(
    sessions_api: GatewayNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = nvgw("nat", "sessions", "--ca", "10.10.10")
    assert bad.exit_code == 1 and "ca='10.10.10' is not an IPv4 address" in bad.output
    sessions_api.napt = None  # (as a host, or a gateway without nat:)
    none = nvgw("nat", "sessions")
    assert none.exit_code == 1 and "this node has no NAT" in none.output
