"""scapy as an independent oracle (style.md, testing habit 3), in both directions.

scapy has no NVGRE layer: NVGRE is ``GRE(key_present=1, proto=0x6558, key=vsid << 8 |
flow_id)``. A checksum is "valid per scapy" when scapy, told to recompute it (the field
deleted), writes the same value we did.
"""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import ARP, GRE, ICMP, IP, TCP, UDP, Ether, IPv6, Packet, raw

from gateway.wire import (
    ARP_OP_REQUEST,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    build_arp_reply,
    build_ethernet,
    build_icmp_echo,
    build_ipv4,
    build_tcp_v4,
    build_udp_v4,
    encapsulate_ipv4,
    encapsulate_ipv6,
    parse_arp,
    parse_icmp,
    parse_inner_ipv4,
    parse_nvgre,
    parse_tcp,
    parse_udp,
    rewrite_ipv4_dst,
    rewrite_ipv4_src,
    rewrite_l4_src_port,
)

from ._packets import ipv4_addrs, ipv6_addrs, macs, ports, vsids

SCAPY_EXAMPLES = settings(max_examples=40, deadline=None)


def v4(addr: bytes) -> str:
    return str(ipaddress.IPv4Address(addr))


def v6(addr: bytes) -> str:
    return str(ipaddress.IPv6Address(addr))


def mac(addr: bytes) -> str:
    return addr.hex(":")


def recomputed(pkt: Packet, layer: type[Packet], field: str = "chksum") -> int:
    """What scapy writes into ``layer``'s checksum when asked to compute it itself."""
    copy = pkt.__class__(raw(pkt))
    delattr(copy[layer], field)
    return getattr(pkt.__class__(raw(copy))[layer], field)


inner_kinds = st.sampled_from([IPPROTO_ICMP, IPPROTO_UDP, IPPROTO_TCP])


@st.composite
def inner_ip_frames(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    """An inner Ethernet/IPv4/{ICMP,UDP,TCP} frame built by our codecs, and its fields."""
    f: dict[str, object] = {
        "eth_dst": draw(macs),
        "eth_src": draw(macs),
        "src": draw(ipv4_addrs),
        "dst": draw(ipv4_addrs),
        "proto": draw(inner_kinds),
        "sport": draw(ports),
        "dport": draw(ports),
        "payload": draw(st.binary(max_size=64)),
        "ident": draw(st.integers(0, 0xFFFF)),
    }
    if f["proto"] == IPPROTO_ICMP:
        l4 = build_icmp_echo(f["sport"], f["dport"], f["payload"])
    elif f["proto"] == IPPROTO_UDP:
        l4 = build_udp_v4(f["src"], f["dst"], f["sport"], f["dport"], f["payload"])
    else:
        l4 = build_tcp_v4(f["src"], f["dst"], f["sport"], f["dport"], f["payload"], seq=7)
    ip = build_ipv4(f["src"], f["dst"], f["proto"], len(l4), ident=f["ident"], flags=0)
    return build_ethernet(f["eth_dst"], f["eth_src"], 0x0800) + ip + l4, f


def check_inner(pkt: Packet, f: dict[str, object]) -> None:
    eth = pkt[GRE].payload
    assert isinstance(eth, Ether)
    assert (eth.dst, eth.src, eth.type) == (mac(f["eth_dst"]), mac(f["eth_src"]), 0x0800)
    inner_ip = eth[IP]
    assert (inner_ip.src, inner_ip.dst, inner_ip.proto) == (v4(f["src"]), v4(f["dst"]), f["proto"])
    assert inner_ip.id == f["ident"]
    layer = {IPPROTO_ICMP: ICMP, IPPROTO_UDP: UDP, IPPROTO_TCP: TCP}[f["proto"]]
    l4 = eth[layer]
    if layer is ICMP:
        assert (l4.type, l4.id, l4.seq) == (8, f["sport"], f["dport"])
    else:
        assert (l4.sport, l4.dport) == (f["sport"], f["dport"])
    inner_frame = Ether(raw(eth))
    assert inner_frame[IP].chksum == recomputed(inner_frame, IP)
    assert inner_frame[layer].chksum == recomputed(inner_frame, layer)


@SCAPY_EXAMPLES
@given(
    ipv4_addrs,
    ipv4_addrs,
    vsids,
    st.integers(0, 255),
    inner_ip_frames(),
    st.integers(1, 255),
    st.integers(0, 0xFFFF),
)
def test_scapy_reads_our_ipv4_nvgre(src, dst, vsid, flow_id, inner, ttl, ident) -> None:
    frame, f = inner
    pkt = IP(encapsulate_ipv4(src, dst, vsid, flow_id, frame, ttl=ttl, ident=ident))
    assert (pkt.src, pkt.dst, pkt.proto, pkt.ttl, pkt.id) == (v4(src), v4(dst), 47, ttl, ident)
    assert pkt.flags == "DF" and pkt.frag == 0 and pkt.ihl == 5
    assert pkt.chksum == recomputed(pkt, IP)
    gre = pkt[GRE]
    assert (gre.chksum_present, gre.routing_present, gre.seqnum_present) == (0, 0, 0)
    assert (gre.key_present, gre.version, gre.proto) == (1, 0, 0x6558)
    assert (gre.key >> 8, gre.key & 0xFF) == (vsid, flow_id)
    check_inner(pkt, f)


@SCAPY_EXAMPLES
@given(ipv6_addrs, ipv6_addrs, vsids, st.integers(0, 255), inner_ip_frames(), st.integers(1, 255))
def test_scapy_reads_our_ipv6_nvgre(src, dst, vsid, flow_id, inner, hop_limit) -> None:
    frame, f = inner
    pkt = IPv6(encapsulate_ipv6(src, dst, vsid, flow_id, frame, hop_limit=hop_limit))
    assert (pkt.src, pkt.dst, pkt.nh, pkt.hlim) == (v6(src), v6(dst), 47, hop_limit)
    assert pkt.plen == 8 + len(frame)
    gre = pkt[GRE]
    assert (gre.key_present, gre.proto, gre.key) == (1, 0x6558, (vsid << 8) | flow_id)
    check_inner(pkt, f)


@st.composite
def scapy_inner(draw: st.DrawFn) -> Packet:
    eth = Ether(src=mac(draw(macs)), dst=mac(draw(macs)))
    ip = IP(src=v4(draw(ipv4_addrs)), dst=v4(draw(ipv4_addrs)), id=draw(st.integers(0, 0xFFFF)))
    payload = draw(st.binary(max_size=64))
    kind = draw(inner_kinds)
    if kind == IPPROTO_ICMP:
        l4 = ICMP(id=draw(ports), seq=draw(ports))
    elif kind == IPPROTO_UDP:
        l4 = UDP(sport=draw(ports), dport=draw(ports))
    else:
        l4 = TCP(
            sport=draw(ports), dport=draw(ports), flags="PA", seq=draw(st.integers(0, 2**32 - 1))
        )
    return eth / ip / l4 / payload


def check_our_reading(pkt: Packet, wire: bytes) -> None:
    ours = parse_nvgre(wire)
    gre = pkt[GRE]
    assert (ours.vsid, ours.flow_id) == (gre.key >> 8, gre.key & 0xFF)
    eth = gre.payload
    assert bytes(ours.inner) == raw(eth)
    assert (bytes(ours.inner[:6]), bytes(ours.inner[6:12])) == (
        bytes.fromhex(eth.dst.replace(":", "")),
        bytes.fromhex(eth.src.replace(":", "")),
    )
    inner_ip = parse_inner_ipv4(ours.inner, 14)
    sip = eth[IP]
    assert (inner_ip.src, inner_ip.dst) == (
        ipaddress.IPv4Address(sip.src).packed,
        ipaddress.IPv4Address(sip.dst).packed,
    )
    assert (inner_ip.ident, inner_ip.protocol, inner_ip.checksum) == (sip.id, sip.proto, sip.chksum)
    l4 = ours.inner[14 + inner_ip.header_length : 14 + inner_ip.total_length]
    if sip.proto == IPPROTO_ICMP:
        message = parse_icmp(l4)
        assert (message.identifier, message.sequence, message.checksum) == (
            eth[ICMP].id,
            eth[ICMP].seq,
            eth[ICMP].chksum,
        )
        assert message.payload == raw(eth[ICMP].payload)
    elif sip.proto == IPPROTO_UDP:
        header = parse_udp(l4)
        assert (header.src_port, header.dst_port, header.length, header.checksum) == (
            eth[UDP].sport,
            eth[UDP].dport,
            eth[UDP].len,
            eth[UDP].chksum,
        )
    else:
        header = parse_tcp(l4)
        t = eth[TCP]
        assert (header.src_port, header.dst_port, header.seq, header.flags, header.checksum) == (
            t.sport,
            t.dport,
            t.seq,
            int(t.flags),
            t.chksum,
        )


@SCAPY_EXAMPLES
@given(ipv4_addrs, ipv4_addrs, vsids, st.integers(0, 255), scapy_inner())
def test_we_read_scapy_ipv4_nvgre(src, dst, vsid, flow_id, inner) -> None:
    pkt = (
        IP(src=v4(src), dst=v4(dst), flags="DF")
        / GRE(key_present=1, proto=0x6558, key=(vsid << 8) | flow_id)
        / inner
    )
    wire = raw(pkt)
    pkt = IP(wire)
    ours = parse_nvgre(wire)
    assert (ours.version, ours.src, ours.dst) == (4, src, dst)
    check_our_reading(pkt, wire)


@SCAPY_EXAMPLES
@given(ipv6_addrs, ipv6_addrs, vsids, st.integers(0, 255), scapy_inner())
def test_we_read_scapy_ipv6_nvgre(src, dst, vsid, flow_id, inner) -> None:
    pkt = (
        IPv6(src=v6(src), dst=v6(dst))
        / GRE(key_present=1, proto=0x6558, key=(vsid << 8) | flow_id)
        / inner
    )
    wire = raw(pkt)
    ours = parse_nvgre(wire)
    assert (ours.version, ours.src, ours.dst) == (6, src, dst)
    check_our_reading(IPv6(wire), wire)


@SCAPY_EXAMPLES
@given(macs, ipv4_addrs, ipv4_addrs, macs)
def test_arp_both_ways(asker_mac, asker_ip, wanted_ip, answer_mac) -> None:
    request = Ether(src=mac(asker_mac), dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=mac(asker_mac), psrc=v4(asker_ip), pdst=v4(wanted_ip)
    )
    parsed = parse_arp(raw(request), 14)
    assert (parsed.opcode, parsed.sender_mac, parsed.sender_ip, parsed.target_ip) == (
        ARP_OP_REQUEST,
        asker_mac,
        asker_ip,
        wanted_ip,
    )
    reply = Ether(build_arp_reply(parsed, answer_mac))
    assert (reply.dst, reply.src, reply.type) == (mac(asker_mac), mac(answer_mac), 0x0806)
    a = reply[ARP]
    assert (a.hwtype, a.ptype, a.hwlen, a.plen, a.op) == (1, 0x0800, 6, 4, 2)
    assert (a.hwsrc, a.psrc, a.hwdst, a.pdst) == (
        mac(answer_mac),
        v4(wanted_ip),
        mac(asker_mac),
        v4(asker_ip),
    )


def test_udp_checksum_zero_is_ffff_for_scapy_too() -> None:
    """scapy and we agree on RFC 768's rule, on a datagram whose checksum computes to 0."""
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    for word in range(0x10000):  # find the payload word that makes the sum 0xFFFF
        segment = build_udp_v4(src, dst, 1000, 2000, word.to_bytes(2, "big"))
        if segment[6:8] == b"\xff\xff":
            break
    pkt = IP(src=v4(src), dst=v4(dst)) / UDP(sport=1000, dport=2000) / word.to_bytes(2, "big")
    assert raw(pkt[UDP]) == segment


@SCAPY_EXAMPLES
@given(
    ipv4_addrs,
    ipv4_addrs,
    st.sampled_from([IPPROTO_UDP, IPPROTO_TCP]),
    ports,
    ports,
    ipv4_addrs,
    ipv4_addrs,
    ports,
    st.binary(max_size=40),
)
def test_rewrites_leave_checksums_scapy_agrees_with(
    src, dst, proto, sport, dport, new_src, new_dst, new_sport, payload
) -> None:
    layer = UDP if proto == IPPROTO_UDP else TCP
    packet = bytearray(
        raw(IP(src=v4(src), dst=v4(dst)) / layer(sport=sport, dport=dport) / payload)
    )
    rewrite_ipv4_src(packet, new_src)
    rewrite_ipv4_dst(packet, new_dst)
    rewrite_l4_src_port(packet, new_sport)
    pkt = IP(bytes(packet))
    assert (pkt.src, pkt.dst, pkt[layer].sport) == (v4(new_src), v4(new_dst), new_sport)
    assert pkt.chksum == recomputed(pkt, IP)
    assert pkt[layer].chksum == recomputed(pkt, layer)
