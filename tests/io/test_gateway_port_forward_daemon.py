"""A port forward added to a running gateway through its API, on both backends: the
namespaces of ``test_gateway_nat_daemon`` (the gateway, host1's PA, the internet
behind gw-ext), and ``nvgw gateway-port-forward add`` publishing Blue's VM's UDP port
7 on 203.0.113.10:700. A datagram the internet sends there reaches host1's PA in
NVGRE with Blue's VSID, to the VM's address and port, from the internet's address."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from .test_gateway_nat_daemon import (
    BLUE_VSID,
    EXTERNAL,
    REPLY_TIMEOUT_S,
    SERVER,
    VM_IP,
    VM_MAC,
    Lab,
    lab,  # noqa: F401 (the fixture)
)

pytestmark = pytest.mark.netns
HERE = Path(__file__).resolve().parent
FORWARDED = (EXTERNAL[0], 700)


def test_a_forward_added_through_the_api_reaches_the_vm(lab: Lab) -> None:  # noqa: F811
    added = subprocess.run(
        [sys.executable, "-m", "gateway", "gateway-port-forward", "add",
         "--api", str(lab.gateway.socket), "--node", "gw", "--routing-domain", "blue",
         "--protocol", "udp", "--address", FORWARDED[0], "--port", str(FORWARDED[1]),
         "--ca", VM_IP, "--ca-port", "7"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert added.returncode == 0, f"{added.stdout}{added.stderr}"
    listener = subprocess.Popen(
        ["ip", "netns", "exec", lab.host, sys.executable, str(HERE / "_gre_listen.py"),
         "198.18.0.10", str(REPLY_TIMEOUT_S)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert listener.stdout is not None and listener.stdout.readline() == "ready\n"
        knock = (
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"s.bind(('{SERVER[0]}', 5555)); s.sendto(b'knock', ('{FORWARDED[0]}', {FORWARDED[1]}))"
        )
        subprocess.run(
            ["ip", "netns", "exec", lab.internet, sys.executable, "-c", knock], check=True
        )
        line = listener.stdout.readline().strip()
        assert line, lab.gateway.log.read_text()[-2000:]
    finally:
        listener.kill()
        listener.wait()
    outer = IP(bytes.fromhex(line))
    assert (outer.src, outer.dst) == ("198.18.0.10", "198.18.0.1")
    assert outer[GRE].key >> 8 == BLUE_VSID
    inner = Ether(raw(outer[GRE].payload))
    assert inner.dst == VM_MAC
    assert (inner[IP].src, inner[IP].dst) == (SERVER[0], VM_IP)
    assert (inner[UDP].sport, inner[UDP].dport) == (5555, 7)
    assert bytes(inner[UDP].payload) == b"knock"
