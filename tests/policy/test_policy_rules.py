"""One test per validation rule: a document with exactly that mistake is refused with
exactly one issue, naming the path and the value, and (through the file loader) the
file and the line where that path is written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.control import load_config
from gateway.errors import ConfigError, ConfigIssue
from gateway.policy import load_policy, parse_path

from ._documents import BLUE, RED, base_document, emit_yaml, port, record, route

Doc = dict[str, Any]


@dataclass(frozen=True)
class Case:
    id: str
    mutate: Callable[[Doc], None]
    path: str
    value: object
    message: str  # a fragment of the expected message


def _subnet(doc: Doc, domain: int, vsid: int, *prefixes: str, **extra: Any) -> None:
    entry = {"vsid": vsid, "prefixes": list(prefixes), **extra}
    doc["routing_domains"][domain]["virtual_subnets"].append(entry)


def _domain(doc: Doc, rdid: str, name: str, vsid: int, prefix: str) -> None:
    subnet = {"vsid": vsid, "prefixes": [prefix]}
    doc["routing_domains"].append({"rdid": rdid, "name": name, "virtual_subnets": [subnet]})


def _record(doc: Doc, *args: Any, **kwargs: Any) -> None:
    doc["lookup_records"].append(record(*args, **kwargs))


def _route(doc: Doc, *args: Any) -> None:
    doc["customer_routes"].append(route(*args))


def _node(doc: Doc, name: str) -> Doc:
    return doc["nodes"][name]


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = parse_path(path)
        node: Any = doc
        for part in parents:
            node = node[part]
        node[last] = value

    return mutate


def _move_blue1_to_host2(doc: Doc) -> None:
    moved = _node(doc, "host1")["ports"].pop(0)
    _node(doc, "host2")["ports"].append(moved)


OTHER = "{11111111-2222-3333-4444-000000009999}"
SUBNET0 = "routing_domains[0].virtual_subnets[0]"

CASES = [
    # Virtual subnets and routing domains.
    Case(
        "vsid-reserved-low",
        lambda d: _subnet(d, 0, 4095, "10.10.30.0/24"),
        "routing_domains[0].virtual_subnets[2].vsid",
        4095,
        "reserved: usable VSIDs are 4096..16777214",
    ),
    Case(
        "vsid-reserved-high",
        lambda d: _subnet(d, 0, 0xFFFFFF, "10.10.30.0/24"),
        "routing_domains[0].virtual_subnets[2].vsid",
        0xFFFFFF,
        "reserved",
    ),
    Case(
        "vsid-over-24-bits",
        lambda d: _subnet(d, 0, 1 << 24, "10.10.30.0/24"),
        "routing_domains[0].virtual_subnets[2].vsid",
        1 << 24,
        "out of range",
    ),
    Case(
        "vsid-twice-in-one-rdid",
        lambda d: _subnet(d, 0, 5012, "10.10.30.0/24"),
        "routing_domains[0].virtual_subnets[2].vsid",
        5012,
        "already used by routing_domains[0].virtual_subnets[1]",
    ),
    Case(
        "vsid-in-two-rdids",
        lambda d: _subnet(d, 0, 5011, "10.10.30.0/24"),
        "routing_domains[1].virtual_subnets[0].vsid",
        5011,
        "already used by routing_domains[0].virtual_subnets[2]",
    ),
    Case(
        "duplicate-rdid",
        lambda d: _domain(d, RED.upper(), "red-again", 6000, "10.20.0.0/16"),
        "routing_domains[2].rdid",
        RED,
        "duplicate RDID: routing_domains[1] has it",
    ),
    Case(
        "duplicate-rd-name",
        lambda d: _domain(d, OTHER, "blue", 6000, "10.20.0.0/16"),
        "routing_domains[2].name",
        "blue",
        "duplicate routing domain name: routing_domains[0] has it",
    ),
    Case(
        "overlap-in-one-rdid",
        lambda d: _subnet(d, 0, 5013, "10.10.0.0/16"),
        "routing_domains[0].virtual_subnets[2].prefixes[0]",
        "10.10.0.0/16",
        "overlaps 10.10.10.0/24 (routing_domains[0].virtual_subnets[0].prefixes[0])",
    ),
    Case(
        "gateway-outside-prefix",
        _set(f"{SUBNET0}.gateway", "10.10.20.1"),
        f"{SUBNET0}.gateway",
        "10.10.20.1",
        "not inside the subnet's prefixes (10.10.10.0/24)",
    ),
    Case(
        "gateway-wrong-family",
        _set(f"{SUBNET0}.gateway", "fd00::1"),
        f"{SUBNET0}.gateway",
        "fd00::1",
        "not inside",
    ),
    Case(
        "gateway-network-address",
        _set(f"{SUBNET0}.gateway", "10.10.10.0"),
        f"{SUBNET0}.gateway",
        "10.10.10.0",
        "the network address of 10.10.10.0/24",
    ),
    Case(
        "gateway-broadcast-address",
        _set(f"{SUBNET0}.gateway", "10.10.10.255"),
        f"{SUBNET0}.gateway",
        "10.10.10.255",
        "the broadcast address of 10.10.10.0/24",
    ),
    # Lookup records.
    Case(
        "record-unknown-vsid",
        lambda d: _record(d, 7000, "10.10.10.50", "00-00-00-00-00-50", "198.18.0.1"),
        "lookup_records[5].vsid",
        7000,
        "no virtual subnet has VSID 7000",
    ),
    Case(
        "record-ca-outside-prefix",
        lambda d: _record(d, 5010, "10.10.99.5", "00-00-00-00-00-50", "198.18.0.1"),
        "lookup_records[5].ca",
        "10.10.99.5",
        "not inside VSID 5010's prefix 10.10.10.0/24",
    ),
    Case(
        "record-ca-wrong-family",
        lambda d: _record(d, 5010, "fd00::5", "00-00-00-00-00-50", "198.18.0.1"),
        "lookup_records[5].ca",
        "fd00::5",
        "VSID 5010 has no IPv6 prefix",
    ),
    Case(
        "record-ca-broadcast",
        lambda d: _record(d, 5010, "10.10.10.255", "00-00-00-00-00-50", "198.18.0.1"),
        "lookup_records[5].ca",
        "10.10.10.255",
        "broadcast address",
    ),
    Case(
        "record-duplicate-vsid-ca",
        lambda d: _record(d, 5010, "10.10.10.11", "00-00-00-00-00-50", "198.18.0.1"),
        "lookup_records[5].ca",
        "10.10.10.11",
        "duplicate CA in VSID 5010: lookup_records[0] has it",
    ),
    Case(
        "record-second-ipv4-ca-on-mac",
        lambda d: _record(d, 5010, "10.10.10.50", "00:00:00:00:00:11", "198.18.0.1"),
        "lookup_records[5].mac",
        "00-00-00-00-00-11",
        "VSID 5010 already gives this MAC an IPv4 CA: lookup_records[0] (a MAC holds one IPv4 "
        "and one IPv6 CA at most)",
    ),
    Case(
        "record-second-ipv6-ca-on-mac",
        lambda d: (
            _record(d, 5012, "fd00:20::13", "00-00-00-00-00-13", "198.18.0.2"),
            _record(d, 5012, "fd00:20::14", "00-00-00-00-00-13", "198.18.0.2"),
        ),
        "lookup_records[6].mac",
        "00-00-00-00-00-13",
        "VSID 5012 already gives this MAC an IPv6 CA: lookup_records[5]",
    ),
    Case(
        "record-static-on-wildcard-v4",
        lambda d: _record(d, 5010, "0.0.0.0", "00-00-00-00-00-11", "198.18.0.1"),
        "lookup_records[5].ca",
        "0.0.0.0",
        "0.0.0.0 is the wildcard CA, for gateway and l2only records only: "
        "a static record needs the VM's own address",
    ),
    Case(
        "record-static-on-wildcard-v6",
        lambda d: _record(d, 5012, "::", "00-00-00-00-00-13", "198.18.0.2", type="static"),
        "lookup_records[5].ca",
        "::",
        ":: is the wildcard CA, for gateway and l2only records only",
    ),
    Case(
        "record-second-gateway-wildcard",
        lambda d: (
            _record(d, 5010, "0.0.0.0", "02-00-00-00-50-10", "198.18.0.10", type="gateway"),
            _record(d, 5010, "0.0.0.0", "02-00-00-00-50-11", "198.18.0.11", type="gateway"),
        ),
        "lookup_records[6].ca",
        "0.0.0.0",
        "VSID 5010 already has a gateway record on 0.0.0.0: lookup_records[5]",
    ),
    Case(
        "record-l2only-wildcard-twice",
        lambda d: (
            _record(d, 5010, "0.0.0.0", "00-00-00-00-00-11", "198.18.0.1", type="l2only"),
            _record(d, 5010, "0.0.0.0", "00-00-00-00-00-11", "198.18.0.1", type="l2only"),
        ),
        "lookup_records[6].ca",
        "0.0.0.0",
        "duplicate l2only record on 0.0.0.0 for this MAC in VSID 5010: lookup_records[5]",
    ),
    Case(
        "record-nat-wildcard",
        lambda d: _record(
            d, 5010, "0.0.0.0", "00-00-00-00-00-50", "198.18.0.50", "nat", type="l2only"
        ),
        "lookup_records[5].rule",
        "nat",
        "IP-Rewrite swaps a CA for a PA, and 0.0.0.0 is no CA: use rule encap",
    ),
    Case(
        "record-nat-shares-pa",
        lambda d: _record(d, 5010, "10.10.10.50", "00-00-00-00-00-50", "198.18.0.2", "nat"),
        "lookup_records[5].pa",
        "198.18.0.2",
        "needs a PA of its own (1 CA = 1 PA), and lookup_records[2] uses it too",
    ),
    Case(
        "record-nat-family-mismatch",
        lambda d: _record(d, 5012, "fd00:20::5", "00-00-00-00-00-50", "198.18.0.50", "nat"),
        "lookup_records[5].pa",
        "198.18.0.50",
        "the CA and PA must be of one family",
    ),
    Case(
        "record-nat-gateway",
        lambda d: _record(
            d, 5012, "fd00:20::fe", "02-00-00-00-50-12", "2001:db8::10", "nat", type="gateway"
        ),
        "lookup_records[5].rule",
        "nat",
        "a gateway record takes any destination, which IP-Rewrite cannot carry",
    ),
    Case(
        "record-ca-is-gateway",
        lambda d: _record(d, 5010, "10.10.10.1", "00-00-00-00-00-50", "198.18.0.1"),
        "lookup_records[5].ca",
        "10.10.10.1",
        f"the CA is VSID 5010's gateway address ({SUBNET0}.gateway)",
    ),
    # Customer routes.
    Case(
        "route-unknown-rdid",
        lambda d: _route(d, OTHER, 5010, "10.10.10.0/24", "0.0.0.0"),
        "customer_routes[3].rdid",
        OTHER,
        "no routing domain has this RDID",
    ),
    Case(
        "route-vsid-not-in-rdid",
        lambda d: _route(d, BLUE, 5011, "10.10.30.0/24", "0.0.0.0"),
        "customer_routes[3].vsid",
        5011,
        f"VSID 5011 is not in routing domain {BLUE}: it belongs to {RED}",
    ),
    Case(
        "route-unknown-vsid",
        lambda d: _route(d, BLUE, 7000, "10.10.30.0/24", "0.0.0.0"),
        "customer_routes[3].vsid",
        7000,
        "no virtual subnet has VSID 7000",
    ),
    Case(
        "route-family-mismatch",
        lambda d: _route(d, BLUE, 5010, "10.10.30.0/24", "::"),
        "customer_routes[3].next_hop",
        "::",
        "an IPv6 next hop for an IPv4 destination",
    ),
    Case(
        "route-next-hop-outside",
        lambda d: _route(d, BLUE, 5010, "0.0.0.0/0", "192.168.1.1"),
        "customer_routes[3].next_hop",
        "192.168.1.1",
        f"neither on-link (0.0.0.0) nor inside a virtual subnet of routing domain {BLUE}",
    ),
    Case(
        "route-next-hop-in-other-rdid-only",
        lambda d: _route(d, RED, 5011, "0.0.0.0/0", "10.10.20.13"),
        "customer_routes[3].next_hop",
        "10.10.20.13",
        "neither on-link",
    ),
    Case(
        "route-duplicate",
        lambda d: _route(d, BLUE, 5010, "10.10.10.0/24", "0.0.0.0", 100),
        "customer_routes[3].destination",
        "10.10.10.0/24",
        "duplicate route: customer_routes[0]",
    ),
    # Nodes.
    Case(
        "pa-on-two-nodes",
        lambda d: _node(d, "host2")["provider_addresses"].append(
            {"interface": "pa1", "pa": "198.18.0.1", "prefix_length": 24}
        ),
        "nodes.host2.provider_addresses[1].pa",
        "198.18.0.1",
        "already a provider address of node host1 (nodes.host1.provider_addresses[0])",
    ),
    Case(
        "pa-twice-in-node",
        lambda d: _node(d, "host1")["provider_addresses"].append(
            {"interface": "pa1", "pa": "198.18.0.1", "prefix_length": 24}
        ),
        "nodes.host1.provider_addresses[1].pa",
        "198.18.0.1",
        "duplicate provider address: nodes.host1.provider_addresses[0] has it",
    ),
    Case(
        "pa-prefix-length-over-32",
        _set("nodes.host1.provider_addresses[0].prefix_length", 33),
        "nodes.host1.provider_addresses[0].prefix_length",
        33,
        "an IPv4 prefix length is 1..32",
    ),
    Case(
        "port-name-twice-in-node",
        lambda d: (
            _record(d, 5010, "10.10.10.50", "00-00-00-00-00-50", "198.18.0.1"),
            _node(d, "host1")["ports"].append(port("blue1", 5010, "00-00-00-00-00-50")),
        ),
        "nodes.host1.ports[2].name",
        "blue1",
        "duplicate port name in node host1: nodes.host1.ports[0] has it",
    ),
    Case(
        "port-name-over-15-chars",
        lambda d: (
            _record(d, 5010, "10.10.10.50", "00-00-00-00-00-50", "198.18.0.1"),
            _node(d, "host1")["ports"].append(port("a-very-long-name", 5010, "00-00-00-00-00-50")),
        ),
        "nodes.host1.ports[2].name",
        "a-very-long-name",
        "1 to 15 bytes",
    ),
    Case(
        "port-name-is-provider-interface",
        lambda d: (
            _record(d, 5010, "10.10.10.50", "00-00-00-00-00-50", "198.18.0.1"),
            _node(d, "host1")["ports"].append(port("pa0", 5010, "00-00-00-00-00-50")),
        ),
        "nodes.host1.ports[2].name",
        "pa0",
        "also a provider interface of node host1",
    ),
    Case(
        "port-without-record",
        lambda d: _node(d, "host1")["ports"].append(port("vm9", 5010, "00-00-00-00-00-99")),
        "nodes.host1.ports[2].mac",
        "00-00-00-00-00-99",
        "no lookup record gives VSID 5010 and this MAC a CA",
    ),
    Case(
        "port-with-wildcard-record-only",
        lambda d: (
            _record(d, 5010, "0.0.0.0", "00-00-00-00-00-99", "198.18.0.1", type="l2only"),
            _node(d, "host1")["ports"].append(port("vm9", 5010, "00-00-00-00-00-99")),
        ),
        "nodes.host1.ports[2].mac",
        "00-00-00-00-00-99",
        "no lookup record gives VSID 5010 and this MAC a CA",
    ),
    Case(
        "port-ipv6-ca-on-other-node",
        # blue3 (host2) is dual-stack, and its IPv6 CA's record says host1's PA.
        lambda d: _record(d, 5012, "fd00:20::13", "00-00-00-00-00-13", "198.18.0.1"),
        "nodes.host2.ports[2].name",
        "blue3",
        "on the wrong node: its lookup record (lookup_records[5]) has PA 198.18.0.1, "
        "which is not a provider address of node host2 (node host1 owns it)",
    ),
    Case(
        "port-on-wrong-node",
        _move_blue1_to_host2,
        "nodes.host2.ports[3].name",
        "blue1",
        "on the wrong node: its lookup record (lookup_records[0]) has PA 198.18.0.1, "
        "which is not a provider address of node host2 (node host1 owns it)",
    ),
    Case(
        "port-on-two-nodes",
        lambda d: _node(d, "host2")["ports"].append(port("blue1", 5010, "00-00-00-00-00-11")),
        "nodes.host2.ports[3].mac",
        "00-00-00-00-00-11",
        "VSID 5010 already has a port with this MAC: nodes.host1.ports[0]",
    ),
    Case(
        "node-role-unknown",
        _set("nodes.host2.role", "router"),
        "nodes.host2.role",
        "router",
        "must be 'host' or 'gateway'",
    ),
    Case(
        "node-name-invalid",
        lambda d: d["nodes"].update({"Host_3": {"role": "host"}}),
        "nodes.Host_3",
        "Host_3",
        "a node name is 1 to 32 of a-z, 0-9 and '-'",
    ),
    Case(
        "interface-name-invalid",
        _set("nodes.host1.provider_addresses[0].interface", "eth0:1"),
        "nodes.host1.provider_addresses[0].interface",
        "eth0:1",
        "has no /, : or space",
    ),
    # The schema layer, at the entry's path.
    Case(
        "unknown-key-typo",
        lambda d: d["lookup_records"][0].update({"vsdi": d["lookup_records"][0].pop("vsid")}),
        "lookup_records[0].vsdi",
        5010,
        "unknown key; did you mean 'vsid'?",
    ),
    Case(
        "bad-mac",
        _set("lookup_records[4].mac", "00-00-00-00-00-1g"),
        "lookup_records[4].mac",
        "00-00-00-00-00-1g",
        "not a MAC address",
    ),
    Case(
        "multicast-mac",
        _set("lookup_records[4].mac", "01-00-5e-00-00-13"),
        "lookup_records[4].mac",
        "01-00-5e-00-00-13",
        "group bit set",
    ),
    Case(
        "bad-guid",
        _set("routing_domains[1].rdid", "{11111111-2222-3333-4444-00000000501}"),
        "routing_domains[1].rdid",
        "{11111111-2222-3333-4444-00000000501}",
        "not a routing domain ID",
    ),
    Case(
        "bad-prefix",
        _set(f"{SUBNET0}.prefixes[0]", "10.10.10.0"),
        f"{SUBNET0}.prefixes[0]",
        "10.10.10.0",
        "not a prefix: expected address/length",
    ),
    Case(
        "host-bits-set",
        _set(f"{SUBNET0}.prefixes[0]", "10.10.10.1/24"),
        f"{SUBNET0}.prefixes[0]",
        "10.10.10.1/24",
        "host bits set: did you mean 10.10.10.0/24?",
    ),
    Case(
        "two-ipv4-prefixes",
        _set(f"{SUBNET0}.prefixes", ["10.10.10.0/24", "10.10.11.0/24"]),
        f"{SUBNET0}.prefixes",
        ["10.10.10.0/24", "10.10.11.0/24"],
        "two IPv4 prefixes",
    ),
    Case(
        "bad-ip",
        _set("lookup_records[4].pa", "198.18.0.256"),
        "lookup_records[4].pa",
        "198.18.0.256",
        "not an IP address",
    ),
    Case(
        "pa-not-unicast",
        _set("nodes.host2.provider_addresses[0].pa", "224.0.0.1"),
        "nodes.host2.provider_addresses[0].pa",
        "224.0.0.1",
        "a PA must be unicast",
    ),
    Case(
        "vsid-as-string",
        _set("customer_routes[2].vsid", "5011"),
        "customer_routes[2].vsid",
        "5011",
        "must be an integer (without quotes",
    ),
    Case(
        "vsid-as-bool",
        _set("customer_routes[2].vsid", True),
        "customer_routes[2].vsid",
        True,
        "must be an integer",
    ),
    Case(
        "metric-out-of-range",
        _set("customer_routes[2].metric", 65536),
        "customer_routes[2].metric",
        65536,
        "a metric is 0..65535",
    ),
    Case(
        "vlan-out-of-range",
        _set("nodes.host2.provider_addresses[0].vlan", 4095),
        "nodes.host2.provider_addresses[0].vlan",
        4095,
        "a VLAN ID is 1..4094",
    ),
    Case(
        "bad-rule",
        _set("lookup_records[4].rule", "gre"),
        "lookup_records[4].rule",
        "gre",
        "must be 'encap' or 'nat'",
    ),
    Case(
        "section-not-a-list",
        _set("customer_routes", {"rdid": BLUE}),
        "customer_routes",
        "{...}",
        "must be a list",
    ),
    Case(
        "unknown-section",
        _set("lookup_record", []),
        "lookup_record",
        [],
        "did you mean 'lookup_records'?",
    ),
    Case(
        "negative-revision",
        _set("revision", -1),
        "revision",
        -1,
        "must be an integer >= 0",
    ),
]


def _only_issue(error: ConfigError) -> ConfigIssue:
    assert len(error.issues) == 1, "\n".join(str(issue) for issue in error.issues)
    return error.issues[0]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_rule_names_path_and_value(case: Case) -> None:
    document = base_document()
    case.mutate(document)
    with pytest.raises(ConfigError) as caught:
        load_policy(document)
    issue = _only_issue(caught.value)
    assert issue.path == case.path
    assert issue.value == case.value
    assert case.message in issue.message
    assert issue.file is None and issue.line is None  # the pure layer knows no file


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_rule_names_file_and_line(case: Case, tmp_path: Path) -> None:
    document = base_document()
    case.mutate(document)
    text, lines = emit_yaml(document)
    config = tmp_path / "deployment.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    issue = _only_issue(caught.value)
    assert (issue.file, issue.path) == (str(config), case.path)
    assert issue.line == lines[case.path]
    assert str(issue).startswith(f"{config}:{issue.line}: {case.path} = ")


def test_base_document_is_valid() -> None:
    policy = load_policy(base_document())
    assert policy.counts()["lookup_records"] == 5


ACCEPTED = {
    # decisions.md's shape: the gateway's CA record and its wildcard share a MAC and PA.
    "gateway-ca-and-wildcard": [
        record(5010, "10.10.10.254", "02-00-00-00-50-10", "198.18.0.10", type="gateway"),
        record(5010, "0.0.0.0", "02-00-00-00-50-10", "198.18.0.10", type="gateway"),
        record(5012, "::", "02-00-00-00-50-10", "198.18.0.10", type="gateway"),
    ],
    # OpenStack: an L2-only record on 0.0.0.0 beside each port's own record.
    "l2only-wildcards-beside-ports": [
        record(5010, "0.0.0.0", "00-00-00-00-00-11", "198.18.0.1", type="l2only"),
        record(5010, "0.0.0.0", "00-00-00-00-00-12", "198.18.0.2", type="l2only"),
    ],
    # A Windows export's dual-stack VM: an IPv4 and an IPv6 CA on one MAC.
    "dual-stack-vm": [record(5012, "fd00:20::13", "00-00-00-00-00-13", "198.18.0.2")],
    # Every kind at once on one MAC: two CAs, the gateway wildcard and an L2-only one.
    "one-mac-every-kind": [
        record(5012, "fd00:20::13", "00-00-00-00-00-13", "198.18.0.2"),
        record(5012, "0.0.0.0", "00-00-00-00-00-13", "198.18.0.2", type="gateway"),
        record(5012, "0.0.0.0", "00-00-00-00-00-13", "198.18.0.2", type="l2only"),
    ],
}


@pytest.mark.parametrize("records", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_records_that_may_coexist(records: list[dict]) -> None:
    """decisions.md "Which records may coexist": each of these is valid policy."""
    document = base_document()
    document["lookup_records"] += records
    policy = load_policy(document)
    assert policy.counts()["lookup_records"] == 5 + len(records)


def test_every_problem_in_one_pass(tmp_path: Path) -> None:
    """Schema and cross-entity mistakes all over the document, reported together."""
    document = base_document()
    chosen = [
        "vsid-reserved-low",
        "duplicate-rd-name",
        "gateway-outside-prefix",
        "record-duplicate-vsid-ca",
        "route-next-hop-outside",
        "port-on-wrong-node",
        "bad-mac",
        "unknown-section",
    ]
    by_id = {case.id: case for case in CASES}
    for case_id in chosen:
        by_id[case_id].mutate(document)
    expected = {by_id[case_id].path for case_id in chosen}
    # Appending to the same list shifts the indexes of later additions.
    expected.discard("lookup_records[5].ca")
    expected.add("lookup_records[5].ca")
    with pytest.raises(ConfigError) as caught:
        load_policy(document)
    assert {issue.path for issue in caught.value.issues} == expected

    text, lines = emit_yaml(document)
    config = tmp_path / "many.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    issues = caught.value.issues
    assert {issue.path for issue in issues} == expected
    assert all(issue.line == lines[issue.path] for issue in issues)
    assert [issue.line for issue in issues] == sorted(issue.line for issue in issues)


def test_missing_key_is_reported_at_its_entry(tmp_path: Path) -> None:
    document = base_document()
    del document["lookup_records"][2]["pa"]
    with pytest.raises(ConfigError) as caught:
        load_policy(document)
    issue = _only_issue(caught.value)
    assert (issue.path, issue.value) == ("lookup_records[2].pa", None)
    assert issue.message == "required key is missing"
    text, lines = emit_yaml(document)
    config = tmp_path / "missing.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert _only_issue(caught.value).line == lines["lookup_records[2]"]


def test_a_failed_entry_is_not_reported_again_as_unknown() -> None:
    """A subnet that fails the schema still defines its VSID for the records and
    routes that use it: one mistake, one message."""
    document = base_document()
    document["routing_domains"][0]["virtual_subnets"][1]["prefixes"] = ["10.10.20.1/24"]
    document["lookup_records"][4]["mac"] = "zz"
    with pytest.raises(ConfigError) as caught:
        load_policy(document)
    paths = [issue.path for issue in caught.value.issues]
    assert paths == [
        "routing_domains[0].virtual_subnets[1].prefixes[0]",
        "lookup_records[4].mac",
    ]
