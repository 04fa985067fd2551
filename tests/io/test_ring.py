"""The AF_PACKET receive ring on a real veth, in namespaces the test makes.

Only IPv4 GRE reaches the handler (the BPF filter), each frame exactly once, in
order, from its IP header on; a frame longer than a ring slot is counted as
truncated, never handed over cut.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from gateway.lab import netns
from tests.conftest import require_root

pytestmark = pytest.mark.netns
HERE = Path(__file__).parent
INJECT = HERE.parent / "lab" / "_inject.py"


def test_the_ring_hands_over_gre_only_whole_and_in_order() -> None:
    require_root()
    a, b = f"nvt-ring-a{os.getpid() % 10000}", f"nvt-ring-b{os.getpid() % 10000}"
    reader = None
    try:
        netns.create(a)
        netns.create(b)
        netns.add_veth(a, "ra0", b, "rb0")
        for namespace, ifname in ((a, "ra0"), (b, "rb0")):
            subprocess.run(
                ["ip", "-n", namespace, "link", "set", ifname, "mtu", "9000"], check=True
            )
        reader = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                b,
                sys.executable,
                str(HERE / "_ring_reader.py"),
                "rb0",
                "1500",
                "6",
                "10",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert reader.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        outer = Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
        gre = [
            raw(
                outer
                / IP(src="198.18.0.1", dst="198.18.0.2")
                / GRE(key_present=1, key=n)
                / (bytes([n]) * (40 + 100 * n))
            )
            for n in range(5)
        ]
        not_gre = raw(outer / IP(src="198.18.0.1", dst="198.18.0.2") / UDP() / (b"x" * 50))
        too_long = raw(outer / IP(src="198.18.0.1", dst="198.18.0.2") / GRE() / (b"y" * 3000))
        frames = [gre[0], not_gre, gre[1], gre[2], too_long, gre[3], gre[4]]
        subprocess.run(
            ["ip", "netns", "exec", a, sys.executable, str(INJECT), "ra0"],
            input="\n".join(f.hex() for f in frames).encode(),
            check=True,
            timeout=20,
        )
        out, _ = reader.communicate(timeout=20)
        result = json.loads(out.strip().splitlines()[-1])
        assert [bytes.fromhex(f) for f in result["frames"]] == [f[14:] for f in gre]
        assert result["truncated"] == 1
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()
            reader.wait()
        netns.remove(a)
        netns.remove(b)
