"""Seed lab 3, for real: NVGRE across two hosts, on both backends.

Blue reaches Blue and Red reaches Red with the same addresses, Blue never reaches
Red; forged frames on the provider network are dropped and counted, never
delivered; the provider network carries NVGRE that tshark decodes with the
expected VSIDs; a live migration keeps a ping flowing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from scapy.layers.inet import GRE, ICMP, IP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from gateway.control.trace import trace
from gateway.lab.probe import PingStream, connectivity
from gateway.lab.topology import Lab

from .conftest import (
    a_change_host1_cannot_serve,
    capture_fields,
    drops_rose,
    inject,
    link_mac,
    ping,
    provider_capture,
    running_lab,
    value,
)

pytestmark = pytest.mark.netns

BLUE1, BLUE2, RED2 = "00:00:00:00:00:11", "00:00:00:00:00:12", "00:00:00:00:00:22"
PA1, PA2 = "198.18.0.1", "198.18.0.2"


@pytest.fixture(scope="module")
def lab(backend: str) -> Iterator[Lab]:
    yield from running_lab("two-hosts", backend, f"t{backend[0]}")


def to_vm(samples: dict, port: str, vsid: int) -> float:
    return value(samples, "nvgw_port_to_vm_packets_total", port=port, vsid=str(vsid))


def test_connectivity_is_what_the_policy_says(lab: Lab) -> None:
    snapshot, plan = lab.plan()
    cells = {(c.source, c.target): c for c in connectivity(snapshot, plan)}
    assert all(cell.as_expected for cell in cells.values()), cells
    assert cells["blue1", "blue2"].answered_by == "blue2"
    assert cells["red1", "red2"].answered_by == "red2"
    # Red2's address, pinged from Blue, is answered by Blue's own VM of that address.
    assert cells["blue1", "red2"].answered_by == "blue2"
    # And nvgw trace, the same data plane on the same policy, says what the lab did:
    # from the file, and from the live policy of a running daemon through its API.
    policy = snapshot.policy
    with lab.api("host2") as api:
        for (source, target), cell in cells.items():
            address = str(plan.vm(target).address.ip)
            if address == str(plan.vm(source).address.ip):  # a VM's own address stays in it
                continue
            assert trace(policy, source, address).delivered_to == cell.answered_by, cell
            live = api.request("POST", "/v1/trace", json={"from": source, "to": address})
            assert live["delivered_to"] == cell.answered_by, (cell, live)


def test_blue_never_reaches_red(lab: Lab) -> None:
    before = lab.metrics("host2")
    assert ping(lab, "blue1", "10.10.10.12", count=3)
    after = lab.metrics("host2")
    assert to_vm(after, "blue2", 5010) - to_vm(before, "blue2", 5010) >= 3
    assert to_vm(after, "red2", 5011) == to_vm(before, "red2", 5011)
    assert ping(lab, "red1", "10.10.10.12", count=3)
    again = lab.metrics("host2")
    assert to_vm(again, "red2", 5011) - to_vm(after, "red2", 5011) >= 3
    assert to_vm(again, "blue2", 5010) == to_vm(after, "blue2", 5010)


def forged(lab: Lab, *, vsid: int, src_pa: str = PA1, c_bit: bool = False) -> bytes:
    """A Blue echo request from blue1 to blue2 as host1 would send it, then altered."""
    inner = Ether(src=BLUE1, dst=BLUE2) / IP(src="10.10.10.11", dst="10.10.10.12") / ICMP()
    gre = GRE(key_present=1, proto=0x6558, key=vsid << 8 | 1, chksum_present=int(c_bit))
    outer = Ether(dst=link_mac(f"{lab.prefix}-host2", "pa0"), src="02:00:00:00:99:99")
    return raw(outer / IP(src=src_pa, dst=PA2, flags="DF") / gre / inner)


def test_forged_provider_frames_are_dropped_and_counted(lab: Lab) -> None:
    before = lab.metrics("host2")
    inject(
        lab,
        [
            forged(lab, vsid=5011),  # Blue's frame in Red's VSID
            forged(lab, vsid=5010, src_pa="198.18.0.99"),  # not the PA of blue1's record
            forged(lab, vsid=4095),  # reserved VSID
            forged(lab, vsid=5010, c_bit=True),  # malformed NVGRE: checksum bit set
        ],
    )
    expected = {"vsid_mismatch": 1, "spoofed_pa": 1, "vsid_reserved": 1, "gre_checksum": 1}
    assert drops_rose(lab, "host2", before, expected) == expected
    after = lab.metrics("host2")
    assert to_vm(after, "blue2", 5010) == to_vm(before, "blue2", 5010)
    assert to_vm(after, "red2", 5011) == to_vm(before, "red2", 5011)
    # The same frame, unforged, is delivered: the drops above were the forgeries.
    inject(lab, [forged(lab, vsid=5010)])
    for _ in range(50):
        if to_vm(lab.metrics("host2"), "blue2", 5010) > to_vm(after, "blue2", 5010):
            break
    else:
        pytest.fail("the genuine frame was not delivered to blue2")


def test_provider_network_carries_nvgre_with_the_tenants_vsids(lab: Lab, tmp_path) -> None:
    capture = tmp_path / "provider.pcap"
    # 2 pings x 2 tenants x request and reply.
    with provider_capture(lab, capture, "ip proto 47", count=8):
        assert ping(lab, "blue1", "10.10.10.12", count=2)
        assert ping(lab, "red2", "10.10.10.11", count=2)
    seen = set()
    rows = capture_fields(capture, "gre.proto", "gre.key", "ip.src", "ip.dst", "eth.src")
    for proto, key, src, dst, macs in rows:
        assert int(proto, 16) == 0x6558
        outer_src, inner_src = src.split(",")
        outer_dst, inner_dst = dst.split(",")
        seen.add((int(key, 0) >> 8, outer_src, outer_dst, inner_src, inner_dst, macs.split(",")[1]))
    assert len(rows) == 8
    assert (5010, PA1, PA2, "10.10.10.11", "10.10.10.12", BLUE1) in seen
    assert (5010, PA2, PA1, "10.10.10.12", "10.10.10.11", BLUE2) in seen
    assert (5011, PA2, PA1, "10.10.10.12", "10.10.10.11", RED2) in seen
    assert {vsid for vsid, *_ in seen} == {5010, 5011}


def test_a_change_the_node_cannot_serve_is_refused_and_the_old_policy_keeps_forwarding(
    lab: Lab,
) -> None:
    log = lab.state_dir / f"lab-{lab.prefix}-host1.log"
    with a_change_host1_cannot_serve(lab) as revision:
        refused = [line for line in log.read_text().splitlines() if "policy refused" in line]
        assert refused and "cannot change while it runs" in refused[-1]
        assert value(lab.metrics("host1"), "nvgw_policy_revision", node="host1") == revision
        assert ping(lab, "blue1", "10.10.10.12"), "the old policy still forwards"
    assert ping(lab, "blue1", "10.10.10.12")


def test_lab_status_shows_the_daemons_and_their_counters(lab: Lab) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "lab", "status", "--prefix", lab.prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for name in ("blue1", "red2", "host1", "host2", "10.10.10.12/24"):
        assert name in out
    assert "unreachable" not in out


def test_live_migration_keeps_a_ping_flowing(lab: Lab) -> None:
    """Last in this module: it moves blue2 to host1 for good."""
    _, plan = lab.plan()
    before = lab.policy().revision  # the tests before may have changed the policy
    host1, host2 = lab.metrics("host1"), lab.metrics("host2")
    changes = value(host1, "nvgw_policy_changes_total", result="applied")
    reloads = value(host2, "nvgw_policy_reloads_total", result="applied")
    stream = PingStream(plan.vm("blue1"), "10.10.10.12", interval_s=0.01)
    try:
        stream.wait_flowing()
        assert ping(lab, "red1", "10.10.10.12")
        started = time.time()
        revision = lab.migrate("blue2", "host1")
        finished = time.time()
        assert ping(lab, "blue1", "10.10.10.12", count=2)
    finally:
        loss = stream.stop()
    assert revision == before + 1
    assert loss.first_reply < started and loss.last_reply > finished, "must span the move"
    assert loss.received > 0 and loss.loss_s <= 1.0, loss
    host1, host2 = lab.metrics("host1"), lab.metrics("host2")
    assert value(host1, "nvgw_policy_revision", node="host1") == revision
    assert value(host1, "nvgw_policy_changes_total", result="applied") == changes + 1  # the API
    assert value(host2, "nvgw_policy_revision", node="host2") == revision
    # host2 followed the store (no signal): one reload of the new revision
    assert value(host2, "nvgw_policy_reloads_total", result="applied") == reloads + 1
    assert to_vm(host1, "blue2", 5010) >= 2, "blue2's frames now come from host1's own TAP"
    assert ping(lab, "red1", "10.10.10.12"), "red2 stayed where it was"
