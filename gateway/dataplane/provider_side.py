"""The host role's receive side for NVGRE: a datagram from the provider network.

``host.py`` has the role's overview; ``from_provider`` says how the common datagram
is decided with one unpack and a cached verdict, and everything else by
``parse_nvgre`` and the same ``_verdict``.

The gateway receives NVGRE by the same checks (``gateway_provider.py``): the flow key,
its cache, ``slow_verdict`` and ``_verdict`` read a role's tables by the names both
roles' tables give them (``local_pas``, ``rdid_by_vsid``, ``flows``, ``port_by_key``
and ``port_macs``: a host's VM ports, a gateway's interfaces, each with the
``router_mac`` of its VSID; and the anti-spoofing lookups of ``senders.py``).
"""

from __future__ import annotations

import struct
from typing import Final

from gateway.dataplane._frame import IP_MIN_FRAME, IP_SRC_ADDR, IP_VERSION_IHL
from gateway.dataplane.host import HostNode
from gateway.dataplane.tables import HostPort, HostTables
from gateway.errors import BadPacket, Drop
from gateway.policy import RecordType
from gateway.wire import (
    ETH_GROUP_BIT,
    ETH_HEADER,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    IPPROTO_GRE,
    IPV4_FRAGMENT_MASK,
    IPV4_IHL_MASK,
    IPV4_IHL_MIN,
    IPV4_OFFSET_TOTAL_LENGTH,
    IPV4_VERSION,
    IPV4_VIHL_NO_OPTIONS,
    NVGRE_V4_FLOW,
    NVGRE_V4_FLOW_INNER_OFFSET,
    NVGRE_V4_FLOW_RUN,
    NVGRE_WORD,
    VSID_MAX,
    VSID_MIN,
    ipv4_checksum_ok,
    parse_nvgre,
)

_FLOW_UNPACK: Final = NVGRE_V4_FLOW.unpack_from
_FLOW_SIZE: Final = NVGRE_V4_FLOW.size
_INNER: Final = NVGRE_V4_FLOW_INNER_OFFSET
_FLOW_RUN: Final = NVGRE_V4_FLOW_RUN.unpack
_TOTAL_LENGTH: Final = struct.Struct("!H").unpack_from  # at IPV4_OFFSET_TOTAL_LENGTH
# The smallest common datagram: its inner frame holds an IPv4 header (20 + 8 + 34 = 62).
_MIN_COMMON_TOTAL: Final = NVGRE_V4_FLOW_INNER_OFFSET + IP_MIN_FRAME
_NOT_COMMON: Final = object()  # a flow-cache miss that parse_nvgre must read instead
# Flow-cache entries before it is emptied and refilled: a real node sees far fewer
# distinct (PA, VSID, MAC, CA) combinations; a flood of forged ones costs a refill.
MAX_FLOWS: Final = 1 << 16


def from_provider(node: HostNode, datagram: memoryview) -> None:
    """An NVGRE datagram, outer IP header first.

    The common form (outer IPv4 without options, a plain NVGRE header, an inner
    IPv4 frame) is read with one unpack whose tuple holds every field the
    decision depends on; the verdict for that tuple is cached in the tables
    (``HostTables.flows``, rebuilt with each snapshot), so a packet of a known flow
    costs one unpack and one dict lookup. Everything else, and every bad datagram,
    is read by ``parse_nvgre``, which names what is wrong; both reach the same
    ``_verdict``. One function, all inline: the receive ring calls it per frame.

    The outer IPv4 header checksum: the slow path checks it; the common form's
    (no options) is checked before the datagram gets here, by the kernel for the
    raw GRE socket and by the receive ring's socket filter (``gateway.io.ring``).
    Checking it here would cost a third of this function (callgrind; README).
    """
    counters = node.counters
    size = len(datagram)
    counters.provider_rx_packets += 1
    counters.provider_rx_bytes += size
    tables = node.tables
    if size >= _FLOW_SIZE:
        key = _FLOW_UNPACK(datagram)
        (total,) = _TOTAL_LENGTH(datagram, IPV4_OFFSET_TOTAL_LENGTH)
        if _MIN_COMMON_TOTAL <= total <= size:
            verdict = tables.flows.get(key)
            if verdict is None:
                verdict = _flow_verdict(key, tables)
            if verdict.__class__ is HostPort:
                node.out.to_tap(verdict, datagram[_INNER:total])
                port_counters = verdict.counters
                port_counters.to_vm_packets += 1
                port_counters.to_vm_bytes += total - _INNER
                return
            if verdict is not _NOT_COMMON:
                counters.drops[verdict] += 1
                return
    verdict, frame = slow_verdict(tables, datagram)
    if verdict.__class__ is HostPort:
        node.out.to_tap(verdict, frame)
        verdict.counters.to_vm_packets += 1
        verdict.counters.to_vm_bytes += len(frame)
    else:
        counters.drops[verdict] += 1


def slow_verdict(tables: HostTables, datagram: memoryview) -> tuple[object, memoryview]:
    """The verdict on a datagram the flow key does not describe (or does not read),
    and its inner frame: read by ``parse_nvgre``, which names what is wrong, and its
    outer IPv4 header checksum checked. Every role that receives NVGRE decides the
    uncommon datagram here (the gateway's tables answer what a host's do)."""
    try:
        packet = parse_nvgre(datagram)
    except BadPacket as bad:
        return bad.reason, datagram
    if packet.version == IPV4_VERSION and not ipv4_checksum_ok(datagram):
        return Drop.IP_CHECKSUM, datagram
    frame = packet.inner
    dst_mac, src_mac, ethertype = ETH_HEADER.unpack_from(frame)
    inner_vihl = frame[IP_VERSION_IHL] if len(frame) >= IP_MIN_FRAME else 0
    verdict = _verdict(
        tables,
        packet.vsid,
        packet.src,
        packet.dst,
        dst_mac,
        src_mac,
        ethertype,
        inner_vihl,
        bytes(frame[IP_SRC_ADDR]),
    )
    return verdict, frame


def _flow_verdict(key: tuple, tables: HostTables) -> HostPort | Drop | object:
    """Decide a flow-cache miss: the verdict (cached), or _NOT_COMMON when the
    datagram is not the form the flow key describes (not cached)."""
    verdict = decide_flow(key, tables)
    if verdict is not _NOT_COMMON:
        cache_flow(tables.flows, key, verdict)
    return verdict


def cache_flow(flows: dict[tuple, object], key: tuple, verdict: object) -> None:
    if len(flows) >= MAX_FLOWS:
        flows.clear()  # bounded against floods of distinct headers; refills by itself
    flows[key] = verdict


def decide_flow(key: tuple, tables: HostTables) -> HostPort | Drop | object:
    """The verdict on a datagram of the common form from its flow key (not cached:
    a role caches it under its own key), or _NOT_COMMON when the datagram is not the
    form the flow key describes."""
    vihl, fragment, protocol, outer_run, ethernet, inner_vihl, src_ip = key
    src_pa, dst_pa, gre_word, vsid_bytes = _FLOW_RUN(outer_run)
    dst_mac, src_mac, ethertype = ETH_HEADER.unpack(ethernet)
    vsid = int.from_bytes(vsid_bytes, "big")
    if (
        vihl != IPV4_VIHL_NO_OPTIONS
        or fragment & IPV4_FRAGMENT_MASK
        or protocol != IPPROTO_GRE
        or gre_word != NVGRE_WORD
        or ethertype != ETHERTYPE_IPV4
        or not VSID_MIN <= vsid <= VSID_MAX
    ):
        return _NOT_COMMON
    return _verdict(tables, vsid, src_pa, dst_pa, dst_mac, src_mac, ethertype, inner_vihl, src_ip)


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
        return Drop.BROADCAST if dst_mac[0] & ETH_GROUP_BIT else Drop.NO_PORT
    if ethertype != ETHERTYPE_IPV4:
        return Drop.ARP_FROM_PROVIDER if ethertype == ETHERTYPE_ARP else Drop.UNSUPPORTED
    # What the verdict reads must be an IPv4 header (version, IHL: in the flow key,
    # so checked once per flow). The packet's own total length is not read here:
    # the sending host checked it where the VM sent it (``from_port``), the frame
    # reaches the VM as it came, as a switch delivers it, and the VM's stack checks
    # it again; per packet it would cost 14-17 % of this path (callgrind, README
    # "Drop reasons").
    if inner_vihl >> 4 != IPV4_VERSION or inner_vihl & IPV4_IHL_MASK < IPV4_IHL_MIN:
        return Drop.INNER_MALFORMED
    # Anti-spoofing: the inner source must be a CA whose record has this outer PA.
    if src_mac == port.router_mac:
        # Routed: by a gateway of the routing domain, from any source (decisions.md,
        # "The gateway forwards as the RDID's router"), or by the sender's host from
        # another VSID of it.
        sender = tables.gateway_by_rdid_pa.get((rdid, src_pa))
        if sender is None:
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
