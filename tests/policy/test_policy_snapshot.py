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


def _with_records(*records: dict) -> Snapshot:
    document = base_document()
    document["lookup_records"] += list(records)
    return compile_policy(load_policy(document))


def _record(vsid: int, ca: str, mac: str, pa: str, kind: str = "static") -> dict:
    return {"vsid": vsid, "ca": ca, "mac": mac, "pa": pa, "rule": "encap", "type": kind}


def test_a_macs_records_ipv4_first_then_a_ca_then_gateway() -> None:
    """One MAC in VSID 5012 with every kind of record (decisions.md, "Which records may
    coexist"), written worst first: the data plane judges the MAC's frames by its IPv4
    CA's record, and an IPv4 frame never by a record whose CA is IPv6."""
    mac = "00-00-00-00-00-13"  # blue3's, whose IPv4 record is in the base document
    snapshot = _with_records(
        _record(5012, "::", mac, "198.18.0.2", "l2only"),
        _record(5012, "::", mac, "198.18.0.2", "gateway"),
        _record(5012, "fd00:20::13", mac, "198.18.0.2"),
        _record(5012, "0.0.0.0", mac, "198.18.0.2", "l2only"),
        _record(5012, "0.0.0.0", mac, "198.18.0.2", "gateway"),
    )
    found = snapshot.records_by_mac[5012, _mac(mac)]
    assert [(str(r.record.ca), r.type.label) for r in found] == [
        ("10.10.20.13", "static"),
        ("0.0.0.0", "gateway"),
        ("0.0.0.0", "l2only"),
        ("fd00:20::13", "static"),
        ("::", "gateway"),
        ("::", "l2only"),
    ]
    assert snapshot.record_by_mac[5012, _mac(mac)] is found[0]
    assert [r.wildcard for r in found] == [False, True, True, False, True, True]
    # A wildcard CA is no address: 0.0.0.0 and :: are nobody's in record_by_ca.
    assert (5012, bytes(4)) not in snapshot.record_by_ca
    assert (5012, bytes(16)) not in snapshot.record_by_ca
    assert snapshot.record_by_ca[5012, _ip("fd00:20::13")] is found[3]
    assert snapshot.gateway_wildcard[5012, 4] is found[1]
    assert snapshot.gateway_wildcard[5012, 16] is found[4]
    assert (5010, 4) not in snapshot.gateway_wildcard


def test_an_ipv6_ca_alone_is_its_macs_record() -> None:
    snapshot = _with_records(_record(5012, "fd00:20::99", "00-00-00-00-00-99", "198.18.0.2"))
    record = snapshot.record_by_mac[5012, _mac("00-00-00-00-00-99")]
    assert str(record.record.ca) == "fd00:20::99"


def test_the_gateways_ca_record_and_its_wildcard() -> None:
    """decisions.md's shape: the gateway's CA record and its wildcard share a MAC."""
    snapshot = _with_records(
        _record(5010, "0.0.0.0", "02-00-00-00-50-10", "198.18.0.10", "gateway"),
        _record(5010, "10.10.10.254", "02-00-00-00-50-10", "198.18.0.10", "gateway"),
    )
    by_ca = snapshot.record_by_ca[5010, _ip("10.10.10.254")]
    assert snapshot.record_by_mac[5010, _mac("02-00-00-00-50-10")] is by_ca
    assert snapshot.gateway_wildcard[5010, 4].ca_bytes == bytes(4)
    assert len(snapshot.records) == 7
