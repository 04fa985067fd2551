"""Site-to-site tunnels in the config (``tunnels:``, ``nodes.gw.tunnel_keys``): the
shape the schema accepts, how allowed IPs become routes, and every refusal with its
path, value and message (and, through the file loader, its file and line)."""

from __future__ import annotations

import base64
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from gateway.control.entries import policy_json
from gateway.policy import (
    TUNNEL_LOAD_THRESHOLD,
    NextHopKind,
    compile_gateway,
    compile_policy,
    load_policy,
)

from ._documents import BLUE, RED
from ._tunnel_document import (
    BLUE_PEER,
    KEY_FILE,
    LISTEN_PORT,
    ONPREM,
    tunnel,
    tunnel_document,
)
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
THIRD_PEER = base64.b64encode(bytes(range(3, 35))).decode()


def test_the_tunnel_document_loads() -> None:
    policy = load_policy(tunnel_document())
    blue, red = policy.tunnels
    assert (blue.name, blue.rdid, blue.node, blue.listen_port) == (
        "onprem-blue",
        BLUE,
        "gw",
        LISTEN_PORT,
    )
    assert blue.public_key == BLUE_PEER and blue.endpoint == "192.0.2.11:51820"
    assert blue.preshared_key_file == "/etc/nvgw/blue.psk"
    assert blue.allowed_ips == (IPv4Network(ONPREM),) and blue.persistent_keepalive == 25
    assert red.endpoint is None and red.preshared_key_file is None
    assert dict(policy.node("gw").tunnel_keys or {}) == {LISTEN_PORT: KEY_FILE}
    assert policy.node("host1").tunnel_keys is None
    assert policy.node("gw").tunnel_load_threshold == TUNNEL_LOAD_THRESHOLD  # the default
    assert policy.node("host1").tunnel_load_threshold is None


def test_allowed_ips_route_each_tenant_to_its_own_tunnel() -> None:
    """Blue and Red both reach 172.16.50.0/24, each through its own tunnel; a node
    route may also send a prefix into a tunnel of its routing domain."""
    document = tunnel_document()
    document["nodes"]["gw"]["routing_domains"]["blue"]["routes"].append(
        _route("192.168.0.0/16", "tunnel:onprem-blue")
    )
    table = compile_gateway(compile_policy(load_policy(document)), "gw")
    server = IPv4Address("172.16.50.10").packed
    assert table.route(BLUE, server).tunnel == "onprem-blue"  # type: ignore[union-attr]
    assert table.route(RED, server).tunnel == "onprem-red"  # type: ignore[union-attr]
    hop = table.route(BLUE, IPv4Address("192.168.3.4").packed)
    assert hop is not None and hop.tunnel == "onprem-blue" and not hop.nat
    # Longest prefix first: Blue's TAP subnet still goes to its TAP, the rest by
    # the customer route into the VSID.
    corp = table.route(BLUE, IPv4Address("172.16.0.2").packed)
    assert corp is not None and corp.tap == "gw-blue" and corp.tunnel is None


def test_a_port_given_as_text_is_a_port() -> None:
    """The API's JSON has only string keys: ``{"51820": PATH}`` is port 51820."""
    document = tunnel_document()
    document["nodes"]["gw"]["tunnel_keys"] = {str(LISTEN_PORT): KEY_FILE}
    assert dict(load_policy(document).node("gw").tunnel_keys or {}) == {LISTEN_PORT: KEY_FILE}


def test_the_api_shape_loads_back_unchanged_and_holds_no_key() -> None:
    """GET /v1/policy gives the tunnels in the file's shape (paths, never keys)."""
    policy = load_policy(tunnel_document())
    document = policy_json(policy)
    assert document["tunnels"][0]["preshared_key_file"] == "/etc/nvgw/blue.psk"
    assert document["tunnels"][0]["allowed_ips"] == [ONPREM]
    assert load_policy(document) == policy


def _tunnel_field(index: int, key: str, value: Any) -> Any:
    return _set(f"tunnels[{index}].{key}", value)


def _add_tunnel(**changes: Any) -> Any:
    def mutate(doc: Doc) -> None:
        doc["tunnels"].append({**tunnel("third", BLUE, THIRD_PEER, None), **changes})

    return mutate


CASES = [
    Case("key-not-base64", _tunnel_field(0, "public_key", "x" * 44), "tunnels[0].public_key",
         "x" * 44, "base64 of 32 bytes"),
    Case("key-too-short", _tunnel_field(0, "public_key", "AAAA"), "tunnels[0].public_key",
         "AAAA", "base64 of 32 bytes"),
    Case("unknown-key", _tunnel_field(1, "private_key", "x"), "tunnels[1].private_key", "x",
         "unknown key"),
    Case("endpoint-a-name", _tunnel_field(0, "endpoint", "site.example:51820"),
         "tunnels[0].endpoint", "site.example:51820", "expected address:port"),
    Case("endpoint-ipv6", _tunnel_field(0, "endpoint", "[2001:db8::1]:51820"),
         "tunnels[0].endpoint", "[2001:db8::1]:51820", "IPv4 only"),
    Case("port-zero", _tunnel_field(0, "listen_port", 0), "tunnels[0].listen_port", 0,
         "expected a UDP port"),
    Case("key-file-relative", _tunnel_field(0, "preshared_key_file", "blue.psk"),
         "tunnels[0].preshared_key_file", "blue.psk", "absolute path"),
    Case("allowed-ipv6", _tunnel_field(1, "allowed_ips", ["fd00::/64"]),
         "tunnels[1].allowed_ips[0]", "fd00::/64", "IPv4 only"),
    Case("no-allowed-ips", _tunnel_field(1, "allowed_ips", []), "tunnels[1].allowed_ips", [],
         "at least one"),
    Case("duplicate-name", _add_tunnel(name="onprem-blue", allowed_ips=["10.99.0.0/16"]),
         "tunnels[2].name", "onprem-blue", "duplicate tunnel name: tunnels[0] has it"),
    Case("same-peer-twice-on-a-port", _add_tunnel(public_key=BLUE_PEER,
         allowed_ips=["10.99.0.0/16"]), "tunnels[2].public_key", BLUE_PEER,
         "already a tunnel on node gw port 51820 (tunnels[0])"),
    Case("overlap-in-one-tenant", _add_tunnel(allowed_ips=["172.16.50.128/25"]),
         "tunnels[2].allowed_ips[0]", "172.16.50.128/25",
         "overlaps 172.16.50.0/24 of tunnel onprem-blue (tunnels[0].allowed_ips[0])"),
    Case("no-such-node", _tunnel_field(0, "node", "gw2"), "tunnels[0].node", "gw2",
         "no such node"),
    Case("host-node", _tunnel_field(0, "node", "host1"), "tunnels[0].node", "host1",
         "node host1 is a host node: a gateway serves tunnels"),
    Case("unknown-rdid", _tunnel_field(0, "rdid", "{11111111-2222-3333-4444-000000009999}"),
         "tunnels[0].rdid", "{11111111-2222-3333-4444-000000009999}",
         "no routing domain has this RDID"),
    Case("no-key-for-the-port", _tunnel_field(1, "listen_port", 51821),
         "tunnels[1].listen_port", 51821, "no private key for this port: add "
         "nodes.gw.tunnel_keys: {51821: PATH}"),
    Case("keys-on-a-host", _set("nodes.host1.tunnel_keys", {51820: KEY_FILE}),
         "nodes.host1.tunnel_keys", None, "only a gateway node serves tunnels"),
    Case("key-file-port-zero", _set(f"{GW}.tunnel_keys", {0: KEY_FILE, 51820: KEY_FILE}),
         f"{GW}.tunnel_keys", None, "0 is not a UDP port"),
    Case("load-threshold-on-a-host", _set("nodes.host1.tunnel_load_threshold", 4),
         "nodes.host1.tunnel_load_threshold", 4, "only a gateway node serves tunnels"),
    Case("load-threshold-negative", _set(f"{GW}.tunnel_load_threshold", -1),
         f"{GW}.tunnel_load_threshold", -1, "greater than or equal to 0"),
    Case("route-to-another-tenants-tunnel",
         _append(f"{BLUE_GW}.routes", _route("10.99.0.0/16", "tunnel:onprem-red")),
         f"{BLUE_GW}.routes[1].next_hop", "tunnel:onprem-red",
         "tunnel onprem-red belongs to routing domain " + RED),
    Case("route-to-unknown-tunnel",
         _append(f"{RED_GW}.routes", _route("10.99.0.0/16", "tunnel:x")),
         f"{RED_GW}.routes[1].next_hop", "tunnel:x",
         "no tunnel has this name (tunnels: onprem-blue, onprem-red)"),
    Case("node-route-on-an-allowed-ip",
         _append(f"{RED_GW}.routes", _route(ONPREM, "tap:gw-red")),
         f"{RED_GW}.routes[1].destination", ONPREM,
         "tunnel onprem-red's allowed IP tunnels[1].allowed_ips[0] routes this prefix already"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_refusal_names_path_and_value(case: Case) -> None:
    refused_at_path(tunnel_document(), case)


@pytest.mark.parametrize("case", CASES[:3], ids=[case.id for case in CASES[:3]])
def test_refusal_names_file_and_line(case: Case, tmp_path: Path) -> None:
    refused_at_line(tunnel_document(), case, tmp_path)


def test_the_tenant_unserved_is_named() -> None:
    document = tunnel_document()
    del document["nodes"]["gw"]["routing_domains"][RED]
    document["tunnels"][1]["allowed_ips"] = ["172.16.60.0/24"]
    with pytest.raises(Exception) as caught:
        load_policy(document)
    assert "node gw does not serve this routing domain" in str(caught.value)


def test_a_route_to_the_tunnels_own_prefix_is_accepted() -> None:
    document = tunnel_document()
    _append(f"{RED_GW}.routes", _route(ONPREM, "tunnel:onprem-red"))(document)
    hop = compile_gateway(compile_policy(load_policy(document)), "gw").route(
        RED, IPv4Address("172.16.50.1").packed
    )
    assert hop is not None and hop.tunnel == "onprem-red"
    assert hop.route.next_hop.kind is NextHopKind.TUNNEL  # type: ignore[union-attr]
