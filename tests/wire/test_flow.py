"""FlowID: the documented formula, recomputed here with zlib directly, and its stability."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

from hypothesis import given
from hypothesis import strategies as st

from gateway.wire import (
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    build_ethernet,
    build_icmp_echo,
    build_ipv4,
    build_ipv6,
    build_tcp_v4,
    build_udp_v4,
    flow_id_of_frame,
    flow_id_of_tuple,
)

from ._packets import INNER_ICMP, ipv4_addrs, ipv6_addrs, macs, ports

A = bytes([10, 10, 10, 1])
B = bytes([10, 10, 10, 2])


def formula(src: bytes, dst: bytes, protocol: int, sport: int = -1, dport: int = -1) -> int:
    """The module docstring's definition, written out independently (no ports: -1)."""
    size = len(src)
    if protocol in (6, 17) and sport >= 0:
        key = struct.pack(f"!{size}s{size}sBHH", src, dst, protocol, sport, dport)
    else:
        key = struct.pack(f"!{size}s{size}sB", src, dst, protocol)
    return zlib.crc32(key) & 0xFF


def frame_v4(src: bytes, dst: bytes, protocol: int, sport: int, dport: int, frag: int = 0) -> bytes:
    if protocol == IPPROTO_UDP:
        l4 = build_udp_v4(src, dst, sport, dport, b"data")
    elif protocol == IPPROTO_TCP:
        l4 = build_tcp_v4(src, dst, sport, dport, b"data")
    else:
        l4 = build_icmp_echo(sport, dport, b"data")
    ip = build_ipv4(src, dst, protocol, len(l4), flags=frag >> 13, fragment_offset=frag & 0x1FFF)
    return build_ethernet(bytes(6), bytes(6), 0x0800) + ip + l4


def test_pinned_values() -> None:
    """Fixed numbers: a change here breaks ECMP consistency with already-deployed peers."""
    udp = struct.pack("!4s4sBHH", A, B, 17, 40000, 53)
    assert flow_id_of_tuple(A, B, IPPROTO_UDP, 40000, 53) == zlib.crc32(udp) & 0xFF == 0xA1
    icmp = struct.pack("!4s4sB", A, B, 1)
    assert flow_id_of_tuple(A, B, IPPROTO_ICMP) == zlib.crc32(icmp) & 0xFF == 0x14
    assert flow_id_of_frame(INNER_ICMP) == 0x14
    assert flow_id_of_tuple(A, B, IPPROTO_UDP) == zlib.crc32(struct.pack("!4s4sB", A, B, 17)) & 0xFF


def test_same_in_another_process() -> None:
    """Never Python's hash(): a fresh interpreter with another hash seed agrees."""
    code = "from gateway.wire import flow_id_of_tuple as f; print(f(b'abcd', b'efgh', 6, 1, 2))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert int(out.stdout) == flow_id_of_tuple(b"abcd", b"efgh", 6, 1, 2)


@given(ipv4_addrs, ipv4_addrs, st.sampled_from([IPPROTO_TCP, IPPROTO_UDP]), ports, ports)
def test_tcp_udp_frames_hash_the_five_tuple(src, dst, protocol, sport, dport) -> None:
    expected = formula(src, dst, protocol, sport, dport)
    assert flow_id_of_tuple(src, dst, protocol, sport, dport) == expected
    assert flow_id_of_frame(frame_v4(src, dst, protocol, sport, dport)) == expected
    assert flow_id_of_frame(memoryview(frame_v4(src, dst, protocol, sport, dport))) == expected


def test_ports_matter_for_tcp_and_udp_only() -> None:
    for protocol in (IPPROTO_TCP, IPPROTO_UDP):
        ids = {flow_id_of_tuple(A, B, protocol, sport, 80) for sport in range(32768, 33768)}
        assert len(ids) > 200  # 1000 ports spread over (nearly) all 256 values
    for sport in range(100):
        assert flow_id_of_tuple(A, B, IPPROTO_ICMP, sport, 7) == formula(A, B, IPPROTO_ICMP)
        icmp_frame = frame_v4(A, B, IPPROTO_ICMP, sport, 7)
        assert flow_id_of_frame(icmp_frame) == formula(A, B, IPPROTO_ICMP)


@given(ipv4_addrs, ipv4_addrs, st.sampled_from([IPPROTO_TCP, IPPROTO_UDP]), ports, ports)
def test_fragments_hash_without_ports(src, dst, protocol, sport, dport) -> None:
    """All fragments of one datagram stay on one path, the first included."""
    three = formula(src, dst, protocol)
    assert flow_id_of_frame(frame_v4(src, dst, protocol, sport, dport, frag=0x2000)) == three
    assert flow_id_of_frame(frame_v4(src, dst, protocol, sport, dport, frag=0x0010)) == three


@given(ipv6_addrs, ipv6_addrs, st.sampled_from([IPPROTO_TCP, IPPROTO_UDP, 58]), ports, ports)
def test_ipv6_frames(src, dst, protocol, sport, dport) -> None:
    l4 = struct.pack("!HHHH", sport, dport, 8, 0)
    frame = build_ethernet(bytes(6), bytes(6), 0x86DD) + build_ipv6(src, dst, protocol, 8) + l4
    assert flow_id_of_frame(frame) == formula(src, dst, protocol, sport, dport)
    assert flow_id_of_tuple(src, dst, protocol, sport, dport) == formula(
        src, dst, protocol, sport, dport
    )


@given(macs, macs, st.sampled_from([0x0806, 0x8100, 0x88CC, 0x0000]), st.binary(max_size=64))
def test_non_ip_frames_get_zero(dst, src, ethertype, payload) -> None:
    assert flow_id_of_frame(build_ethernet(dst, src, ethertype) + payload) == 0


def test_unreadable_ip_gets_zero_or_three_tuple() -> None:
    eth = build_ethernet(bytes(6), bytes(6), 0x0800)
    assert flow_id_of_frame(eth + b"\x45" + bytes(10)) == 0  # shorter than an IP header
    assert flow_id_of_frame(eth + b"\x65" + bytes(30)) == 0  # says IPv6 under an IPv4 type
    cut = frame_v4(A, B, IPPROTO_UDP, 1, 2)[: 14 + 20 + 3]  # ports cut off
    assert flow_id_of_frame(cut) == formula(A, B, IPPROTO_UDP)
