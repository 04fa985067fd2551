"""A gateway's NAT in ``/metrics``: per routing domain, the sessions held and the
limit, sessions opened, ended for idleness and refused by reason, read at scrape time
from the plain ints of each tenant of the node's table (the fabric drives the real
data plane; ``tests/dataplane/_gateway_lab.py``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from scapy.layers.inet import IP

from gateway.telemetry import DataplaneCollector
from tests.dataplane._gateway_lab import SERVER_IP, nat_lab
from tests.dataplane._policies import NOW
from tests.dataplane.test_gateway_fabric import VM, VM_IP, from_vm
from tests.dataplane.test_gateway_napt import gw, l4

BLUE = {"rdid": "{11111111-2222-3333-4444-000000005010}", "routing_domain": "blue"}
RED = {"rdid": "{11111111-2222-3333-4444-000000005011}", "routing_domain": "red"}


def test_sessions_openings_refusals_and_expiries_per_routing_domain() -> None:
    network = nat_lab(red={"max_sessions": 1})
    node = gw(network)
    registry = CollectorRegistry()
    registry.register(DataplaneCollector("gw", node.counters, lambda: node.tables))

    def value(name: str, labels: dict[str, str]) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("nvgw_napt_sessions", BLUE) == 0 and value("nvgw_napt_session_limit", RED) == 1
    for tenant, ports in (("blue", (1111, 2222, 3333)), ("red", (1111, 2222))):
        for sport in ports:
            packet = IP(src=VM_IP, dst=SERVER_IP) / l4("udp", sport)
            network.send(VM[tenant], from_vm(tenant, packet), NOW)
    assert value("nvgw_napt_sessions", BLUE) == 3 and value("nvgw_napt_sessions", RED) == 1
    assert value("nvgw_napt_sessions_opened_total", BLUE) == 3
    assert value("nvgw_napt_sessions_opened_total", RED) == 1
    limited = {**RED, "reason": "napt_tenant_limit"}
    assert value("nvgw_napt_sessions_refused_total", limited) == 1
    assert value("nvgw_napt_sessions_refused_total", {**BLUE, "reason": "napt_tenant_limit"}) == 0
    assert value("nvgw_napt_sessions_refused_total", {**RED, "reason": "napt_ports_exhausted"}) == 0
    assert node.napt is not None and node.napt.expire(NOW + 3600) == 4
    assert value("nvgw_napt_sessions", BLUE) == 0 and value("nvgw_napt_sessions", RED) == 0
    assert value("nvgw_napt_sessions_expired_total", BLUE) == 3
    assert value("nvgw_napt_sessions_expired_total", RED) == 1
