"""nvgw replay runs the gateway's NAT: a tenant's packet to the internet is translated
and, once the internet router's ARP answer (captured on the external TAP) arrives,
written out from a NAT address; what the internet sends to a port forward reaches
the tenant's VM in NVGRE; what belongs to no session of the replay's own table is
refused as the daemon would."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.control import load_config
from gateway.dataplane import tap_mac
from gateway.lab.replay import replay

from .test_gateway_replay import BLUE1, BLUE_GW, to_gateway

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
GW_EXT = tap_mac("gw-ext").hex(":")
ROUTER = "02:1e:00:00:00:01"
FORWARD = "  - {protocol: tcp, address: 203.0.113.10, port: 80, ca: 10.10.10.11, ca_port: 80}"


def with_forward(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The shipped gateway config with Blue's 203.0.113.10:80 (TCP) forwarded to
    blue1:80."""
    text = (CONFIGS / "gateway.yaml").read_text()
    anchor = "        nat: {max_sessions: 1024, log: true}\n"
    text = text.replace(anchor, anchor + "        port_forwards:\n      " + FORWARD + "\n", 1)
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    return load_config(config)


def from_internet(packet) -> bytes:  # type: ignore[no-untyped-def]
    return raw(Ether(src=ROUTER, dst=GW_EXT) / packet)


def test_a_capture_through_the_nat_gets_the_gateways_verdicts(tmp_path: Path) -> None:
    policy = with_forward(tmp_path)
    out = (
        Ether(src=BLUE1, dst=BLUE_GW)
        / IP(src="10.10.10.11", dst="198.51.100.2")
        / UDP(sport=40000, dport=7)
        / b"hi"
    )
    router = ARP(op=2, hwsrc=ROUTER, psrc="203.0.113.1", hwdst=GW_EXT, pdst="203.0.113.10")
    frames = [
        to_gateway("198.18.0.1", 5010, out),  # to the internet: the gateway asks for .1
        raw(Ether(src=ROUTER, dst=GW_EXT) / router),  # the router answers: it leaves
        from_internet(IP(src="198.51.100.2", dst="203.0.113.10") / TCP(dport=80, flags="S")),
        from_internet(IP(src="198.51.100.2", dst="203.0.113.10") / UDP(sport=7, dport=9)),
    ]
    verdicts, sent = replay(policy, frames)
    assert [(v.node, v.result) for v in verdicts] == [
        ("gw", "sent to gw-ext"),
        ("gw", "sent to gw-ext"),
        ("gw", "sent NVGRE to PA 198.18.0.1"),
        ("gw", "dropped: napt_no_session"),
    ]
    asked, translated, forwarded = (Ether(frame) for frame in sent)
    assert asked[ARP].op == 1 and asked[ARP].pdst == "203.0.113.1"
    assert translated.dst == ROUTER and translated[IP].dst == "198.51.100.2"
    assert translated[IP].src in ("203.0.113.10", "203.0.113.11")
    assert translated[UDP].dport == 7 and bytes(translated[UDP].payload) == b"hi"
    assert forwarded[GRE].key >> 8 == 5010
    inner = forwarded[GRE].payload
    assert inner.dst == BLUE1 and inner[IP].dst == "10.10.10.11" and inner[TCP].dport == 80
