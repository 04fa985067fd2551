"""Seed labs 1 and 2 and the routing scenario, for real, on both backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.lab.probe import ROUTED, connectivity
from gateway.lab.topology import Lab

from .conftest import capture_fields, ping, provider_capture, running_lab, value

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def single_host(backend: str) -> Iterator[Lab]:
    yield from running_lab("single-host", backend, f"s{backend[0]}")


@pytest.fixture(scope="module")
def ip_rewrite(backend: str) -> Iterator[Lab]:
    yield from running_lab("ip-rewrite", backend, f"i{backend[0]}")


@pytest.fixture(scope="module")
def routing(backend: str) -> Iterator[Lab]:
    yield from running_lab("routing", backend, f"r{backend[0]}")


def cells_of(lab: Lab) -> dict:
    snapshot, plan = lab.plan()
    return {(c.source, c.target): c for c in connectivity(snapshot, plan)}


def to_vm(samples: dict, port: str, vsid: int) -> float:
    return value(samples, "nvgw_port_to_vm_packets_total", port=port, vsid=str(vsid))


def test_single_host_keeps_overlapping_tenants_apart(single_host: Lab) -> None:
    cells = cells_of(single_host)
    assert all(cell.as_expected for cell in cells.values()), cells
    assert cells["blue1", "blue2"].answered_by == "blue2"
    assert cells["red1", "red2"].answered_by == "red2"
    before = single_host.metrics("host1")
    assert ping(single_host, "blue1", "10.10.10.20", count=3)  # Blue2's address, and Red2's
    after = single_host.metrics("host1")
    assert to_vm(after, "blue2", 5010) - to_vm(before, "blue2", 5010) >= 3
    assert to_vm(after, "red2", 5020) == to_vm(before, "red2", 5020)
    switched = value(after, "nvgw_switched_locally_total")
    assert switched - value(before, "nvgw_switched_locally_total") >= 6  # requests and replies
    assert value(after, "nvgw_encapsulated_total") == 0, "one host: nothing crosses the wire"


def test_ip_rewrite_reaches_across_hosts_in_plain_ip(ip_rewrite: Lab, tmp_path) -> None:
    cells = cells_of(ip_rewrite)
    assert all(cell.as_expected for cell in cells.values()), cells
    assert cells["blue1", "blue2"].answered_by == "blue2"
    assert cells["red2", "red1"].answered_by == "red1"
    capture = tmp_path / "provider.pcap"
    with provider_capture(ip_rewrite, capture, "icmp or ip proto 47", count=4):
        assert ping(ip_rewrite, "blue1", "10.10.10.12", count=2)
    snapshot, _ = ip_rewrite.plan()
    blue1 = next(r for r in snapshot.records if r.vm == "blue1").record.pa
    blue2 = next(r for r in snapshot.records if r.vm == "blue2").record.pa
    seen = {tuple(row) for row in capture_fields(capture, "ip.proto", "ip.src", "ip.dst")}
    # CAs rewritten to each VM's own PA, sent as plain ICMP: no GRE, no 10.x on the wire.
    assert seen == {("1", str(blue1), str(blue2)), ("1", str(blue2), str(blue1))}


def test_routing_between_vsids_of_one_domain(routing: Lab) -> None:
    cells = cells_of(routing)
    assert all(cell.as_expected for cell in cells.values()), cells
    assert cells["blue1", "blue3"].answered_by == ROUTED
    assert cells["blue3", "blue2"].answered_by == ROUTED
    assert cells["red1", "blue3"].answered_by is None, "never across routing domains"
    before = routing.metrics("host1")
    assert ping(routing, "blue1", "10.10.20.13", count=2)
    after = routing.metrics("host1")
    assert value(after, "nvgw_routed_total") - value(before, "nvgw_routed_total") >= 2
