"""A gateway's NAT for the fuzzer: its state before each input, the internet's seeds,
and what the oracle reads of it.

Every feed of an input meets the same NAT (``NatState.install``): the node's table,
built once per bench with a fixed seed for its ports, holding a few sessions that
tenants opened (per routing domain with a route to ``nat``, from one of its CAs: UDP,
a TCP SYN, an ICMP echo, and a UDP session long idle, expired but not yet collected);
a feed that changed it gets a fresh copy before the next. So the second feed, the
cold data plane and the optioned twin see what the first saw (a session the first
opened does not turn the second's reply into a translation), and an input from the
internet can be a reply to a session, or an error quoting one.

``external_seeds``: what the internet sends into the external TAP: each session's
reply (from the far end, to the NAT's address and port), with TTL 1, oversized with
DF set and clear; ICMP errors quoting what the session sent (port unreachable,
fragmentation needed, time exceeded, from the far end or a router); forged ones (from
another port, to a port no session holds, to an address not the NAT's, a SYN to a
port forward); ARP for each NAT address and for another, replies, broadcast, another
MAC, IPv6.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Final

from gateway.dataplane import GatewayNode, GatewayTables
from gateway.dataplane.gateway_tables import ExternalTap
from gateway.dataplane.napt import Napt, Session, in_key, napt_outbound
from gateway.errors import Drop
from gateway.policy import NextHopKind, RecordType
from gateway.wire import (
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    BROADCAST_MAC,
    ETH_HEADER_SIZE,
    ETHERTYPE_IPV4,
    ICMP_CODE_FRAGMENTATION_NEEDED,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_ADDR_SIZE,
    IPV4_FLAG_DF,
    ZERO_MAC,
    build_ethernet,
    build_icmp_echo,
    build_icmp_time_exceeded,
    build_icmp_unreachable,
    build_ipv4,
    build_tcp_v4,
    build_udp_v4,
)

from .frames import SPARE_V6, arp_frame, ipv6_frame

INTERNET_MAC: Final = bytes.fromhex("02c0000000ee")  # the internet router's NIC
FAR: Final = bytes([198, 51, 100, 2])  # the server tenants' sessions go to
ROUTER: Final = bytes([198, 51, 100, 1])  # a router on the way, sending errors
SESSION_AGE: Final = 1.0  # seconds before the input that the live sessions were opened
LONG_IDLE: Final = 1e6  # seconds before it that the expired one was
_PAYLOAD: Final = bytes(range(24))
_TCP_SYN, _TCP_SYN_ACK = 0x02, 0x12
_PORTS: Final = {IPPROTO_UDP: (40000, 7), IPPROTO_TCP: (40001, 80), IPPROTO_ICMP: (0x1234, 0)}
_PORT_UNREACHABLE: Final = 3
_PLANES: Final = 4  # data planes whose copies are kept: a chunk's two, and room
_SEED: Final = 1  # the NAT's port allocation: the same in every data plane


def nat_domains(tables: GatewayTables) -> frozenset[str]:
    """The routing domains with a route to ``nat``: the only ones whose packets may
    leave by the external TAP."""
    return frozenset(
        rdid
        for rdid, served in tables.table.served.items()
        if any(route.next_hop.kind is NextHopKind.NAT for route in served.routes)
    )


def gateway_taps(tables: GatewayTables) -> tuple:
    """Every TAP a gateway reads: its routing domains', then the external one."""
    external = tables.external
    return tables.taps if external is None else (*tables.taps, external)


def _tenant_packet(protocol: int, ca: bytes, flags: int = _TCP_SYN) -> bytearray:
    """What a tenant's VM sends to ``FAR`` (an IPv4 packet, no Ethernet header)."""
    sport, dport = _PORTS[protocol]
    if protocol == IPPROTO_UDP:
        body = build_udp_v4(ca, FAR, sport, dport, _PAYLOAD)
    elif protocol == IPPROTO_TCP:
        body = build_tcp_v4(ca, FAR, sport, dport, flags=flags)
    else:
        body = build_icmp_echo(sport, 1, _PAYLOAD)
    return bytearray(build_ipv4(ca, FAR, protocol, len(body), flags=IPV4_FLAG_DF) + body)


@dataclass(frozen=True)
class Opened:
    """A session a tenant opened before the input: the packet as it left, translated."""

    session: Session
    sent: bytes  # the IPv4 packet as the internet saw it


class NatState:
    """The NAT every feed of an input starts from (module docstring)."""

    def __init__(self, probe: GatewayNode, now: float) -> None:
        tables = probe.tables
        self.external: ExternalTap | None = tables.external
        self.opened: list[Opened] = []
        self.prepared: Napt | None = None
        self._copies: dict[int, tuple[Napt, tuple[int, ...]]] = {}  # by data plane
        self._rng_state: tuple = ()
        napt = probe.napt
        if napt is None or self.external is None:
            return
        napt = Napt(
            napt.pool.addresses,
            max_sessions=napt.max_sessions,
            timeouts=napt.timeouts,
            ports=napt.pool.ports,
            seed=_SEED,
        )
        probe.napt = napt
        probe.adopt(tables)  # the node's tenants and port forwards, in this table
        for domain in tables.domains.values():
            if domain.rdid not in nat_domains(tables):
                continue
            cas = [
                r.ca_bytes
                for r in tables.snapshot.records
                if r.rdid == domain.rdid
                and r.type is RecordType.STATIC
                and len(r.ca_bytes) == IPV4_ADDR_SIZE
                and not r.wildcard
            ]
            if not cas:
                continue
            for protocol in (IPPROTO_UDP, IPPROTO_TCP, IPPROTO_ICMP):
                packet = _tenant_packet(protocol, cas[0])
                session = napt_outbound(napt, domain.tenant, memoryview(packet), now - SESSION_AGE)
                assert not isinstance(session, Drop), session
                self.opened.append(Opened(session, bytes(packet)))
            packet = _tenant_packet(IPPROTO_UDP, cas[-1])
            packet[20:22] = b"\x9c\x99"  # source port 40089 (its checksum not needed)
            idle = napt_outbound(napt, domain.tenant, memoryview(packet), now - LONG_IDLE)
            assert not isinstance(idle, Drop), idle
            self.opened.append(Opened(idle, bytes(packet)))
        self.prepared = napt
        allocator = next(iter(napt.pool.allocators.values()))
        self._rng_state = allocator._random.__self__.getstate()  # type: ignore[attr-defined]

    def install(self, plane: GatewayNode) -> None:
        """Give ``plane`` the prepared NAT: the copy it has, if no feed changed it
        since, else a new copy (its tenants attached to the routing domains)."""
        if self.prepared is None:
            return
        copies = self._copies
        if id(plane) not in copies and len(copies) >= _PLANES:
            copies.clear()  # the planes of earlier chunks: gone, their copies with them
        napt, mark = copies.get(id(plane), (None, ()))
        if napt is None or plane.napt is not napt or _mark(napt) != mark:
            napt = self._copy()
            self._copies[id(plane)] = napt, _mark(napt)
        plane.napt = napt
        for domain in plane.tables.domains.values():
            domain.tenant = napt.tenants[domain.rdid]

    def _copy(self) -> Napt:
        """A copy of the prepared NAT, down to its port allocators' random state: a
        deep copy leaves their bound ``random`` methods on the prepared one's
        generator, which would move on with every copy's allocations."""
        napt = copy.deepcopy(self.prepared)
        assert napt is not None
        rng = random.Random()
        rng.setstate(self._rng_state)
        for allocator in napt.pool.allocators.values():
            allocator._random = rng.random
        return napt

    def external_seeds(self) -> list[tuple[str, bytes]]:
        """What the internet sends into the external TAP (module docstring)."""
        tap = self.external
        if tap is None:
            return []
        gw, me = tap.mac, INTERNET_MAC
        seeds = [
            (
                "ARP for another",
                arp_frame(BROADCAST_MAC, me, ARP_OP_REQUEST, tap.next_hop, ZERO_MAC, FAR),
            ),
            ("ARP reply", arp_frame(gw, me, ARP_OP_REPLY, tap.next_hop, gw, tap.own_ip)),
            (
                "ARP reply, broadcast",
                arp_frame(BROADCAST_MAC, me, ARP_OP_REPLY, tap.next_hop, gw, tap.own_ip),
            ),
            ("IPv6", ipv6_frame(gw, me, SPARE_V6, SPARE_V6)),
        ]
        for address in tap.addresses:
            request = arp_frame(BROADCAST_MAC, me, ARP_OP_REQUEST, tap.next_hop, ZERO_MAC, address)
            seeds.append(("ARP for a NAT address", request))
            seeds.append(
                (
                    "SYN to a port forward",
                    _frame(gw, _reply(IPPROTO_TCP, FAR, 50000, address, 80, _TCP_SYN)),
                )
            )
        for opened in self.opened:
            seeds += _about(gw, opened)
        return seeds


def _mark(napt: Napt) -> tuple[int, ...]:
    """What a feed changes in a NAT when it changes anything a verdict reads."""
    return (
        napt.opened,
        napt.ended,
        napt.count,
        sum(s.in_packets + s.out_packets + s.state for s in napt.by_in.values()),
    )


def _frame(dst_mac: bytes, packet: bytes, src_mac: bytes = INTERNET_MAC) -> bytes:
    return build_ethernet(dst_mac, src_mac, ETHERTYPE_IPV4) + packet


def _reply(
    protocol: int,
    src: bytes,
    sport: int,
    dst: bytes,
    dport: int,
    flags: int = _TCP_SYN_ACK,
    *,
    ttl: int = 64,
    payload: bytes = _PAYLOAD,
    df: bool = True,
) -> bytes:
    if protocol == IPPROTO_UDP:
        body = build_udp_v4(src, dst, sport, dport, payload)
    elif protocol == IPPROTO_TCP:
        body = build_tcp_v4(src, dst, sport, dport, flags=flags)
    else:
        body = build_icmp_echo(dport, 1, payload, reply=True)
    flags_df = IPV4_FLAG_DF if df else 0
    return build_ipv4(src, dst, protocol, len(body), ttl=ttl, flags=flags_df) + body


def _about(gw: bytes, opened: Opened) -> list[tuple[str, bytes]]:
    """The internet's frames about one session: replies, errors, forgeries."""
    session, sent = opened.session, opened.sent
    m = session.mapping
    protocol, remote, rport = session.protocol, session.remote, session.remote_port
    ext, eport = m.ext_addr, m.ext_port
    if protocol == IPPROTO_ICMP:
        rport = 0
    reply = _reply(protocol, remote, rport, ext, eport)
    big = _PAYLOAD * 63  # 1478 bytes of IPv4 below: too big for a VSID (1458), fits the TAP
    seeds = [
        ("reply", _frame(gw, reply)),
        ("TTL 1 reply", _frame(gw, _reply(protocol, remote, rport, ext, eport, ttl=1))),
        ("reply from another port", _frame(gw, _reply(protocol, remote, rport + 1, ext, eport))),
        ("reply to another port", _frame(gw, _reply(protocol, remote, rport, ext, eport ^ 0x8000))),
        ("reply to another MAC", _frame(INTERNET_MAC, reply)),
        ("reply, broadcast", _frame(BROADCAST_MAC, reply)),
    ]
    if protocol != IPPROTO_TCP:
        for df in (True, False):
            packet = _reply(protocol, remote, rport, ext, eport, payload=big[:1450], df=df)
            seeds.append(("oversized reply", _frame(gw, packet)))
    unreachable = build_icmp_unreachable(_PORT_UNREACHABLE, sent)
    too_big = build_icmp_unreachable(ICMP_CODE_FRAGMENTATION_NEEDED, sent, 1400)
    for what, icmp, src in [
        ("port unreachable", unreachable, remote),
        ("fragmentation needed", too_big, ROUTER),
        ("time exceeded", build_icmp_time_exceeded(sent), ROUTER),
    ]:
        packet = build_ipv4(src, ext, IPPROTO_ICMP, len(icmp)) + icmp
        seeds.append((what, _frame(gw, packet)))
    return seeds


def inbound_session(napt: Napt | None, frame: bytes) -> Session | None:
    """The session an IPv4 frame from the internet belongs to, read from the NAT's
    table by its inbound key (RFC 4787: protocol, NAT address and port, remote address
    and port; an echo reply's identifier is the port; an ICMP error's, that of the
    datagram it quotes, which left from the NAT), or None. Read after the feed, so a
    session a port forward opened for it is there."""
    ip = ETH_HEADER_SIZE
    if napt is None or len(frame) < ip + 28 or frame[ip] >> 4 != 4:
        return None
    ihl = (frame[ip] & 0x0F) * 4
    protocol, src, dst = frame[ip + 9], frame[ip + 12 : ip + 16], frame[ip + 16 : ip + 20]
    l4 = ip + ihl
    if protocol == IPPROTO_ICMP and frame[l4] in _ICMP_ERRORS:
        quote = l4 + 8
        if len(frame) < quote + 28 or frame[quote] >> 4 != 4:
            return None
        qihl = (frame[quote] & 0x0F) * 4
        qsrc, qdst = frame[quote + 12 : quote + 16], frame[quote + 16 : quote + 20]
        if qsrc != dst:
            return None  # the quote did not leave from where the error is sent
        return _by_in(napt, frame[quote + 9], qsrc, qdst, frame, quote + qihl, out=True)
    return _by_in(napt, protocol, dst, src, frame, l4, out=False)


_ICMP_ERRORS: Final = frozenset((3, 11, 12))


def _by_in(
    napt: Napt, protocol: int, ext: bytes, remote: bytes, frame: bytes, l4: int, *, out: bool
) -> Session | None:
    """The session of (protocol, NAT address, remote) whose ports are at ``l4``: a
    datagram that went ``out`` (its source port is the NAT's), or came in."""
    if len(frame) < l4 + 8:
        return None
    first, second = (
        int.from_bytes(frame[l4 : l4 + 2], "big"),
        int.from_bytes(frame[l4 + 2 : l4 + 4], "big"),
    )
    if protocol == IPPROTO_ICMP:
        key = in_key(protocol, ext, int.from_bytes(frame[l4 + 4 : l4 + 6], "big"), remote, 0)
    elif protocol in (IPPROTO_TCP, IPPROTO_UDP):
        key = (
            in_key(protocol, ext, first, remote, second)
            if out
            else in_key(protocol, ext, second, remote, first)
        )
    else:
        return None
    return napt.by_in.get(key)
