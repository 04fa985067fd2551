"""A gateway's ``/metrics``: what crossed it per routing domain, each way, read from
the data plane's per-RDID counters at scrape time and labelled by RDID and name.

Frames are built with scapy (an independent codec) and given to the gateway's own
handlers; the collector reads the counters those handlers bumped.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from gateway.control import load_config
from gateway.dataplane import Counters, GatewayNode, HostNode, gateway_from_tap, tap_mac
from gateway.policy import compile_policy
from gateway.telemetry import DataplaneCollector

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BLUE = {"rdid": "{11111111-2222-3333-4444-000000005010}", "routing_domain": "blue"}
RED = {"rdid": "{11111111-2222-3333-4444-000000005011}", "routing_domain": "red"}


class Sent:
    """An Output that keeps what went into the tenants' VSIDs."""

    def __init__(self) -> None:
        self.provider: list[bytes] = []

    def to_tap(self, tap, frame) -> None:  # type: ignore[no-untyped-def]
        raise AssertionError("nothing here goes back to the corp side")

    def to_provider(self, src_pa: bytes, dst_pa: bytes, gre: bytes, frame) -> None:  # type: ignore[no-untyped-def]
        self.provider.append(bytes(frame))

    def to_provider_link(self, frame) -> None:  # type: ignore[no-untyped-def]
        raise AssertionError("a gateway has no provider link")


def test_a_gateways_domains_show_what_crossed_them_and_it_serves_no_ports() -> None:
    counters = Counters()
    out = Sent()
    snapshot = compile_policy(load_config(CONFIGS / "gateway.yaml"))
    gw = GatewayNode(snapshot, "gw", out, counters)
    registry = CollectorRegistry()
    registry.register(DataplaneCollector("gw", counters, lambda: gw.tables))
    for name in ("in_packets", "in_bytes", "out_packets", "out_bytes"):
        for labels in (BLUE, RED):  # every served domain is there from the start
            assert registry.get_sample_value(f"nvgw_domain_{name}_total", labels) == 0
    tap = gw.tables.tap_by_name["gw-blue"]
    frame = raw(
        Ether(src="02:00:00:00:01:02", dst=tap_mac("gw-blue").hex(":"))
        / IP(src="172.16.0.2", dst="10.10.10.11", ttl=64)
        / UDP(sport=5000, dport=7)
        / b"to blue1"
    )
    for _ in range(3):
        gateway_from_tap(gw, tap, memoryview(bytearray(frame)))
    assert len(out.provider) == 3  # into Blue's VSID, toward blue1's host
    assert registry.get_sample_value("nvgw_domain_in_packets_total", BLUE) == 3
    assert registry.get_sample_value("nvgw_domain_in_bytes_total", BLUE) == 3 * len(frame)
    assert registry.get_sample_value("nvgw_domain_in_packets_total", RED) == 0
    assert registry.get_sample_value("nvgw_domain_out_packets_total", BLUE) == 0
    assert registry.get_sample_value("nvgw_ports") == 0
    assert registry.get_sample_value("nvgw_policy_revision", {"node": "gw"}) == 0


def test_a_host_has_no_domain_samples() -> None:
    counters = Counters()
    snapshot = compile_policy(load_config(CONFIGS / "gateway.yaml"))
    host = HostNode(snapshot, "host1", Sent(), counters)
    registry = CollectorRegistry()
    registry.register(DataplaneCollector("host1", counters, lambda: host.tables))
    assert registry.get_sample_value("nvgw_domain_in_packets_total", BLUE) is None
    assert registry.get_sample_value("nvgw_ports") == 2
