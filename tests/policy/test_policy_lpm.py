"""Differential test of the per-RDID longest-prefix match (style.md, testing habit 4).

``Snapshot.route()`` against a naive scan over every route: longest prefix first, then
the lowest metric, then on-link before a next hop, then the lowest next hop. Thousands
of random routes and addresses, IPv4 and IPv6, two routing domains with the same
prefixes, and again after removing routes (a rebuilt snapshot).
"""

from __future__ import annotations

import random
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

import pytest

from gateway.policy import CompiledRoute, compile_policy, load_policy

RDIDS = ["{00000000-0000-4000-8000-00000000000a}", "{00000000-0000-4000-8000-00000000000b}"]
# Each RDID has one subnet per family that holds every next hop the routes use.
V4_SUBNET, V6_SUBNET = IPv4Network("10.0.0.0/8"), IPv6Network("fd00::/16")


def _document(routes: list[dict[str, Any]]) -> dict[str, Any]:
    domains = [
        {
            "rdid": rdid,
            "virtual_subnets": [
                {"vsid": 5000 + index, "prefixes": [str(V4_SUBNET), str(V6_SUBNET)]}
            ],
        }
        for index, rdid in enumerate(RDIDS)
    ]
    return {"routing_domains": domains, "customer_routes": routes}


def _random_prefix(rng: random.Random, version: int) -> str:
    bits = 32 if version == 4 else 128
    # Few distinct lengths, as in practice, plus the odd one anywhere in the range.
    lengths = [0, 8, 16, 24, 32] if version == 4 else [0, 16, 48, 64, 128]
    length = rng.choice(lengths) if rng.random() < 0.8 else rng.randint(0, bits)
    # Cluster addresses so that prefixes nest and overlap often.
    base = V4_SUBNET if version == 4 else V6_SUBNET
    address = int(base.network_address) + rng.getrandbits(bits - base.prefixlen)
    if rng.random() < 0.3:
        address = rng.getrandbits(bits)
    return str(ip_network((address, length), strict=False))


def _random_next_hop(rng: random.Random, version: int) -> str:
    if rng.random() < 0.4:
        return "0.0.0.0" if version == 4 else "::"
    base = V4_SUBNET if version == 4 else V6_SUBNET
    # A small pool, so that the same (destination, metric) often has several next hops.
    offset = rng.randint(1, 6)
    return str(base.network_address + offset)


def _random_routes(rng: random.Random, count: int) -> list[dict[str, Any]]:
    routes: dict[tuple[str, str, str], dict[str, Any]] = {}
    while len(routes) < count:
        rdid_index = rng.randrange(len(RDIDS))
        version = 4 if rng.random() < 0.6 else 6
        route = {
            "rdid": RDIDS[rdid_index],
            "vsid": 5000 + rdid_index,
            "destination": _random_prefix(rng, version),
            "next_hop": _random_next_hop(rng, version),
            "metric": rng.choice([0, 1, 1, 2, 256, 65535]),
        }
        routes[route["rdid"], route["destination"], route["next_hop"]] = route
    return list(routes.values())


class Naive:
    """Every route scanned for every lookup: the obviously right answer."""

    def __init__(self, routes: list[dict[str, Any]]) -> None:
        self.by_domain: dict[tuple[str, int], list[tuple]] = {}
        for route in routes:
            network = ip_network(route["destination"])
            hop = ip_address(route["next_hop"])
            size = 4 if network.version == 4 else 16
            first, last = int(network.network_address), int(network.broadcast_address)
            rank = (-network.prefixlen, route["metric"], b"" if hop.is_unspecified else hop.packed)
            found = (network, route["metric"], hop)
            self.by_domain.setdefault((route["rdid"], size), []).append((first, last, rank, found))

    def route(self, rdid: str, destination: bytes) -> tuple | None:
        address = int.from_bytes(destination, "big")
        matches = [
            (rank, found)
            for first, last, rank, found in self.by_domain.get((rdid, len(destination)), ())
            if first <= address <= last
        ]
        return min(matches)[1] if matches else None


def _found(route: CompiledRoute | None) -> tuple | None:
    if route is None:
        return None
    return (route.destination, route.metric, route.route.next_hop)


def _addresses(rng: random.Random, routes: list[dict[str, Any]], count: int) -> list[bytes]:
    found = []
    for _ in range(count):
        if rng.random() < 0.6 and routes:
            # Inside a random route's destination, so that matches are common.
            network = ip_network(rng.choice(routes)["destination"])
            span = network.num_addresses - 1
            found.append((network.network_address + rng.randint(0, span)).packed)
        else:
            version = 4 if rng.random() < 0.6 else 6
            prefix = ip_network(_random_prefix(rng, version))
            found.append(prefix.network_address.packed)
    return found


def _compare(routes: list[dict[str, Any]], addresses: list[bytes]) -> int:
    snapshot = compile_policy(load_policy(_document(routes)))
    naive = Naive(routes)
    matched = 0
    for destination in addresses:
        for rdid in RDIDS:
            expected = naive.route(rdid, destination)
            assert _found(snapshot.route(rdid, destination)) == expected, (rdid, destination)
            matched += expected is not None
    return matched


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lpm_matches_a_naive_scan_and_after_removals(seed: int) -> None:
    rng = random.Random(seed)
    routes = _random_routes(rng, 1500)
    addresses = _addresses(rng, routes, 1500)
    assert _compare(routes, addresses) > 1000  # the test really exercises matches
    # Remove routes (a rebuilt snapshot), most of them in two steps, and compare again.
    for keep in (0.5, 0.1):
        routes = rng.sample(routes, int(len(routes) * keep))
        _compare(routes, addresses)


def test_lpm_ties_are_broken_by_metric_then_next_hop() -> None:
    rdid = RDIDS[0]
    routes = [
        {"rdid": rdid, "vsid": 5000, "destination": "10.1.0.0/16", "next_hop": hop, "metric": m}
        for hop, m in [("10.0.0.3", 5), ("10.0.0.2", 5), ("0.0.0.0", 7), ("10.0.0.9", 1)]
    ]
    routes.append(
        {"rdid": rdid, "vsid": 5000, "destination": "10.1.2.0/24", "next_hop": "10.0.0.4"}
    )
    snapshot = compile_policy(load_policy(_document(routes)))
    assert str(snapshot.route(rdid, ip_address("10.1.2.3").packed).route.next_hop) == "10.0.0.4"  # type: ignore[union-attr]
    best = snapshot.route(rdid, ip_address("10.1.9.9").packed)
    assert best is not None and best.metric == 1
    del routes[3]  # the metric-1 route
    snapshot = compile_policy(load_policy(_document(routes)))
    best = snapshot.route(rdid, ip_address("10.1.9.9").packed)
    assert best is not None and str(best.route.next_hop) == "10.0.0.2"  # lowest next hop
    routes[2]["metric"] = 5  # on-link, same metric: on-link wins
    snapshot = compile_policy(load_policy(_document(routes)))
    best = snapshot.route(rdid, ip_address("10.1.9.9").packed)
    assert best is not None and best.next_hop_bytes is None
