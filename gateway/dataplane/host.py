"""The host role's per-packet decisions: what a Hyper-V host's WNV filter does.

Two entry points, one per direction, both synchronous and socket-free:

* ``from_port``: a frame a VM sent on its TAP. ARP for a CA is answered here from the
  lookup records (it never leaves the host); IPv4 is switched within its VSID or
  routed between VSIDs of one routing domain through the subnet's gateway MAC, then
  delivered to a local port, encapsulated in NVGRE to the destination's PA, or sent
  IP-Rewritten (``rule: nat``) as plain IP.
* ``from_provider``: an NVGRE datagram from the provider network (outer IP header
  first); ``from_provider_link``: an Ethernet frame seen on the provider link, for the
  IP-Rewrite PAs that belong to the daemon rather than to the kernel (their ARP, and
  the rewritten packets addressed to them). Rewritten packets leave the same way,
  framed by the daemon after resolving the destination PA (``neighbors.py``).

Whatever leaves goes through an ``Output`` (the io layer's batcher, or a list in the
tests); whatever is refused bumps ``counters.drops[reason]`` and returns. Nothing
here raises on a packet's account: a wire ``BadPacket`` becomes a drop like any other.

Frames are given as writable memoryviews over the io layer's receive buffers and may
be modified in place (MACs and TTL when routing, addresses when rewriting); the
Output must consume them before the buffer is reused.
"""

from __future__ import annotations

from typing import Final

from gateway.dataplane._frame import IP as _IP
from gateway.dataplane._frame import IP_DST as _IP_DST
from gateway.dataplane._frame import IP_MIN_FRAME as _IP_MIN_FRAME
from gateway.dataplane._frame import IP_SRC as _IP_SRC
from gateway.dataplane._frame import IP_TOTAL_LENGTH as _IP_TOTAL_LENGTH
from gateway.dataplane.counters import Counters
from gateway.dataplane.from_provider import ProviderReceive
from gateway.dataplane.ip_rewrite import IpRewrite
from gateway.dataplane.neighbors import Neighbors
from gateway.dataplane.output import Output
from gateway.dataplane.tables import HostPort, HostTables, router_mac
from gateway.errors import BadPacket, Drop
from gateway.policy import RecordType, Rule, Snapshot
from gateway.wire import (
    ARP_OP_REQUEST,
    ETH_HEADER,
    ETH_HEADER_SIZE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_TEB,
    GRE_KEYED,
    ICMP_CODE_FRAGMENTATION_NEEDED,
    IPPROTO_ICMP,
    IPV4_ADDR_SIZE,
    NVGRE_FLAGS,
    build_arp_reply,
    build_ethernet,
    build_icmp_unreachable,
    build_ipv4,
    decrement_ttl,
    flow_id_of_frame,
    parse_arp,
    rewrite_ipv4_dst,
    rewrite_ipv4_src,
)

_IP_DF_BYTE: Final = _IP + 6
_DF_BIT: Final = 0x40  # in the flags byte
_UNSPECIFIED_V4: Final = bytes(4)


class HostDataplane(ProviderReceive, IpRewrite):
    """One node's data plane over the current snapshot; ``swap()`` replaces it whole.

    The two directions from the provider network live in their own modules
    (``from_provider.py``, ``ip_rewrite.py``); this class holds the state and the VM side.
    """

    __slots__ = ("counters", "neighbors", "node_name", "provider_mac", "tables")

    def __init__(
        self,
        snapshot: Snapshot,
        node_name: str,
        counters: Counters | None = None,
        provider_mac: bytes | None = None,
        tables: HostTables | None = None,
    ) -> None:
        self.node_name = node_name
        # The provider link's MAC: ARP for this node's IP-Rewrite PAs is answered with it.
        self.provider_mac = provider_mac
        self.counters = counters if counters is not None else Counters()
        self.tables = tables or HostTables(snapshot, node_name, self.counters)
        self.neighbors = Neighbors()

    def swap(self, snapshot: Snapshot) -> HostTables:
        """Adopt a new snapshot (between batches). Counters carry over by port name."""
        return self.adopt(HostTables(snapshot, self.node_name, self.counters))

    def adopt(self, tables: HostTables) -> HostTables:
        """Run on tables built elsewhere with this node's counters: the daemon builds
        them in the store's worker thread, since that costs O(policy), and adopts them
        between batches, which costs an attribute."""
        self.tables = tables
        return tables

    # ---------------------------------------------------------------- from a VM

    def from_port(self, port: HostPort, frame: memoryview, out: Output, now: float) -> None:
        drops = self.counters.drops
        if len(frame) < ETH_HEADER_SIZE:
            drops[Drop.INNER_TRUNCATED] += 1
            return
        dst_mac, src_mac, ethertype = ETH_HEADER.unpack_from(frame)
        if src_mac != port.mac:
            drops[Drop.SPOOFED_SOURCE] += 1
        elif ethertype == ETHERTYPE_IPV4:
            self._ipv4_from_port(port, frame, dst_mac, out, now)
        elif ethertype == ETHERTYPE_ARP:
            self._arp_from_port(port, frame, out)
        else:
            drops[Drop.UNSUPPORTED] += 1

    def _arp_from_port(self, port: HostPort, frame: memoryview, out: Output) -> None:
        counters = self.counters
        try:
            arp = parse_arp(frame, ETH_HEADER_SIZE)
        except BadPacket as bad:
            counters.drops[bad.reason] += 1
            return
        if arp.sender_mac != port.mac or arp.sender_ip not in (port.ca, _UNSPECIFIED_V4):
            counters.drops[Drop.SPOOFED_SOURCE] += 1
            return
        if arp.opcode != ARP_OP_REQUEST:
            counters.drops[Drop.ARP_UNANSWERED] += 1
            return
        counters.arp_requests += 1
        answer = self.tables.answers_arp_for(port, arp.target_ip)
        if answer is None:
            counters.drops[Drop.ARP_UNANSWERED] += 1
            return
        out.to_port(port, build_arp_reply(arp, answer))
        counters.arp_replies += 1

    def _ipv4_from_port(
        self, port: HostPort, frame: memoryview, dst_mac: bytes, out: Output, now: float
    ) -> None:
        counters = self.counters
        drops = counters.drops
        size = len(frame)
        if size < _IP_MIN_FRAME or frame[_IP] >> 4 != 4 or frame[_IP] & 0x0F < 5:
            drops[Drop.INNER_MALFORMED] += 1
            return
        # The IPv4 packet must fit its frame and hold its own header (RFC 1812 sec.
        # 5.2.2, what a router checks): a VM's packet is checked here, where it enters,
        # so the receiving host need not check it again per packet (from_provider.py).
        ip_total = frame[_IP_TOTAL_LENGTH] << 8 | frame[_IP_TOTAL_LENGTH + 1]
        if not (frame[_IP] & 0x0F) << 2 <= ip_total <= size - ETH_HEADER_SIZE:
            drops[Drop.INNER_MALFORMED] += 1
            return
        if bytes(frame[_IP_SRC:_IP_DST]) != port.ca:
            drops[Drop.SPOOFED_SOURCE] += 1
            return
        if size - ETH_HEADER_SIZE > port.mtu:
            self._too_big(port, frame, dst_mac, out)
            return
        tables = self.tables
        snapshot = tables.snapshot
        dst_ip = bytes(frame[_IP_DST : _IP_DST + 4])
        if dst_mac == port.router_mac:
            route = snapshot.route(port.rdid, dst_ip)
            if route is None:
                drops[Drop.NO_ROUTE] += 1
                return
            vsid = route.next_hop_vsid
            record = snapshot.record_by_ca.get((vsid, route.next_hop_bytes or dst_ip))
            if record is None:
                drops[Drop.NO_RECORD] += 1
                return
            if decrement_ttl(frame, _IP) == 0:
                drops[Drop.TTL_EXPIRED] += 1
                return
            frame[0:6] = record.mac_bytes
            frame[6:12] = router_mac(vsid)
            counters.routed += 1
        elif dst_mac[0] & 1:
            drops[Drop.BROADCAST] += 1
            return
        else:
            vsid = port.vsid
            record = tables.record_by_mac.get((vsid, dst_mac))  # IPv4 CAs only
            # A frame for a VM's MAC must be for that VM's CA; only a gateway takes others.
            if record is None or (
                record.ca_bytes != dst_ip and record.type is not RecordType.GATEWAY
            ):
                drops[Drop.NO_RECORD] += 1
                return
        if record.pa_bytes in tables.local_pas:
            destination = tables.port_by_key.get((vsid, record.mac_bytes))
            if destination is None:
                drops[Drop.NO_PORT] += 1
                return
            out.to_port(destination, frame)
            counters.switched_locally += 1
            destination.counters.to_vm_packets += 1
            destination.counters.to_vm_bytes += size
        elif record.rule is Rule.ENCAP:
            if len(record.pa_bytes) != IPV4_ADDR_SIZE or len(port.pa) != IPV4_ADDR_SIZE:
                # A host on an IPv6 underlay, this one or the other: the daemon serves
                # IPv4 PAs only (node_plan; trace and replay build any node), and NVGRE
                # is never carried across families.
                drops[Drop.PROVIDER_UNREACHABLE] += 1
                return
            key = vsid << 8 | flow_id_of_frame(frame)
            out.to_provider(
                port.pa, record.pa_bytes, GRE_KEYED.pack(NVGRE_FLAGS, ETHERTYPE_TEB, key), frame
            )
            counters.encapsulated += 1
        else:
            # IP-Rewrite: the CAs become the two records' PAs; no GRE, and the frame's
            # own Ethernet header is readdressed for the provider link.
            if port.rule is not Rule.IP_REWRITE:
                # The sender has no PA of its own to stand for its CA (an encap VM's
                # is its host's, shared, and the kernel's): nothing can carry it.
                drops[Drop.PROVIDER_UNREACHABLE] += 1
                return
            end = _IP + int.from_bytes(frame[_IP + 2 : _IP + 4], "big")
            try:
                rewrite_ipv4_src(frame[_IP:end], port.pa)
                rewrite_ipv4_dst(frame[_IP:end], record.pa_bytes)
            except BadPacket as bad:
                drops[bad.reason] += 1
                return
            if not self._to_link(port.pa, record.pa_bytes, frame[:end], out, now):
                return
            counters.ip_rewritten_out += 1
        port.counters.from_vm_packets += 1
        port.counters.from_vm_bytes += size

    def _too_big(self, port: HostPort, frame: memoryview, dst_mac: bytes, out: Output) -> None:
        """RFC 1191: with DF set, tell the VM the MTU it must use; never drop silently.

        The error comes from the subnet's gateway CA, or, when the subnet has no IPv4
        gateway (none, or an IPv6 one), from the address the frame was sent to."""
        self.counters.drops[Drop.TOO_BIG] += 1
        if not frame[_IP_DF_BYTE] & _DF_BIT:
            return  # a VM that allows fragmentation sent more than its TAP's MTU: its bug
        if dst_mac[0] & 1:
            return  # RFC 1122 sec. 3.2.2: no ICMP error for a link-layer broadcast
        icmp = build_icmp_unreachable(ICMP_CODE_FRAGMENTATION_NEEDED, frame[_IP:], port.mtu)
        source = port.gateway_ca or bytes(frame[_IP_DST : _IP_DST + 4])
        ip = build_ipv4(source, port.ca, IPPROTO_ICMP, len(icmp))
        out.to_port(port, build_ethernet(port.mac, dst_mac, ETHERTYPE_IPV4) + ip + icmp)
        self.counters.icmp_errors_sent += 1
