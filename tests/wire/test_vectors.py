"""Vectors both ways (style.md, testing habit 1): fields build to exactly these bytes, and
these bytes parse to exactly these fields. Then every prefix and every malformation.

The NVGRE byte strings were produced by scapy (``IP(flags="DF")/GRE(key_present=1,
proto=0x6558, key=vsid << 8 | flow_id)/Ether(...)``), an implementation independent of
ours; RFC 7637 itself has no hex examples, so the cases walk its corners instead: the
lowest and highest usable VSID, FlowID 0 ("not generated") and 0xFF, the smallest inner
frame, both outer IP versions, and Hyper-V's TTL of 128.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

from gateway.errors import BadPacket, Drop
from gateway.wire import (
    ARP_OP_REQUEST,
    NVGRE_OVERHEAD_V4,
    NVGRE_OVERHEAD_V6,
    ArpPacket,
    NvgreHeader,
    build_arp,
    build_ethernet,
    build_gre_nvgre,
    build_icmp_echo,
    build_ipv4,
    encapsulate_ipv4,
    encapsulate_ipv6,
    parse_arp,
    parse_ethernet,
    parse_gre_nvgre,
    parse_icmp,
    parse_ipv4,
    parse_nvgre,
)

from ._packets import (
    INNER_ICMP,
    PA4_DST,
    PA4_SRC,
    hexbytes,
    raw_gre,
    raw_ipv4,
    raw_ipv6,
    raw_nvgre_v4,
    raw_nvgre_v6,
)


@dataclass(frozen=True)
class Case:
    name: str
    version: int
    src: bytes
    dst: bytes
    vsid: int
    flow_id: int
    inner: bytes
    wire: bytes
    ttl: int = 64
    ident: int = 0


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


INNER_ARP = hexbytes(
    "ffffffffffff",
    "00155d005010",
    "0806",  # Ethernet: broadcast, ARP
    "0001080006040001",
    "00155d005010",
    "0a0a0a0a",
    "000000000000",
    "0a0a0a14",
)
INNER_MIN = hexbytes("020000000002", "020000000001", "86dd")  # 14 bytes, no payload
INNER_UDP = hexbytes(
    "00155d005021",
    "00155d005020",
    "0800",
    "45000021000700004011529b0a0a0a0b0a0a0a0c",
    "9c400035000df761",
    "68656c6c6f",
)

CASES = [
    Case(
        "v4-vsid5010-flow7-icmp",
        4,
        ip("198.18.0.1"),
        ip("198.18.0.2"),
        5010,
        7,
        INNER_ICMP,
        bytes.fromhex("4500005000004000402fae57c6120001c61200022000655800139207") + INNER_ICMP,
    ),
    Case(
        "v4-vsid-min-flow0-arp-ttl128",
        4,
        ip("192.0.2.10"),
        ip("198.51.100.20"),
        0x1000,
        0,
        INNER_ARP,
        bytes.fromhex("4500004612344000802ffc02c000020ac63364142000655800100000") + INNER_ARP,
        ttl=128,
        ident=0x1234,
    ),
    Case(
        "v4-vsid-max-flowff-min-frame-ttl1",
        4,
        ip("203.0.113.1"),
        ip("203.0.113.2"),
        0xFFFFFE,
        0xFF,
        INNER_MIN,
        bytes.fromhex("4500002affff4000012f01a1cb007101cb00710220006558fffffeff") + INNER_MIN,
        ttl=1,
        ident=0xFFFF,
    ),
    Case(
        "v6-vsid5020-flow42-udp",
        6,
        ip("2001:db8::1"),
        ip("2001:db8::2"),
        5020,
        0x42,
        INNER_UDP,
        bytes.fromhex(
            "6000000000372f40"
            "20010db8000000000000000000000001"
            "20010db8000000000000000000000002"
            "2000655800139c42"
        )
        + INNER_UDP,
    ),
    Case(
        "v6-vsid-min-flow0-icmp",
        6,
        ip("2001:db8::1"),
        ip("2001:db8::2"),
        0x1000,
        0,
        INNER_ICMP,
        bytes.fromhex(
            "60000000003c2f40"
            "20010db8000000000000000000000001"
            "20010db8000000000000000000000002"
            "2000655800100000"
        )
        + INNER_ICMP,
    ),
]


def build(case: Case) -> bytes:
    if case.version == 4:
        return encapsulate_ipv4(
            case.src, case.dst, case.vsid, case.flow_id, case.inner, ttl=case.ttl, ident=case.ident
        )
    return encapsulate_ipv6(case.src, case.dst, case.vsid, case.flow_id, case.inner)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fields_build_to_bytes(case: Case) -> None:
    assert build(case) == case.wire


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_parse_to_fields(case: Case, kind: type) -> None:
    pkt = parse_nvgre(kind(case.wire))
    overhead = NVGRE_OVERHEAD_V4 if case.version == 4 else NVGRE_OVERHEAD_V6
    assert (pkt.version, pkt.src, pkt.dst) == (case.version, case.src, case.dst)
    assert (pkt.vsid, pkt.flow_id) == (case.vsid, case.flow_id)
    assert pkt.inner_offset == overhead - 14
    assert pkt.inner_length == len(case.inner)
    assert bytes(pkt.inner) == case.inner
    assert pkt.inner_ethertype == int.from_bytes(case.inner[12:14], "big")


def test_inner_is_a_view_not_a_copy() -> None:
    buffer = bytearray(CASES[0].wire)
    pkt = parse_nvgre(memoryview(buffer))
    buffer[pkt.inner_offset] ^= 0xFF
    assert pkt.inner[0] == buffer[pkt.inner_offset]
    assert pkt.inner.obj is buffer


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_prefix_is_truncated(case: Case) -> None:
    for n in range(len(case.wire)):
        with pytest.raises(BadPacket) as info:
            parse_nvgre(case.wire[:n])
        assert info.value.reason is Drop.TRUNCATED, n


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_padding_after_the_ip_length_is_ignored(case: Case) -> None:
    pkt = parse_nvgre(case.wire + b"\0" * 18)
    assert bytes(pkt.inner) == case.inner


GRE_VECTORS = [
    (0x1000, 0x00, "2000655800100000"),
    (5010, 7, "2000655800139207"),
    (5020, 0x42, "2000655800139c42"),
    (0xFFFFFE, 0xFF, "20006558fffffeff"),
]


@pytest.mark.parametrize(("vsid", "flow_id", "wire"), GRE_VECTORS)
def test_gre_vectors_both_ways(vsid: int, flow_id: int, wire: str) -> None:
    assert build_gre_nvgre(vsid, flow_id) == bytes.fromhex(wire)
    assert parse_gre_nvgre(bytes.fromhex(wire)) == NvgreHeader(vsid, flow_id)
    for n in range(8):
        with pytest.raises(BadPacket) as info:
            parse_gre_nvgre(bytes.fromhex(wire)[:n])
        assert info.value.reason is Drop.TRUNCATED


MALFORMED = [
    # GRE, RFC 7637 sec. 3.2 and RFC 2784 sec. 2.2, over both outer versions
    ("C bit", dict(flags=0xA000), Drop.GRE_CHECKSUM),
    ("R bit", dict(flags=0x6000), Drop.GRE_ROUTING),
    ("strict source route", dict(flags=0x2800), Drop.GRE_ROUTING),
    ("recursion MSB", dict(flags=0x2400), Drop.GRE_ROUTING),
    ("S bit", dict(flags=0x3000), Drop.GRE_SEQUENCE),
    ("version 1", dict(flags=0x2001), Drop.GRE_VERSION),
    ("version 7", dict(flags=0x2007), Drop.GRE_VERSION),
    ("no K bit", dict(flags=0x0000), Drop.GRE_NO_KEY),
    ("C and K (checksummed GRE)", dict(flags=0xA000), Drop.GRE_CHECKSUM),
    ("protocol IPv4", dict(proto=0x0800), Drop.GRE_PROTOCOL),
    ("protocol ERSPAN", dict(proto=0x88BE), Drop.GRE_PROTOCOL),
    ("VSID 0", dict(vsid=0), Drop.VSID_RESERVED),
    ("VSID 4095", dict(vsid=4095), Drop.VSID_RESERVED),
    ("VSID 0xFFFFFF", dict(vsid=0xFFFFFF), Drop.VSID_RESERVED),
]


@pytest.mark.parametrize(("name", "gre", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
@pytest.mark.parametrize("outer", [raw_nvgre_v4, raw_nvgre_v6], ids=["v4", "v6"])
def test_gre_malformations(outer, name: str, gre: dict[str, int], reason: Drop) -> None:
    with pytest.raises(BadPacket) as info:
        parse_nvgre(outer(**gre))
    assert info.value.reason is reason
    with pytest.raises(BadPacket) as info:
        parse_gre_nvgre(raw_gre(**gre))
    assert info.value.reason is reason


def tagged(tpid: int) -> bytes:
    return INNER_ICMP[:12] + tpid.to_bytes(2, "big") + b"\x00\x64" + INNER_ICMP[12:]


GRE_OK = raw_gre()
OUTER_MALFORMED = [
    ("outer MF set", raw_ipv4(GRE_OK + INNER_ICMP, frag=0x2000), Drop.IP_FRAGMENT),
    ("outer DF+MF set", raw_ipv4(GRE_OK + INNER_ICMP, frag=0x6000), Drop.IP_FRAGMENT),
    ("outer fragment offset", raw_ipv4(GRE_OK + INNER_ICMP, frag=0x0001), Drop.IP_FRAGMENT),
    ("IP version 5", raw_ipv4(GRE_OK + INNER_ICMP, ver_ihl=0x55), Drop.IP_VERSION),
    ("IP version 0", raw_ipv4(GRE_OK + INNER_ICMP, ver_ihl=0x05), Drop.IP_VERSION),
    ("IPv6 header, version 7", raw_ipv6(GRE_OK + INNER_ICMP, first=0x70000000), Drop.IP_VERSION),
    ("IHL 4", raw_ipv4(GRE_OK + INNER_ICMP, ver_ihl=0x44), Drop.IP_HEADER_LENGTH),
    ("IHL 0", raw_ipv4(GRE_OK + INNER_ICMP, ver_ihl=0x40), Drop.IP_HEADER_LENGTH),
    ("total length 19", raw_ipv4(GRE_OK + INNER_ICMP, total_length=19), Drop.IP_HEADER_LENGTH),
    ("IHL 15 > total", raw_ipv4(GRE_OK, ver_ihl=0x4F), Drop.IP_HEADER_LENGTH),
    ("not GRE (UDP)", raw_ipv4(GRE_OK + INNER_ICMP, protocol=17), Drop.NOT_GRE),
    ("not GRE (IPIP)", raw_ipv4(GRE_OK + INNER_ICMP, protocol=4), Drop.NOT_GRE),
    ("v6 not GRE (UDP)", raw_ipv6(GRE_OK + INNER_ICMP, next_header=17), Drop.NOT_GRE),
    ("v6 hop-by-hop first", raw_ipv6(GRE_OK + INNER_ICMP, next_header=0), Drop.NOT_GRE),
    ("v6 fragment header", raw_ipv6(GRE_OK + INNER_ICMP, next_header=44), Drop.NOT_GRE),
    ("inner empty", raw_ipv4(GRE_OK), Drop.INNER_TRUNCATED),
    ("inner 13 bytes", raw_ipv4(GRE_OK + INNER_ICMP[:13]), Drop.INNER_TRUNCATED),
    ("v6 inner 13 bytes", raw_ipv6(GRE_OK + INNER_ICMP[:13]), Drop.INNER_TRUNCATED),
    ("inner 802.1Q", raw_ipv4(GRE_OK + tagged(0x8100)), Drop.INNER_VLAN),
    ("inner QinQ", raw_ipv4(GRE_OK + tagged(0x88A8)), Drop.INNER_VLAN),
    ("inner legacy QinQ", raw_ipv4(GRE_OK + tagged(0x9100)), Drop.INNER_VLAN),
    ("v6 inner 802.1Q", raw_ipv6(GRE_OK + tagged(0x8100)), Drop.INNER_VLAN),
    ("total length past data", raw_ipv4(GRE_OK + INNER_ICMP, total_length=200), Drop.TRUNCATED),
    ("empty", b"", Drop.TRUNCATED),
]


@pytest.mark.parametrize(
    ("name", "wire", "reason"), OUTER_MALFORMED, ids=[m[0] for m in OUTER_MALFORMED]
)
def test_datagram_malformations(name: str, wire: bytes, reason: Drop) -> None:
    with pytest.raises(BadPacket) as info:
        parse_nvgre(wire)
    assert info.value.reason is reason


def test_accepted_variants() -> None:
    """What RFC 2784 says to ignore, and outer options, must not be dropped."""
    reserved_bits = parse_nvgre(raw_nvgre_v4(flags=0x2000 | 0x03F8))  # bits 6-12
    assert (reserved_bits.vsid, reserved_bits.flow_id) == (5010, 7)
    with_options = parse_nvgre(raw_ipv4(GRE_OK + INNER_ICMP, options=bytes.fromhex("94040000")))
    assert with_options.inner_offset == 24 + 8
    assert bytes(with_options.inner) == INNER_ICMP
    no_df = parse_nvgre(raw_ipv4(GRE_OK + INNER_ICMP, frag=0))
    assert no_df.vsid == 5010


# Per-codec vectors: (fields, exact bytes) checked both ways.


def test_ethernet_vector() -> None:
    wire = bytes.fromhex("02aa0000000202aa000000010800")
    assert build_ethernet(wire[:6], wire[6:12], 0x0800) == wire
    header = parse_ethernet(wire)
    assert (header.dst, header.src, header.ethertype) == (wire[:6], wire[6:12], 0x0800)


def test_ipv4_vector_with_router_alert_option() -> None:
    # scapy: IP(id=0x55, options=[IPOption_Router_Alert()], proto=17, len=32)
    wire = bytes.fromhex("46000020005500004011bd5d0a0a0a010a0a0a0294040000")
    built = build_ipv4(
        ip("10.10.10.1"), ip("10.10.10.2"), 17, 8, ident=0x55, flags=0, options=wire[20:]
    )
    assert built == wire
    header = parse_ipv4(wire + bytes(8))
    assert (header.header_length, header.total_length, header.checksum) == (24, 32, 0xBD5D)
    assert (header.ident, header.protocol, header.options) == (0x55, 17, bytes.fromhex("94040000"))
    assert not header.dont_fragment and not header.is_fragment


def test_arp_vector() -> None:
    body = INNER_ARP[14:]
    fields = ArpPacket(
        ARP_OP_REQUEST,
        bytes.fromhex("00155d005010"),
        ip("10.10.10.10"),
        bytes(6),
        ip("10.10.10.20"),
    )
    assert parse_arp(body) == fields
    assert build_arp(*(getattr(fields, f) for f in fields.__slots__)) == body


def test_icmp_echo_vector() -> None:
    # scapy: ICMP(type=8, id=0x1234, seq=1)/b"abcdefgh"
    wire = bytes.fromhex("08005435123400016162636465666768")
    assert build_icmp_echo(0x1234, 1, b"abcdefgh") == wire
    message = parse_icmp(wire)
    assert (message.type, message.code, message.checksum) == (8, 0, 0x5435)
    assert (message.identifier, message.sequence, message.payload) == (0x1234, 1, b"abcdefgh")


def test_vectors_are_consistent_with_the_test_packers() -> None:
    """The struct-built malformation base equals the scapy-built vector it mutates."""
    assert raw_nvgre_v4() == CASES[0].wire
    assert raw_nvgre_v6(vsid=0x1000, flow_id=0) == CASES[4].wire
    assert raw_ipv4(b"", protocol=47)[12:20] == PA4_SRC + PA4_DST
