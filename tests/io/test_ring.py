"""The AF_PACKET receive ring on a real veth, in namespaces the test makes.

Only IPv4 GRE to this node's own PAs reaches the handler (the BPF filter), each frame
exactly once, in order, from its IP header on; a frame longer than a ring slot is
counted as truncated, never handed over cut; a wrong outer checksum and a frame for
another host's MAC are counted by the filter's stubs; a handler that raises costs
that one frame, whose slot still goes back to the kernel.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from ._veth_pair import READER_MAC, SENDER_MAC, result_after_sending, start_reader, veth_pair

pytestmark = pytest.mark.netns
HERE = Path(__file__).parent
PA, OTHER_PA = "198.18.0.2", "198.18.0.3"


@pytest.fixture
def veth() -> Iterator[tuple[str, str]]:
    """Namespaces a (sender, ra0) and b (reader, rb0, MAC READER_MAC), MTU 9000."""
    with veth_pair("ring") as (a, b):
        for namespace, ifname in ((a, "ra0"), (b, "rb0")):
            subprocess.run(
                ["ip", "-n", namespace, "link", "set", ifname, "mtu", "9000"], check=True
            )
        yield a, b


def read_through_ring(veth: tuple[str, str], frames: list[bytes], count: int, *extra: str):
    """Start the reader in b, send ``frames`` from a, return the reader's result."""
    a, b = veth
    command = [sys.executable, str(HERE / "_ring_reader.py"), "rb0", "1500", str(count), "10", PA]
    return result_after_sending(a, start_reader(b, [*command, *extra]), frames)


def nvgre(n: int, dst: str = PA, mac: str = READER_MAC, **ip: object) -> bytes:
    return raw(
        Ether(dst=mac, src=SENDER_MAC)
        / IP(src="198.18.0.1", dst=dst, **ip)
        / GRE(key_present=1, key=n)
        / (bytes([n]) * (40 + 100 * n))
    )


def test_the_ring_hands_over_gre_to_its_pas_only_whole_and_in_order(veth) -> None:
    gre = [nvgre(n) for n in range(5)]
    outer = Ether(dst=READER_MAC, src=SENDER_MAC)
    not_gre = raw(outer / IP(src="198.18.0.1", dst=PA) / UDP() / (b"x" * 50))
    too_long = raw(outer / IP(src="198.18.0.1", dst=PA) / GRE() / (b"y" * 3000))
    bad_checksum = nvgre(7, chksum=0x1234)
    other_host = nvgre(8, mac="02:00:00:00:00:99")  # flooded unknown unicast
    with_options = nvgre(9, options=b"\x01" * 4, chksum=0x1234)  # the data plane's to check
    frames = [
        gre[0], not_gre, gre[1], nvgre(6, dst=OTHER_PA), gre[2], too_long, gre[3],
        bad_checksum, other_host, with_options, gre[4],
    ]  # fmt: skip
    result = read_through_ring(veth, frames, 9)
    assert [bytes.fromhex(f) for f in result["frames"]] == [
        f[14:] for f in (*gre[:4], with_options, gre[4])
    ]
    assert result["drops"] == {"truncated": 1, "ip_checksum": 1, "foreign_mac": 1}


def test_a_raising_handler_costs_its_frame_only_and_the_slot_goes_back(veth) -> None:
    marked = [nvgre(n) + b"\xee" for n in (1, 3)]  # Ethernet padding ends the frame
    frames = [nvgre(0), marked[0], nvgre(2), marked[1], nvgre(4)]
    result = read_through_ring(veth, frames, len(frames), "ee")
    assert [bytes.fromhex(f)[-1] for f in result["frames"]] == [f[-1] for f in frames]
    assert result["faults"] == ["ValueError: ee", "ValueError: ee"]
    assert result["slots_returned"]
