"""A port forward added to a running gateway through its API, on both backends: the
namespaces of ``test_gateway_nat_daemon`` (the gateway, host1's PA, the internet
behind gw-ext), and ``nvgw gateway-port-forward add`` publishing Blue's VM's UDP port
7 on 203.0.113.10:700. A datagram the internet sends there reaches host1's PA in
NVGRE with Blue's VSID, to the VM's address and port, from the internet's address;
and the VM reaches its own forward through the internet router (hairpin)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from ._host import nvgre_after
from .test_gateway_nat_daemon import (
    BLUE_VSID,
    EXTERNAL,
    GW_MAC_BLUE,
    REPLY_TIMEOUT_S,
    SERVER,
    VM_IP,
    VM_MAC,
    VM_PORT,
    Lab,
    lab,  # noqa: F401 (the fixture)
)

pytestmark = pytest.mark.netns
HERE = Path(__file__).resolve().parent
FORWARDED = (EXTERNAL[0], 700)


def add_forward(lab: Lab) -> None:  # noqa: F811 (the fixture's name)
    """Publish blue1's UDP port 7 on FORWARDED through the running gateway's API."""
    added = subprocess.run(
        [sys.executable, "-m", "gateway", "gateway-port-forward", "add",
         "--api", str(lab.gateway.socket), "--node", "gw", "--routing-domain", "blue",
         "--protocol", "udp", "--address", FORWARDED[0], "--port", str(FORWARDED[1]),
         "--ca", VM_IP, "--ca-port", "7"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert added.returncode == 0, f"{added.stdout}{added.stderr}"


def test_a_forward_added_through_the_api_reaches_the_vm(lab: Lab) -> None:  # noqa: F811
    add_forward(lab)
    knock = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        f"s.bind(('{SERVER[0]}', 5555)); s.sendto(b'knock', ('{FORWARDED[0]}', {FORWARDED[1]}))"
    )
    line = nvgre_after(lab.host, lab.internet, knock, REPLY_TIMEOUT_S)
    assert line, lab.gateway.log.read_text()[-2000:]
    outer = IP(bytes.fromhex(line))
    assert (outer.src, outer.dst) == ("198.18.0.10", "198.18.0.1")
    assert outer[GRE].key >> 8 == BLUE_VSID
    inner = Ether(raw(outer[GRE].payload))
    assert inner.dst == VM_MAC
    assert (inner[IP].src, inner[IP].dst) == (SERVER[0], VM_IP)
    assert (inner[UDP].sport, inner[UDP].dport) == (5555, 7)
    assert bytes(inner[UDP].payload) == b"knock"


def test_hairpin_the_vm_reaches_its_own_forward_through_a_linux_router(lab: Lab) -> None:  # noqa: F811
    """blue1 sends to 203.0.113.10:700, its own forward: the gateway translates it and
    sends it to the internet router (Linux, forwarding on in its namespace), which
    routes it back out of the link it came in on; it comes in as from the internet,
    from blue1's external address:port, and is forwarded to blue1:7 (README:
    hairpinning works through the next hop)."""
    add_forward(lab)
    subprocess.run(
        ["ip", "netns", "exec", lab.internet, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        check=True,
    )
    inner = (
        Ether(src=VM_MAC, dst=GW_MAC_BLUE)
        / IP(src=VM_IP, dst=FORWARDED[0])
        / UDP(sport=VM_PORT, dport=FORWARDED[1])
        / b"to myself"
    )
    sent = subprocess.run(
        ["ip", "netns", "exec", lab.host, sys.executable, str(HERE / "_nvgre_peer.py"),
         "198.18.0.10", raw(GRE(key_present=1, proto=0x6558, key=BLUE_VSID << 8) / inner).hex(),
         str(REPLY_TIMEOUT_S)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert sent.returncode == 0, f"{sent.stderr}\n{lab.gateway.log.read_text()[-2000:]}"
    back = Ether(raw(IP(bytes.fromhex(sent.stdout.strip()))[GRE].payload))
    assert back[IP].dst == VM_IP and back[UDP].dport == 7
    assert back[IP].src in EXTERNAL and back[UDP].sport != VM_PORT  # blue1's external side
    assert bytes(back[UDP].payload) == b"to myself"
