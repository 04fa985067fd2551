"""nvgw replay: a capture through the data plane offline, a verdict per frame."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scapy.layers.inet import GRE, ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw
from scapy.utils import rdpcap, wrpcap

from gateway.control import load_config
from gateway.lab.replay import replay, summary

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BLUE1, BLUE2 = "00:00:00:00:00:11", "00:00:00:00:00:12"


def nvgre(src_pa: str, vsid: int, inner) -> bytes:
    return raw(
        Ether()
        / IP(src=src_pa, dst="198.18.0.2")
        / GRE(key_present=1, proto=0x6558, key=vsid << 8)
        / inner
    )


def frames() -> list[bytes]:
    ping = Ether(src=BLUE1, dst=BLUE2) / IP(src="10.10.10.11", dst="10.10.10.12") / ICMP()
    return [
        nvgre("198.18.0.1", 5010, ping),  # genuine: host2 delivers it to blue2
        nvgre("198.18.0.99", 5010, ping),  # not the PA of blue1's record
        raw(ping),  # blue1's own frame, on its port: host1 encapsulates it
        raw(
            Ether(src=BLUE1, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=BLUE1, psrc="10.10.10.11", pdst="10.10.10.12")
        ),  # answered
        raw(Ether(src="02:00:00:00:00:99") / IP(dst="192.0.2.1") / UDP()),  # nobody's
    ]


def test_each_frame_gets_the_daemons_verdict() -> None:
    verdicts, sent = replay(load_config(CONFIGS / "two-hosts.yaml"), frames())
    assert [(v.node, v.result) for v in verdicts] == [
        ("host2", "sent to blue2"),
        ("host2", "dropped: spoofed_pa"),
        ("host1", "sent NVGRE to PA 198.18.0.2"),
        ("host1", "sent to blue1"),
        ("", "ignored: not for a PA or from a VM port here"),
    ]
    assert summary(verdicts) == {"sent": 3, "dropped: spoofed_pa": 1, "ignored": 1}
    delivered, encapsulated, arp_reply = (Ether(f) for f in sent)
    assert delivered.dst == BLUE2 and delivered[IP].dst == "10.10.10.12"
    assert encapsulated[GRE].key >> 8 == 5010 and encapsulated[IP].dst == "198.18.0.2"
    assert arp_reply[ARP].op == 2 and arp_reply[ARP].hwsrc == BLUE2


def test_an_ip_rewrite_frame_is_resolved_on_the_provider_link_as_its_daemon_does() -> None:
    """host1 holds IP-Rewrite PAs, so its daemon is on the provider link: blue1's frame
    makes it ask for blue2's PA and park the frame (the next one waits too). Replay
    used to build nodes with no link and said provider_unreachable."""
    ping = Ether(src=BLUE1, dst=BLUE2) / IP(src="10.10.10.11", dst="10.10.10.12") / ICMP()
    verdicts, sent = replay(load_config(CONFIGS / "ip-rewrite.yaml"), [raw(ping), raw(ping)])
    assert [(v.node, v.result) for v in verdicts] == [
        ("host1", "sent on the provider link"),
        ("host1", "consumed"),
    ]
    [request] = (Ether(f) for f in sent)
    assert request.dst == "ff:ff:ff:ff:ff:ff" and request[ARP].op == 1
    assert (request[ARP].psrc, request[ARP].pdst) == ("198.18.0.11", "198.18.0.12")


def test_nvgw_replay_reads_and_writes_captures(tmp_path: Path) -> None:
    capture, output = tmp_path / "in.pcap", tmp_path / "out.pcap"
    wrpcap(str(capture), [Ether(f) for f in frames()])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "replay",
            str(CONFIGS / "two-hosts.yaml"),
            str(capture),
            "-o",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dropped: spoofed_pa" in result.stdout and "wrote 3 frames" in result.stdout
    assert "ignored: 1," in result.stdout, "the summary counts kinds, not their text"
    assert len(rdpcap(str(output))) == 3
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "replay",
            str(CONFIGS / "two-hosts.yaml"),
            str(tmp_path / "nope.pcap"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "cannot read" in missing.stdout
