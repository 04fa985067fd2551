"""A gateway's NAT config (``nodes.gw.nat``, ``nodes.gw.routing_domains.NAME.nat``):
the shape the schema accepts, and every refusal with its path, value and message
(and, through the file loader, its file and line)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from gateway.control.entries import policy_json
from gateway.dataplane.napt import Timeouts
from gateway.policy import NatTimeouts, NextHopKind, compile_gateway, compile_policy, load_policy

from ._gateway_document import gateway_document
from .test_gateway_node import (
    BLUE_GW,
    GW,
    RED_GW,
    _append,
    _route,
    refused_at_line,
    refused_at_path,
)
from .test_policy_rules import Case, _set

Doc = dict[str, Any]
NAT = f"{GW}.nat"


def nat_document() -> Doc:
    """The gateway document with the lab's NAT: Blue and Red route 0.0.0.0/0 to it."""
    document = gateway_document()
    gw = document["nodes"]["gw"]
    gw["nat"] = {
        "tap": "gw-ext",
        "addresses": ["203.0.113.10/24", "203.0.113.11/24"],
        "next_hop": "203.0.113.1",
        "max_sessions": 1000,
        "timeouts": {"udp_unreplied_s": 5, "tcp_established_s": 600.5},
    }
    for domain in gw["routing_domains"].values():
        domain["routes"].append(_route("0.0.0.0/0", "nat"))
    gw["routing_domains"]["blue"]["nat"] = {"max_sessions": 10, "log": True}
    return document


def test_the_nat_document_loads() -> None:
    policy = load_policy(nat_document())
    gw = policy.node("gw")
    assert gw.nat is not None
    assert gw.nat.tap == "gw-ext"
    assert gw.nat.addresses == (IPv4Interface("203.0.113.10/24"), IPv4Interface("203.0.113.11/24"))
    assert gw.nat.next_hop == IPv4Address("203.0.113.1")
    assert gw.nat.max_sessions == 1000
    assert gw.nat.timeouts.udp_unreplied_s == 5
    assert gw.nat.timeouts.tcp_established_s == 600.5
    assert gw.nat.timeouts.icmp_s is None  # the core's default
    assert gw.routing_domains is not None
    blue = gw.routing_domains["blue"]
    assert blue.nat is not None and (blue.nat.max_sessions, blue.nat.log) == (10, True)
    assert [r.next_hop.kind for r in blue.routes][-1] is NextHopKind.NAT
    red = next(d for k, d in gw.routing_domains.items() if k != "blue")
    assert red.nat is None  # the core's share, unlogged


def test_the_timeouts_name_the_cores_fields() -> None:
    """The config's timeouts are the NAPT core's, one for one."""
    assert set(NatTimeouts.model_fields) == {f.name for f in fields(Timeouts)}


def _without_nat(keep_route: bool, keep_domain_nat: bool) -> Callable[[Doc], None]:
    """No ``nodes.gw.nat``; Blue keeps its route to nat or its ``nat:``, Red neither."""

    def mutate(doc: Doc) -> None:
        gw = doc["nodes"]["gw"]
        del gw["nat"]
        for key, domain in gw["routing_domains"].items():
            if key != "blue" or not keep_route:
                domain["routes"].pop()
            if key == "blue" and not keep_domain_nat:
                del domain["nat"]

    return mutate


def _nat_at(addresses: list[str], next_hop: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        doc["nodes"]["gw"]["nat"] |= {"addresses": addresses, "next_hop": next_hop}

    return mutate


def _host_nat(doc: Doc) -> None:
    doc["nodes"]["host1"]["nat"] = doc["nodes"]["gw"]["nat"]


CASES = [
    Case(
        "route-to-nat-without-nat",
        _without_nat(keep_route=True, keep_domain_nat=False),
        f"{BLUE_GW}.routes[2].next_hop",
        "nat",
        "node gw has no NAT: add nodes.gw.nat",
    ),
    Case(
        "domain-nat-without-nat",
        _without_nat(keep_route=False, keep_domain_nat=True),
        f"{BLUE_GW}.nat",
        "nat",
        "node gw has no NAT: add nodes.gw.nat",
    ),
    Case(
        "tap-named-as-a-tenant-tap",
        _set(f"{NAT}.tap", "gw-blue"),
        f"{NAT}.tap",
        "gw-blue",
        f"also a TAP of node gw ({BLUE_GW}.taps[0]): the external TAP needs a name of its own",
    ),
    Case(
        "tap-named-as-provider-interface",
        _set(f"{NAT}.tap", "pa0"),
        f"{NAT}.tap",
        "pa0",
        "also a provider interface of node gw: the external TAP needs a name of its own",
    ),
    Case(
        "tap-name-too-long",
        _set(f"{NAT}.tap", "gw-external-tap0"),
        f"{NAT}.tap",
        "gw-external-tap0",
        "15",
    ),
    Case(
        "address-is-a-pa",
        _nat_at(["198.18.0.10/24"], "198.18.0.254"),
        f"{NAT}.addresses[0]",
        "198.18.0.10/24",
        "also a provider address (nodes.gw.provider_addresses[0])",
    ),
    Case(
        "address-is-a-tap-address",
        _nat_at(["172.16.0.1/24"], "172.16.0.254"),
        f"{NAT}.addresses[0]",
        "172.16.0.1/24",
        f"also the gateway's address on TAP gw-blue ({BLUE_GW}.taps[0]): an external address "
        "is the NAT's alone",
    ),
    Case(
        "address-twice",
        _set(f"{NAT}.addresses", ["203.0.113.10/24", "203.0.113.10/24"]),
        f"{NAT}.addresses[1]",
        "203.0.113.10/24",
        "duplicate external address: addresses[0] has it",
    ),
    Case(
        "addresses-in-two-subnets",
        _set(f"{NAT}.addresses", ["203.0.113.10/24", "198.51.100.10/24"]),
        f"{NAT}.addresses[1]",
        "198.51.100.10/24",
        "not in 203.0.113.0/24 (addresses[0])",
    ),
    Case(
        "address-broadcast",
        _append(f"{NAT}.addresses", "203.0.113.255/24"),
        f"{NAT}.addresses[2]",
        "203.0.113.255/24",
        "the broadcast address of 203.0.113.0/24",
    ),
    Case(
        "address-ipv6",
        _append(f"{NAT}.addresses", "2001:db8::10/64"),
        f"{NAT}.addresses[2]",
        "2001:db8::10/64",
        "IPv4 only",
    ),
    Case(
        "no-address",
        _set(f"{NAT}.addresses", []),
        f"{NAT}.addresses",
        [],
        "at least one external address",
    ),
    Case(
        "next-hop-outside",
        _set(f"{NAT}.next_hop", "198.51.100.1"),
        f"{NAT}.next_hop",
        "198.51.100.1",
        "not in the external subnet 203.0.113.0/24: a next hop is a neighbour",
    ),
    Case(
        "next-hop-is-external",
        _set(f"{NAT}.next_hop", "203.0.113.11"),
        f"{NAT}.next_hop",
        "203.0.113.11",
        "one of the external addresses",
    ),
    Case(
        "next-hop-network-address",
        _set(f"{NAT}.next_hop", "203.0.113.0"),
        f"{NAT}.next_hop",
        "203.0.113.0",
        "the network address of 203.0.113.0/24",
    ),
    Case(
        "max-sessions-zero",
        _set(f"{NAT}.max_sessions", 0),
        f"{NAT}.max_sessions",
        0,
        "a NAT session limit",
    ),
    Case(
        "timeout-negative",
        _set(f"{NAT}.timeouts.icmp_s", -1),
        f"{NAT}.timeouts.icmp_s",
        -1,
        "greater than 0",
    ),
    Case(
        "timeout-unknown",
        _set(f"{NAT}.timeouts.icmp_timeout", 5),
        f"{NAT}.timeouts.icmp_timeout",
        5,
        "unknown key",
    ),
    Case("nat-unknown-key", _set(f"{NAT}.pool", "x"), f"{NAT}.pool", "x", "unknown key"),
    Case(
        "domain-nat-unknown-key",
        _set(f"{BLUE_GW}.nat.logging", True),
        f"{BLUE_GW}.nat.logging",
        True,
        "unknown key",
    ),
    Case(
        "domain-log-not-a-bool",
        _set(f"{BLUE_GW}.nat.log", "yes"),
        f"{BLUE_GW}.nat.log",
        "yes",
        "must be true or false",
    ),
    Case(
        "nat-on-a-host",
        _host_nat,
        "nodes.host1.nat",
        None,
        "not on a host node: only a gateway node translates to the internet",
    ),
    Case(
        "route-to-unknown-tunnel",
        _append(f"{RED_GW}.routes", _route("172.31.0.0/16", "tunnel:x")),
        f"{RED_GW}.routes[2].next_hop",
        "tunnel:x",
        "no tunnel has this name (tunnels: none)",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_refusal_names_path_and_value(case: Case) -> None:
    refused_at_path(nat_document(), case)


@pytest.mark.parametrize("case", CASES[:4], ids=[case.id for case in CASES[:4]])
def test_refusal_names_file_and_line(case: Case, tmp_path: Path) -> None:
    refused_at_line(nat_document(), case, tmp_path)


def test_a_route_to_nat_compiles_to_the_nat() -> None:
    """Blue's 0.0.0.0/0 to nat sits beside its TAP routes: the longest prefix still
    wins, and everything else leads to the NAT."""
    policy = load_policy(nat_document())
    table = compile_gateway(compile_policy(policy), "gw")
    rdid = next(iter(table.served))
    out = table.route(rdid, IPv4Address("198.51.100.7").packed)
    assert out is not None and out.nat and str(out.destination) == "0.0.0.0/0"
    corp = table.route(rdid, IPv4Address("172.16.0.2").packed)
    assert corp is not None and not corp.nat and corp.tap == "gw-blue"


def test_the_api_shape_loads_back_unchanged() -> None:
    """GET /v1/policy gives the NAT in the file's shape, and it loads back the same."""
    policy = load_policy(nat_document())
    document = policy_json(policy)
    nat = document["nodes"]["gw"]["nat"]
    assert (nat["tap"], nat["addresses"], nat["next_hop"]) == (
        "gw-ext",
        ["203.0.113.10/24", "203.0.113.11/24"],
        "203.0.113.1",
    )
    assert document["nodes"]["gw"]["routing_domains"]["blue"]["nat"]["log"] is True
    assert "nat" not in document["nodes"]["host1"]
    assert load_policy(document) == policy
