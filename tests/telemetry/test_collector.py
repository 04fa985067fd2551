"""DataplaneCollector: the data plane's plain ints, read at scrape time.

A fresh ``CollectorRegistry`` per test, asserted with ``get_sample_value()`` (as
client_python's own tests do). Counters are bumped by the data plane itself where a
frame does it cheaply, by hand otherwise.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from gateway.control import load_config
from gateway.dataplane import (
    TUNNEL_TOTALS,
    Counters,
    DomainCounters,
    HostNode,
    HostPort,
    PortCounters,
    from_port,
)
from gateway.errors import Drop
from gateway.policy import Snapshot, compile_policy
from gateway.telemetry import DataplaneCollector
from gateway.wire import ETHERTYPE_IPV4, build_ethernet, build_ipv4

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BLUE1_MAC, BLUE2_MAC = bytes.fromhex("000000000011"), bytes.fromhex("000000000012")
BLUE1_CA, BLUE2_CA = bytes([10, 10, 10, 11]), bytes([10, 10, 10, 12])
ICMP_ECHO = b"\x08\x00\xf7\xff\x00\x00\x00\x00"  # type 8, checksum over the zero rest


class Sent:
    """An Output that keeps what went out."""

    def __init__(self) -> None:
        self.provider: list[tuple[bytes, bytes]] = []

    def to_tap(self, tap: HostPort, frame) -> None:
        raise AssertionError("nothing here is delivered locally")

    def to_provider(self, src_pa: bytes, dst_pa: bytes, gre: bytes, frame) -> None:
        self.provider.append((dst_pa, bytes(frame)))

    def to_provider_link(self, frame) -> None:
        raise AssertionError("two-hosts.yaml has no IP-Rewrite")


def snapshot(path: Path) -> Snapshot:
    return compile_policy(load_config(path))


def ping_blue1_to_blue2() -> bytes:
    ip = build_ipv4(BLUE1_CA, BLUE2_CA, 1, len(ICMP_ECHO))
    return build_ethernet(BLUE2_MAC, BLUE1_MAC, ETHERTYPE_IPV4) + ip + ICMP_ECHO


def host1() -> tuple[HostNode, Counters, CollectorRegistry]:
    counters = Counters()
    dataplane = HostNode(snapshot(CONFIGS / "two-hosts.yaml"), "host1", Sent(), counters)
    registry = CollectorRegistry()
    registry.register(DataplaneCollector("host1", counters, lambda: dataplane.tables))
    return dataplane, counters, registry


def test_every_drop_reason_is_a_labelled_sample_starting_at_zero() -> None:
    _, counters, registry = host1()
    for reason in Drop:
        value = registry.get_sample_value("nvgw_drops_total", {"reason": reason.label})
        assert value == 0.0, reason
    counters.drops[Drop.SPOOFED_PA] += 3
    counters.drops[Drop.TX_FULL] += 1
    assert registry.get_sample_value("nvgw_drops_total", {"reason": "spoofed_pa"}) == 3.0
    assert registry.get_sample_value("nvgw_drops_total", {"reason": "tx_full"}) == 1.0
    assert registry.get_sample_value("nvgw_drops_total", {"reason": "no_route"}) == 0.0
    assert registry.get_sample_value("nvgw_drops_total", {"reason": "nosuch"}) is None


def test_node_totals_are_read_at_scrape_time() -> None:
    _, counters, registry = host1()
    names = [name for name, _ in Counters.TOTALS]
    for index, name in enumerate(names, start=1):
        setattr(counters, name, 1000 + index)
    for index, name in enumerate(names, start=1):
        assert registry.get_sample_value(f"nvgw_{name}_total") == 1000 + index, name
    counters.routed += 1  # no re-registration: the next scrape sees it
    assert registry.get_sample_value("nvgw_routed_total") == 1000 + names.index("routed") + 2


# Metric families that are not one of the counter tables' entries.
OTHER_FAMILIES = {
    "nvgw_drops": "reason",
    "nvgw_policy_revision": "node",
    "nvgw_ports": None,
    "nvgw_policy_reloads": "result",
    "nvgw_policy_changes": "result",
    "nvgw_kernel_rx_drops": None,
    # A gateway's NAT per routing domain (tests/telemetry/test_napt_metrics.py).
    "nvgw_napt_sessions": "rdid",
    "nvgw_napt_session_limit": "rdid",
    "nvgw_napt_sessions_opened": "rdid",
    "nvgw_napt_sessions_expired": "rdid",
    "nvgw_napt_sessions_refused": "rdid",
    # A gateway's tunnels (tests/telemetry/test_tunnel_metrics.py).
    "nvgw_tunnel_latest_handshake_seconds": "tunnel",
    "nvgw_tunnel_port_cookie_replies_sent": "listen_port",
    "nvgw_tunnel_port_refused": "listen_port",
}


def test_every_counter_is_exported_with_its_help_and_nothing_else_is() -> None:
    """One table per counters object: its slots come from it, and the collector
    exports each entry with its help; every other family is one of a known few."""
    tables = {"drops", "ports", "domains"}  # by reason, per port, per routing domain (a gateway)
    assert set(Counters.__slots__) == tables | {n for n, _ in Counters.TOTALS}
    assert set(PortCounters.__slots__) == {name for name, _ in PortCounters.TOTALS}
    assert len(Counters.__slots__) == len(Counters.TOTALS) + len(tables)  # no name twice
    dataplane, counters, registry = host1()
    counters.port("blue1")
    expected = {f"nvgw_{name}": text for name, text in Counters.TOTALS}
    expected |= {f"nvgw_port_{name}": text for name, text in PortCounters.TOTALS}
    expected |= {f"nvgw_domain_{name}": text for name, text in DomainCounters.TOTALS}
    expected |= {f"nvgw_tunnel_{name}": text for name, text in TUNNEL_TOTALS}
    families = {family.name: family for family in registry.collect()}
    assert {name: families[name].documentation for name in expected} == expected
    assert set(families) == set(expected) | set(OTHER_FAMILIES)
    for name, _ in PortCounters.TOTALS:
        setattr(dataplane.tables.port_by_name["blue1"].counters, name, 7)
        labels = {"port": "blue1", "vsid": "5010"}
        assert registry.get_sample_value(f"nvgw_port_{name}_total", labels) == 7, name


def test_frames_through_the_data_plane_show_per_port_and_per_node() -> None:
    dataplane, _, registry = host1()
    out = dataplane.out = Sent()
    blue1 = dataplane.tables.port_by_name["blue1"]
    frame = ping_blue1_to_blue2()
    for _ in range(3):
        from_port(dataplane, blue1, memoryview(bytearray(frame)))
    spoofed = bytearray(frame)
    spoofed[26:30] = bytes([10, 10, 10, 99])  # a source CA that is not blue1's
    from_port(dataplane, blue1, memoryview(spoofed))
    assert len(out.provider) == 3

    blue = {"port": "blue1", "vsid": "5010"}
    red = {"port": "red1", "vsid": "5011"}
    assert registry.get_sample_value("nvgw_encapsulated_total") == 3
    assert registry.get_sample_value("nvgw_port_from_vm_packets_total", blue) == 3
    assert registry.get_sample_value("nvgw_port_from_vm_bytes_total", blue) == 3 * len(frame)
    assert registry.get_sample_value("nvgw_port_to_vm_packets_total", blue) == 0
    assert registry.get_sample_value("nvgw_port_from_vm_packets_total", red) == 0
    assert registry.get_sample_value("nvgw_drops_total", {"reason": "spoofed_source"}) == 1
    # host2's VMs are not this node's ports, and a port has one VSID label only
    host2_vm = {"port": "blue2", "vsid": "5010"}
    assert registry.get_sample_value("nvgw_port_to_vm_packets_total", host2_vm) is None
    assert (
        registry.get_sample_value("nvgw_port_from_vm_packets_total", {**blue, "vsid": "5011"})
        is None
    )
    assert registry.get_sample_value("nvgw_ports") == 2
    assert registry.get_sample_value("nvgw_policy_revision", {"node": "host1"}) == 0


def test_a_swap_shows_the_new_revision_and_ports_and_keeps_counters(tmp_path: Path) -> None:
    dataplane, counters, registry = host1()
    blue1 = dataplane.tables.port_by_name["blue1"]
    from_port(dataplane, blue1, memoryview(bytearray(ping_blue1_to_blue2())))
    counters.drops[Drop.NO_ROUTE] += 5
    red = {"port": "red1", "vsid": "5011"}
    dataplane.tables.port_by_name["red1"].counters.to_vm_packets += 2
    assert registry.get_sample_value("nvgw_port_to_vm_packets_total", red) == 2

    # revision 7, and red1 is no longer on host1
    text = (CONFIGS / "two-hosts.yaml").read_text()
    red1 = "      - {name: red1, vsid: 5011, mac: 00-00-00-00-00-21}\n"
    assert text.count(red1) == 1 and text.count("revision: 0\n") == 1
    changed = tmp_path / "two-hosts.yaml"
    changed.write_text(text.replace("revision: 0\n", "revision: 7\n").replace(red1, ""))
    dataplane.swap(snapshot(changed))

    blue = {"port": "blue1", "vsid": "5010"}
    assert registry.get_sample_value("nvgw_policy_revision", {"node": "host1"}) == 7
    assert registry.get_sample_value("nvgw_ports") == 1
    assert registry.get_sample_value("nvgw_port_to_vm_packets_total", red) is None
    assert registry.get_sample_value("nvgw_port_from_vm_packets_total", blue) == 1
    assert registry.get_sample_value("nvgw_drops_total", {"reason": "no_route"}) == 5
    assert registry.get_sample_value("nvgw_encapsulated_total") == 1

    # and back: red1 returns with the counts it had (a reset would read as a restart)
    dataplane.swap(snapshot(CONFIGS / "two-hosts.yaml"))
    assert registry.get_sample_value("nvgw_policy_revision", {"node": "host1"}) == 0
    assert registry.get_sample_value("nvgw_port_to_vm_packets_total", red) == 2


def test_registries_do_not_share_state() -> None:
    _, counters_a, registry_a = host1()
    _, _, registry_b = host1()
    counters_a.drops[Drop.TRUNCATED] += 1
    assert registry_a.get_sample_value("nvgw_drops_total", {"reason": "truncated"}) == 1
    assert registry_b.get_sample_value("nvgw_drops_total", {"reason": "truncated"}) == 0
