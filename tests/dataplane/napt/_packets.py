"""Packets for the NAPT tests, built and checked by scapy (the independent oracle:
a checksum is right when scapy, told to recompute it, writes the same bytes)."""

from __future__ import annotations

import ipaddress

from scapy.all import ICMP, IP, TCP, UDP, Packet, raw

from gateway.dataplane.napt import Napt, Session, Tenant, Timeouts, napt_inbound, napt_outbound
from gateway.errors import Drop
from gateway.wire import IPPROTO_UDP, build_ipv4, build_udp_v4

EXT = "203.0.113.10"  # the NAT's external addresses (documentation range)
EXT2 = "203.0.113.11"
REMOTE = "203.0.113.1"  # a server on the internet
ROUTER = "198.51.100.1"  # a router on the way there
CA = "10.10.10.11"  # a tenant VM (blue1 and red1 share it: overlapping tenants)
BLUE, RED = "{11111111-2222-3333-4444-000000005010}", "{11111111-2222-3333-4444-000000005011}"
# Short timeouts, distinct so a test can tell which one applied.
SHORT = Timeouts(
    tcp_syn_sent_s=12,
    tcp_syn_recv_s=6,
    tcp_established_s=1000,
    tcp_fin_wait_s=13,
    tcp_close_wait_s=7,
    tcp_last_ack_s=3,
    tcp_time_wait_s=14,
    tcp_close_s=1,
    udp_unreplied_s=5,
    udp_stream_s=20,
    icmp_s=9,
)


def a(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def table(**kwargs: object) -> tuple[Napt, Tenant, Tenant]:
    kwargs.setdefault("seed", 7)
    kwargs.setdefault("timeouts", SHORT)
    napt = Napt([a(EXT)], **kwargs)  # type: ignore[arg-type]
    return napt, napt.tenant(BLUE, log=True), napt.tenant(RED)


def tcp(
    src: str, dst: str, sport: int, dport: int, flags: str = "A", payload: bytes = b""
) -> bytearray:
    return bytearray(
        raw(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / payload)
    )


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"x") -> bytearray:
    return bytearray(raw(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload))


def fast_udp(src: str, dst: str, sport: int, dport: int) -> bytearray:
    """A UDP datagram built by the project's own codec: for tests that build
    thousands and check no checksum."""
    segment = build_udp_v4(a(src), a(dst), sport, dport, b"x")
    return bytearray(build_ipv4(a(src), a(dst), IPPROTO_UDP, len(segment)) + segment)


def echo(src: str, dst: str, ident: int, reply: bool = False, seq: int = 1) -> bytearray:
    kind = "echo-reply" if reply else "echo-request"
    return bytearray(raw(IP(src=src, dst=dst) / ICMP(type=kind, id=ident, seq=seq) / b"ping"))


def out(napt: Napt, tenant: Tenant, packet: bytearray, now: float) -> Session | Drop:
    return napt_outbound(napt, tenant, memoryview(packet), now)


def into(napt: Napt, packet: bytearray, now: float) -> Session | Drop:
    return napt_inbound(napt, memoryview(packet), now)


def recomputed(packet: Packet) -> bytes:
    """``packet`` with scapy's own checksums in every layer that has one (a UDP
    checksum of 0, "none", kept)."""
    copy = packet.copy()
    for layer in (IP, TCP, ICMP):
        if layer in copy:
            del copy[layer].chksum
    if UDP in copy and copy[UDP].chksum != 0:
        del copy[UDP].chksum
    return raw(copy)


def scapy_valid(data: bytes | bytearray) -> bool:
    """Every checksum of a whole datagram is what scapy computes."""
    return recomputed(IP(bytes(data))) == bytes(data)
