"""Test-side packet makers and hypothesis strategies, written without gateway.wire.

Malformed datagrams are packed here field by field with plain ``struct`` (the codecs'
builders refuse to make them), and checksums come from ``naive_checksum``, a literal
transcription of RFC 1071, so that no test checks the codec against itself.
"""

from __future__ import annotations

import struct

from hypothesis import strategies as st


def hexbytes(*parts: str) -> bytes:
    """Hex written in header-sized groups, so a vector can be read field by field."""
    return bytes.fromhex("".join(parts))


PA4_SRC = bytes([198, 18, 0, 1])  # 198.18.0.0/15: benchmarking range (design.md)
PA4_DST = bytes([198, 18, 0, 2])
PA6_SRC = bytes.fromhex("20010db8000000000000000000000001")  # 2001:db8::/32: documentation
PA6_DST = bytes.fromhex("20010db8000000000000000000000002")
# An inner ICMP echo frame, 10.10.10.1 -> 10.10.10.2 (tenant addresses, design.md).
INNER_ICMP = hexbytes(
    "02aa00000002",
    "02aa00000001",
    "0800",
    "4500002600010000400152c00a0a0a010a0a0a02",
    "0800d50d00010001",
    "6e766772652d74657374",
)


def naive_checksum(data: bytes) -> int:
    """RFC 1071 sec. 4.1, word by word with an end-around carry after every addition."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def raw_ipv4(
    payload: bytes,
    *,
    protocol: int = 47,
    ver_ihl: int | None = None,
    options: bytes = b"",
    total_length: int | None = None,
    frag: int = 0x4000,
    src: bytes = PA4_SRC,
    dst: bytes = PA4_DST,
    ttl: int = 64,
    ident: int = 0,
) -> bytes:
    header_length = 20 + len(options)
    if ver_ihl is None:
        ver_ihl = 0x40 | (header_length // 4)
    if total_length is None:
        total_length = header_length + len(payload)
    fields = (ver_ihl, 0, total_length, ident, frag, ttl, protocol)
    header = struct.pack("!BBHHHBBH4s4s", *fields, 0, src, dst) + options
    checksum = naive_checksum(header)
    header = header[:10] + checksum.to_bytes(2, "big") + header[12:]
    return header + payload


def raw_ipv6(payload: bytes, *, next_header: int = 47, first: int = 0x60000000) -> bytes:
    header = struct.pack("!IHBB16s16s", first, len(payload), next_header, 64, PA6_SRC, PA6_DST)
    return header + payload


def raw_gre(
    *, flags: int = 0x2000, proto: int = 0x6558, vsid: int = 5010, flow_id: int = 7
) -> bytes:
    return struct.pack("!HHI", flags, proto, (vsid << 8) | flow_id)


def raw_nvgre_v4(inner: bytes = INNER_ICMP, **gre: int) -> bytes:
    return raw_ipv4(raw_gre(**gre) + inner)


def raw_nvgre_v6(inner: bytes = INNER_ICMP, **gre: int) -> bytes:
    return raw_ipv6(raw_gre(**gre) + inner)


# Strategies ------------------------------------------------------------------------

macs = st.binary(min_size=6, max_size=6)
ipv4_addrs = st.binary(min_size=4, max_size=4)
ipv6_addrs = st.binary(min_size=16, max_size=16)
ports = st.integers(0, 0xFFFF)
vsids = st.integers(0x1000, 0xFFFFFE)
flow_ids = st.integers(0, 0xFF)
ipv4_options = st.integers(0, 10).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))
untagged_ethertypes = st.integers(0, 0xFFFF).filter(lambda t: t not in (0x8100, 0x88A8, 0x9100))


@st.composite
def inner_frames(draw: st.DrawFn, max_payload: int = 200) -> bytes:
    """An untagged Ethernet frame with an arbitrary payload."""
    head = draw(macs) + draw(macs) + draw(untagged_ethertypes).to_bytes(2, "big")
    return head + draw(st.binary(max_size=max_payload))
