"""Properties (style.md, testing habit 2): parse(build(x)) == x for every codec, and every
parser that sees the network raises nothing but BadPacket, whatever the bytes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import BadPacket, Drop
from gateway.wire import (
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    ETHERTYPE_ARP,
    ICMP_CODE_FRAGMENTATION_NEEDED,
    ICMP_DEST_UNREACHABLE,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    IPPROTO_TCP,
    IPPROTO_UDP,
    ArpPacket,
    EthernetHeader,
    Ipv4Header,
    Ipv6Header,
    build_arp,
    build_arp_reply,
    build_ethernet,
    build_gre_nvgre,
    build_icmp_echo,
    build_icmp_echo_reply,
    build_icmp_unreachable,
    build_ipv4,
    build_ipv6,
    build_nvgre_ipv4_header,
    build_tcp_v4,
    build_udp_v4,
    decrement_ttl,
    encapsulate_ipv4,
    encapsulate_ipv6,
    flow_id_of_frame,
    icmp_checksum_ok,
    ipv4_checksum_ok,
    is_broadcast,
    is_multicast,
    l4_checksum_ok_v4,
    mac_from_str,
    mac_to_str,
    parse_arp,
    parse_ethernet,
    parse_gre_nvgre,
    parse_icmp,
    parse_inner_ipv4,
    parse_ipv4,
    parse_ipv6,
    parse_nvgre,
    parse_ports,
    parse_tcp,
    parse_udp,
    rewrite_ipv4_dst,
    rewrite_ipv4_src,
    rewrite_l4_dst_port,
    rewrite_l4_src_port,
)

from ._packets import (
    INNER_ICMP,
    PA4_DST,
    PA4_SRC,
    inner_frames,
    ipv4_addrs,
    ipv4_options,
    ipv6_addrs,
    macs,
    naive_checksum,
    ports,
    raw_ipv4,
    raw_nvgre_v4,
    raw_nvgre_v6,
    vsids,
)

# Round trips --------------------------------------------------------------------------


@given(macs, macs, st.integers(0, 0xFFFF))
def test_ethernet_round_trip(dst: bytes, src: bytes, ethertype: int) -> None:
    assert parse_ethernet(build_ethernet(dst, src, ethertype)) == EthernetHeader(
        dst, src, ethertype
    )


@given(macs)
def test_mac_text_round_trip(mac: bytes) -> None:
    text = mac_to_str(mac)
    assert text == "-".join(f"{b:02x}" for b in mac)  # the one spelling nvgw prints
    assert mac_from_str(text) == mac
    assert mac_from_str(text.upper()) == mac  # as Windows prints it
    assert mac_from_str(text.replace("-", ":")) == mac  # as Linux tools print it
    assert mac_from_str(text.replace("-", "")) == mac


@pytest.mark.parametrize(
    "text",
    [
        "",
        "00:00:00:00:00",
        "00:00:00:00:00:0g",
        "00:00-00:00:00:00",
        "000:00:00:00:00:0",
        "00.00.00.00.00.00",
        "0000000000111",
        "00:00:00:00:00:00:00",
        " 00 00 00 00 00 00",
    ],
)
def test_mac_from_str_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        mac_from_str(text)


def test_group_addresses() -> None:
    assert is_broadcast(b"\xff" * 6) and is_multicast(b"\xff" * 6)
    assert is_multicast(bytes.fromhex("01005e000001")) and not is_broadcast(b"\x01" + bytes(5))
    assert not is_multicast(bytes.fromhex("00155d005010"))


@given(
    ipv4_addrs,
    ipv4_addrs,
    st.integers(0, 255),
    st.integers(0, 1000),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    st.integers(0, 255),
    st.integers(0, 7),
    st.integers(0, 0x1FFF),
    ipv4_options,
)
def test_ipv4_round_trip(src, dst, protocol, payload_length, ttl, ident, tos, flags, frag, opts):
    header = build_ipv4(
        src,
        dst,
        protocol,
        payload_length,
        ttl=ttl,
        ident=ident,
        tos=tos,
        flags=flags,
        fragment_offset=frag,
        options=opts,
    )
    assert naive_checksum(header) == 0
    assert ipv4_checksum_ok(header)
    datagram = header + bytes(payload_length)
    parsed = parse_ipv4(datagram)
    assert parsed == Ipv4Header(
        tos,
        20 + len(opts) + payload_length,
        ident,
        flags,
        frag,
        ttl,
        protocol,
        parsed.checksum,
        src,
        dst,
        opts,
    )
    assert parsed.checksum == int.from_bytes(header[10:12], "big")
    assert parsed.payload_length == payload_length
    assert parse_inner_ipv4(datagram) == parsed


@given(
    ipv6_addrs,
    ipv6_addrs,
    st.integers(0, 255),
    st.integers(0, 300),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 0xFFFFF),
)
def test_ipv6_round_trip(src, dst, next_header, payload_length, hop_limit, tclass, label):
    header = build_ipv6(
        src,
        dst,
        next_header,
        payload_length,
        hop_limit=hop_limit,
        traffic_class=tclass,
        flow_label=label,
    )
    parsed = parse_ipv6(header + bytes(payload_length))
    assert parsed == Ipv6Header(tclass, label, payload_length, next_header, hop_limit, src, dst)


@given(
    ipv4_addrs,
    ipv4_addrs,
    vsids,
    st.integers(0, 255),
    inner_frames(),
    st.integers(1, 255),
    st.integers(0, 0xFFFF),
)
def test_nvgre_v4_round_trip(src, dst, vsid, flow_id, inner, ttl, ident):
    wire = encapsulate_ipv4(src, dst, vsid, flow_id, inner, ttl=ttl, ident=ident)
    pkt = parse_nvgre(wire)
    assert (pkt.version, pkt.src, pkt.dst, pkt.vsid, pkt.flow_id) == (4, src, dst, vsid, flow_id)
    assert bytes(pkt.inner) == inner and pkt.inner_length == len(inner)
    outer = parse_ipv4(wire)
    assert outer.dont_fragment and outer.protocol == 47 and outer.ttl == ttl
    assert ipv4_checksum_ok(wire)
    assert wire[:28] == build_nvgre_ipv4_header(
        src, dst, vsid, flow_id, len(inner), ttl=ttl, ident=ident
    )


@given(ipv6_addrs, ipv6_addrs, vsids, st.integers(0, 255), inner_frames())
def test_nvgre_v6_round_trip(src, dst, vsid, flow_id, inner):
    pkt = parse_nvgre(encapsulate_ipv6(src, dst, vsid, flow_id, inner))
    assert (pkt.version, pkt.src, pkt.dst, pkt.vsid, pkt.flow_id) == (6, src, dst, vsid, flow_id)
    assert bytes(pkt.inner) == inner


@given(vsids, st.integers(0, 255))
def test_gre_round_trip(vsid: int, flow_id: int) -> None:
    header = parse_gre_nvgre(build_gre_nvgre(vsid, flow_id))
    assert (header.vsid, header.flow_id) == (vsid, flow_id)


@given(
    st.sampled_from([ARP_OP_REQUEST, ARP_OP_REPLY, 3, 0xFFFF]), macs, ipv4_addrs, macs, ipv4_addrs
)
def test_arp_round_trip(opcode, sender_mac, sender_ip, target_mac, target_ip):
    fields = ArpPacket(opcode, sender_mac, sender_ip, target_mac, target_ip)
    assert parse_arp(build_arp(opcode, sender_mac, sender_ip, target_mac, target_ip)) == fields


@given(macs, ipv4_addrs, ipv4_addrs, macs)
def test_arp_reply_answers_the_request(asker_mac, asker_ip, wanted_ip, answer_mac):
    request = parse_arp(build_arp(ARP_OP_REQUEST, asker_mac, asker_ip, bytes(6), wanted_ip))
    frame = build_arp_reply(request, answer_mac)
    assert parse_ethernet(frame) == EthernetHeader(asker_mac, answer_mac, ETHERTYPE_ARP)
    assert parse_arp(frame, 14) == ArpPacket(
        ARP_OP_REPLY, answer_mac, wanted_ip, asker_mac, asker_ip
    )
    with pytest.raises(ValueError):
        build_arp_reply(parse_arp(frame, 14), answer_mac)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=300), st.booleans())
def test_icmp_echo_round_trip(identifier, sequence, payload, reply):
    wire = build_icmp_echo(identifier, sequence, payload, reply=reply)
    assert naive_checksum(wire) == 0 and icmp_checksum_ok(wire)
    message = parse_icmp(wire)
    assert message.type == (ICMP_ECHO_REPLY if reply else ICMP_ECHO_REQUEST)
    assert (message.code, message.identifier, message.sequence) == (0, identifier, sequence)
    assert message.payload == payload
    if not reply:
        answer = parse_icmp(build_icmp_echo_reply(message))
        assert answer.type == ICMP_ECHO_REPLY
        assert (answer.rest, answer.payload) == (message.rest, message.payload)


def test_fragmentation_needed_quotes_the_datagram() -> None:
    original = raw_ipv4(bytes(range(40)), protocol=17, options=bytes.fromhex("94040000"))
    wire = build_icmp_unreachable(ICMP_CODE_FRAGMENTATION_NEEDED, original, next_hop_mtu=1458)
    message = parse_icmp(wire)
    assert (message.type, message.code) == (ICMP_DEST_UNREACHABLE, ICMP_CODE_FRAGMENTATION_NEEDED)
    assert message.next_hop_mtu == 1458 and message.rest == 1458  # RFC 1191: unused high half
    assert message.payload == original[: 24 + 8]
    assert naive_checksum(wire) == 0


@given(ipv4_addrs, ipv4_addrs, ports, ports, st.binary(max_size=300))
def test_udp_round_trip(src_ip, dst_ip, src_port, dst_port, payload):
    segment = build_udp_v4(src_ip, dst_ip, src_port, dst_port, payload)
    header = parse_udp(segment)
    assert (header.src_port, header.dst_port, header.length) == (
        src_port,
        dst_port,
        8 + len(payload),
    )
    assert header.checksum != 0  # a computed 0 is sent as 0xFFFF
    assert parse_ports(segment) == (src_port, dst_port)
    assert l4_checksum_ok_v4(src_ip, dst_ip, IPPROTO_UDP, segment)


@given(
    ipv4_addrs,
    ipv4_addrs,
    ports,
    ports,
    st.binary(max_size=300),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 255),
    st.integers(0, 0xFFFF),
    ipv4_options,
)
def test_tcp_round_trip(src_ip, dst_ip, sport, dport, payload, seq, ack, flags, window, opts):
    segment = build_tcp_v4(
        src_ip,
        dst_ip,
        sport,
        dport,
        payload,
        seq=seq,
        ack=ack,
        flags=flags,
        window=window,
        options=opts,
    )
    header = parse_tcp(segment)
    assert (header.src_port, header.dst_port, header.seq, header.ack) == (sport, dport, seq, ack)
    assert (header.flags, header.window, header.options) == (flags, window, opts)
    assert header.data_offset == 5 + len(opts) // 4
    assert parse_ports(segment) == (sport, dport)
    assert l4_checksum_ok_v4(src_ip, dst_ip, IPPROTO_TCP, segment)


@given(st.integers(0, 255), st.binary(max_size=60))
def test_decrement_ttl_keeps_the_checksum_right(ttl: int, payload: bytes) -> None:
    packet = bytearray(raw_ipv4(payload, ttl=ttl, protocol=17))
    assert decrement_ttl(packet) == max(ttl - 1, 0)
    assert packet[8] == max(ttl - 1, 0)
    assert naive_checksum(bytes(packet[:20])) == 0


# Reasons of the inner parsers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("parser", "data", "reason"),
    [
        (parse_inner_ipv4, raw_ipv4(b"x", ver_ihl=0x44), Drop.INNER_MALFORMED),
        (parse_inner_ipv4, raw_ipv4(b"x", ver_ihl=0x65), Drop.INNER_MALFORMED),
        (parse_inner_ipv4, raw_ipv4(b"x", total_length=10), Drop.INNER_MALFORMED),
        (parse_inner_ipv4, raw_ipv4(b"x", total_length=30), Drop.TRUNCATED),
        (parse_ipv4, raw_ipv4(b"x", ver_ihl=0x46, total_length=24), Drop.TRUNCATED),
        (parse_ipv4, raw_ipv4(b"x", ver_ihl=0x46), Drop.IP_HEADER_LENGTH),
        (parse_ipv4, raw_ipv4(b"x", ver_ihl=0x65), Drop.IP_VERSION),
        (parse_ipv6, bytes(40), Drop.IP_VERSION),
        (parse_ipv6, b"\x60" + bytes(3) + b"\x00\x01" + bytes(34), Drop.TRUNCATED),
        (parse_arp, bytes.fromhex("0001080006040001"), Drop.TRUNCATED),
        (parse_arp, bytes.fromhex("0006080006040001") + bytes(20), Drop.INNER_MALFORMED),
        (parse_arp, bytes.fromhex("00010800"), Drop.TRUNCATED),
        (parse_arp, bytes.fromhex("0001080006100001"), Drop.INNER_MALFORMED),
        (parse_arp, bytes.fromhex("000186dd06100001") + bytes(20), Drop.INNER_MALFORMED),
        (parse_tcp, bytes(12) + b"\x40" + bytes(7), Drop.INNER_MALFORMED),
        (parse_tcp, bytes(12) + b"\x60" + bytes(7), Drop.TRUNCATED),
        (parse_udp, b"\0\1\0\2\0\7\0\0", Drop.INNER_MALFORMED),
        (parse_udp, b"\0\1\0\2\0\x09\0\0", Drop.TRUNCATED),
        (parse_icmp, b"\x08\x00\x00", Drop.TRUNCATED),
        (parse_ports, b"\x00\x01\x00", Drop.TRUNCATED),
        (parse_ethernet, bytes(13), Drop.TRUNCATED),
    ],
)
def test_inner_reasons(parser: Callable[..., object], data: bytes, reason: Drop) -> None:
    with pytest.raises(BadPacket) as info:
        parser(data)
    assert info.value.reason is reason


def test_builders_refuse_bugs() -> None:
    for vsid, flow_id in [(0, 0), (4095, 0), (0xFFFFFF, 0), (5010, 256), (5010, -1)]:
        with pytest.raises(ValueError):
            build_gre_nvgre(vsid, flow_id)
    tagged = INNER_ICMP[:12] + b"\x81\x00\x00\x64" + INNER_ICMP[12:]
    for inner in (INNER_ICMP[:13], tagged):
        with pytest.raises(ValueError):
            encapsulate_ipv4(PA4_SRC, PA4_DST, 5010, 7, inner)
    with pytest.raises(ValueError):
        build_ipv4(PA4_SRC, PA4_DST, 17, 0, options=b"\x01")
    with pytest.raises(ValueError):
        build_ipv4(PA4_SRC, PA4_DST, 17, 0xFFFF)
    with pytest.raises(ValueError):
        build_ethernet(bytes(5), bytes(6), 0x0800)


# Hostile bytes raise one thing ---------------------------------------------------------

PARSERS = [
    parse_ethernet,
    parse_ipv4,
    parse_inner_ipv4,
    parse_ipv6,
    parse_gre_nvgre,
    parse_arp,
    parse_icmp,
    parse_tcp,
    parse_udp,
    parse_ports,
]


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@settings(max_examples=300)
@given(data=st.binary(max_size=2048), offset=st.integers(-2, 80))
def test_parsers_raise_only_badpacket(parser, data: bytes, offset: int) -> None:
    with contextlib.suppress(BadPacket):
        parser(memoryview(data), offset)


@settings(max_examples=500)
@given(st.binary(max_size=2048))
def test_parse_nvgre_raises_only_badpacket(data: bytes) -> None:
    with contextlib.suppress(BadPacket):
        parse_nvgre(memoryview(data))


VALID = [raw_nvgre_v4(), raw_nvgre_v6()]


@settings(max_examples=500)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_mutated_datagrams_raise_only_badpacket(valid: bytes, edits: list[tuple[int, int]]):
    """Random bytes rarely get past the outer header; mutated valid ones reach every check."""
    data = bytearray(valid)
    for position, value in edits:
        data[position % len(data)] = value
    with contextlib.suppress(BadPacket):
        parse_nvgre(data)


@pytest.mark.parametrize("valid", VALID, ids=["v4", "v6"])
def test_each_byte_corrupted_in_turn(valid: bytes) -> None:
    """trio's test_invalid_cookie_rejected, for NVGRE: flip every byte, several ways."""
    seen: set[Drop] = set()
    for position in range(len(valid)):
        for mask in (0x01, 0x10, 0x80, 0xFF):
            data = bytearray(valid)
            data[position] ^= mask
            try:
                parse_nvgre(data)
            except BadPacket as e:
                seen.add(e.reason)
    assert Drop.GRE_CHECKSUM in seen and Drop.VSID_RESERVED in seen and Drop.NOT_GRE in seen


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_flow_id_of_frame_never_raises(data: bytes) -> None:
    assert 0 <= flow_id_of_frame(memoryview(data)) <= 255


REWRITES = [
    (rewrite_ipv4_src, PA4_SRC),
    (rewrite_ipv4_dst, PA4_DST),
    (rewrite_l4_src_port, 1),
    (rewrite_l4_dst_port, 2),
]


@pytest.mark.parametrize(("rewrite", "value"), REWRITES, ids=lambda r: getattr(r, "__name__", ""))
@settings(max_examples=300)
@given(data=st.binary(max_size=300), offset=st.integers(-2, 30))
def test_rewrites_raise_only_badpacket_and_leave_bad_packets_alone(rewrite, value, data, offset):
    packet = bytearray(data)
    try:
        rewrite(packet, value, offset)
    except BadPacket:
        assert packet == data
    except ValueError:  # ports asked of ICMP or of a later fragment: documented caller bug
        assert rewrite in (rewrite_l4_src_port, rewrite_l4_dst_port)
        assert packet == data
