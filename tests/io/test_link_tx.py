"""NVGRE framed by the daemon on the provider link (``--provider-tx link``), against
the kernel's own routes and neighbours, in namespaces the test makes.

A pair of PAs goes the kernel's way until a refresh has resolved it; from then on
the link alone carries it (the GRE socket taken away, its packets still arrive),
with the outer headers the kernel's raw socket writes and a checksum the peer's
kernel accepts; a PA behind a gateway is framed to the gateway's MAC; a MAC the
kernel learns anew is followed; a stale next hop due for verification is probed by
the kernel; a next hop the kernel lost sends the pair the kernel's way again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.lab import netns
from gateway.wire import internet_checksum
from tests.conftest import require_root

pytestmark = pytest.mark.netns
HERE = Path(__file__).parent
SRC, PEER, ROUTED = "198.18.77.1", "198.18.77.2", "198.18.78.5"
PEER_MAC, NEW_PEER_MAC = "02:00:00:00:77:01", "02:00:00:00:77:02"
GRE = "2000655800139200"


@pytest.fixture
def provider() -> Iterator[tuple[str, str]]:
    """Namespaces a (the node: nva0 SRC, ROUTED's /24 via PEER) and b (the peer:
    nvb0 PEER with MAC PEER_MAC, ROUTED on its loopback)."""
    require_root()
    a, b = f"nvt-ltx-a{os.getpid() % 10000}", f"nvt-ltx-b{os.getpid() % 10000}"
    try:
        netns.create(a, ipv6=False)
        netns.create(b, ipv6=False)
        netns.add_veth(a, "nva0", b, "nvb0")
        subprocess.run(["ip", "-n", b, "link", "set", "nvb0", "address", PEER_MAC], check=True)
        netns.add_address(a, "nva0", SRC, 24)
        netns.add_address(b, "nvb0", PEER, 24)
        netns.add_address(b, "lo", ROUTED, 32)
        netns.add_route(a, "198.18.78.0/24", PEER)
        yield a, b
    finally:
        netns.remove(a)
        netns.remove(b)


def run_scenario(provider: tuple[str, str]) -> tuple[dict[str, dict], list[bytes]]:
    """The scenario's steps (by name) and the datagrams the peer received."""
    a, b = provider
    listen = [sys.executable, str(HERE / "_gre_listen.py"), SRC, "10", "18"]
    listener = subprocess.Popen(
        ["ip", "netns", "exec", b, *listen], stdout=subprocess.PIPE, text=True
    )
    try:
        assert listener.stdout is not None
        assert listener.stdout.readline().strip() == "ready"
        scenario = [sys.executable, str(HERE / "_link_scenario.py"), SRC, PEER, ROUTED, b, "nvb0"]
        done = subprocess.run(
            ["ip", "netns", "exec", a, *scenario],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=HERE.parent.parent,
        )
        assert done.returncode == 0, done.stderr
        received, _ = listener.communicate(timeout=30)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    steps = {step["step"]: step for step in map(json.loads, done.stdout.splitlines())}
    return steps, [bytes.fromhex(line) for line in received.split()]


def test_framed_on_the_link_once_the_kernel_resolved_it_and_as_the_kernel_would(
    provider,
) -> None:
    steps, datagrams = run_scenario(provider)

    assert steps["kernel"]["framed"] == {}
    assert steps["kernel"]["noted"] == [PEER, ROUTED]
    assert steps["link"]["framed"] == {PEER: PEER_MAC, ROUTED: PEER_MAC}  # the gateway's MAC
    assert steps["link"]["drops"] == {}  # no GRE socket: the link carried every packet
    assert steps["moved"]["framed"][PEER] == NEW_PEER_MAC
    assert steps["moved"]["drops"] == {}
    assert steps["verified"]["neighbour"] in ("DELAY", "PROBE", "REACHABLE")
    assert steps["lost"]["framed"] == {}
    assert steps["lost"]["noted"] == [PEER]

    seen: Counter[tuple[str, str]] = Counter()
    headers = set()
    for datagram in datagrams:
        header = datagram[:20]
        assert internet_checksum(header) == 0, datagram.hex()
        assert int.from_bytes(datagram[2:4], "big") == len(datagram)
        # Version and IHL, TOS, DF, TTL, protocol GRE, the source: as the kernel writes them.
        headers.add((header[:2], header[6:7], header[8:10], header[12:16]))
        assert datagram[20:28].hex() == GRE
        step = datagram[28 + 14 :].rstrip(b".").decode()
        seen[step, ".".join(map(str, datagram[16:20]))] += 1
    assert len(headers) == 1, headers
    assert seen == {
        ("kernel", PEER): 3,
        ("kernel", ROUTED): 3,
        ("link", PEER): 3,
        ("link", ROUTED): 3,
        ("moved", PEER): 3,
        ("lost", PEER): 3,
    }
