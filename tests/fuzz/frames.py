"""Valid frames for each entry point of a node, built with gateway/wire's builders.

They are what mutation starts from: each path a real deployment sends (VM to VM on
one host, to a remote host, routed across VSIDs, ARP for each CA and gateway, NVGRE
from each remote PA to each local port, IP-Rewrite and ARP on the provider link),
so that a few flipped bits land deep in the data plane instead of at the first
length check. Each seed carries the offsets and sizes of its header fields, so the
mutator can set a VSID, a MAC or an address to another value of the policy.

Per-node seeds are sampled down to a bound (``MAX_SEEDS``) with a generator seeded by
the target's name, so the maximal policy's thousands of pairs cost no more than a
small one's and a campaign replays exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from gateway.dataplane import HostPort, HostTables, router_mac
from gateway.dataplane import link_mac as provider_mac  # node number -> link MAC
from gateway.policy import CompiledRecord, RecordType, Rule, Snapshot
from gateway.wire import (
    ARP_OP_REPLY,
    BROADCAST_MAC,
    ETH_HEADER_SIZE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_FLAG_DF,
    IPV4_HEADER_SIZE,
    IPV6_HEADER_SIZE,
    NVGRE_HEADER_V6_SIZE,
    ZERO_MAC,
    build_arp,
    build_ethernet,
    build_icmp_echo,
    build_ipv4,
    build_ipv6,
    build_tcp_v4,
    build_udp_v4,
    encapsulate_ipv4,
    encapsulate_ipv6,
)

PORT, PROVIDER, LINK = "from_port", "from_provider", "from_provider_link"
ENTRIES: Final = (PORT, PROVIDER, LINK)
MAX_SEEDS: Final = {PORT: 24, PROVIDER: 240, LINK: 160}  # per port / per node / per node
SENDERS: Final = 16  # records of a port's routing domain that seeds are built from, at most
OFF_SUBNET: Final = bytes([198, 51, 100, 7])  # a destination no tenant subnet holds
SPARE_V4: Final = bytes([10, 99, 0, 1])  # an inner IPv4 address for IPv6-only records
SPARE_V6: Final = bytes.fromhex("fd00000000000000000000000000beef")
BIG_PAYLOAD: Final = 1500  # a UDP payload whose frame exceeds the port MTU (1458)

Fields = tuple[tuple[int, int], ...]  # (offset, size) of each header field


@dataclass(frozen=True, slots=True)
class Seed:
    entry: str  # PORT, PROVIDER or LINK
    port: int  # index into the node's ports for PORT, else -1
    data: bytes
    fields: Fields
    what: str  # which path it exercises, for reports


def _ethernet_fields(at: int) -> Fields:
    return ((at, 6), (at + 6, 6), (at + 12, 2))


def _ipv4_fields(at: int) -> Fields:
    return (
        *((at, 1), (at + 1, 1), (at + 2, 2), (at + 4, 2), (at + 6, 2), (at + 8, 1)),
        *((at + 9, 1), (at + 10, 2), (at + 12, 4), (at + 16, 4)),
        *((at + 20, 2), (at + 22, 2), (at + 24, 2), (at + 26, 2)),  # ports/type, length, sum
    )


def _arp_fields(at: int) -> Fields:
    return (
        *((at, 2), (at + 2, 2), (at + 4, 1), (at + 5, 1), (at + 6, 2)),
        *((at + 8, 6), (at + 14, 4), (at + 18, 6), (at + 24, 4)),
    )


def _ipv6_fields(at: int) -> Fields:
    return ((at, 4), (at + 4, 2), (at + 6, 1), (at + 7, 1), (at + 8, 16), (at + 24, 16))


def _gre_fields(at: int) -> Fields:
    return ((at, 2), (at + 2, 2), (at + 4, 3), (at + 7, 1))


def frame_fields(frame: bytes, at: int = 0) -> Fields:
    """The header fields of an Ethernet frame starting at ``at``, by its ethertype."""
    ethertype = int.from_bytes(frame[at + 12 : at + 14], "big")
    inner = at + ETH_HEADER_SIZE
    if ethertype == ETHERTYPE_ARP:
        return _ethernet_fields(at) + _arp_fields(inner)
    if ethertype == ETHERTYPE_IPV6:
        return _ethernet_fields(at) + _ipv6_fields(inner)
    return _ethernet_fields(at) + _ipv4_fields(inner)


def datagram_fields(datagram: bytes) -> Fields:
    """The fields of an NVGRE datagram, outer IP header first."""
    if datagram[0] >> 4 == 6:
        return (
            _ipv6_fields(0)
            + _gre_fields(IPV6_HEADER_SIZE)
            + frame_fields(datagram, NVGRE_HEADER_V6_SIZE)
        )
    return _ipv4_fields(0)[:10] + _gre_fields(IPV4_HEADER_SIZE) + frame_fields(datagram, 28)


def ipv4_frame(
    dst_mac: bytes,
    src_mac: bytes,
    src: bytes,
    dst: bytes,
    kind: int,
    *,
    ttl: int = 64,
    payload: int = 24,
    df: bool = True,
) -> bytes:
    """An Ethernet frame with ICMP echo (kind 0), UDP (1) or TCP (2) over IPv4."""
    data = bytes(range(256)) * (payload // 256 + 1)
    if kind == 0:
        protocol, body = IPPROTO_ICMP, build_icmp_echo(7, kind, data[:payload])
    elif kind == 1:
        protocol, body = IPPROTO_UDP, build_udp_v4(src, dst, 40000, 53, data[:payload])
    else:
        protocol, body = IPPROTO_TCP, build_tcp_v4(src, dst, 40000, 443, data[:payload])
    flags = IPV4_FLAG_DF if df else 0
    header = build_ipv4(src, dst, protocol, len(body), ttl=ttl, ident=kind, flags=flags)
    return build_ethernet(dst_mac, src_mac, ETHERTYPE_IPV4) + header + body


def arp_frame(dst_mac: bytes, src_mac: bytes, op: int, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    return build_ethernet(dst_mac, src_mac, ETHERTYPE_ARP) + build_arp(op, src_mac, spa, tha, tpa)


def ipv6_frame(dst_mac: bytes, src_mac: bytes, src: bytes, dst: bytes) -> bytes:
    udp = bytes(8)
    return build_ethernet(dst_mac, src_mac, ETHERTYPE_IPV6) + build_ipv6(src, dst, 17, 8) + udp


def link_macs(snapshot: Snapshot) -> dict[bytes, bytes]:
    """Each PA of the policy -> the provider-link MAC of the node that owns it."""
    return {
        pa.pa.packed: provider_mac(i)
        for i, node in enumerate(snapshot.policy.nodes)
        for pa in node.provider_addresses
    }


def _v4(address: bytes, spare: bytes = SPARE_V4) -> bytes:
    return address if len(address) == 4 else spare


class _Builder:
    """Seeds for one node of one snapshot."""

    def __init__(self, snapshot: Snapshot, tables: HostTables, node_index: int) -> None:
        self.snapshot = snapshot
        self.tables = tables
        self.node_index = node_index
        self.records = snapshot.records
        self.mac_of_pa = link_macs(snapshot)
        self.rng = random.Random(f"seeds:{tables.node.name}:{len(self.records)}")
        self.by_vsid: dict[int, list[CompiledRecord]] = {}
        self.by_rdid: dict[str, list[CompiledRecord]] = {}
        for record in self.records:
            self.by_vsid.setdefault(record.vsid, []).append(record)
            self.by_rdid.setdefault(record.rdid, []).append(record)

    def sample(self, entry: str, port: int, built: list[tuple[str, bytes]]) -> list[Seed]:
        """At most MAX_SEEDS[entry] of ``built`` (what, bytes), as seeds with their fields."""
        bound = MAX_SEEDS[entry]
        kept = built if len(built) <= bound else self.rng.sample(built, bound)
        fields = datagram_fields if entry == PROVIDER else frame_fields
        return [Seed(entry, port, data, fields(data), what) for what, data in kept if data]

    def port_seeds(self, index: int, port: HostPort) -> list[Seed]:
        seeds: list[tuple[str, bytes]] = []
        mac, ca = port.mac, _v4(port.ca)
        same_vsid = self.by_vsid[port.vsid]
        same_rdid = [r for r in self.by_rdid[port.rdid] if r.vsid != port.vsid][:SENDERS]
        targets = [r.ca_bytes for r in same_vsid if len(r.ca_bytes) == 4]
        if port.gateway_ca is not None:
            targets.append(_v4(port.gateway_ca))
        for target in [*targets, OFF_SUBNET, ca]:
            seeds.append(("arp request", arp_frame(BROADCAST_MAC, mac, 1, ca, ZERO_MAC, target)))
        seeds.append(("arp probe", arp_frame(BROADCAST_MAC, mac, 1, bytes(4), ZERO_MAC, ca)))
        seeds.append(("arp reply", arp_frame(mac, mac, ARP_OP_REPLY, ca, mac, ca)))
        for n, record in enumerate(same_vsid):
            dst = _v4(record.ca_bytes, OFF_SUBNET)
            what = "to a gateway" if record.type is RecordType.GATEWAY else "within the VSID"
            seeds.append((what, ipv4_frame(record.mac_bytes, mac, ca, dst, n % 3)))
        for n, record in enumerate(same_rdid):
            frame = ipv4_frame(port.router_mac, mac, ca, _v4(record.ca_bytes), n % 3)
            seeds.append(("routed across VSIDs", frame))
        others = [r for r in self.records if r.rdid != port.rdid][:4]
        for n, record in enumerate(others):
            frame = ipv4_frame(port.router_mac, mac, ca, _v4(record.ca_bytes), n % 3)
            seeds.append(("routed to another domain", frame))
        seeds.append(("routed off-subnet", ipv4_frame(port.router_mac, mac, ca, OFF_SUBNET, 0)))
        seeds.append(("routed, TTL 1", ipv4_frame(port.router_mac, mac, ca, OFF_SUBNET, 1, ttl=1)))
        seeds.append(("broadcast", ipv4_frame(BROADCAST_MAC, mac, ca, OFF_SUBNET, 1)))
        peer = same_vsid[0]
        for df in (True, False):
            frame = ipv4_frame(
                peer.mac_bytes, mac, ca, _v4(peer.ca_bytes), 1, payload=BIG_PAYLOAD, df=df
            )
            seeds.append(("oversized", frame))
        v6 = port.ca if len(port.ca) == 16 else SPARE_V6
        seeds.append(("ipv6", ipv6_frame(peer.mac_bytes, mac, v6, SPARE_V6)))
        return self.sample(PORT, index, seeds)

    def provider_seeds(self) -> list[Seed]:
        seeds: list[tuple[str, bytes]] = []
        tables = self.tables
        for port in tables.ports:
            senders = self.by_rdid[port.rdid]
            if len(senders) > SENDERS:
                senders = self.rng.sample(senders, SENDERS)
            for n, sender in enumerate(senders):
                routed = sender.vsid != port.vsid
                src_mac = port.router_mac if routed else sender.mac_bytes
                src = _v4(sender.ca_bytes)
                inner = ipv4_frame(port.mac, src_mac, src, _v4(port.ca), n % 3)
                what = "routed NVGRE" if routed else "NVGRE"
                seeds.append((what, _encapsulate(sender.pa_bytes, port.pa, port.vsid, inner)))
                if not routed and n % 4 == 0:
                    arp = arp_frame(port.mac, sender.mac_bytes, 1, src, ZERO_MAC, _v4(port.ca))
                    seeds.append(
                        ("ARP in NVGRE", _encapsulate(sender.pa_bytes, port.pa, port.vsid, arp))
                    )
                    v6 = ipv6_frame(port.mac, sender.mac_bytes, SPARE_V6, SPARE_V6)
                    seeds.append(
                        ("IPv6 in NVGRE", _encapsulate(sender.pa_bytes, port.pa, port.vsid, v6))
                    )
        pas = sorted(tables.local_pas)
        if pas and self.records:
            record = self.records[0]
            inner = ipv4_frame(BROADCAST_MAC, record.mac_bytes, _v4(record.ca_bytes), OFF_SUBNET, 0)
            seeds.append(
                ("broadcast NVGRE", _encapsulate(record.pa_bytes, pas[0], record.vsid, inner))
            )
            foreign = bytes([198, 18, 255, 254])
            seeds.append(
                ("to a foreign PA", _encapsulate(record.pa_bytes, foreign, record.vsid, inner))
            )
        return self.sample(PROVIDER, -1, seeds)

    def link_seeds(self) -> list[Seed]:
        seeds: list[tuple[str, bytes]] = []
        tables = self.tables
        own = provider_mac(self.node_index)
        remote = [
            r
            for r in self.records
            if r.rule is Rule.IP_REWRITE and r.pa_bytes not in tables.local_pas
        ]
        for pa in sorted(pa for pa in tables.rewrite_by_pa if len(pa) == 4):
            senders = remote if len(remote) <= SENDERS else self.rng.sample(remote, SENDERS)
            for n, sender in enumerate(senders):
                if len(sender.pa_bytes) != len(pa):
                    continue
                mac = self.mac_of_pa.get(sender.pa_bytes, BROADCAST_MAC[:5] + b"\x00")
                seeds.append(
                    (
                        "ARP request for a rewrite PA",
                        arp_frame(BROADCAST_MAC, mac, 1, sender.pa_bytes, ZERO_MAC, pa),
                    )
                )
                seeds.append(
                    (
                        "ARP reply from a rewrite PA",
                        arp_frame(own, mac, 2, sender.pa_bytes, own, pa),
                    )
                )
                seeds.append(("IP-Rewrite in", ipv4_frame(own, mac, sender.pa_bytes, pa, n % 3)))
            seeds.append(
                (
                    "IP-Rewrite in, unknown sender",
                    ipv4_frame(own, own[:5] + b"\x99", bytes([198, 18, 0, 99]), pa, 0),
                )
            )
        for pa in sorted(tables.local_pas):
            if len(pa) == 4 and pa not in tables.rewrite_by_pa:
                seeds.append(
                    (
                        "ARP for an NVGRE PA",
                        arp_frame(
                            BROADCAST_MAC,
                            own[:5] + b"\x98",
                            1,
                            bytes([198, 18, 0, 98]),
                            ZERO_MAC,
                            pa,
                        ),
                    )
                )
        seeds.append(
            (
                "IPv4 for someone else",
                ipv4_frame(
                    own, own[:5] + b"\x97", bytes([198, 18, 0, 97]), bytes([198, 18, 0, 96]), 1
                ),
            )
        )
        return self.sample(LINK, -1, seeds)


def _encapsulate(src_pa: bytes, dst_pa: bytes, vsid: int, inner: bytes) -> bytes:
    """NVGRE over the PAs' family; b"" when the two PAs are of different families."""
    if len(src_pa) != len(dst_pa):
        return b""
    if len(src_pa) == 4:
        return encapsulate_ipv4(src_pa, dst_pa, vsid, vsid & 0xFF, inner)
    return encapsulate_ipv6(src_pa, dst_pa, vsid, vsid & 0xFF, inner)


def seeds_for(snapshot: Snapshot, tables: HostTables, node_index: int) -> dict[str, list[Seed]]:
    """Every entry point's seeds for the node ``tables`` belongs to."""
    builder = _Builder(snapshot, tables, node_index)
    port_seeds = [s for i, p in enumerate(tables.ports) for s in builder.port_seeds(i, p)]
    return {PORT: port_seeds, PROVIDER: builder.provider_seeds(), LINK: builder.link_seeds()}


def tokens_for(
    snapshot: Snapshot, local: frozenset[bytes] | set[bytes], local_macs: set[bytes]
) -> dict[int, tuple[bytes, ...]]:
    """Values worth writing into a field of each size: the policy's own VSIDs, MACs and
    addresses (valid elsewhere, so they pass the first checks), the node's own
    addresses and MACs, and the edges."""
    records: tuple[CompiledRecord, ...] = snapshot.records
    vsids = sorted(snapshot.rdid_by_vsid)[:64]
    macs = {r.mac_bytes for r in records[:256]} | local_macs
    macs |= {router_mac(v) for v in vsids[:16]} | {BROADCAST_MAC, ZERO_MAC, provider_mac(0)}
    macs.add(bytes.fromhex("01005e000001"))
    v4 = {r.ca_bytes for r in records[:256]} | {r.pa_bytes for r in records[:256]}
    v4 |= set(local) | {bytes(4), b"\xff" * 4, bytes([224, 0, 0, 1]), OFF_SUBNET}
    v6 = {a for a in v4 if len(a) == 16} | {
        bytes(16),
        SPARE_V6,
        bytes.fromhex("ff02" + "00" * 13 + "01"),
    }
    v4 = {a for a in v4 if len(a) == 4}
    vsid_tokens = [v.to_bytes(3, "big") for v in vsids]
    vsid_tokens += [bytes(3), (4095).to_bytes(3, "big"), (4096).to_bytes(3, "big")]
    vsid_tokens += [b"\xff\xff\xff", b"\xff\xff\xfe", (4097).to_bytes(3, "big")]
    words = [0x0800, 0x0806, 0x86DD, 0x8100, 0x88A8, 0x9100, 0x6558, 0x2000, 0xA000]
    words += [0x3000, 0x2001, 0x6000, 0x2800, 0x2400, 0x0000, 0xFFFF, 0x0001, 0x0002]
    words += [IPV4_HEADER_SIZE, 0x4000, 0x2000, 0x1FFF, 0x0600, 0x05DC, 0x05B2]
    single = [0x45, 0x46, 0x4F, 0x44, 0x40, 0x55, 0x60, 0x00, 0x01, 0x06, 0x11, 0x2F, 0xFF, 0x80]
    return {
        1: tuple(bytes([b]) for b in single),
        2: tuple(w.to_bytes(2, "big") for w in words),
        3: tuple(vsid_tokens),
        4: tuple(sorted(v4)),
        6: tuple(sorted(macs)),
        16: tuple(sorted(v6)),
    }
