"""nvgw replay of a capture taken at a gateway: NVGRE to its PA and frames its TAPs'
corp sides sent it go through the gateway's own data plane, a verdict each."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import GRE, ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.control import load_config
from gateway.dataplane import router_mac, tap_mac
from gateway.lab.replay import replay, summary

from ..control._gateway_config import gateway_config

BLUE1, BLUE_GW = "00:00:00:00:00:11", "02:00:00:00:50:10"
CORP = "02:c0:00:00:00:02"
GW_BLUE = tap_mac("gw-blue").hex(":")


def to_gateway(src_pa: str, vsid: int, inner) -> bytes:  # type: ignore[no-untyped-def]
    return raw(
        Ether()
        / IP(src=src_pa, dst="198.18.0.10")
        / GRE(key_present=1, proto=0x6558, key=vsid << 8)
        / inner
    )


def test_a_capture_at_the_gateway_gets_the_gateways_verdicts(tmp_path: Path) -> None:
    policy = load_config(gateway_config(tmp_path))
    out = Ether(src=BLUE1, dst=BLUE_GW) / IP(src="10.10.10.11", dst="172.16.0.2") / ICMP()
    answer = Ether(src=CORP, dst=GW_BLUE) / ARP(
        op=2, hwsrc=CORP, psrc="172.16.0.2", hwdst=GW_BLUE, pdst="172.16.0.1"
    )
    back = Ether(src=CORP, dst=GW_BLUE) / IP(src="172.16.0.2", dst="10.10.10.11") / UDP()
    frames = [
        to_gateway("198.18.0.1", 5010, out),  # blue1 -> corp: the gateway asks who has .2
        raw(answer),  # the corp side answers: the packet that waited leaves by gw-blue
        raw(back),  # the corp side answers blue1: into Blue's VSID, to host1
        to_gateway("198.18.0.2", 5010, out),  # blue1's frame from host2's PA: spoofed
        to_gateway("198.18.0.1", 5011, out),  # into Red's VSID: not Blue's gateway MAC there
    ]
    verdicts, sent = replay(policy, frames)
    assert [(v.node, v.result) for v in verdicts] == [
        ("gw", "sent to gw-blue"),
        ("gw", "sent to gw-blue"),
        ("gw", "sent NVGRE to PA 198.18.0.1"),
        ("gw", "dropped: spoofed_pa"),
        ("gw", "dropped: vsid_mismatch"),
    ]
    assert summary(verdicts) == {"sent": 3, "dropped: spoofed_pa": 1, "dropped: vsid_mismatch": 1}
    asked, released, encapsulated = (Ether(frame) for frame in sent)
    assert asked[ARP].op == 1 and asked[ARP].pdst == "172.16.0.2" and asked.src == GW_BLUE
    assert released.dst == CORP and released[IP].dst == "172.16.0.2" and released[IP].ttl == 63
    assert encapsulated[IP].src == "198.18.0.10" and encapsulated[GRE].key >> 8 == 5010
    inner = encapsulated[GRE].payload
    assert inner.src == router_mac(5010).hex(":") and inner.dst == BLUE1
