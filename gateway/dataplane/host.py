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

import struct
from typing import Final, Protocol

from gateway.dataplane.counters import Counters
from gateway.dataplane.neighbors import Neighbors
from gateway.dataplane.tables import HostPort, HostTables, router_mac
from gateway.errors import BadPacket, Drop
from gateway.policy import RecordType, Rule, Snapshot
from gateway.wire import (
    ARP_OP_REQUEST,
    BROADCAST_MAC,
    ETH_HEADER,
    ETH_HEADER_SIZE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_TEB,
    GRE_KEYED,
    ICMP_CODE_FRAGMENTATION_NEEDED,
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPV4_OFFSET_TOTAL_LENGTH,
    NVGRE_FLAGS,
    NVGRE_V4_FLOW,
    NVGRE_V4_FLOW_INNER_OFFSET,
    NVGRE_V4_FLOW_RUN,
    NVGRE_WORD,
    VSID_MAX,
    VSID_MIN,
    ZERO_MAC,
    build_arp,
    build_arp_reply,
    build_ethernet,
    build_icmp_unreachable,
    build_ipv4,
    decrement_ttl,
    flow_id_of_frame,
    parse_arp,
    parse_nvgre,
    rewrite_ipv4_dst,
    rewrite_ipv4_src,
)

_IP: Final = ETH_HEADER_SIZE  # where the inner IPv4 header starts in a frame
_IP_MIN_FRAME: Final = ETH_HEADER_SIZE + 20
_IP_SRC: Final = _IP + 12
_IP_DST: Final = _IP + 16
_IP_DF_BYTE: Final = _IP + 6
_DF_BIT: Final = 0x40  # in the flags byte
_UNSPECIFIED_V4: Final = bytes(4)
_FLOW_UNPACK: Final = NVGRE_V4_FLOW.unpack_from
_FLOW_SIZE: Final = NVGRE_V4_FLOW.size
_INNER: Final = NVGRE_V4_FLOW_INNER_OFFSET
_FLOW_RUN: Final = NVGRE_V4_FLOW_RUN.unpack
_TOTAL_LENGTH: Final = struct.Struct("!H").unpack_from  # at IPV4_OFFSET_TOTAL_LENGTH
_IPV4_FRAGMENT: Final = 0x3FFF  # MF bit and fragment offset
# The smallest common datagram: its inner frame holds an IPv4 header (20 + 8 + 34 = 62).
_MIN_COMMON_TOTAL: Final = NVGRE_V4_FLOW_INNER_OFFSET + _IP_MIN_FRAME
_NOT_COMMON: Final = object()  # a flow-cache miss that parse_nvgre must read instead
# Flow-cache entries before it is emptied and refilled: a real node sees far fewer
# distinct (PA, VSID, MAC, CA) combinations; a flood of forged ones costs a refill.
MAX_FLOWS: Final = 1 << 16


class Output(Protocol):
    """Where decided packets go. The io layer batches them; tests collect them."""

    def to_port(self, port: HostPort, frame: memoryview | bytes) -> None:
        """Write a whole Ethernet frame to a local VM's TAP."""

    def to_provider(self, src_pa: bytes, dst_pa: bytes, gre: bytes, frame: memoryview) -> None:
        """Send NVGRE: the kernel adds the outer IP header (src_pa -> dst_pa, protocol 47)
        in front of the 8-byte GRE header and the inner frame."""

    def to_provider_link(self, frame: memoryview | bytes) -> None:
        """Send a whole Ethernet frame on the provider link: IP-Rewritten packets, and
        ARP for the rewrite PAs, which are the daemon's rather than the kernel's."""


class HostDataplane:
    """One node's data plane over the current snapshot; ``swap()`` replaces it whole."""

    __slots__ = ("counters", "neighbors", "node_name", "provider_mac", "tables")

    def __init__(
        self,
        snapshot: Snapshot,
        node_name: str,
        counters: Counters | None = None,
        provider_mac: bytes | None = None,
    ) -> None:
        self.node_name = node_name
        # The provider link's MAC: ARP for this node's IP-Rewrite PAs is answered with it.
        self.provider_mac = provider_mac
        self.counters = counters if counters is not None else Counters()
        self.tables = HostTables(snapshot, node_name, self.counters)
        self.neighbors = Neighbors()

    def swap(self, snapshot: Snapshot) -> HostTables:
        """Adopt a new snapshot (between batches). Counters carry over by port name."""
        self.tables = HostTables(snapshot, self.node_name, self.counters)
        return self.tables

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
            record = snapshot.record_by_mac.get((vsid, dst_mac))
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
            key = vsid << 8 | flow_id_of_frame(frame)
            out.to_provider(
                port.pa, record.pa_bytes, GRE_KEYED.pack(NVGRE_FLAGS, ETHERTYPE_TEB, key), frame
            )
            counters.encapsulated += 1
        else:
            # IP-Rewrite: the CAs become the two records' PAs; no GRE, and the frame's
            # own Ethernet header is readdressed for the provider link.
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
        """RFC 1191: with DF set, tell the VM the MTU it must use; never drop silently."""
        self.counters.drops[Drop.TOO_BIG] += 1
        if not frame[_IP_DF_BYTE] & _DF_BIT:
            return  # a VM that allows fragmentation sent more than its TAP's MTU: its bug
        icmp = build_icmp_unreachable(ICMP_CODE_FRAGMENTATION_NEEDED, frame[_IP:], port.mtu)
        source = port.gateway_ca or bytes(frame[_IP_DST : _IP_DST + 4])
        ip = build_ipv4(source, port.ca, IPPROTO_ICMP, len(icmp))
        out.to_port(port, build_ethernet(port.mac, dst_mac, ETHERTYPE_IPV4) + ip + icmp)
        self.counters.icmp_errors_sent += 1

    def _to_link(
        self, src_pa: bytes, dst_pa: bytes, frame: memoryview, out: Output, now: float
    ) -> bool:
        """Frame a rewritten packet for the provider link, resolving ``dst_pa`` first
        (the frame waits, copied, in a bounded queue); False when it was dropped."""
        drops = self.counters.drops
        if self.provider_mac is None:
            drops[Drop.PROVIDER_UNREACHABLE] += 1
            return False
        mac, ask = self.neighbors.resolve(dst_pa, now)
        if ask:
            request = build_arp(ARP_OP_REQUEST, self.provider_mac, src_pa, ZERO_MAC, dst_pa)
            out.to_provider_link(
                build_ethernet(BROADCAST_MAC, self.provider_mac, ETHERTYPE_ARP) + request
            )
        frame[6:12] = self.provider_mac
        if mac is None:
            if not self.neighbors.park(dst_pa, bytearray(frame)):
                drops[Drop.TX_FULL] += 1
                return False
            return True
        frame[0:6] = mac
        out.to_provider_link(frame)
        return True

    # ---------------------------------------------------------------- from the provider network

    def from_provider(self, datagram: memoryview, out: Output, now: float) -> None:
        """An NVGRE datagram, outer IP header first.

        The common form (outer IPv4 without options, a plain NVGRE header, an inner
        IPv4 frame) is read with one unpack whose tuple holds every field the
        decision depends on; the verdict for that tuple is cached in the tables
        (``HostTables.flows``, rebuilt with each snapshot), so a packet of a known flow
        costs one unpack and one dict lookup. Everything else, and every bad datagram,
        is read by ``parse_nvgre``, which names what is wrong; both reach the same
        ``_verdict``.
        """
        counters = self.counters
        size = len(datagram)
        counters.provider_rx_packets += 1
        counters.provider_rx_bytes += size
        tables = self.tables
        if size >= _FLOW_SIZE:
            key = _FLOW_UNPACK(datagram)
            (total,) = _TOTAL_LENGTH(datagram, IPV4_OFFSET_TOTAL_LENGTH)
            if _MIN_COMMON_TOTAL <= total <= size:
                verdict = tables.flows.get(key)
                if verdict is None:
                    verdict = self._flow_verdict(key, tables)
                if verdict.__class__ is HostPort:
                    frame = datagram[_INNER:total]
                    out.to_port(verdict, frame)
                    port_counters = verdict.counters
                    port_counters.to_vm_packets += 1
                    port_counters.to_vm_bytes += total - _INNER
                    return
                if verdict is not _NOT_COMMON:
                    counters.drops[verdict] += 1
                    return
        try:
            packet = parse_nvgre(datagram)
        except BadPacket as bad:
            counters.drops[bad.reason] += 1
            return
        frame = packet.inner
        dst_mac, src_mac, ethertype = ETH_HEADER.unpack_from(frame)
        inner_vihl = frame[_IP] if len(frame) >= _IP_MIN_FRAME else 0
        verdict = self._verdict(
            tables,
            packet.vsid,
            packet.src,
            packet.dst,
            dst_mac,
            src_mac,
            ethertype,
            inner_vihl,
            bytes(frame[_IP_SRC:_IP_DST]),
        )
        if verdict.__class__ is HostPort:
            out.to_port(verdict, frame)
            verdict.counters.to_vm_packets += 1
            verdict.counters.to_vm_bytes += len(frame)
        else:
            counters.drops[verdict] += 1

    def _flow_verdict(self, key: tuple, tables: HostTables) -> HostPort | Drop | object:
        """Decide a flow-cache miss: the verdict (cached), or _NOT_COMMON when the
        datagram is not the form the flow key describes (not cached)."""
        vihl, fragment, protocol, outer_run, ethernet, inner_vihl, src_ip = key
        src_pa, dst_pa, gre_word, vsid_bytes = _FLOW_RUN(outer_run)
        dst_mac, src_mac, ethertype = ETH_HEADER.unpack(ethernet)
        vsid = int.from_bytes(vsid_bytes, "big")
        if (
            vihl != 0x45
            or fragment & _IPV4_FRAGMENT
            or protocol != IPPROTO_GRE
            or gre_word != NVGRE_WORD
            or ethertype != ETHERTYPE_IPV4
            or not VSID_MIN <= vsid <= VSID_MAX
        ):
            return _NOT_COMMON
        verdict = self._verdict(
            tables, vsid, src_pa, dst_pa, dst_mac, src_mac, ethertype, inner_vihl, src_ip
        )
        flows = tables.flows
        if len(flows) >= MAX_FLOWS:
            flows.clear()  # bounded against floods of distinct headers; refills by itself
        flows[key] = verdict
        return verdict

    @staticmethod
    def _verdict(
        tables: HostTables,
        vsid: int,
        src_pa: bytes,
        dst_pa: bytes,
        dst_mac: bytes,
        src_mac: bytes,
        ethertype: int,
        inner_vihl: int,
        src_ip: bytes,
    ) -> HostPort | Drop:
        """Where a decapsulated frame goes, from its headers alone (so it can be cached):
        the local port, or why not. ``inner_vihl`` is 0 for a frame too short for IPv4."""
        if dst_pa not in tables.local_pas:
            return Drop.FOREIGN_PA
        rdid = tables.rdid_by_vsid.get(vsid)
        if rdid is None:
            return Drop.VSID_UNKNOWN
        port = tables.port_by_key.get((vsid, dst_mac))
        if port is None:
            if dst_mac in tables.port_macs:
                return Drop.VSID_MISMATCH
            return Drop.BROADCAST if dst_mac[0] & 1 else Drop.NO_PORT
        if ethertype != ETHERTYPE_IPV4:
            return Drop.ARP_FROM_PROVIDER if ethertype == ETHERTYPE_ARP else Drop.UNSUPPORTED
        if inner_vihl >> 4 != 4:
            return Drop.INNER_MALFORMED
        # Anti-spoofing: the inner source must be a CA whose record has this outer PA.
        if src_mac == port.router_mac:  # routed by the sender's host from another VSID
            sender = tables.record_by_rdid_ca.get((rdid, src_ip))
        else:
            sender = tables.record_by_mac.get((vsid, src_mac))
            if (
                sender is not None
                and sender.ca_bytes != src_ip
                and sender.type is not RecordType.GATEWAY
            ):
                sender = None
        if sender is None or sender.pa_bytes != src_pa:
            return Drop.SPOOFED_PA
        return port

    def from_provider_link(self, frame: memoryview, out: Output, now: float) -> None:
        """IP-Rewrite's receive side: an Ethernet frame from the provider link.

        A rewrite PA is the daemon's, not the kernel's (the kernel would answer its
        traffic with RSTs), so its ARP is answered here and packets to it are turned
        back into the CA's frame. Frames for anything else are none of our business.
        """
        if len(frame) < ETH_HEADER_SIZE:
            return
        _, _, ethertype = ETH_HEADER.unpack_from(frame)
        tables = self.tables
        if ethertype == ETHERTYPE_ARP:
            try:
                arp = parse_arp(frame, ETH_HEADER_SIZE)
            except BadPacket:
                return
            if tables.rewrite_sender(arp.sender_ip) is not None:  # learn only PAs we send to
                for waiting in self.neighbors.learn(arp.sender_ip, arp.sender_mac, now):
                    waiting[0:6] = arp.sender_mac
                    out.to_provider_link(waiting)
            if (
                arp.opcode == ARP_OP_REQUEST
                and arp.target_ip in tables.rewrite_by_pa
                and self.provider_mac is not None
            ):
                out.to_provider_link(build_arp_reply(arp, self.provider_mac))
                self.counters.arp_replies += 1
            return
        if ethertype != ETHERTYPE_IPV4 or len(frame) < _IP_MIN_FRAME:
            return
        record = tables.rewrite_by_pa.get(bytes(frame[_IP_DST : _IP_DST + 4]))
        if record is None:
            return
        counters = self.counters
        counters.provider_rx_packets += 1
        counters.provider_rx_bytes += len(frame) - ETH_HEADER_SIZE
        src_pa = bytes(frame[_IP_SRC:_IP_DST])
        sender = tables.rewrite_sender(src_pa)
        if sender is None or sender.rdid != record.rdid:
            counters.drops[Drop.SPOOFED_PA] += 1
            return
        port = tables.port_by_key.get((record.vsid, record.mac_bytes))
        if port is None:
            counters.drops[Drop.NO_PORT] += 1
            return
        end = _IP + int.from_bytes(frame[_IP + 2 : _IP + 4], "big")
        try:
            packet = frame[_IP:end]
            rewrite_ipv4_dst(packet, record.ca_bytes)
            rewrite_ipv4_src(packet, sender.ca_bytes)
        except BadPacket as bad:
            counters.drops[bad.reason] += 1
            return
        frame[0:6] = port.mac
        frame[6:12] = sender.mac_bytes if sender.vsid == record.vsid else port.router_mac
        out.to_port(port, frame[:end])
        counters.ip_rewritten_in += 1
        port.counters.to_vm_packets += 1
        port.counters.to_vm_bytes += end
