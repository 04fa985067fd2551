"""A gateway's compiled table per routing domain (``compile_gateway``): where each
route leads on the gateway lab's document, and a differential test against a naive
scan (style.md, testing habit 4): node routes plus customer routes minus those to the
gateway's own CA; longest prefix, then the node route, then the lowest metric, then
on-link, then the lowest next hop. Random routes and addresses, two routing domains
with the same prefixes, and again after removing routes."""

from __future__ import annotations

import random
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

import pytest

from gateway.policy import (
    CustomerRoute,
    GatewayHop,
    GatewayTable,
    NodeRoute,
    Tap,
    compile_gateway,
    compile_policy,
    load_policy,
)

from ._documents import BLUE, RED, route
from ._gateway_document import gateway_document


def _packed(address: str) -> bytes:
    return ip_address(address).packed


def _table(document: dict[str, Any]) -> GatewayTable:
    return compile_gateway(compile_policy(load_policy(document)), "gw")


def test_where_the_labs_routes_lead() -> None:
    table = _table(gateway_document())
    assert list(table.served) == [BLUE, RED]  # by RDID, the key written as name or GUID
    assert table.served[BLUE].taps == (Tap(name="gw-blue", address="172.16.0.1/24"),)
    assert dict(table.tap_rdid) == {"gw-blue": BLUE, "gw-red": RED}

    on_tap = table.route(BLUE, _packed("172.16.0.7"))
    assert on_tap is not None and isinstance(on_tap.route, NodeRoute)
    assert (on_tap.tap, on_tap.vsid, on_tap.next_hop_bytes, on_tap.metric) == (
        "gw-blue",
        None,
        None,  # on-link: to the destination itself
        None,
    )
    via = table.route(BLUE, _packed("172.16.50.9"))
    assert via is not None and (via.tap, via.next_hop_bytes) == ("gw-blue", _packed("172.16.0.2"))

    to_vm = table.route(BLUE, _packed("10.10.10.11"))  # the customer route, on-link in 5010
    assert to_vm is not None and isinstance(to_vm.route, CustomerRoute)
    assert (to_vm.tap, to_vm.vsid, to_vm.next_hop_bytes, to_vm.metric) == (None, 5010, None, 255)
    assert table.route(BLUE, _packed("10.10.20.13")).vsid == 5012  # type: ignore[union-attr]
    # 0.0.0.0/0 via 10.10.10.254 is what the hosts send to this gateway: not its route.
    assert table.route(BLUE, _packed("192.0.2.1")) is None
    # Red: its own TAP for the whole /16; Blue's second subnet is nothing of Red's.
    assert table.route(RED, _packed("172.16.1.1")).tap == "gw-red"  # type: ignore[union-attr]
    assert table.route(RED, _packed("10.10.20.13")) is None
    assert table.route(RED, _packed("10.10.10.11")).vsid == 5011  # type: ignore[union-attr]


def test_order_longest_prefix_then_node_route_then_metric() -> None:
    document = gateway_document()
    document["customer_routes"] += [
        # Same prefix as a node route, a better metric: the node route still wins.
        route(BLUE, 5010, "172.16.0.0/24", "10.10.10.12", metric=0),
        # Longer than the node route: the longest prefix wins, whatever its source.
        route(BLUE, 5010, "172.16.0.128/25", "10.10.10.12", metric=9),
        route(BLUE, 5010, "172.16.0.128/25", "10.10.10.11", metric=9),
        # Another gateway's CA is an ordinary next hop (not this one's own).
        route(BLUE, 5010, "192.0.2.0/24", "10.10.10.200", metric=1),
    ]
    document["lookup_records"].append(
        {"vsid": 5010, "ca": "10.10.10.200", "mac": "02-00-00-00-50-99", "pa": "198.18.0.99",
         "rule": "encap", "type": "gateway"}
    )  # fmt: skip
    table = _table(document)
    assert table.route(BLUE, _packed("172.16.0.5")).tap == "gw-blue"  # type: ignore[union-attr]
    longer = table.route(BLUE, _packed("172.16.0.200"))
    assert longer is not None and longer.vsid == 5010 and longer.tap is None
    # Equal metric: the lower next hop; its CA resolves through its lookup record.
    assert longer.next_hop_bytes == _packed("10.10.10.11")
    assert longer.record is not None and longer.record.pa_bytes == _packed("198.18.0.1")
    far = table.route(BLUE, _packed("192.0.2.1"))
    assert far is not None and far.record is not None
    assert far.record.pa_bytes == _packed("198.18.0.99")


def test_only_gateway_nodes_have_a_table() -> None:
    snapshot = compile_policy(load_policy(gateway_document()))
    with pytest.raises(ValueError, match="node host1 is a host node, not a gateway"):
        compile_gateway(snapshot, "host1")
    with pytest.raises(KeyError):
        compile_gateway(snapshot, "gw9")


# ---------------------------------------------------------------- differential

RDIDS = ["{00000000-0000-4000-8000-00000000000a}", "{00000000-0000-4000-8000-00000000000b}"]
V4_SUBNET, V6_SUBNET = IPv4Network("10.0.0.0/16"), IPv6Network("fd00::/16")
TAPS = {"t-a": "172.16.0.1/24", "t-b": "172.17.0.1/16"}  # per RDID: the name gets its index
OWN_CA = "10.0.0.254"  # the gateway's CA in each RDID's VSID


def _document(node_routes: list[dict[str, Any]], customer: list[dict[str, Any]]) -> dict:
    domains, records, served = [], [], {}
    for index, rdid in enumerate(RDIDS):
        vsid = 5000 + index
        prefixes = [str(V4_SUBNET), str(V6_SUBNET)]
        domains.append({"rdid": rdid, "virtual_subnets": [{"vsid": vsid, "prefixes": prefixes}]})
        mac = f"02-00-00-00-00-{index:02x}"
        records.append(
            {"vsid": vsid, "ca": OWN_CA, "mac": mac, "pa": "198.18.0.10", "rule": "encap",
             "type": "gateway"}
        )  # fmt: skip
        for host in (1, 2, 3):  # CAs 10.0.0.1..3 have records; .4..6 do not
            mac = f"00-00-00-00-{index:02x}-{host:02x}"
            pa = f"198.18.0.{host}"
            records.append(
                {"vsid": vsid, "ca": f"10.0.0.{host}", "mac": mac, "pa": pa, "rule": "encap"}
            )
        taps = [{"name": f"{name}{index}", "address": address} for name, address in TAPS.items()]
        routes = [{"destination": r["destination"], "next_hop": r["next_hop"]}
                  for r in node_routes if r["rdid"] == rdid]  # fmt: skip
        served[rdid] = {"taps": taps, "routes": routes}
    gateway = {
        "role": "gateway",
        "provider_addresses": [{"interface": "pa0", "pa": "198.18.0.10", "prefix_length": 24}],
        "routing_domains": served,
    }
    return {
        "routing_domains": domains,
        "lookup_records": records,
        "customer_routes": customer,
        "nodes": {"gw": gateway},
    }


def _random_prefix(rng: random.Random, version: int) -> str:
    bits = 32 if version == 4 else 128
    lengths = [0, 8, 16, 24, 32] if version == 4 else [0, 16, 48, 64, 128]
    length = rng.choice(lengths) if rng.random() < 0.8 else rng.randint(0, bits)
    # Clustered around the virtual subnet and the TAP subnets, so that prefixes nest.
    bases = [V4_SUBNET, IPv4Network("172.16.0.0/12")] if version == 4 else [V6_SUBNET]
    base = rng.choice(bases)
    address = int(base.network_address) + rng.getrandbits(bits - base.prefixlen)
    if rng.random() < 0.2:
        address = rng.getrandbits(bits)
    return str(ip_network((address, length), strict=False))


def _random_node_routes(rng: random.Random, count: int) -> list[dict[str, Any]]:
    routes: dict[tuple[str, str], dict[str, Any]] = {}
    while len(routes) < count:
        index = rng.randrange(len(RDIDS))
        destination = _random_prefix(rng, 4)
        if rng.random() < 0.5:
            next_hop = f"tap:{rng.choice(list(TAPS))}{index}"
        else:  # a neighbour on one of the TAPs, never the gateway's own .1
            next_hop = rng.choice(["172.16.0.", "172.17.3."]) + str(rng.randint(2, 9))
        routes[RDIDS[index], destination] = {
            "rdid": RDIDS[index],
            "destination": destination,
            "next_hop": next_hop,
        }
    return list(routes.values())


def _random_customer_routes(rng: random.Random, count: int) -> list[dict[str, Any]]:
    routes: dict[tuple[str, str, str], dict[str, Any]] = {}
    while len(routes) < count:
        index = rng.randrange(len(RDIDS))
        version = 4 if rng.random() < 0.8 else 6
        if version == 6:
            next_hop = rng.choice(["::", "fd00::1", "fd00::2"])
        else:
            next_hop = rng.choice(["0.0.0.0", OWN_CA, *(f"10.0.0.{n}" for n in range(1, 7))])
        entry = route(
            RDIDS[index],
            5000 + index,
            _random_prefix(rng, version),
            next_hop,
            metric=rng.choice([0, 1, 1, 2, 256]),
        )
        routes[entry["rdid"], entry["destination"], next_hop] = entry
    return list(routes.values())


class Naive:
    """Every candidate route scanned for every lookup."""

    def __init__(self, node_routes: list[dict], customer: list[dict]) -> None:
        self.candidates: list[tuple[str, IPv4Network | IPv6Network, tuple, tuple]] = []
        for entry in node_routes:
            network = ip_network(entry["destination"])
            found = (network, "node", entry["next_hop"])
            self.candidates.append((entry["rdid"], network, (0, 0, b""), found))
        for entry in customer:
            network, hop = ip_network(entry["destination"]), ip_address(entry["next_hop"])
            if str(hop) == OWN_CA:
                continue
            packed = b"" if hop.is_unspecified else hop.packed
            found = (network, "customer", str(hop))
            self.candidates.append((entry["rdid"], network, (1, entry["metric"], packed), found))

    def route(self, rdid: str, destination: bytes) -> tuple | None:
        address = ip_address(destination)
        matches = [
            ((-network.prefixlen, *rank), found)
            for found_rdid, network, rank, found in self.candidates
            if found_rdid == rdid and network.version == address.version and address in network
        ]
        return min(matches)[1] if matches else None


def _found(hop: GatewayHop | None) -> tuple | None:
    if hop is None:
        return None
    if isinstance(hop.route, NodeRoute):
        return (hop.destination, "node", str(hop.route.next_hop))
    return (hop.destination, "customer", str(hop.route.next_hop))


def _addresses(rng: random.Random, prefixes: list[str], count: int) -> list[bytes]:
    found = []
    for _ in range(count):
        if rng.random() < 0.6 and prefixes:
            network = ip_network(rng.choice(prefixes))
            found.append(
                (network.network_address + rng.randint(0, network.num_addresses - 1)).packed
            )
        else:
            found.append(ip_network(_random_prefix(rng, 4 if rng.random() < 0.8 else 6))
                         .network_address.packed)  # fmt: skip
    return found


def _compare(node_routes: list[dict], customer: list[dict], addresses: list[bytes]) -> int:
    table = _table(_document(node_routes, customer))
    naive = Naive(node_routes, customer)
    matched = 0
    for destination in addresses:
        for rdid in RDIDS:
            expected = naive.route(rdid, destination)
            assert _found(table.route(rdid, destination)) == expected, (rdid, destination)
            matched += expected is not None
    return matched


def _check_hops(node_routes: list[dict], customer: list[dict]) -> None:
    """Each hop says where it leads, consistently with the route it came from: a node
    route out of a TAP of its own routing domain, a customer route into a VSID with
    its next hop's record when that CA has one."""
    table = _table(_document(node_routes, customer))
    with_records = {(r["vsid"], r["ca"]) for r in _document([], [])["lookup_records"]}
    checked = 0
    for entry in node_routes + customer:
        if entry["next_hop"] == OWN_CA:
            continue  # not in the table
        network = ip_network(entry["destination"])
        hop = table.route(entry["rdid"], network.network_address.packed)
        assert hop is not None
        if hop.destination != network:
            continue  # a longer prefix holds this address
        checked += 1
        if isinstance(hop.route, NodeRoute):
            assert hop.tap is not None and hop.vsid is None and hop.record is None
            assert table.tap_rdid[hop.tap] == entry["rdid"]
        else:
            assert hop.tap is None and hop.vsid == 5000 + RDIDS.index(entry["rdid"])
            if hop.next_hop_bytes is not None:
                ca = str(ip_address(hop.next_hop_bytes))
                assert ((hop.vsid, ca) in with_records) == (hop.record is not None)
                assert hop.record is None or hop.record.ca_bytes == hop.next_hop_bytes
    assert checked > len(node_routes)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_gateway_lpm_matches_a_naive_scan_and_after_removals(seed: int) -> None:
    rng = random.Random(seed)
    node_routes = _random_node_routes(rng, 400)
    customer = _random_customer_routes(rng, 800)
    prefixes = [r["destination"] for r in node_routes + customer]
    addresses = _addresses(rng, prefixes, 1200)
    assert _compare(node_routes, customer, addresses) > 1000  # matches are common
    _check_hops(node_routes, customer)
    for keep in (0.5, 0.1):
        node_routes = rng.sample(node_routes, int(len(node_routes) * keep))
        customer = rng.sample(customer, int(len(customer) * keep))
        _compare(node_routes, customer, addresses)
