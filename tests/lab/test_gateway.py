"""The gateway lab, for real: Blue and Red (the same addresses) each reach their own
corp network through the gateway and never the other's, on both backends.

One bring-up per backend (the hosts, the gateway, four VMs, two corp networks that
both use 172.16.0.2, each with a server that answers with its tenant's name), and
per bring-up every clause of issue 11's first "Done when" line: TCP, UDP and ping to
the own corp server only; traceroute from a VM shows its host (10.10.10.1), then the
gateway (10.10.10.254); a too big DF ping from a corp server gets fragmentation-needed
from the gateway with MTU 1458 and tracepath finds it; TCP through the gateway
negotiates a clamped MSS; forged NVGRE to the gateway's PA is dropped and counted.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from gateway.lab.corp_probe import ask, corp_connectivity
from gateway.lab.topology import Lab
from tests.conftest import require_tool

from .conftest import (
    capture,
    capture_fields,
    drops_rose,
    inject,
    link_mac,
    ping,
    value,
)

pytestmark = pytest.mark.netns

CORP = "172.16.0.2"
GW_PA, PA1 = "198.18.0.10", "198.18.0.1"
BLUE1 = "00:00:00:00:00:11"
GW_BLUE_MAC = "02:00:00:00:50:10"
DOMAIN = {
    "blue": {"rdid": "{11111111-2222-3333-4444-000000005010}", "routing_domain": "blue"},
    "red": {"rdid": "{11111111-2222-3333-4444-000000005011}", "routing_domain": "red"},
}
PORT_MTU, CLAMPED_MSS, CORP_MSS = 1458, 1418, 1460  # a 1500 TAP: the corp stack says 1460


@pytest.fixture(scope="module")
def lab(gateway_lab: Lab) -> Lab:
    for tool in ("traceroute", "tracepath"):
        require_tool(tool)
    return gateway_lab


def run(lab: Lab, where: str, *command: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", f"{lab.prefix}-{where}", *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    ).stdout


def crossed(lab: Lab, tenant: str, direction: str) -> float:
    """IP frames the gateway moved for ``tenant``: ``in`` from its corp TAP into its
    VSIDs, ``out`` to its corp TAP."""
    samples = lab.metrics("gw")
    return value(samples, f"nvgw_domain_{direction}_packets_total", **DOMAIN[tenant])


def test_each_vm_reaches_its_own_corp_server_and_never_the_other_tenants(lab: Lab) -> None:
    snapshot, plan = lab.plan()
    cells = corp_connectivity(snapshot, plan)
    assert all(cell.as_expected for cell in cells), cells
    reached = {(c.source, c.target) for c in cells if c.answered_by}
    ours = {("blue1", "blue"), ("blue2", "blue"), ("red1", "red"), ("red2", "red")}
    not_ours = {("blue3", "blue")} if plan.peers else set()  # Open vSwitch's VM: test_ovs_peer
    assert reached == ours | not_ours
    for vm, tenant in (("blue1", "blue"), ("red1", "red"), ("blue2", "blue"), ("red2", "red")):
        assert ask(plan.vm(vm), CORP, "tcp") == tenant, vm
        assert ask(plan.vm(vm), CORP, "udp") == tenant, vm
    # Ping cannot say who answered (both corps are 172.16.0.2): the gateway's
    # per-domain counters do.
    before = {(t, d): crossed(lab, t, d) for t in DOMAIN for d in ("in", "out")}
    assert ping(lab, "blue1", CORP, count=3)
    after = {(t, d): crossed(lab, t, d) for t in DOMAIN for d in ("in", "out")}
    assert after["blue", "out"] - before["blue", "out"] >= 3  # requests to Blue's corp
    assert after["blue", "in"] - before["blue", "in"] >= 3  # its replies
    assert after["red", "out"] == before["red", "out"]
    assert after["red", "in"] == before["red", "in"]
    assert ping(lab, "red2", CORP, count=3)
    again = {(t, d): crossed(lab, t, d) for t in DOMAIN for d in ("in", "out")}
    assert again["red", "out"] - after["red", "out"] >= 3
    assert again["blue", "out"] == after["blue", "out"]


def test_traceroute_from_a_vm_shows_its_host_then_the_gateway(lab: Lab) -> None:
    out = run(lab, "red1", "traceroute", "-n", "-q", "1", "-w", "2", "-m", "5", CORP)
    hops = [line.split()[1] for line in out.splitlines()[1:]]
    assert hops == ["10.10.10.1", "10.10.10.254", CORP], out


def test_tcp_through_the_gateway_negotiates_a_clamped_mss(lab: Lab, tmp_path: Path) -> None:
    """blue2 connects to Blue's corp server: the server's SYN-ACK leaves its TAP (MTU
    1500) with MSS 1460 and reaches blue2 clamped to 1418, what fits its 1458 port."""
    _, plan = lab.plan()
    subprocess.run(["ip", "-n", f"{lab.prefix}-corp-blue", "route", "flush", "cache"], check=True)
    syns = "tcp[tcpflags] & tcp-syn != 0"
    vm_side, corp_side = tmp_path / "vm.pcap", tmp_path / "corp.pcap"
    with (
        capture(f"{lab.prefix}-blue2", "blue2", vm_side, syns, count=2),
        capture(f"{lab.prefix}-corp-blue", "gw-blue", corp_side, syns, count=2),
    ):
        assert ask(plan.vm("blue2"), CORP, "tcp") == "blue"
    fields = ("tcp.flags", "ip.src", "tcp.options.mss_val")
    sent = {
        int(flags, 16): (src, int(mss)) for flags, src, mss in capture_fields(corp_side, *fields)
    }
    got = {int(flags, 16): (src, int(mss)) for flags, src, mss in capture_fields(vm_side, *fields)}
    syn, syn_ack = 0x02, 0x12
    assert sent[syn_ack] == (CORP, CORP_MSS)
    assert got[syn_ack] == (CORP, CLAMPED_MSS)
    assert got[syn] == sent[syn] == ("10.10.10.12", PORT_MTU - 40)


def test_a_too_big_df_ping_from_corp_gets_frag_needed_and_tracepath_finds_it(lab: Lab) -> None:
    out = run(
        lab, "corp-red", "ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", "10.10.10.11"
    )
    assert "From 172.16.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1458)" in out, out
    traced = run(lab, "corp-red", "tracepath", "-n", "10.10.10.12")
    assert "172.16.0.1" in traced and "pmtu 1458" in traced, traced
    assert "Resume: pmtu 1458" in traced and "reached" in traced, traced


def forged(lab: Lab, *, vsid: int, src_pa: str = PA1) -> bytes:
    """Blue1's UDP to Blue's corp server as host1 would send it to the gateway (to
    the gateway's MAC in VSID 5010), then altered."""
    inner = Ether(src=BLUE1, dst=GW_BLUE_MAC) / IP(src="10.10.10.11", dst=CORP) / UDP(dport=7)
    gre = GRE(key_present=1, proto=0x6558, key=vsid << 8 | 1)
    outer = Ether(dst=link_mac(f"{lab.prefix}-gw", "pa0"), src="02:00:00:00:99:99")
    return raw(outer / IP(src=src_pa, dst=GW_PA, flags="DF") / gre / inner / b"who?")


def test_forged_nvgre_to_the_gateway_is_dropped_and_counted(lab: Lab) -> None:
    before = lab.metrics("gw")
    blue_out = crossed(lab, "blue", "out")
    inject(
        lab,
        [
            forged(lab, vsid=5011),  # Blue's frame in Red's VSID
            forged(lab, vsid=5010, src_pa="198.18.0.99"),  # not the PA of blue1's record
            forged(lab, vsid=4095),  # reserved VSID
        ],
    )
    expected = {"vsid_mismatch": 1, "spoofed_pa": 1, "vsid_reserved": 1}
    assert drops_rose(lab, "gw", before, expected) == expected
    assert crossed(lab, "blue", "out") == blue_out, "nothing forged reached Blue's corp"
    assert crossed(lab, "red", "out") == value(
        before, "nvgw_domain_out_packets_total", **DOMAIN["red"]
    )
    # The same frame, unforged, is routed to Blue's corp: the drops were the forgeries.
    inject(lab, [forged(lab, vsid=5010)])
    for _ in range(50):
        if crossed(lab, "blue", "out") > blue_out:
            break
    else:
        pytest.fail("the genuine frame did not reach Blue's corp network")
