"""``GET /v1/tunnels/state`` and ``nvgw tunnel show``: a gateway's tunnels as they run,
read from its data plane (driven here through the fabric against sites of our own
WireGuard core: ``tests/dataplane/_tunnel_lab.py``), as ``wg show`` prints them or
as JSON; one tunnel by name, 404 naming a tunnel the node lacks, and a node that is
not a gateway says so. The daemon's own answer is tested against wireguard-go in
tests/io/test_gateway_tunnel_daemon.py."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
from scapy.layers.inet import ICMP, IP
from scapy.packet import raw

from gateway.cli.tunnel_show import ago, size
from gateway.control.api import build_api
from gateway.control.tunnel_state import node_tunnels
from gateway.dataplane import GatewayNode
from gateway.wireguard import public_key_of
from tests._inprocess_api import cli_talks_to
from tests.control._gateway_config import gateway_config, nat_gateway_text
from tests.control._node import host1_prepare
from tests.control._stores import seeded
from tests.dataplane._policies import NOW
from tests.dataplane._tunnel_lab import GW_KEY, ONPREM, PORT, SERVER, SITE_KEY, tunnel_lab
from tests.dataplane.test_gateway_fabric import VM_IP
from tests.dataplane.test_gateway_tunnels import establish
from tests.test_cli import nvgw

BLUE = "{11111111-2222-3333-4444-000000005010}"


def b64(raw_key: bytes) -> str:
    return base64.b64encode(raw_key).decode()


@pytest.fixture
def tunnels_api(
    each_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[Any]]:
    """The API, over a store (SQLite, then etcd) holding the gateway config, serving
    the tunnels of the fabric's gateway after Blue's VM pinged its site (the gateway
    started the handshake) and the site answered; Red's tunnel has seen nothing.
    Yields ``[node]``: a test may replace the node (a host)."""
    network = tunnel_lab()
    site, _ = establish(network, "blue", NOW)
    site.send(raw(IP(src=SERVER, dst=VM_IP) / ICMP(type=0, id=7, seq=1)), NOW + 1)
    node = network.node("gw")
    node.now = NOW + 63  # the clock of its last batch: the handshake 63 s ago
    served: list[Any] = [node]

    async def swap(policy: Any) -> None:
        pass

    config = gateway_config(tmp_path, nat_gateway_text())
    with anyio.from_thread.start_blocking_portal() as portal:
        store = portal.call(seeded, config, host1_prepare(), swap)
        app = build_api(store, "gw", dict, tunnels=lambda: node_tunnels(served[0]))
        with cli_talks_to(app, portal, monkeypatch):
            yield served


def test_the_state_lists_each_port_and_tunnel_with_its_handshake_and_transfer(
    tunnels_api: list[Any],
) -> None:
    node: GatewayNode = tunnels_api[0]
    shown = nvgw("tunnel", "show", "--json")
    assert shown.exit_code == 0, shown.output
    state = json.loads(shown.output)
    assert state["listen_ports"] == [
        {"listen_port": PORT, "public_key": b64(public_key_of(GW_KEY)),
         "tunnels": ["onprem-blue", "onprem-red"]},
    ]  # fmt: skip
    blue, red = state["tunnels"]
    peer = node.tunnel_ports[PORT].device.peers[public_key_of(SITE_KEY["blue"])]
    assert blue == {
        "name": "onprem-blue", "rdid": BLUE, "routing_domain": "blue", "listen_port": PORT,
        "public_key": b64(public_key_of(SITE_KEY["blue"])), "endpoint": "192.0.2.11:51820",
        "allowed_ips": [ONPREM], "persistent_keepalive": 0,
        "latest_handshake": NOW,  # the fabric's devices: the wall clock's offset 0
        "latest_handshake_age_s": 63.0,
        "handshakes": 1, "rx_packets": 1, "rx_bytes": peer.rx_bytes, "tx_packets": 1,
        "tx_bytes": peer.tx_bytes, "decryption_failures": 0, "replays": 0,
    }  # fmt: skip
    assert peer.rx_bytes > 0 and peer.tx_bytes > 0
    assert (red["latest_handshake"], red["latest_handshake_age_s"], red["tx_bytes"]) == (0, None, 0)
    assert state["revision"] == 0
    one = json.loads(nvgw("tunnel", "show", "onprem-red", "--json").output)
    assert [t["name"] for t in one["tunnels"]] == ["onprem-red"]
    assert [p["listen_port"] for p in one["listen_ports"]] == [PORT]


def test_show_prints_like_wg_show(tunnels_api: list[Any]) -> None:
    shown = nvgw("tunnel", "show")
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert text.startswith(f"listen port: {PORT}\n  public key: {b64(public_key_of(GW_KEY))}\n")
    blue = text[text.index("tunnel: onprem-blue") : text.index("tunnel: onprem-red")]
    assert "  endpoint: 192.0.2.11:51820\n" in blue and f"  allowed ips: {ONPREM}\n" in blue
    assert "  latest handshake: 1 minute, 3 seconds ago\n" in blue
    assert "  transfer: " in blue and " B received, " in blue
    red = text[text.index("tunnel: onprem-red") :]
    assert "  latest handshake: none\n" in red and "  transfer: 0 B received, 0 B sent" in red
    for secret in (GW_KEY, *SITE_KEY.values()):  # only public keys: wg show hides the rest
        assert b64(secret) not in text and secret.hex() not in text


def test_no_such_tunnel_and_not_a_gateway_are_refused_clearly(
    tunnels_api: list[Any],
) -> None:
    missing = nvgw("tunnel", "show", "onprem-green")
    assert missing.exit_code == 1 and "no tunnel 'onprem-green' on this node" in missing.output
    tunnels_api[0] = object()  # a host: no tunnel ports
    host = nvgw("tunnel", "show")
    assert host.exit_code == 1 and "this node is not a gateway" in host.output


def test_a_daemon_not_running_is_named(tmp_path: Path) -> None:
    gone = nvgw("tunnel", "show", "--api", str(tmp_path / "nvgw.sock"))
    assert gone.exit_code == 1 and str(tmp_path / "nvgw.sock") in gone.output, gone.output


def test_times_and_sizes_read_as_wg_shows_them() -> None:
    assert ago(None) == "none" and ago(0.4) == "now"
    assert ago(63) == "1 minute, 3 seconds ago" and ago(7201) == "2 hours, 1 second ago"
    assert ago(86400 + 60) == "1 day, 1 minute ago"
    assert size(0) == "0 B" and size(1023) == "1023 B"
    assert size(1258291) == "1.20 MiB" and size(3 * 1024**3) == "3.00 GiB"
