"""The gateway's NAT served for real, once per backend: `nvgw run --node gw` with the
lab's gateway config and its NAT (design.md, "The gateway labs": the external TAP
gw-ext, the NAT's addresses 203.0.113.10 and .11, the internet router 203.0.113.1).

Three namespaces the test makes: the gateway's (its PA 198.18.0.10 on a veth), a
host's on the other end of that veth (PA 198.18.0.1, host1's, playing Blue's VM
10.10.10.11 in NVGRE), and the internet, where the external TAP's kernel end is moved
and addressed 203.0.113.1/24 and a UDP echo server listens. A datagram from the VM
reaches the server from one of the NAT's addresses, and the echo comes back to the
host's PA in NVGRE with Blue's VSID, to the VM's address and port. The translation
log names the session (Blue logs; the daemon writes what is still open when it stops).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from gateway.lab import netns
from tests.conftest import require_root

from ._host import host_namespace, stop_process
from .test_gateway_daemon import CONFIGS, Gateway

pytestmark = pytest.mark.netns
HERE = Path(__file__).resolve().parent
EXTERNAL = ("203.0.113.10", "203.0.113.11")
SERVER = ("203.0.113.1", 7)
VM_IP, VM_MAC, VM_PORT = "10.10.10.11", "00:00:00:00:00:11", 40000
GW_MAC_BLUE = "02:00:00:00:50:10"  # the gateway's record in Blue's VSID
BLUE_VSID = 5010
REPLY_TIMEOUT_S = 10.0  # only bounds a failure


def nat_config(directory: Path) -> Path:
    """configs/gateway.yaml, which has the lab's NAT (Blue and Red route 0.0.0.0/0 to
    it and log their sessions), with the lab's short UDP timeouts made long, so that
    the session is still open when the daemon stops."""
    yaml = YAML()
    document = yaml.load((CONFIGS / "gateway.yaml").read_text())
    nat = document["nodes"]["gw"]["nat"]
    assert [str(a) for a in nat["addresses"]] == [f"{address}/24" for address in EXTERNAL]
    assert (nat["tap"], nat["next_hop"]) == ("gw-ext", SERVER[0])
    nat["timeouts"].update(udp_unreplied_s=30, udp_stream_s=30)
    path = directory / "gateway-nat.yaml"
    with open(path, "w") as out:
        yaml.dump(document, out)
    return path


def ip(namespace: str, *args: str) -> None:
    subprocess.run(["ip", "-n", namespace, *args], check=True)


class Lab:
    def __init__(
        self, gateway: Gateway, host: str, server: subprocess.Popen, internet: str
    ) -> None:
        self.gateway, self.host, self.server = gateway, host, server
        self.internet = internet  # the internet's namespace


@pytest.fixture(params=["asyncio", "trio"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    require_root()
    tag = f"{os.getpid() % 10000}{request.param[0]}"
    names = {"gw": f"nvt-ngw{tag}", "host": f"nvt-nh{tag}", "internet": f"nvt-ni{tag}"}
    gateway: Gateway | None = None
    server: subprocess.Popen | None = None
    try:
        host_namespace(names["gw"], "198.18.0.10/24")
        netns.create(names["host"])
        netns.create(names["internet"])
        ip(names["gw"], "link", "set", "pa0peer", "netns", names["host"])
        ip(names["host"], "addr", "add", "198.18.0.1/24", "dev", "pa0peer")
        ip(names["host"], "link", "set", "pa0peer", "up")
        gateway = Gateway(names["gw"], tmp_path, request.param, nat_config(tmp_path))
        ip(names["gw"], "link", "set", "gw-ext", "netns", names["internet"])
        ip(names["internet"], "addr", "add", f"{SERVER[0]}/24", "dev", "gw-ext")
        ip(names["internet"], "link", "set", "gw-ext", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", names["internet"], sys.executable,
             str(HERE / "_udp_echo.py"), SERVER[0], str(SERVER[1])],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        yield Lab(gateway, names["host"], server, names["internet"])
    finally:
        try:
            if server is not None and server.poll() is None:
                server.kill()
                server.wait()
            stop_process(gateway.process if gateway else None)
        finally:
            for name in names.values():
                netns.remove(name)


def nvgre_from_vm(payload: bytes) -> bytes:
    """What host1 sends for Blue's VM: a UDP datagram to the server, off the VM's
    subnet, so to the gateway's MAC in Blue's VSID (the GRE payload; the kernel adds
    the outer IPv4 header)."""
    inner = (
        Ether(src=VM_MAC, dst=GW_MAC_BLUE)
        / IP(src=VM_IP, dst=SERVER[0])
        / UDP(sport=VM_PORT, dport=SERVER[1])
        / payload
    )
    return raw(GRE(key_present=1, proto=0x6558, key=BLUE_VSID << 8) / inner)


def test_a_vm_reaches_an_internet_server_through_the_nat_and_gets_the_echo(lab: Lab) -> None:
    assert sorted(lab.gateway.ready["ports"]) == ["gw-blue", "gw-ext", "gw-red"]
    sent = subprocess.run(
        ["ip", "netns", "exec", lab.host, sys.executable, str(HERE / "_nvgre_peer.py"),
         "198.18.0.10", nvgre_from_vm(b"through the NAT").hex(), str(REPLY_TIMEOUT_S)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert sent.returncode == 0, f"{sent.stderr}\n{lab.gateway.log.read_text()[-2000:]}"
    # The server saw the NAT's address, never the tenant's.
    seen_host, seen_port = lab.server.stdout.readline().strip().rsplit(":", 1)  # type: ignore[union-attr]
    assert seen_host in EXTERNAL and int(seen_port) != 0
    # The echo came back to the host's PA in NVGRE, with Blue's VSID, to the VM.
    outer = IP(bytes.fromhex(sent.stdout.strip()))
    assert (outer.src, outer.dst) == ("198.18.0.10", "198.18.0.1")
    gre = outer[GRE]
    assert gre.proto == 0x6558 and gre.key >> 8 == BLUE_VSID
    inner = Ether(raw(gre.payload))
    assert inner.dst == VM_MAC
    assert (inner[IP].src, inner[IP].dst) == (SERVER[0], VM_IP)
    assert (inner[UDP].sport, inner[UDP].dport) == (SERVER[1], VM_PORT)
    assert bytes(inner[UDP].payload) == b"through the NAT"
    # Blue logs: the session's opening, and at shutdown that it was still open.
    stop_process(lab.gateway.process)
    written = lab.gateway.log.read_text()
    for event in ("napt session opened", "napt session open at shutdown"):
        [line] = [line for line in written.splitlines() if event in line]
        for value in (VM_IP, str(VM_PORT), seen_host, seen_port, SERVER[0]):
            assert value in line, (event, value, line)
