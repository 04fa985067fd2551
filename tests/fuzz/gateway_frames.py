"""Valid frames for a gateway node's entry points, as ``frames.py`` builds a host's.

``from_provider``: NVGRE to the gateway's PA from each sender of each routing domain it
serves (a VM in the interface's VSID, or one its host routed from another VSID, with
the router MAC as source), to every kind of destination the domain's table has: a
corp address on each TAP, a neighbour's network, another VSID, a VM that routes, the
gateway's own CA (echo), off every route; with TTL 1, oversized with DF set and clear,
TCP SYNs with an MSS option, ARP and IPv6 inside. ``from_tap``: what a corp side
sends into each TAP: ARP for the gateway's address and for others, replies (asked
for or not: the neighbour states decide), and IPv4 to the gateway's MAC toward each of
those destinations, broadcast, to another MAC, IPv6. The external TAP's, what the
internet sends, come from ``gateway_nat.py``.
"""

from __future__ import annotations

import random
from typing import Final

from gateway.dataplane import GatewayTables, router_mac
from gateway.policy import CompiledRecord, Snapshot
from gateway.wire import (
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    BROADCAST_MAC,
    IPV4_ADDR_SIZE,
    ZERO_MAC,
    build_ethernet,
    build_ipv4,
    build_tcp_v4,
)

from .frames import (
    BIG_PAYLOAD,
    OFF_SUBNET,
    PROVIDER,
    SENDERS,
    SPARE_V6,
    Seed,
    _encapsulate,
    arp_frame,
    datagram_fields,
    frame_fields,
    ipv4_frame,
    ipv6_frame,
)
from .gateway_nat import NatState

TAP: Final = "from_tap"
MAX_TAP_SEEDS: Final = 60  # per TAP
MAX_PROVIDER_SEEDS: Final = 240  # per node
MAX_INTERNET_SEEDS: Final = 120  # the external TAP's
CORP_MAC: Final = bytes.fromhex("02c000000002")  # the corp side's NIC on every TAP
_MSS_1460: Final = b"\x02\x04\x05\xb4"


def corp_address(own: bytes) -> bytes:
    """A corp host on the TAP's subnet: the address after the gateway's own."""
    return (int.from_bytes(own, "big") + 1).to_bytes(IPV4_ADDR_SIZE, "big")


def _syn(dst_mac: bytes, src_mac: bytes, src: bytes, dst: bytes) -> bytes:
    segment = build_tcp_v4(src, dst, 40000, 443, flags=0x02, options=_MSS_1460)
    return (
        build_ethernet(dst_mac, src_mac, 0x0800) + build_ipv4(src, dst, 6, len(segment)) + segment
    )


class GatewaySeeds:
    """Seeds for one gateway node of one snapshot."""

    def __init__(self, snapshot: Snapshot, tables: GatewayTables) -> None:
        self.snapshot = snapshot
        self.tables = tables
        self.rng = random.Random(f"seeds:{tables.node.name}:{len(snapshot.records)}")

    def destinations(self, rdid: str) -> list[bytes]:
        """Addresses worth sending to in a routing domain: a corp host on each of its
        TAPs and past each neighbour, its CAs (the gateway's own among them), one off
        every route, and the group and broadcast edges."""
        found = [OFF_SUBNET, bytes([224, 0, 0, 1]), bytes([192, 168, 50, 9])]
        for tap in self.tables.taps:
            if tap.rdid == rdid:
                found += [corp_address(tap.own_ip), tap.own_ip, tap.broadcast]
        for route in self.tables.table.served[rdid].routes:
            found.append(route.destination.network_address.packed)
        found += [
            r.ca_bytes
            for r in self.snapshot.records
            if r.rdid == rdid and len(r.ca_bytes) == IPV4_ADDR_SIZE and not r.wildcard
        ]
        return [address for address in dict.fromkeys(found) if len(address) == IPV4_ADDR_SIZE]

    def provider_seeds(self) -> list[Seed]:
        seeds: list[tuple[str, bytes]] = []
        tables = self.tables
        for (vsid, mac), interface in tables.port_by_key.items():
            domain = interface.domain
            if domain.pa is None or len(domain.pa) != IPV4_ADDR_SIZE:
                continue
            senders = [
                r
                for r in self.snapshot.records
                if r.rdid == interface.rdid and not r.wildcard and r.pa_bytes != domain.pa
            ]
            if len(senders) > SENDERS:
                senders = self.rng.sample(senders, SENDERS)
            targets = self.destinations(interface.rdid)
            for n, sender in enumerate(senders):
                seeds += self._from(sender, vsid, bytes(mac), domain.pa, targets, n)
        return self._sample(PROVIDER, -1, seeds, MAX_PROVIDER_SEEDS)

    def _from(
        self,
        sender: CompiledRecord,
        vsid: int,
        mac: bytes,
        pa: bytes,
        targets: list[bytes],
        n: int,
    ) -> list[tuple[str, bytes]]:
        routed = sender.vsid != vsid
        src_mac = router_mac(vsid) if routed else sender.mac_bytes
        src = sender.ca_bytes if len(sender.ca_bytes) == IPV4_ADDR_SIZE else OFF_SUBNET
        what = "host-routed NVGRE to the gateway" if routed else "NVGRE to the gateway"
        seeds = []
        for k, dst in enumerate(targets):
            inner = ipv4_frame(mac, src_mac, src, dst, (n + k) % 3)
            seeds.append((what, _encapsulate(sender.pa_bytes, pa, vsid, inner)))
        dst = targets[n % len(targets)]
        extra = [
            ("TTL 1", ipv4_frame(mac, src_mac, src, dst, 1, ttl=1)),
            ("oversized", ipv4_frame(mac, src_mac, src, dst, 1, payload=BIG_PAYLOAD)),
            ("oversized", ipv4_frame(mac, src_mac, src, dst, 1, payload=BIG_PAYLOAD, df=False)),
            ("SYN", _syn(mac, src_mac, src, dst)),
            ("ARP", arp_frame(mac, src_mac, ARP_OP_REQUEST, src, ZERO_MAC, dst)),
            ("IPv6", ipv6_frame(mac, src_mac, SPARE_V6, SPARE_V6)),
        ]
        for what, inner in extra:
            seeds.append((f"{what} to the gateway", _encapsulate(sender.pa_bytes, pa, vsid, inner)))
        return seeds

    def tap_seeds(self, index: int) -> list[Seed]:
        tap = self.tables.taps[index]
        own, corp = tap.own_ip, corp_address(tap.own_ip)
        gw, me = tap.mac, CORP_MAC
        seeds = [
            (
                "ARP for the gateway",
                arp_frame(BROADCAST_MAC, me, ARP_OP_REQUEST, corp, ZERO_MAC, own),
            ),
            ("ARP for another", arp_frame(BROADCAST_MAC, me, ARP_OP_REQUEST, corp, ZERO_MAC, corp)),
            ("ARP reply", arp_frame(gw, me, ARP_OP_REPLY, corp, gw, own)),
            ("ARP reply, broadcast", arp_frame(BROADCAST_MAC, me, ARP_OP_REPLY, corp, gw, own)),
            ("broadcast", ipv4_frame(BROADCAST_MAC, me, corp, OFF_SUBNET, 1)),
            ("to another MAC", ipv4_frame(me, me, corp, OFF_SUBNET, 1)),
            ("IPv6", ipv6_frame(gw, me, SPARE_V6, SPARE_V6)),
        ]
        for k, dst in enumerate(self.destinations(tap.rdid)):
            seeds.append(("from the corp side", ipv4_frame(gw, me, corp, dst, k % 3)))
            if k % 3 == 0:
                seeds += [
                    ("TTL 1 from the corp side", ipv4_frame(gw, me, corp, dst, 1, ttl=1)),
                    ("oversized", ipv4_frame(gw, me, corp, dst, 1, payload=BIG_PAYLOAD)),
                    ("oversized", ipv4_frame(gw, me, corp, dst, 1, payload=BIG_PAYLOAD, df=False)),
                    ("SYN from the corp side", _syn(gw, me, corp, dst)),
                ]
        return self._sample(TAP, index, seeds, MAX_TAP_SEEDS)

    def _sample(
        self, entry: str, index: int, built: list[tuple[str, bytes]], bound: int
    ) -> list[Seed]:
        kept = built if len(built) <= bound else self.rng.sample(built, bound)
        fields = datagram_fields if entry == PROVIDER else frame_fields
        return [Seed(entry, index, data, fields(data), what) for what, data in kept if data]


def gateway_seeds_for(
    snapshot: Snapshot, tables: GatewayTables, nat: NatState
) -> dict[str, list[Seed]]:
    """Every entry point's seeds for the gateway node ``tables`` belongs to; the
    external TAP's (the internet's, ``gateway_nat.py``) come after the corp TAPs'."""
    builder = GatewaySeeds(snapshot, tables)
    taps = [seed for index in range(len(tables.taps)) for seed in builder.tap_seeds(index)]
    internet = nat.external_seeds()
    taps += builder._sample(TAP, len(tables.taps), internet, MAX_INTERNET_SEEDS)
    return {PROVIDER: builder.provider_seeds(), TAP: taps}


def neighbour_addresses(tables: GatewayTables) -> dict[str, list[bytes]]:
    """Per TAP, the neighbours a seed's packet may be waiting for: the corp host, and
    each node route's next hop on that TAP; on the external TAP, the internet router."""
    found: dict[str, list[bytes]] = {tap.name: [corp_address(tap.own_ip)] for tap in tables.taps}
    if tables.external is not None:
        found[tables.external.name] = [tables.external.next_hop]
    table = tables.table
    for rdid, domain in table.served.items():
        for route in domain.routes:
            hop = table.route(rdid, route.destination.network_address.packed)
            if hop is not None and hop.tap is not None and hop.next_hop_bytes is not None:
                found[hop.tap].append(hop.next_hop_bytes)
    return {name: list(dict.fromkeys(addresses)) for name, addresses in found.items()}
