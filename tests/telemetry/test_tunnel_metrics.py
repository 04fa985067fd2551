"""A gateway's tunnels in ``/metrics``: per tunnel, what its peer counts and when the
latest handshake was (from the wall clock the io layer gives the devices), per listen
port the cookie replies and refusals; read at scrape time from the plain ints of the
real data plane, which the fabric drives against a site of our own WireGuard core
(``tests/dataplane/_tunnel_lab.py``)."""

from __future__ import annotations

import base64

from prometheus_client import CollectorRegistry, generate_latest
from scapy.layers.inet import ICMP, IP
from scapy.packet import raw

from gateway.dataplane import Fabric, GatewayNode, TunnelKeys, new_device
from gateway.telemetry import DataplaneCollector
from gateway.wireguard import public_key_of
from tests.dataplane._gateway_lab import gateway_snapshot
from tests.dataplane._policies import NOW
from tests.dataplane._tunnel_lab import (
    GW_KEY,
    PORT,
    SERVER,
    SITE,
    SITE_KEY,
    WAN,
    Site,
    tunnel_document,
)
from tests.dataplane.test_gateway_fabric import VM_IP
from tests.dataplane.test_gateway_tunnels import establish

WALL_OFFSET_S = 1_750_000_000.0  # the wall clock's lead on ``now``, as io would give it
BLUE = {"tunnel": "onprem-blue", "rdid": "{11111111-2222-3333-4444-000000005010}"}
RED = {"tunnel": "onprem-red", "rdid": "{11111111-2222-3333-4444-000000005011}"}
PORT_LABEL = {"listen_port": str(PORT)}
TOTALS = ("handshakes", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes")
FAILURES = ("decryption_failures", "replays")


def _lab() -> tuple[Fabric, GatewayNode, CollectorRegistry]:
    network = Fabric(
        gateway_snapshot(tunnel_document),
        tunnel_keys={"gw": TunnelKeys(private={PORT: GW_KEY})},
        make_device=new_device(WALL_OFFSET_S),
    )
    node = network.node("gw")
    assert isinstance(node, GatewayNode)
    registry = CollectorRegistry()
    registry.register(DataplaneCollector("gw", node.counters, lambda: node.tables))
    return network, node, registry


def _tunnel(registry: CollectorRegistry, labels: dict[str, str]) -> dict[str, float | None]:
    values = {
        name: registry.get_sample_value(f"nvgw_tunnel_{name}_total", labels)
        for name in (*TOTALS, *FAILURES)
    }
    values["latest"] = registry.get_sample_value("nvgw_tunnel_latest_handshake_seconds", labels)
    return values


def test_a_tunnels_exchange_counted_with_its_handshake_time_a_replay_and_a_forgery() -> None:
    network, _, registry = _lab()
    before = _tunnel(registry, BLUE)
    assert before == dict.fromkeys((*TOTALS, *FAILURES, "latest"), 0.0)
    site, _ = establish(network, "blue", NOW)  # initiation, response, the VM's ping
    blue = _tunnel(registry, BLUE)
    assert blue["latest"] == NOW + WALL_OFFSET_S  # the passed-in clock, not time.time()
    assert (blue["handshakes"], blue["tx_packets"], blue["rx_packets"]) == (1, 1, 0)
    assert blue["tx_bytes"] == site.peer.rx_bytes  # all the gateway sent, as the site got it
    # The server's echo reply, sent by the site: one packet in, its datagram's bytes.
    reply = IP(src=SERVER, dst=VM_IP) / ICMP(type=0, id=7, seq=1)
    site.device.send(site.peer, raw(reply), NOW + 1)
    [(datagram, endpoint)] = site.device.outbox
    assert endpoint == WAN
    site.device.outbox.clear()
    network.from_tunnel("gw", PORT, datagram, SITE["blue"], NOW + 1)
    blue = _tunnel(registry, BLUE)
    assert blue["rx_packets"] == 1 and blue["rx_bytes"] == site.peer.tx_bytes
    # The same datagram again (a replay on the wire), and one with its tag forged.
    network.from_tunnel("gw", PORT, datagram, SITE["blue"], NOW + 1)
    forged = bytearray(datagram)
    forged[-1] ^= 1
    network.from_tunnel("gw", PORT, bytes(forged), SITE["blue"], NOW + 1)
    after = _tunnel(registry, BLUE)
    assert (after["replays"], after["decryption_failures"], after["rx_packets"]) == (1, 1, 1)
    assert after["latest"] == NOW + WALL_OFFSET_S
    assert _tunnel(registry, RED) == before  # Red's tunnel saw none of it
    refused = {**PORT_LABEL, "reason": "replayed"}
    assert registry.get_sample_value("nvgw_tunnel_port_refused_total", refused) == 1
    forged_label = {**PORT_LABEL, "reason": "decrypt_failed"}
    assert registry.get_sample_value("nvgw_tunnel_port_refused_total", forged_label) == 1
    assert network.drops("gw") == {"TUNNEL_REPLAYED": 1, "TUNNEL_UNAUTHENTICATED": 1}


def test_a_cookie_reply_is_counted_on_its_listen_port() -> None:
    network, node, registry = _lab()
    port = node.tunnel_ports[PORT]
    port.load_threshold = 0  # every handshake message makes the port loaded
    site = Site(network, "red")
    site.device.initiate(site.peer, NOW)
    [step] = site.answer()
    [(_, endpoint, reply)] = step.udp
    assert endpoint == SITE["red"] and reply[0] == 3  # a cookie reply
    sent = registry.get_sample_value("nvgw_tunnel_port_cookie_replies_sent_total", PORT_LABEL)
    assert sent == 1
    required = {**PORT_LABEL, "reason": "cookie_required"}
    assert registry.get_sample_value("nvgw_tunnel_port_refused_total", required) == 1


def test_a_removed_tunnels_series_go_with_it_and_no_key_is_ever_exported() -> None:
    network, _, registry = _lab()
    establish(network, "red", NOW)
    assert _tunnel(registry, RED)["handshakes"] == 1
    network.swap(gateway_snapshot(lambda d: (tunnel_document(d), d["tunnels"].pop())))
    text = generate_latest(registry).decode()
    assert "onprem-red" not in text and 'tunnel="onprem-blue"' in text
    assert _tunnel(registry, RED) == dict.fromkeys((*TOTALS, *FAILURES, "latest"))
    secrets = [GW_KEY, *SITE_KEY.values()]
    for secret in secrets:
        for spelling in (base64.b64encode(secret).decode(), secret.hex()):
            assert spelling not in text
    assert base64.b64encode(public_key_of(GW_KEY)).decode() not in text  # not even public
