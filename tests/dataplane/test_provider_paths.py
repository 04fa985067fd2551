"""The receive fast path decides exactly as the general one.

``from_provider`` reads the common datagram (outer IPv4 without options) with one
unpack and everything else with ``parse_nvgre``. The same NVGRE packet sent once
without and once with an outer IPv4 option takes one path each, so their verdicts
(the frame delivered, or the drop reason) must be identical, whatever the VSID,
MACs, addresses and GRE bits.
"""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.dataplane import Fabric
from gateway.dataplane.provider_side import MAX_FLOWS
from gateway.wire import build_ipv4

from ._policies import NOW, blue2_migrated_to_host1, fabric

PAS = [bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2]), bytes([198, 18, 0, 99])]
MACS = [
    "00:00:00:00:00:11",
    "00:00:00:00:00:12",
    "00:00:00:00:00:21",
    "00:00:00:00:00:22",
    "ff:ff:ff:ff:ff:ff",
    "02:00:00:00:00:01",
]
CAS = ["10.10.10.11", "10.10.10.12", "10.10.10.99"]
NOP_OPTION = b"\x01\x01\x01\x00"  # three NOPs and an end of options: 4 bytes, IHL 6
LAB = fabric("two-hosts")  # a verdict is one step's, so one fabric serves every example


def inner_frame(dst: str, src: str, src_ip: str, dst_ip: str, arp: bool) -> bytes:
    if arp:
        return raw(Ether(dst=dst, src=src) / ARP(op=1, hwsrc=src, psrc=src_ip, pdst=dst_ip))
    return raw(Ether(dst=dst, src=src) / IP(src=src_ip, dst=dst_ip) / ICMP())


def datagram(src_pa: bytes, dst_pa: bytes, gre: bytes, inner: bytes, options: bytes) -> bytes:
    payload = gre + inner
    return build_ipv4(src_pa, dst_pa, 47, len(payload), options=options) + payload


def verdict(lab: Fabric, data: bytes) -> tuple[dict[str, int], list[tuple[str, bytes]]]:
    step = lab.from_provider("host2", data, NOW)
    return {reason.name: n for reason, n in step.drops.items()}, lab.delivered()


@settings(max_examples=400, deadline=None)
@given(
    src_pa=st.sampled_from(PAS),
    dst_pa=st.sampled_from(PAS),
    vsid=st.sampled_from([5010, 5011, 4095, 7777, 0xFFFFFF]),
    flags=st.sampled_from([0x2000, 0x2000, 0x2000, 0xA000, 0x3000, 0x0000, 0x2001]),
    protocol=st.sampled_from([0x6558, 0x6558, 0x0800]),
    dst=st.sampled_from(MACS),
    src=st.sampled_from(MACS),
    src_ip=st.sampled_from(CAS),
    dst_ip=st.sampled_from(CAS),
    arp=st.booleans(),
    cut=st.integers(0, 12),
)
def test_the_fast_path_decides_as_parse_nvgre_does(
    src_pa, dst_pa, vsid, flags, protocol, dst, src, src_ip, dst_ip, arp, cut
) -> None:
    lab = LAB
    gre = struct.pack("!HHI", flags, protocol, (vsid << 8 | 7) & 0xFFFFFFFF)
    inner = inner_frame(dst, src, src_ip, dst_ip, arp)
    inner = inner[: len(inner) - cut] if cut else inner
    plain = verdict(lab, datagram(src_pa, dst_pa, gre, inner, b""))
    with_options = verdict(lab, datagram(src_pa, dst_pa, gre, inner, NOP_OPTION))
    assert plain == with_options


def test_both_paths_deliver_a_genuine_frame() -> None:
    lab = fabric("two-hosts")
    gre = struct.pack("!HHI", 0x2000, 0x6558, 5010 << 8 | 7)
    inner = inner_frame(MACS[1], MACS[0], CAS[0], CAS[1], arp=False)
    for options in (b"", NOP_OPTION):
        assert verdict(lab, datagram(PAS[0], PAS[1], gre, inner, options)) == (
            {},
            [("blue2", inner)],
        )


def genuine() -> bytes:
    gre = struct.pack("!HHI", 0x2000, 0x6558, 5010 << 8 | 7)
    return datagram(PAS[0], PAS[1], gre, inner_frame(MACS[1], MACS[0], CAS[0], CAS[1], False), b"")


def test_a_swap_never_serves_a_cached_verdict() -> None:
    lab = fabric("two-hosts")
    assert verdict(lab, genuine())[1], "delivered, and now cached"
    lab.swap(blue2_migrated_to_host1())
    assert verdict(lab, genuine()) == ({"NO_PORT": 1}, []), "blue2 is no longer on host2"


def test_the_flow_cache_is_bounded() -> None:
    lab = fabric("two-hosts")
    node = lab.node("host2")
    template = bytearray(genuine())
    for n in range(MAX_FLOWS + 10):  # forged inner sources: each a new flow key
        template[54:58] = (0x0A000000 + n).to_bytes(4, "big")  # 10.x.y.z, never blue1's
        lab.from_provider("host2", bytes(template), NOW)
        assert len(node.tables.flows) <= MAX_FLOWS
    assert lab.drops("host2") == {"SPOOFED_PA": MAX_FLOWS + 10}
    assert verdict(lab, genuine())[1], "a genuine flow is still served"


def test_a_wrong_outer_checksum_with_options_is_dropped() -> None:
    """A header with options passes the receive ring's filter unchecked (classic BPF
    sums a fixed 20 bytes); the slow path checks it. Option-less headers are checked
    by the filter (tests/io/test_ring_filter.py, test_ring.py) or by the kernel."""
    lab = fabric("two-hosts")
    gre = struct.pack("!HHI", 0x2000, 0x6558, 5010 << 8 | 7)
    inner = inner_frame(MACS[1], MACS[0], CAS[0], CAS[1], arp=False)
    bad = bytearray(datagram(PAS[0], PAS[1], gre, inner, NOP_OPTION))
    bad[10] ^= 0x40  # the checksum's high byte
    assert verdict(lab, bytes(bad)) == ({"IP_CHECKSUM": 1}, [])
    bad[10] ^= 0x40
    assert verdict(lab, bytes(bad)) == ({}, [("blue2", inner)])
