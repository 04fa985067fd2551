"""os-ken (OpenStack's Ryu) as a second independent NVGRE codec: ``gre.nvgre(vsid=,
flow_id=)`` builds what we decode, and it decodes what we build.

os-ken always starts at an Ethernet header and pads every Ethernet frame it serializes,
the inner one included, to 60 bytes: a useful check that we bound everything by the IP
lengths and never by the buffer.
"""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st
from os_ken.lib.packet import ether_types, ethernet, gre, in_proto, ipv4, ipv6, packet, udp

from gateway.wire import (
    build_ethernet,
    encapsulate_ipv4,
    encapsulate_ipv6,
    parse_inner_ipv4,
    parse_nvgre,
    parse_udp,
)

from ._packets import INNER_ICMP, ipv4_addrs, ipv6_addrs, macs, ports, vsids

OSKEN_EXAMPLES = settings(max_examples=40, deadline=None)


def osken_nvgre(
    outer_version: int,
    src: bytes,
    dst: bytes,
    vsid: int,
    flow_id: int,
    inner: tuple[bytes, bytes, bytes, bytes, int, int, bytes],
) -> bytes:
    eth_dst, eth_src, ip_src, ip_dst, sport, dport, payload = inner
    p = packet.Packet()
    if outer_version == 4:
        p.add_protocol(ethernet.ethernet(ethertype=ether_types.ETH_TYPE_IP))
        outer_src, outer_dst = str(ipaddress.IPv4Address(src)), str(ipaddress.IPv4Address(dst))
        p.add_protocol(ipv4.ipv4(proto=in_proto.IPPROTO_GRE, src=outer_src, dst=outer_dst, flags=2))
    else:
        p.add_protocol(ethernet.ethernet(ethertype=ether_types.ETH_TYPE_IPV6))
        outer_src, outer_dst = str(ipaddress.IPv6Address(src)), str(ipaddress.IPv6Address(dst))
        p.add_protocol(ipv6.ipv6(nxt=in_proto.IPPROTO_GRE, src=outer_src, dst=outer_dst))
    p.add_protocol(gre.nvgre(vsid=vsid, flow_id=flow_id))
    p.add_protocol(
        ethernet.ethernet(
            ethertype=ether_types.ETH_TYPE_IP, dst=eth_dst.hex(":"), src=eth_src.hex(":")
        )
    )
    p.add_protocol(
        ipv4.ipv4(
            proto=in_proto.IPPROTO_UDP,
            src=str(ipaddress.IPv4Address(ip_src)),
            dst=str(ipaddress.IPv4Address(ip_dst)),
        )
    )
    p.add_protocol(udp.udp(src_port=sport, dst_port=dport))
    p.add_protocol(payload)
    p.serialize()
    return bytes(p.data)


inner_udp = st.tuples(macs, macs, ipv4_addrs, ipv4_addrs, ports, ports, st.binary(max_size=40))


@OSKEN_EXAMPLES
@given(st.sampled_from([4, 6]), vsids, st.integers(0, 255), inner_udp, st.data())
def test_we_read_osken_nvgre(outer_version, vsid, flow_id, inner, data) -> None:
    addrs = ipv4_addrs if outer_version == 4 else ipv6_addrs
    src, dst = data.draw(addrs), data.draw(addrs)
    frame = osken_nvgre(outer_version, src, dst, vsid, flow_id, inner)
    ours = parse_nvgre(frame[14:])  # past the outer Ethernet header
    assert (ours.version, ours.src, ours.dst) == (outer_version, src, dst)
    assert (ours.vsid, ours.flow_id, ours.inner_ethertype) == (vsid, flow_id, 0x0800)
    eth_dst, eth_src, ip_src, ip_dst, sport, dport, payload = inner
    assert bytes(ours.inner[:12]) == eth_dst + eth_src
    inner_ip = parse_inner_ipv4(ours.inner, 14)
    assert (inner_ip.src, inner_ip.dst, inner_ip.protocol) == (ip_src, ip_dst, 17)
    l4 = ours.inner[14 + inner_ip.header_length : 14 + inner_ip.total_length]
    header = parse_udp(l4)
    assert (header.src_port, header.dst_port, header.length) == (sport, dport, 8 + len(payload))
    assert bytes(l4[8:]) == payload


@OSKEN_EXAMPLES
@given(st.sampled_from([4, 6]), vsids, st.integers(0, 255), st.data())
def test_osken_reads_our_nvgre(outer_version, vsid, flow_id, data) -> None:
    if outer_version == 4:
        src, dst = data.draw(ipv4_addrs), data.draw(ipv4_addrs)
        datagram = encapsulate_ipv4(src, dst, vsid, flow_id, INNER_ICMP)
        eth = build_ethernet(bytes(6), bytes(6), 0x0800)
        text = ipaddress.IPv4Address
    else:
        src, dst = data.draw(ipv6_addrs), data.draw(ipv6_addrs)
        datagram = encapsulate_ipv6(src, dst, vsid, flow_id, INNER_ICMP)
        eth = build_ethernet(bytes(6), bytes(6), 0x86DD)
        text = ipaddress.IPv6Address
    pkt = packet.Packet(eth + datagram)
    outer = pkt.get_protocol(ipv4.ipv4 if outer_version == 4 else ipv6.ipv6)
    assert (outer.src, outer.dst) == (str(text(src)), str(text(dst)))
    if outer_version == 4:
        assert (outer.proto, outer.flags, outer.total_length) == (47, 2, len(datagram))
    else:
        assert (outer.nxt, outer.payload_length) == (47, len(datagram) - 40)
    g = pkt.get_protocol(gre.gre)
    assert (g.protocol, g.version, g.checksum, g.seq_number) == (0x6558, 0, None, None)
    assert (g.vsid, g.flow_id, g.key) == (vsid, flow_id, (vsid << 8) | flow_id)
    inner_eth = pkt.get_protocols(ethernet.ethernet)[1]
    assert (inner_eth.dst, inner_eth.src) == ("02:aa:00:00:00:02", "02:aa:00:00:00:01")
    inner_ip = pkt.get_protocols(ipv4.ipv4)[-1]
    assert (inner_ip.src, inner_ip.dst, inner_ip.proto) == ("10.10.10.1", "10.10.10.2", 1)
