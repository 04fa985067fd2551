"""Gateway nodes (``role: gateway``): every shape the schema accepts, every refusal
with its path, value and message (and, through the file loader and ``nvgw check``,
its file and line), all problems in one pass, and the node plan's refusal of the
role until its data plane is built."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Interface, IPv4Network, ip_address
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.control import load_config
from gateway.control.entries import policy_json
from gateway.dataplane import plan_node
from gateway.errors import ConfigError
from gateway.policy import NextHop, NextHopKind, NodeRole, load_policy, parse_path

from ._documents import BLUE, RED, emit_yaml, port, record
from ._gateway_document import GW_PA, gateway_document
from .test_policy_rules import Case, _only_issue, _set

Doc = dict[str, Any]
GW = "nodes.gw"
BLUE_GW = f"{GW}.routing_domains.blue"
RED_GW = f'{GW}.routing_domains["{RED}"]'


def _at(doc: Doc, path: str) -> Any:
    node: Any = doc
    for part in parse_path(path):
        node = node[part]
    return node


def _append(path: str, value: Any) -> Callable[[Doc], None]:
    return lambda doc: _at(doc, path).append(value)


def _tap(name: str, address: str) -> dict[str, str]:
    return {"name": name, "address": address}


def _route(destination: str, next_hop: str) -> dict[str, str]:
    return {"destination": destination, "next_hop": next_hop}


def _rename_key(old: str, new: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        domains = doc["nodes"]["gw"]["routing_domains"]
        domains[new] = domains.pop(old)

    return mutate


def _drop_record(ca: str, vsid: int) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        records = doc["lookup_records"]
        doc["lookup_records"] = [r for r in records if (r["vsid"], r["ca"]) != (vsid, ca)]

    return mutate


# ---------------------------------------------------------------- accepted shapes


def test_the_gateway_document_loads() -> None:
    policy = load_policy(gateway_document())
    gw = policy.node("gw")
    assert gw.role is NodeRole.GATEWAY and gw.ports == () and gw.mss_clamp == "auto"
    assert list(gw.routing_domains or {}) == ["blue", RED]  # the keys as written
    blue = (gw.routing_domains or {})["blue"]
    assert blue.taps[0].name == "gw-blue"
    assert blue.taps[0].address == IPv4Interface("172.16.0.1/24")
    assert [route.next_hop for route in blue.routes] == [
        NextHop(NextHopKind.TAP, "gw-blue"),
        NextHop(NextHopKind.ADDRESS, address=ip_address("172.16.0.2")),
    ]
    assert blue.routes[0].destination == IPv4Network("172.16.0.0/24")
    assert [str(route.next_hop) for route in blue.routes] == ["tap:gw-blue", "172.16.0.2"]
    host1 = policy.node("host1")
    assert (host1.mss_clamp, host1.routing_domains) == (None, None)  # no gateway fields
    with pytest.raises(TypeError):
        gw.routing_domains["green"] = blue  # type: ignore[index]


ACCEPTED: dict[str, Callable[[Doc], None]] = {
    "mss-clamp-off": _set(f"{GW}.mss_clamp", "off"),
    "mss-clamp-lowest": _set(f"{GW}.mss_clamp", 536),
    "mss-clamp-highest": _set(f"{GW}.mss_clamp", 65495),
    "key-by-rdid-any-case": _rename_key("blue", BLUE.upper()),
    "key-by-name-any-case": _rename_key("blue", "BLUE"),
    # An RDID names its domain, even where another domain's name is that text.
    "key-rdid-before-name": lambda d: d["routing_domains"].append(
        {"rdid": "{11111111-2222-3333-4444-000000005099}", "name": RED, "virtual_subnets": []}
    ),
    # An empty list says what a gateway has: no ports (how the API writes a node back).
    "gateway-empty-ports": _set(f"{GW}.ports", []),
    "host-empty-routing-domains": _set("nodes.host1.routing_domains", {}),
    # Tenants overlap: Red's TAP may take what is Blue's virtual subnet.
    "tap-over-another-tenants-subnet": _append(f"{RED_GW}.taps", _tap("gw-red2", "10.10.20.1/24")),
    # RFC 3021: both addresses of a /31 are hosts, so the neighbour is the other one.
    "tap-31": lambda d: (
        _at(d, f"{BLUE_GW}.taps").append(_tap("gw-p2p", "172.31.0.0/31")),
        _at(d, f"{BLUE_GW}.routes").append(_route("172.32.0.0/16", "172.31.0.1")),
    ),
    "tap-without-routes": _set(f"{BLUE_GW}.routes", []),
    "routes-may-nest": _append(f"{BLUE_GW}.routes", _route("172.16.50.128/25", "tap:gw-blue")),
    "no-routing-domains": lambda d: d["nodes"]["gw"].pop("routing_domains"),
}


@pytest.mark.parametrize("mutate", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_shapes(mutate: Callable[[Doc], None]) -> None:
    document = gateway_document()
    mutate(document)
    policy = load_policy(document)
    assert policy.node("gw").role is NodeRole.GATEWAY


def test_mss_clamp_defaults_to_auto() -> None:
    document = gateway_document()
    del document["nodes"]["gw"]["mss_clamp"]
    assert load_policy(document).node("gw").mss_clamp == "auto"
    document["nodes"]["gw"]["mss_clamp"] = 1400
    assert load_policy(document).node("gw").mss_clamp == 1400


def test_the_api_shape_loads_back_unchanged() -> None:
    """GET /v1/policy gives the file's shape, which ``nvgw apply --dry-run`` loads back:
    a gateway's routing domains stay a mapping, its next hops their text."""
    policy = load_policy(gateway_document())
    document = policy_json(policy)
    assert document["nodes"]["gw"]["routing_domains"]["blue"]["routes"][0] == {
        "destination": "172.16.0.0/24",
        "next_hop": "tap:gw-blue",
    }
    assert "routing_domains" not in document["nodes"]["host1"]
    assert load_policy(document) == policy


# ---------------------------------------------------------------- refusals


CASES = [
    # The schema: role fields, values, unknown keys.
    Case(
        "host-with-routing-domains",
        _set("nodes.host1.routing_domains", {"blue": {}}),
        "nodes.host1.routing_domains",
        {"blue": {}},
        "not on a host node: only a gateway node serves routing domains",
    ),
    Case(
        "host-with-mss-clamp",
        _set("nodes.host1.mss_clamp", "auto"),
        "nodes.host1.mss_clamp",
        "auto",
        "not on a host node: only a gateway node clamps TCP MSS",
    ),
    Case(
        "gateway-with-ports",
        _set(f"{GW}.ports", [port("blue9", 5010, "00-00-00-00-00-19")]),
        f"{GW}.ports",
        [port("blue9", 5010, "00-00-00-00-00-19")],
        "not on a gateway node: a gateway node serves no VM ports",
    ),
    Case(
        "mss-clamp-too-small",
        _set(f"{GW}.mss_clamp", 535),
        f"{GW}.mss_clamp",
        535,
        "expected auto (from the path MTU), off, or an MSS of 536..65495",
    ),
    Case(
        "mss-clamp-too-large",
        _set(f"{GW}.mss_clamp", 65496),
        f"{GW}.mss_clamp",
        65496,
        "an MSS of 536..65495",
    ),
    Case("mss-clamp-word", _set(f"{GW}.mss_clamp", "on"), f"{GW}.mss_clamp", "on", "expected auto"),
    Case("mss-clamp-bool", _set(f"{GW}.mss_clamp", True), f"{GW}.mss_clamp", True, "expected auto"),
    Case(
        "node-unknown-key",
        _set(f"{GW}.mss-clamp", 1400),
        f"{GW}.mss-clamp",
        1400,
        "unknown key; did you mean 'mss_clamp'?",
    ),
    Case(
        "routing-domains-not-a-mapping",
        _set(f"{GW}.routing_domains", ["blue"]),
        f"{GW}.routing_domains",
        ["blue"],
        "must be a mapping",
    ),
    Case(
        "served-domain-unknown-key",
        lambda d: _at(d, BLUE_GW).update({"tap": _at(d, BLUE_GW).pop("taps")}),
        f"{BLUE_GW}.tap",
        [_tap("gw-blue", "172.16.0.1/24")],
        "unknown key; did you mean 'taps'?",
    ),
    Case(
        "tap-unknown-key",
        lambda d: _at(d, f"{BLUE_GW}.taps[0]").update({"mtu": 1500}),
        f"{BLUE_GW}.taps[0].mtu",
        1500,
        "unknown key; known keys here: address, name",
    ),
    Case(
        "route-missing-next-hop",
        lambda d: _at(d, f"{BLUE_GW}.routes[1]").pop("next_hop"),
        f"{BLUE_GW}.routes[1].next_hop",
        None,
        "required key is missing",
    ),
    Case(
        "tap-name-too-long",
        _set(f"{RED_GW}.taps[0].name", "gw-red-16-bytes!"),
        f"{RED_GW}.taps[0].name",
        "gw-red-16-bytes!",
        "an interface name has 1 to 15 bytes (Linux IFNAMSIZ)",
    ),
    Case(
        "tap-address-without-length",
        _set(f"{BLUE_GW}.taps[0].address", "172.16.0.1"),
        f"{BLUE_GW}.taps[0].address",
        "172.16.0.1",
        "not an interface address: expected address/length, like 172.16.0.1/24",
    ),
    Case(
        "tap-address-netmask",
        _set(f"{BLUE_GW}.taps[0].address", "172.16.0.1/255.255.255.0"),
        f"{BLUE_GW}.taps[0].address",
        "172.16.0.1/255.255.255.0",
        "not an interface address",
    ),
    Case(
        "route-destination-host-bits",
        _set(f"{BLUE_GW}.routes[0].destination", "172.16.0.1/24"),
        f"{BLUE_GW}.routes[0].destination",
        "172.16.0.1/24",
        "host bits set: did you mean 172.16.0.0/24?",
    ),
    Case(
        "next-hop-garbage",
        _set(f"{BLUE_GW}.routes[0].next_hop", "via gw-blue"),
        f"{BLUE_GW}.routes[0].next_hop",
        "via gw-blue",
        "not a next hop: expected tap:NAME, an address inside one of the TAP subnets, nat "
        "or tunnel:NAME",
    ),
    Case(
        "next-hop-tap-without-name",
        _set(f"{BLUE_GW}.routes[0].next_hop", "tap:"),
        f"{BLUE_GW}.routes[0].next_hop",
        "tap:",
        "an interface name has 1 to 15 bytes",
    ),
    Case(
        "next-hop-number",
        _set(f"{BLUE_GW}.routes[0].next_hop", 5),
        f"{BLUE_GW}.routes[0].next_hop",
        5,
        "must be a string",
    ),
    # Which routing domain a key names.
    Case(
        "key-unknown",
        _rename_key("blue", "green"),
        f"{GW}.routing_domains.green",
        "green",
        "no routing domain has this name or RDID (routing domains: blue, red)",
    ),
    Case(
        "key-names-two-domains",
        lambda d: d["routing_domains"].append(
            {
                "rdid": "{11111111-2222-3333-4444-000000005099}",
                "name": "BLUE",
                "virtual_subnets": [],
            }
        ),
        BLUE_GW,
        "blue",
        "names 2 routing domains: "
        "{11111111-2222-3333-4444-000000005010} (blue), "
        "{11111111-2222-3333-4444-000000005099} (BLUE); write the RDID",
    ),
    Case(
        "key-served-twice",
        _set(f'{GW}.routing_domains["{BLUE}"]', {}),
        f'{GW}.routing_domains["{BLUE}"]',
        BLUE,
        f"routing domain {BLUE} is already served here: {BLUE_GW}",
    ),
    Case(
        "key-not-a-string",
        _rename_key("blue", 5010),
        f"{GW}.routing_domains[5010]",
        5010,
        "must be a routing domain's name or RDID (a string)",
    ),
    # TAPs.
    Case(
        "tap-name-twice-in-node",
        _append(f"{RED_GW}.taps", _tap("gw-blue", "172.17.0.1/24")),
        f"{RED_GW}.taps[1].name",
        "gw-blue",
        f"duplicate TAP name in node gw: {BLUE_GW}.taps[0] has it",
    ),
    Case(
        "tap-named-as-provider-interface",
        _append(f"{BLUE_GW}.taps", _tap("pa0", "172.17.0.1/24")),
        f"{BLUE_GW}.taps[1].name",
        "pa0",
        "also a provider interface of node gw: a TAP needs a name of its own",
    ),
    Case(
        "tap-network-address",
        _set(f"{RED_GW}.taps[0].address", "172.16.0.0/24"),
        f"{RED_GW}.taps[0].address",
        "172.16.0.0/24",
        "the TAP's address is the network address of 172.16.0.0/24",
    ),
    Case(
        "tap-broadcast-address",
        _set(f"{RED_GW}.taps[0].address", "172.16.255.255/16"),
        f"{RED_GW}.taps[0].address",
        "172.16.255.255/16",
        "the TAP's address is the broadcast address of 172.16.0.0/16",
    ),
    Case(
        "tap-ipv6",
        _set(f"{RED_GW}.taps[0].address", "fd00:16::1/64"),
        f"{RED_GW}.taps[0].address",
        "fd00:16::1/64",
        "the gateway forwards IPv4 only so far",
    ),
    Case(
        "tap-subnets-overlap",
        _append(f"{BLUE_GW}.taps", _tap("gw-blue2", "172.16.0.129/25")),
        f"{BLUE_GW}.taps[1].address",
        "172.16.0.129/25",
        f"the TAP subnet 172.16.0.128/25 overlaps 172.16.0.0/24 ({BLUE_GW}.taps[0].address): "
        "TAP subnets of one routing domain on a gateway must not overlap",
    ),
    Case(
        "tap-shadows-a-virtual-subnet",
        _append(f"{BLUE_GW}.taps", _tap("gw-blue2", "10.10.20.1/23")),
        f"{BLUE_GW}.taps[1].address",
        "10.10.20.1/23",
        "overlaps virtual subnet 5012's 10.10.20.0/24 (routing_domains[0].virtual_subnets[1]) "
        "of the same routing domain: the gateway would send traffic for the tenant's own "
        "addresses into the TAP instead of to its VMs",
    ),
    # Node routes.
    Case(
        "route-ipv6-destination",
        _append(f"{BLUE_GW}.routes", _route("fd00:50::/64", "tap:gw-blue")),
        f"{BLUE_GW}.routes[2].destination",
        "fd00:50::/64",
        "the gateway forwards IPv4 only so far",
    ),
    Case(
        "route-duplicate-destination",
        _append(f"{BLUE_GW}.routes", _route("172.16.50.0/24", "tap:gw-blue")),
        f"{BLUE_GW}.routes[2].destination",
        "172.16.50.0/24",
        f"duplicate route to 172.16.50.0/24 in this routing domain: {BLUE_GW}.routes[1] has it",
    ),
    Case(
        "route-to-nat",
        _append(f"{BLUE_GW}.routes", _route("0.0.0.0/0", "nat")),
        f"{BLUE_GW}.routes[2].next_hop",
        "nat",
        "node gw has no NAT: add nodes.gw.nat (its external tap, addresses, next_hop) first",
    ),
    Case(
        "route-to-tunnel",
        _append(f"{BLUE_GW}.routes", _route("172.16.60.0/24", "tunnel:onprem-blue")),
        f"{BLUE_GW}.routes[2].next_hop",
        "tunnel:onprem-blue",
        "no tunnel has this name (tunnels: none)",
    ),
    Case(
        "route-to-unknown-tap",
        _set(f"{BLUE_GW}.routes[0].next_hop", "tap:gw-green"),
        f"{BLUE_GW}.routes[0].next_hop",
        "tap:gw-green",
        "no TAP of this routing domain on node gw has this name (its TAPs: gw-blue 172.16.0.1/24)",
    ),
    Case(
        "route-to-another-tenants-tap",
        _set(f"{BLUE_GW}.routes[0].next_hop", "tap:gw-red"),
        f"{BLUE_GW}.routes[0].next_hop",
        "tap:gw-red",
        f"TAP gw-red serves routing domain {RED} ({RED_GW}): "
        "a route never leaves its routing domain",
    ),
    Case(
        "route-to-a-tap-of-a-domain-without-taps",
        _set(f"{RED_GW}.taps", []),
        f"{RED_GW}.routes[0].next_hop",
        "tap:gw-red",
        "no TAP of this routing domain on node gw has this name (it has no TAPs)",
    ),
    Case(
        "next-hop-outside-the-taps",
        _set(f"{BLUE_GW}.routes[1].next_hop", "172.17.0.2"),
        f"{BLUE_GW}.routes[1].next_hop",
        "172.17.0.2",
        "not inside a TAP subnet of this routing domain on node gw (its TAPs: gw-blue "
        "172.16.0.1/24): a next hop is a neighbour on one of them",
    ),
    Case(
        "next-hop-in-a-virtual-subnet",
        _set(f"{BLUE_GW}.routes[1].next_hop", "10.10.10.11"),
        f"{BLUE_GW}.routes[1].next_hop",
        "10.10.10.11",
        "not inside a TAP subnet of this routing domain",
    ),
    Case(
        "next-hop-own-address",
        _set(f"{BLUE_GW}.routes[1].next_hop", "172.16.0.1"),
        f"{BLUE_GW}.routes[1].next_hop",
        "172.16.0.1",
        "the gateway's own address on TAP gw-blue: a next hop is a neighbour",
    ),
    Case(
        "next-hop-broadcast",
        _set(f"{BLUE_GW}.routes[1].next_hop", "172.16.0.255"),
        f"{BLUE_GW}.routes[1].next_hop",
        "172.16.0.255",
        "the next hop is the broadcast address of 172.16.0.0/24",
    ),
    Case(
        "next-hop-other-family",
        _set(f"{BLUE_GW}.routes[1].next_hop", "fd00:16::2"),
        f"{BLUE_GW}.routes[1].next_hop",
        "fd00:16::2",
        "an IPv6 next hop for an IPv4 destination",
    ),
    # Reachability: hosts send to a gateway record's PA.
    Case(
        "no-gateway-record",
        _drop_record("10.10.10.254", 5010),
        BLUE_GW,
        "blue",
        f"no host could send this gateway anything of routing domain {BLUE}: no gateway "
        "record of its VSIDs has a provider address of node gw. Add one to lookup_records "
        f"({{vsid: 5010, ca: CA, mac: MAC, pa: {GW_PA}, rule: encap, type: gateway}}) and a "
        f'customer route to its CA ({{rdid: "{BLUE}", vsid: 5010, destination: 0.0.0.0/0, '
        "next_hop: CA})",
    ),
    Case(
        "gateway-record-on-another-node",
        lambda d: d["lookup_records"][5].update({"pa": "198.18.0.1"}),
        BLUE_GW,
        "blue",
        "no gateway record of its VSIDs has a provider address of node gw",
    ),
    Case(
        "static-record-is-no-gateway",
        lambda d: d["lookup_records"][6].pop("type"),
        RED_GW,
        RED,
        f"no host could send this gateway anything of routing domain {RED}",
    ),
]


def refused_at_path(document: Doc, case: Case) -> None:
    """``case`` applied to ``document`` is refused with one issue, at its path and value
    (a value of None: any), with its message."""
    case.mutate(document)
    with pytest.raises(ConfigError) as caught:
        load_policy(document)
    issue = _only_issue(caught.value)
    assert issue.path == case.path
    assert case.value is None or issue.value == case.value
    assert case.message in issue.message, issue.message


def refused_at_line(document: Doc, case: Case, tmp_path: Path) -> None:
    """The same refusal through the file loader: its file, path and line."""
    case.mutate(document)
    text, lines = emit_yaml(document)
    config = tmp_path / "deployment.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    issue = _only_issue(caught.value)
    # A missing key is reported at the line of its entry.
    line = lines.get(case.path) or lines[case.path.rsplit(".", 1)[0]]
    assert (issue.file, issue.path, issue.line) == (str(config), case.path, line)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_refusal_names_path_and_value(case: Case) -> None:
    refused_at_path(gateway_document(), case)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_refusal_names_file_and_line(case: Case, tmp_path: Path) -> None:
    refused_at_line(gateway_document(), case, tmp_path)


def test_every_problem_in_one_pass(tmp_path: Path) -> None:
    """Schema and cross-entry mistakes in two gateway domains and elsewhere, together."""
    chosen = [
        "mss-clamp-too-small",
        "tap-name-too-long",  # Red's TAP fails the schema: its route is not judged again
        "route-to-nat",
        "next-hop-own-address",
        "tap-shadows-a-virtual-subnet",
    ]
    by_id = {case.id: case for case in CASES}
    document = gateway_document()
    for case_id in chosen:
        by_id[case_id].mutate(document)
    document["lookup_records"][0]["mac"] = "01-00-00-00-00-11"  # elsewhere: a group MAC
    expected = {by_id[case_id].path for case_id in chosen} | {"lookup_records[0].mac"}
    # Both appends to Blue's list land after the second route and the first TAP.
    assert f"{BLUE_GW}.routes[2].next_hop" in expected
    text, lines = emit_yaml(document)
    config = tmp_path / "many.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    issues = caught.value.issues
    assert {issue.path for issue in issues} == expected
    assert all(issue.line == lines[issue.path] for issue in issues)


def test_a_failed_entry_silences_what_may_only_be_about_it() -> None:
    """One mistake, one message: a TAP or a gateway record that fails the schema is
    not reported again as a missing next hop or an unreachable gateway."""
    document = gateway_document()
    document["nodes"]["gw"]["routing_domains"]["blue"]["taps"][0]["address"] = "172.16.0.1"
    document["lookup_records"][6]["mac"] = "not a MAC"  # Red's gateway record
    with pytest.raises(ConfigError) as caught:
        load_policy(document)
    assert [issue.path for issue in caught.value.issues] == [
        "lookup_records[6].mac",
        f"{BLUE_GW}.taps[0].address",
    ]


# ---------------------------------------------------------------- nvgw check, nvgw run


def test_nvgw_check_accepts_a_gateway_and_names_file_and_line(tmp_path: Path) -> None:
    runner = CliRunner()
    good = tmp_path / "gateway.yaml"
    good.write_text(emit_yaml(gateway_document())[0])
    result = runner.invoke(app, ["check", str(good)], prog_name="nvgw")
    assert result.exit_code == 0, result.output
    assert f"{good}: valid" in result.output

    document = gateway_document()
    document["nodes"]["gw"]["routing_domains"]["blue"]["routes"].append(_route("0.0.0.0/0", "nat"))
    text, lines = emit_yaml(document)
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    result = runner.invoke(app, ["check", str(bad)], prog_name="nvgw")
    assert result.exit_code == 1
    path = f"{BLUE_GW}.routes[2].next_hop"
    assert [line for line in result.output.splitlines() if line.startswith(str(bad))] == [
        f"{bad}:{lines[path]}: {path} = 'nat': "
        "node gw has no NAT: add nodes.gw.nat (its external tap, addresses, next_hop) first"
    ]


def test_plan_node_plans_a_gateway_node_beside_its_hosts() -> None:
    policy = load_policy(gateway_document())
    plan = plan_node(policy, "gw")
    assert plan.role is NodeRole.GATEWAY
    assert plan.nvgre_pas == (ip_address(GW_PA).packed,)
    assert plan.nvgre_by_interface == (("pa0", plan.nvgre_pas),)
    assert plan.rewrite_pas == ()
    assert plan_node(policy, "host1").role is NodeRole.HOST  # hosts of the same file run


def test_plan_node_refuses_a_gateways_ipv6_pa() -> None:
    document = gateway_document()
    document["nodes"]["gw"]["provider_addresses"].append(
        {"interface": "pa0", "pa": "2001:db8::10", "prefix_length": 64}
    )
    document["lookup_records"].append(
        record(5012, "fd00:20::fe", "02-00-00-00-50-12", "2001:db8::10", type="gateway")
    )
    policy = load_policy(document)  # valid policy: the model is dual-stack
    with pytest.raises(ConfigError) as caught:
        plan_node(policy, "gw")
    assert [(issue.path, issue.value) for issue in caught.value.issues] == [
        (f"{GW}.provider_addresses[1].pa", "2001:db8::10"),
    ]
