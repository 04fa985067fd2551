"""The objects load_policy builds: canonical values, defaults, immutability, accessors."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pydantic
import pytest

from gateway.errors import ConfigError
from gateway.policy import (
    DEFAULT_METRIC,
    Mac,
    NodeRole,
    RecordType,
    Rule,
    format_path,
    load_policy,
    parse_path,
)

from ._documents import BLUE, RED, base_document


def _load_with(path: str, value: object):
    document = base_document()
    *parents, last = parse_path(path)
    node = document
    for part in parents:
        node = node[part]
    node[last] = value
    return load_policy(document)


def test_objects_hold_canonical_values() -> None:
    policy = load_policy(base_document())
    assert policy.revision == 7
    blue = policy.routing_domains[0]
    assert (blue.rdid, blue.name) == (BLUE, "blue")
    subnet = blue.virtual_subnets[1]
    assert subnet.prefixes == (IPv4Network("10.10.20.0/24"), IPv6Network("fd00:20::/64"))
    assert subnet.prefix_for(6) == IPv6Network("fd00:20::/64")
    assert blue.virtual_subnets[0].gateway == IPv4Address("10.10.10.1")
    record = policy.lookup_records[0]
    assert record.ca == IPv4Address("10.10.10.11")
    assert record.pa == IPv4Address("198.18.0.1")
    assert record.mac == bytes.fromhex("000000000011")
    assert isinstance(record.mac, Mac) and str(record.mac) == "00-00-00-00-00-11"
    assert (record.rule, record.type, record.vm) == (Rule.ENCAP, RecordType.STATIC, "blue1")
    route = policy.customer_routes[0]
    assert route.on_link and route.metric == 255
    host1 = policy.node("host1")
    assert host1.role is NodeRole.HOST
    assert host1.provider_addresses[0].vlan is None
    assert [port.name for port in host1.ports] == ["blue1", "red1"]


@pytest.mark.parametrize(
    "written", ["00-00-00-00-00-1A", "00:00:00:00:00:1a", "00000000001a", "00-00-00-00-00-1a"]
)
def test_mac_forms_are_one_mac(written: str) -> None:
    document = base_document()
    document["lookup_records"][4]["mac"] = written
    document["nodes"]["host2"]["ports"][2]["mac"] = "00-00-00-00-00-1A"
    policy = load_policy(document)
    assert str(policy.lookup_records[4].mac) == "00-00-00-00-00-1a"
    assert policy.lookup_records[4].mac == policy.node("host2").ports[2].mac


def test_a_twelve_digit_int_is_a_mac() -> None:
    """YAML reads an unquoted 001122334455-style MAC without a leading zero as an int."""
    document = base_document()
    document["lookup_records"][4]["mac"] = 200000000013
    document["nodes"]["host2"]["ports"][2]["mac"] = "20-00-00-00-00-13"
    policy = load_policy(document)
    assert str(policy.lookup_records[4].mac) == "20-00-00-00-00-13"


@pytest.mark.parametrize("value", [11, 12345678901234, "0000-0000-0011", "00-00-00-00-00"])
def test_other_macs_are_refused(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        _load_with("lookup_records[4].mac", value)
    assert caught.value.issues[0].message.startswith("not a MAC address")


def test_rdid_is_case_insensitive_and_canonical() -> None:
    document = base_document()
    document["routing_domains"][0]["rdid"] = BLUE.upper()
    policy = load_policy(document)
    assert policy.routing_domains[0].rdid == BLUE
    assert policy.routing_domain(BLUE.upper()) is policy.routing_domains[0]


def test_unquoted_rdid_says_to_quote_it() -> None:
    with pytest.raises(ConfigError) as caught:
        _load_with("routing_domains[0].rdid", {BLUE[1:-1]: None})
    assert "quote the GUID" in caught.value.issues[0].message


@pytest.mark.parametrize(
    ("written", "rule"),
    [("nat", Rule.IP_REWRITE), ("NAT", Rule.IP_REWRITE), ("TranslationMethodEncap", Rule.ENCAP)],
)
def test_rule_spellings(written: str, rule: Rule) -> None:
    document = base_document()
    document["lookup_records"][4].update(rule=written, pa="198.18.0.50")
    document["nodes"]["host2"]["provider_addresses"].append(
        {"interface": "pa0", "pa": "198.18.0.50", "prefix_length": 24}
    )
    assert load_policy(document).lookup_records[4].rule is rule
    assert Rule.IP_REWRITE.label == "ip_rewrite"


def test_defaults() -> None:
    document = base_document()
    del document["revision"]
    del document["customer_routes"][0]["metric"]
    document["lookup_records"][0]["type"] = "L2Only"
    policy = load_policy(document)
    assert policy.revision == 0
    assert policy.customer_routes[0].metric == DEFAULT_METRIC == 256
    assert policy.lookup_records[0].type is RecordType.L2ONLY
    assert policy.lookup_records[1].type is RecordType.STATIC


def test_empty_document_is_an_empty_policy() -> None:
    policy = load_policy({})
    assert policy.counts() == dict.fromkeys(policy.counts(), 0)


def test_ipv6_everywhere() -> None:
    document = base_document()
    document["lookup_records"][4]["ca"] = "fd00:20::13"
    document["lookup_records"][4]["pa"] = "2001:db8::2"
    document["nodes"]["host2"]["provider_addresses"].append(
        {"interface": "pa0", "pa": "2001:db8::2", "prefix_length": 64, "vlan": 12}
    )
    document["customer_routes"].append(
        {"rdid": BLUE, "vsid": 5012, "destination": "fd00:20::/64", "next_hop": "::"}
    )
    policy = load_policy(document)
    assert policy.lookup_records[4].ca == IPv6Address("fd00:20::13")
    assert policy.customer_routes[3].on_link


def test_policy_is_frozen() -> None:
    policy = load_policy(base_document())
    with pytest.raises(AttributeError):
        policy.revision = 8  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        policy.lookup_records[0].pa = IPv4Address("198.18.0.9")  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.nodes[0].ports[0] = None  # type: ignore[index]


def test_accessors() -> None:
    policy = load_policy(base_document())
    assert [subnet.vsid for subnet in policy.virtual_subnets] == [5010, 5012, 5011]
    assert policy.virtual_subnet(5011).prefixes == (IPv4Network("10.10.10.0/24"),)
    assert policy.rdid_of(5012) == BLUE and policy.rdid_of(5011) == RED
    assert policy.routing_domain(RED).name == "red"
    with pytest.raises(KeyError):
        policy.virtual_subnet(5099)
    with pytest.raises(KeyError):
        policy.node("host9")
    assert policy.counts() == {
        "routing_domains": 2,
        "virtual_subnets": 3,
        "lookup_records": 5,
        "encap_records": 5,
        "ip_rewrite_records": 0,
        "customer_routes": 3,
        "nodes": 2,
        "provider_addresses": 2,
        "ports": 5,
    }


def test_loading_twice_gives_equal_policies() -> None:
    assert load_policy(base_document()) == load_policy(base_document())


@pytest.mark.parametrize(
    "loc",
    [
        ("routing_domains", 0, "virtual_subnets", 1, "vsid"),
        ("nodes", "host-1", "ports", 0),
        ("nodes", "a b", "role"),
        ("nodes", 5),
        ("x", None),
        (),
    ],
)
def test_paths_read_back(loc: tuple[object, ...]) -> None:
    text = format_path(loc)
    expected = tuple("None" if part is None else part for part in loc)
    assert parse_path(text) == expected


def test_public_names() -> None:
    import gateway.policy as policy_package

    for name in policy_package.__all__:
        assert hasattr(policy_package, name)
    assert "compile" not in policy_package.__all__  # never shadow the builtin
