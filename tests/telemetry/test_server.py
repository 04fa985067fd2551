"""The /metrics endpoint over real HTTP on loopback (``--metrics`` is parsed by
gateway.netnames: tests/test_netnames.py)."""

from __future__ import annotations

import socket
import socketserver
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.control import load_config
from gateway.dataplane import Counters, HostTables
from gateway.errors import Drop
from gateway.policy import compile_policy
from gateway.telemetry import DataplaneCollector, MetricsServer, serve_metrics

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TIMEOUT_S = 5.0


def registry_of_host1() -> tuple[Counters, CollectorRegistry]:
    counters = Counters()
    snapshot = compile_policy(load_config(CONFIGS / "two-hosts.yaml"))
    tables = HostTables(snapshot, "host1", counters)
    registry = CollectorRegistry()
    registry.register(DataplaneCollector("host1", counters, lambda: tables))
    return counters, registry


def scrape(server: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    host = f"[{server.host}]" if ":" in server.host else server.host
    with urllib.request.urlopen(f"http://{host}:{server.port}/metrics", timeout=TIMEOUT_S) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def served() -> Iterator[tuple[Counters, MetricsServer]]:
    counters, registry = registry_of_host1()
    server = serve_metrics(registry, "127.0.0.1:0")
    try:
        yield counters, server
    finally:
        server.close()


def test_serves_the_collector_over_http_and_rereads_each_scrape(served) -> None:
    counters, server = served
    assert server.host == "127.0.0.1"
    assert server.port != 0, "port 0 must be replaced by the bound port"
    counters.drops[Drop.SPOOFED_PA] += 3
    first = scrape(server)
    assert first["nvgw_drops_total", (("reason", "spoofed_pa"),)] == 3
    assert first["nvgw_policy_revision", (("node", "host1"),)] == 0
    assert first["nvgw_port_from_vm_packets_total", (("port", "blue1"), ("vsid", "5010"))] == 0
    counters.drops[Drop.SPOOFED_PA] += 1
    counters.encapsulated += 9
    second = scrape(server)
    assert second["nvgw_drops_total", (("reason", "spoofed_pa"),)] == 4
    assert second["nvgw_encapsulated_total", ()] == 9


def test_close_stops_listening() -> None:
    _, registry = registry_of_host1()
    server = serve_metrics(registry, "127.0.0.1:0")
    scrape(server)
    server.close()
    with pytest.raises(ConnectionRefusedError), socket.socket() as probe:
        probe.settimeout(TIMEOUT_S)
        probe.connect(("127.0.0.1", server.port))


def test_an_empty_host_means_loopback() -> None:
    _, registry = registry_of_host1()
    server = serve_metrics(registry, ":0")
    try:
        assert server.host == "127.0.0.1"
        assert ("nvgw_ports", ()) in scrape(server)
    finally:
        server.close()


def test_serves_on_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6) as check:
            check.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    _, registry = registry_of_host1()
    server = serve_metrics(registry, "[::1]:0")
    try:
        assert server.host == "::1"
        assert ("nvgw_ports", ()) in scrape(server)
    finally:
        server.close()


@pytest.mark.timeout(20)
def test_close_does_not_wait_for_the_server_loop_to_look_for_a_stop() -> None:
    """socketserver looks for a stop request only between waits for a connection
    (every half second in prometheus-client's thread: every daemon's stop was that
    much longer). A loop that waits an hour between looks still stops at once:
    ``close`` wakes it with a connection of its own."""
    server = socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    loop = threading.Thread(target=server.serve_forever, args=(3600.0,), daemon=True)
    loop.start()
    MetricsServer("127.0.0.1", server.server_address[1], server).close()
    loop.join(TIMEOUT_S)
    assert not loop.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.server_address[1]), TIMEOUT_S)
