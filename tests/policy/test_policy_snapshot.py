"""The compiled snapshot: lookups keyed by packed bytes, on the shipped configs."""

from __future__ import annotations

import importlib.util
from ipaddress import ip_address
from pathlib import Path

import pytest

from gateway.control import load_config
from gateway.policy import (
    CompiledRecord,
    RecordType,
    Rule,
    Snapshot,
    compile_policy,
    load_policy,
)

from ._documents import BLUE, RED, base_document

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


def _ip(text: str) -> bytes:
    return ip_address(text).packed


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace("-", ""))


def _snapshot(name: str) -> Snapshot:
    return compile_policy(load_config(CONFIGS / name))


def test_two_hosts_lookups() -> None:
    snapshot = _snapshot("two-hosts.yaml")
    blue1 = snapshot.record_by_ca[5010, _ip("10.10.10.11")]
    red1 = snapshot.record_by_ca[5011, _ip("10.10.10.11")]
    assert isinstance(blue1, CompiledRecord)
    assert (blue1.vm, red1.vm) == ("blue1", "red1")  # same CA, two tenants
    assert blue1.pa_bytes == red1.pa_bytes == _ip("198.18.0.1")
    assert blue1.mac_bytes == _mac("00-00-00-00-00-11") and blue1.ca_bytes == _ip("10.10.10.11")
    assert (blue1.rdid, red1.rdid) == (BLUE, RED)
    assert (blue1.rule, blue1.type) == (Rule.ENCAP, RecordType.STATIC)
    assert snapshot.record_by_mac[5010, _mac("00-00-00-00-00-12")].vm == "blue2"
    assert (5010, _mac("00-00-00-00-00-21")) not in snapshot.record_by_mac  # red1's MAC
    assert dict(snapshot.rdid_by_vsid) == {5010: BLUE, 5011: RED}
    assert [r.vm for r in snapshot.records_by_pa[_ip("198.18.0.2")]] == ["blue2", "red2"]
    route = snapshot.route(BLUE, _ip("10.10.10.99"))
    assert route is not None and route.next_hop_bytes is None and route.vsid == 5010
    assert route.metric == 255 and route.next_hop_vsid == 5010
    assert snapshot.route(BLUE, _ip("10.10.11.1")) is None
    assert snapshot.route(RED, _ip("10.10.10.1")).vsid == 5011  # type: ignore[union-attr]
    assert snapshot.route(BLUE, _ip("fd00::1")) is None  # no IPv6 route
    assert snapshot.route("{no-such-rdid}", _ip("10.10.10.1")) is None
    assert snapshot.revision == 0


def test_ip_rewrite_lookups() -> None:
    snapshot = _snapshot("ip-rewrite.yaml")
    assert {r.rule for r in snapshot.records} == {Rule.IP_REWRITE}
    # One PA per CA: every PA maps back to exactly one record.
    assert all(len(found) == 1 for found in snapshot.records_by_pa.values())
    red2 = snapshot.records_by_pa[_ip("198.18.0.22")][0]
    assert (red2.vm, red2.vsid, red2.ca_bytes) == ("red2", 5011, _ip("10.10.10.12"))


def test_single_host_lookups() -> None:
    snapshot = _snapshot("single-host.yaml")
    assert snapshot.record_by_ca[5020, _ip("10.10.10.20")].vm == "red2"
    assert snapshot.rdid_by_vsid[5020] == RED
    assert len(snapshot.records_by_pa[_ip("198.18.0.1")]) == 4
    assert snapshot.routes == ()


def test_routing_between_vsids_of_one_rdid() -> None:
    snapshot = _snapshot("routing.yaml")
    to_blue3 = snapshot.route(BLUE, _ip("10.10.20.13"))
    assert to_blue3 is not None and to_blue3.vsid == 5012
    assert snapshot.record_by_ca[to_blue3.vsid, _ip("10.10.20.13")].vm == "blue3"
    assert snapshot.route(RED, _ip("10.10.20.13")) is None  # nothing crosses RDIDs
    assert snapshot.policy.virtual_subnet(5012).gateway == ip_address("10.10.20.1")


def test_next_hop_route_knows_the_next_hops_vsid() -> None:
    document = base_document()
    document["customer_routes"].append(
        {"rdid": BLUE, "vsid": 5010, "destination": "0.0.0.0/0", "next_hop": "10.10.20.13"}
    )
    snapshot = compile_policy(load_policy(document))
    default = snapshot.route(BLUE, _ip("192.0.2.7"))
    assert default is not None
    assert default.next_hop_bytes == _ip("10.10.20.13") and default.next_hop_vsid == 5012
    assert snapshot.route(BLUE, _ip("10.10.10.7")).next_hop_bytes is None  # type: ignore[union-attr]


def test_snapshot_is_immutable() -> None:
    snapshot = _snapshot("two-hosts.yaml")
    with pytest.raises(TypeError):
        snapshot.record_by_ca[5010, b"\0\0\0\0"] = snapshot.records[0]  # type: ignore[index]
    with pytest.raises(AttributeError):
        snapshot.revision = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        snapshot.records[0].pa_bytes = b"\0\0\0\0"  # type: ignore[misc]


def test_memoryview_destination() -> None:
    """The wire parser may hand out a slice of its buffer rather than bytes."""
    snapshot = _snapshot("two-hosts.yaml")
    frame = bytearray(b"\xff" * 4 + _ip("10.10.10.5"))
    assert snapshot.route(BLUE, memoryview(frame)[4:8]) is not None


def test_benchmark_generator_makes_a_valid_policy() -> None:
    """bench/snapshot_build.py must keep generating what load_policy accepts."""
    spec = importlib.util.spec_from_file_location(
        "snapshot_build", ROOT / "bench/snapshot_build.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    policy = load_policy(bench.generate(1200))
    snapshot = compile_policy(policy)
    counts = policy.counts()
    assert counts["lookup_records"] == len(snapshot.records) == 1200
    assert counts["ports"] == 1200 and counts["ip_rewrite_records"] == 60
    assert len(snapshot.record_by_ca) == len(snapshot.record_by_mac) == 1200
