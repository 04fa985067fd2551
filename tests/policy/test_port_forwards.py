"""Port forwards of a gateway's NAT (``nodes.gw.routing_domains.NAME.port_forwards``)
and the range of ports sessions get (``nodes.gw.nat.dynamic_ports``): the shape the
schema accepts, and every refusal with its path, value and message (and, through the
file loader, its file and line)."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from gateway.control.entries import policy_json
from gateway.policy import DYNAMIC_PORTS, load_policy

from ._gateway_document import RED
from .test_gateway_nat import NAT, nat_document
from .test_gateway_node import BLUE_GW, RED_GW, refused_at_line, refused_at_path
from .test_policy_rules import Case, _set

Doc = dict[str, Any]


def forward(port: int = 80, **fields: Any) -> dict[str, Any]:
    entry = {"protocol": "tcp", "address": "203.0.113.10", "port": port}
    return {**entry, "ca": "10.10.10.11", "ca_port": 80, **fields}


def forwards_document() -> Doc:
    """The NAT document with Blue's 203.0.113.10:80 and Red's :81 (TCP) to their
    10.10.10.11:80."""
    document = nat_document()
    domains = document["nodes"]["gw"]["routing_domains"]
    domains["blue"]["port_forwards"] = [forward(80)]
    domains[RED]["port_forwards"] = [forward(81)]
    return document


def _forward(domain: str, entry: dict[str, Any]) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        domains = doc["nodes"]["gw"]["routing_domains"]
        domains[RED if domain == "red" else domain]["port_forwards"].append(entry)

    return mutate


def _without_nat(doc: Doc) -> None:
    """No ``nodes.gw.nat``: Blue keeps its forward, nothing else uses the NAT."""
    gw = doc["nodes"]["gw"]
    del gw["nat"]
    del gw["routing_domains"][RED]["port_forwards"]
    for domain in gw["routing_domains"].values():
        domain.pop("nat", None)
        domain["routes"] = [r for r in domain["routes"] if r["next_hop"] != "nat"]


def test_the_forwards_load() -> None:
    policy = load_policy(forwards_document())
    gw = policy.node("gw")
    assert gw.nat is not None and gw.nat.dynamic_ports == DYNAMIC_PORTS == (1024, 65535)
    assert gw.routing_domains is not None
    [blue] = gw.routing_domains["blue"].port_forwards
    assert (blue.protocol, blue.address, blue.port) == ("tcp", IPv4Address("203.0.113.10"), 80)
    assert (blue.ca, blue.ca_port) == (IPv4Address("10.10.10.11"), 80)


def test_the_api_shape_loads_back_unchanged() -> None:
    document = forwards_document()
    document["nodes"]["gw"]["nat"]["dynamic_ports"] = [20000, 60000]
    policy = load_policy(document)
    shape = policy_json(policy)
    assert shape["nodes"]["gw"]["nat"]["dynamic_ports"] == [20000, 60000]
    assert shape["nodes"]["gw"]["routing_domains"][RED]["port_forwards"] == [forward(81)]
    assert load_policy(shape) == policy


CASES = [
    Case(
        "port-in-the-dynamic-range",
        _forward("blue", forward(8080, ca_port=8080)),
        f"{BLUE_GW}.port_forwards[1].port",
        8080,
        "inside the NAT's dynamic ports 1024-65535, which sessions are given: forward a "
        "port outside them, or narrow nodes.gw.nat.dynamic_ports",
    ),
    Case(
        "address-not-the-nats",
        _forward("blue", forward(82, address="203.0.113.12", ca_port=82)),
        f"{BLUE_GW}.port_forwards[1].address",
        "203.0.113.12",
        "not an external address of node gw's NAT (nat.addresses: 203.0.113.10, 203.0.113.11)",
    ),
    Case(
        "external-endpoint-twice",
        _forward("red", forward(80, ca_port=82)),
        f"{RED_GW}.port_forwards[1].port",
        80,
        f"203.0.113.10:80 is forwarded already: {BLUE_GW}.port_forwards[0]",
    ),
    Case(
        "tenant-endpoint-twice",
        _forward("blue", forward(83)),
        f"{BLUE_GW}.port_forwards[1].ca_port",
        80,
        f"10.10.10.11:80 is forwarded to already: {BLUE_GW}.port_forwards[0]",
    ),
    Case(
        "ca-outside-the-tenant",
        _forward("blue", forward(84, ca="10.99.0.1")),
        f"{BLUE_GW}.port_forwards[1].ca",
        "10.99.0.1",
        "not in an IPv4 subnet of this routing domain (10.10.10.0/24, 10.10.20.0/24)",
    ),
    Case(
        "forward-without-nat",
        _without_nat,
        f"{BLUE_GW}.port_forwards[0]",
        "port_forwards",
        "node gw has no NAT: add nodes.gw.nat",
    ),
    Case(
        "icmp-forward",
        _forward("blue", forward(85, protocol="icmp")),
        f"{BLUE_GW}.port_forwards[1].protocol",
        "icmp",
        "'tcp' or 'udp'",
    ),
    Case(
        "dynamic-ports-backwards",
        _set(f"{NAT}.dynamic_ports", [60000, 20000]),
        f"{NAT}.dynamic_ports",
        None,
        "the first port comes first: [first, last]",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_refusal_names_path_and_value(case: Case) -> None:
    refused_at_path(forwards_document(), case)


@pytest.mark.parametrize("case", CASES[:5], ids=[case.id for case in CASES[:5]])
def test_refusal_names_file_and_line(case: Case, tmp_path: Path) -> None:
    refused_at_line(forwards_document(), case, tmp_path)
