"""RFC 1071 against a word-by-word transcription, and RFC 1624 against full recomputation,
including the corners where one's complement has two zeros (0x0000 and 0xFFFF)."""

from __future__ import annotations

import struct

from hypothesis import assume, example, given
from hypothesis import strategies as st

from gateway.wire import (
    IPPROTO_TCP,
    IPPROTO_UDP,
    build_ipv4,
    build_tcp_v4,
    build_udp_v4,
    checksum_ok,
    checksum_update,
    internet_checksum,
    l4_checksum_ok_v4,
    l4_checksum_v4,
    ones_complement_sum,
    rewrite_ipv4_dst,
    rewrite_ipv4_src,
    rewrite_l4_dst_port,
    rewrite_l4_src_port,
)

from ._packets import ipv4_addrs, naive_checksum, ports


def ones_add(a: int, b: int) -> int:
    total = a + b
    return (total & 0xFFFF) + (total >> 16)


# RFC 1071 -----------------------------------------------------------------------------


def test_rfc1071_numerical_example() -> None:
    """RFC 1071 sec. 3: the words 0001 f203 f4f5 f6f7 sum to ddf2."""
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_complement_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D == naive_checksum(data)


@given(st.binary(max_size=1500))
@example(b"")
@example(b"\x00" * 20)
@example(b"\xff\xff")
@example(b"\xff\xff\x00\x01\xff\xfe")
def test_checksum_matches_naive(data: bytes) -> None:
    assert internet_checksum(data) == naive_checksum(data)
    assert internet_checksum(memoryview(data)) == naive_checksum(data)
    assert internet_checksum(bytearray(data)) == naive_checksum(data)


@given(st.binary(max_size=200).map(lambda b: b[: len(b) & ~1]), st.binary(max_size=200))
def test_partial_sums_chain(head: bytes, tail: bytes) -> None:
    """A pseudo-header summed apart, then chained, gives the checksum of the whole."""
    assert internet_checksum(tail, ones_complement_sum(head)) == naive_checksum(head + tail)


@given(st.binary(min_size=2, max_size=200).map(lambda b: b[: len(b) & ~1]))
def test_a_stored_checksum_verifies(data: bytes) -> None:
    with_checksum = data + internet_checksum(data).to_bytes(2, "big")
    assert checksum_ok(with_checksum)
    assume(any(data))
    broken = bytearray(with_checksum)
    broken[0] ^= 0x01
    assert not checksum_ok(broken)


def test_all_zero_data_checksums_to_ffff() -> None:
    """The one case where a full computation gives 0xFFFF: everything covered is zero."""
    assert internet_checksum(bytes(8)) == 0xFFFF == naive_checksum(bytes(8))
    assert checksum_ok(bytes(6) + b"\xff\xff")
    assert not checksum_ok(bytes(8))


# RFC 1624 -----------------------------------------------------------------------------

headers = st.builds(
    lambda src, dst, proto, length, ttl, ident, tos: bytearray(
        build_ipv4(src, dst, proto, length, ttl=ttl, ident=ident, tos=tos)
    ),
    ipv4_addrs,
    ipv4_addrs,
    st.integers(0, 255),
    st.integers(0, 1400),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
)
WORD_POSITIONS = [0, 2, 4, 6, 8, 12, 14, 16, 18]  # every header word but the checksum


def stored(header: bytearray) -> int:
    return int.from_bytes(header[10:12], "big")


def full(header: bytearray) -> int:
    return naive_checksum(bytes(header[:10]) + b"\0\0" + bytes(header[12:]))


@given(headers, st.sampled_from(WORD_POSITIONS), st.integers(0, 0xFFFF))
@example(bytearray(build_ipv4(bytes(4), bytes(4), 0, 0, ttl=0)), 4, 0xFFFF)
def test_word_update_equals_full_recomputation(header, position, new_word) -> None:
    old_word = int.from_bytes(header[position : position + 2], "big")
    updated = checksum_update(stored(header), old_word, new_word)
    header[position : position + 2] = new_word.to_bytes(2, "big")
    assert updated == full(header)


@given(headers, st.sampled_from([12, 16]), ipv4_addrs)
def test_address_update_equals_full_recomputation(header, position, new_address) -> None:
    old = bytes(header[position : position + 4])
    updated = checksum_update(stored(header), old, new_address)
    header[position : position + 4] = new_address
    assert updated == full(header)


def ident_for_checksum(header: bytearray, target: int) -> int:
    """The ident that makes the header's full checksum ``target`` (one's complement algebra)."""
    scratch = bytearray(header)
    scratch[4:6] = b"\0\0"
    rest = 0xFFFF & ~full(scratch)  # sum of every other word
    return ones_add(0xFFFF & ~target, 0xFFFF & ~rest)


@given(headers)
def test_update_into_a_zero_checksum(header: bytearray) -> None:
    """The corner eqn. 2 of RFC 1624 gets wrong: the new checksum is 0x0000."""
    ident = ident_for_checksum(header, 0x0000)
    old_ident = int.from_bytes(header[4:6], "big")
    updated = checksum_update(stored(header), old_ident, ident)
    header[4:6] = ident.to_bytes(2, "big")
    assert full(header) == 0x0000
    assert updated == 0x0000


@given(headers, st.integers(0, 0xFFFF))
def test_update_out_of_a_zero_checksum(header: bytearray, new_ttl_word: int) -> None:
    header[4:6] = ident_for_checksum(header, 0x0000).to_bytes(2, "big")
    header[10:12] = full(header).to_bytes(2, "big")
    assert stored(header) == 0x0000
    updated = checksum_update(0x0000, int.from_bytes(header[8:10], "big"), new_ttl_word)
    header[8:10] = new_ttl_word.to_bytes(2, "big")
    assert updated == full(header)


@given(headers, st.sampled_from([(0xFFFF, 0x0000), (0x0000, 0xFFFF)]))
def test_update_between_the_two_zeros(header: bytearray, words: tuple[int, int]) -> None:
    """~m is 0 for m = 0xFFFF: replacing one zero by the other changes nothing."""
    old, new = words
    header[4:6] = old.to_bytes(2, "big")
    header[10:12] = full(header).to_bytes(2, "big")
    updated = checksum_update(stored(header), old, new)
    header[4:6] = new.to_bytes(2, "big")
    assert updated == full(header) == stored(header)


def test_update_from_a_udp_checksum_sent_as_ffff() -> None:
    """HC = 0xFFFF, m = 0xFFFF, m' = 0: the only way the eqn. 3 sum is exactly 0."""
    assert checksum_update(0xFFFF, 0xFFFF, 0x0000) == 0x0000


# TCP/UDP and the in-place rewrites ------------------------------------------------------------


def ipv4_l4(
    src: bytes, dst: bytes, protocol: int, sport: int, dport: int, payload: bytes, *, frag: int = 0
) -> bytearray:
    if protocol == IPPROTO_UDP:
        segment = build_udp_v4(src, dst, sport, dport, payload)
    else:
        segment = build_tcp_v4(src, dst, sport, dport, payload, seq=1, ack=2)
    header = build_ipv4(
        src, dst, protocol, len(segment), flags=frag >> 13, fragment_offset=frag & 0x1FFF
    )
    return bytearray(header + segment)


@given(
    ipv4_addrs,
    ipv4_addrs,
    st.sampled_from([IPPROTO_TCP, IPPROTO_UDP]),
    ports,
    ports,
    st.binary(max_size=100),
    ipv4_addrs,
    ipv4_addrs,
    ports,
    ports,
)
def test_rewrites_equal_a_fresh_build(
    src, dst, proto, sport, dport, payload, src2, dst2, sport2, dport2
):
    packet = ipv4_l4(src, dst, proto, sport, dport, payload)
    rewrite_ipv4_src(packet, src2)
    rewrite_ipv4_dst(memoryview(packet), dst2)
    rewrite_l4_src_port(packet, sport2)
    rewrite_l4_dst_port(packet, dport2)
    assert packet == ipv4_l4(src2, dst2, proto, sport2, dport2, payload)


@given(ipv4_addrs, ipv4_addrs, ports, ports, st.binary(max_size=60), ipv4_addrs)
def test_udp_zero_checksum_stays_zero(src, dst, sport, dport, payload, new_src) -> None:
    packet = ipv4_l4(src, dst, IPPROTO_UDP, sport, dport, payload)
    packet[26:28] = b"\0\0"  # "no checksum" (RFC 768)
    rewrite_ipv4_src(packet, new_src)
    rewrite_l4_dst_port(packet, 4789)
    assert packet[26:28] == b"\0\0"
    assert naive_checksum(bytes(packet[:20])) == 0
    assert l4_checksum_ok_v4(new_src, dst, IPPROTO_UDP, packet[20:])


def udp_whose_checksum_computes_to_zero(src: bytes, dst: bytes, sport: int) -> bytearray:
    """Pick the last payload word so that the one's complement sum is 0xFFFF."""
    packet = ipv4_l4(src, dst, IPPROTO_UDP, sport, 53, b"\0\0")
    segment = bytes(packet[20:26]) + b"\0\0" + bytes(packet[28:])
    pseudo = struct.pack("!4s4sBBH", src, dst, 0, IPPROTO_UDP, len(segment))
    partial = 0xFFFF & ~naive_checksum(pseudo + segment)  # sum with the last word 0
    last = ones_add(0xFFFF, 0xFFFF & ~partial)
    packet[-2:] = last.to_bytes(2, "big")
    packet[26:28] = b"\0\0"
    return packet


@given(ipv4_addrs, ipv4_addrs, ports)
def test_udp_computed_zero_is_sent_as_ffff(src, dst, sport) -> None:
    packet = udp_whose_checksum_computes_to_zero(src, dst, sport)
    assume(naive_checksum(struct.pack("!4s4sBBH", src, dst, 0, 17, 10) + packet[20:]) == 0)
    assert l4_checksum_v4(src, dst, IPPROTO_UDP, packet[20:]) == 0xFFFF
    assert build_udp_v4(src, dst, sport, 53, packet[28:])[6:8] == b"\xff\xff"


@given(ipv4_addrs, ipv4_addrs, ports, ipv4_addrs)
def test_udp_rewrite_into_and_out_of_ffff(src, dst, sport, other_src) -> None:
    target = udp_whose_checksum_computes_to_zero(src, dst, sport)
    target[26:28] = l4_checksum_v4(src, dst, IPPROTO_UDP, target[20:]).to_bytes(2, "big")
    assume(target[26:28] == b"\xff\xff")
    # Same datagram from another source: rewriting its source lands on a computed 0.
    start = bytearray(target)
    rewrite_ipv4_src(start, other_src)
    assert start[12:16] == other_src
    assert l4_checksum_ok_v4(other_src, dst, IPPROTO_UDP, start[20:])
    rewrite_ipv4_src(start, src)
    assert start == target  # back into 0xFFFF, never 0x0000
    assert naive_checksum(bytes(start[:20])) == 0


@given(
    ipv4_addrs,
    ipv4_addrs,
    st.sampled_from([IPPROTO_TCP, IPPROTO_UDP]),
    ports,
    ports,
    st.binary(min_size=8, max_size=60),
    ipv4_addrs,
)
def test_fragments(src, dst, proto, sport, dport, payload, new_dst) -> None:
    """A first fragment's L4 checksum is patched (it covers the whole datagram, which
    incremental update does not need); a later fragment has no L4 header to patch."""
    first = ipv4_l4(src, dst, proto, sport, dport, payload, frag=0x2000)
    rewrite_ipv4_dst(first, new_dst)
    assert first == ipv4_l4(src, new_dst, proto, sport, dport, payload, frag=0x2000)
    later = ipv4_l4(src, dst, proto, sport, dport, payload, frag=0x0003)
    body = bytes(later[20:])
    rewrite_ipv4_dst(later, new_dst)
    assert later[20:] == body and later[16:20] == new_dst
    assert naive_checksum(bytes(later[:20])) == 0
