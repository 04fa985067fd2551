"""NVGRE (RFC 7637): the GRE header with a VSID key, and whole datagrams from the outer IP up.

``parse_nvgre`` starts at the outer IP header because that is what both receive paths
hand over: a raw IPPROTO_GRE socket delivers the IPv4 header onwards, and an AF_PACKET
ring is read past its Ethernet header. It is the one function run on every received
packet, so it unpacks the outer header inline with the precompiled layouts instead of
calling ``parse_ipv4`` (which would copy options and build an object nobody reads), and
it returns the inner frame as a slice of the caller's buffer, never a copy.

Checks run in wire order and each failure has its own Drop, so a counter tells an
operator which peer is misconfigured and how. A valid GRE header is recognised with one
unpack and three comparisons; only a bad one walks the checks one by one to find why.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, NamedTuple

from gateway.errors import BadPacket, Drop
from gateway.wire._types import Buffer
from gateway.wire.ethernet import _ETH_TYPE, ETH_HEADER_SIZE, ETH_OFFSET_TYPE, VLAN_ETHERTYPES
from gateway.wire.ipv4 import (
    _DEFAULT_TTL,
    _IPV4_HEADER,
    IPPROTO_GRE,
    IPV4_FLAG_DF,
    IPV4_FRAGMENT_MASK,
    IPV4_HEADER_SIZE,
    IPV4_IHL_MASK,
    build_ipv4,
)
from gateway.wire.ipv6 import _DEFAULT_HOP_LIMIT, _IPV6_HEADER, IPV6_HEADER_SIZE, build_ipv6

_GRE_BASE: Final = struct.Struct("!HH")  # flags+version, protocol type (RFC 2784 sec. 2)
GRE_BASE_SIZE: Final = _GRE_BASE.size  # 4: enough to know the header's real layout
GRE_KEYED: Final = struct.Struct("!HHI")  # flags+version, protocol type, key (RFC 7637 sec. 3.2)
_GRE_KEYED_SIZE: Final = GRE_KEYED.size  # 8
_GRE_KEY: Final = struct.Struct("!I")  # the key word alone, at GRE offset 4
GRE_OFFSET_PROTOCOL: Final = 2  # the protocol type after the flags+version word
_GRE_OFFSET_KEY: Final = 4

# Bits of the first GRE word (RFC 2784 sec. 2, RFC 2890 sec. 2).
GRE_FLAG_C: Final = 0x8000  # checksum present: must be 0 (RFC 7637 sec. 3.2)
_GRE_FLAG_R: Final = 0x4000  # RFC 1701 routing present
GRE_FLAG_K: Final = 0x2000  # key present: must be 1, the key carries VSID and FlowID
GRE_FLAG_S: Final = 0x1000  # sequence number present: must be 0
_GRE_FLAG_STRICT_ROUTE: Final = 0x0800  # RFC 1701 strict source route
_GRE_RECURSION_MSB: Final = 0x0400  # RFC 1701 recursion control, top bit
# RFC 2784 sec. 2.2: discard if any of bits 1-5 are set (bits 2 and 3 are K and S, which
# RFC 2890 gave meaning to). Bits 6-12 must be ignored on receipt, so they are.
_GRE_ROUTING_BITS: Final = _GRE_FLAG_R | _GRE_FLAG_STRICT_ROUTE | _GRE_RECURSION_MSB
_GRE_VERSION_MASK: Final = 0x0007
# Every bit NVGRE constrains; masked, a valid header's first word is exactly NVGRE_FLAGS.
_GRE_CHECKED_BITS: Final = (
    GRE_FLAG_C | _GRE_ROUTING_BITS | GRE_FLAG_K | GRE_FLAG_S | _GRE_VERSION_MASK
)
NVGRE_FLAGS: Final = GRE_FLAG_K  # 0x2000: K=1, C=S=0, version 0

ETHERTYPE_TEB: Final = 0x6558  # transparent Ethernet bridging (RFC 7637 sec. 3.2)

VSID_SHIFT: Final = 8  # key = VSID (24 bits) << 8 | FlowID (8 bits)
_FLOW_ID_MASK: Final = 0xFF
VSID_MIN, VSID_MAX = 0x1000, 0xFFFFFE  # 0..4095 and 0xFFFFFF are reserved (RFC 7637 sec. 3.2)

_NVGRE_HEADER_V4_SIZE: Final = IPV4_HEADER_SIZE + _GRE_KEYED_SIZE  # 28: before the inner frame
NVGRE_HEADER_V6_SIZE: Final = IPV6_HEADER_SIZE + _GRE_KEYED_SIZE  # 48
NVGRE_OVERHEAD_V4: Final = _NVGRE_HEADER_V4_SIZE + ETH_HEADER_SIZE  # 20 + 8 + 14 = 42
NVGRE_OVERHEAD_V6: Final = NVGRE_HEADER_V6_SIZE + ETH_HEADER_SIZE  # 40 + 8 + 14 = 62

# The common NVGRE datagram's every field a forwarding decision reads, in one unpack,
# for the receive hot path: outer version/IHL, flags+fragment offset, protocol; then
# 15 bytes from the outer source PA on (source, destination, the GRE flags+protocol
# word, the 24-bit VSID); 14 bytes of inner Ethernet header (destination MAC, source
# MAC, ethertype); inner IPv4 version/IHL and source address. Runs of bytes rather
# than one field each, because the tuple is the key of the data plane's flow cache
# and seven fields hash in two thirds of the time of twelve. The total length and
# the FlowID byte are left out: they vary within a flow and decide nothing. Only a
# datagram with version/IHL 0x45, no fragment and GRE word 0x20006558 is described
# exactly by this layout; anything else goes through ``parse_nvgre``, which names
# what is wrong.
NVGRE_V4_FLOW: Final = struct.Struct("!B5xHxB2x15sx14sB11x4s")
NVGRE_V4_FLOW_INNER_OFFSET: Final = _NVGRE_HEADER_V4_SIZE  # 28: where the inner frame starts
# A router's flow key (the gateway's): the same fields up to the inner source, then
# the inner TTL and protocol and the destination with the source (8 bytes), which
# decide where a routed packet goes and what is done to it. Its first seven fields,
# the source cut from the run, are ``NVGRE_V4_FLOW``'s key.
NVGRE_V4_ROUTED_FLOW: Final = struct.Struct("!B5xHxB2x15sx14sB7xBB2x8s")
# How to split the 15-byte run: PAs, GRE word, VSID.
NVGRE_V4_FLOW_RUN: Final = struct.Struct("!4s4sI3s")
NVGRE_WORD: Final = NVGRE_FLAGS << 16 | ETHERTYPE_TEB  # 0x20006558, the first GRE word


@dataclass(frozen=True, slots=True)
class NvgreHeader:
    vsid: int
    flow_id: int


class NvgrePacket(NamedTuple):
    """A decoded NVGRE datagram; ``inner`` is a view into the caller's buffer.

    A NamedTuple, not a frozen dataclass like the other headers: one is built for every
    received packet, and a frozen dataclass's ``__init__`` (an ``object.__setattr__`` per
    field) measured 2.7 us here against 0.4 us for the tuple, more than the parse itself.
    It is just as immutable, and the hot loop can unpack it.

    The view stays valid only as long as the caller does not reuse its buffer: copy the
    frame (``bytes(pkt.inner)``) to keep it past the current batch.
    """

    version: int  # outer IP version, 4 or 6
    src: bytes  # outer source PA, 4 or 16 bytes
    dst: bytes  # outer destination PA
    vsid: int
    flow_id: int
    inner_offset: int  # where the inner Ethernet frame starts in the datagram
    inner_length: int  # bounded by the outer IP length, not by the buffer
    inner_ethertype: int
    inner: memoryview


def _check_gre(view: Buffer, offset: int, end: int) -> int:
    """The key of a GRE header valid for NVGRE, in wire order of the checks."""
    if end - offset < GRE_BASE_SIZE:
        raise BadPacket(Drop.TRUNCATED)
    flags, protocol = _GRE_BASE.unpack_from(view, offset)
    if flags & GRE_FLAG_C:
        raise BadPacket(Drop.GRE_CHECKSUM)
    if flags & _GRE_ROUTING_BITS:
        raise BadPacket(Drop.GRE_ROUTING)
    if flags & GRE_FLAG_S:
        raise BadPacket(Drop.GRE_SEQUENCE)
    if flags & _GRE_VERSION_MASK:
        raise BadPacket(Drop.GRE_VERSION)
    if not flags & GRE_FLAG_K:
        raise BadPacket(Drop.GRE_NO_KEY)
    if protocol != ETHERTYPE_TEB:
        raise BadPacket(Drop.GRE_PROTOCOL)
    if end - offset < _GRE_KEYED_SIZE:
        raise BadPacket(Drop.TRUNCATED)
    (key,) = _GRE_KEY.unpack_from(view, offset + _GRE_OFFSET_KEY)
    if not VSID_MIN <= key >> VSID_SHIFT <= VSID_MAX:
        raise BadPacket(Drop.VSID_RESERVED)
    return key


def parse_gre_nvgre(data: Buffer, offset: int = 0) -> NvgreHeader:
    """A GRE header that must be NVGRE (RFC 7637 sec. 3.2), from hostile bytes."""
    if offset < 0:
        raise BadPacket(Drop.TRUNCATED)
    try:
        key = _check_gre(data, offset, len(data))
    except (struct.error, IndexError, ValueError):
        raise BadPacket(Drop.TRUNCATED) from None
    return NvgreHeader(key >> VSID_SHIFT, key & _FLOW_ID_MASK)


def parse_nvgre(data: Buffer) -> NvgrePacket:
    """A whole NVGRE datagram, outer IP header first, from hostile bytes.

    Bytes after the outer IP length (Ethernet padding on short frames) are ignored.
    Outer IPv4 fragments are refused (RFC 7637 sec. 4.4: senders must not fragment, a
    receiver may discard): reassembling for a tenant is a memory an attacker could fill.
    """
    view = data if isinstance(data, memoryview) else memoryview(data)
    size = len(view)
    try:
        if size == 0:
            raise BadPacket(Drop.TRUNCATED)
        version = view[0] >> 4
        if version == 4:
            if size < IPV4_HEADER_SIZE:
                raise BadPacket(Drop.TRUNCATED)
            ver_ihl, _, end, _, fragment, _, protocol, _, src, dst = _IPV4_HEADER.unpack_from(view)
            start = (ver_ihl & IPV4_IHL_MASK) * 4
            if start < IPV4_HEADER_SIZE or end < start:
                raise BadPacket(Drop.IP_HEADER_LENGTH)
            if end > size:
                raise BadPacket(Drop.TRUNCATED)
            if fragment & IPV4_FRAGMENT_MASK:
                raise BadPacket(Drop.IP_FRAGMENT)
            if protocol != IPPROTO_GRE:
                raise BadPacket(Drop.NOT_GRE)
        elif version == 6:
            if size < IPV6_HEADER_SIZE:
                raise BadPacket(Drop.TRUNCATED)
            _, payload_length, next_header, _, src, dst = _IPV6_HEADER.unpack_from(view)
            start, end = IPV6_HEADER_SIZE, IPV6_HEADER_SIZE + payload_length
            if end > size:
                raise BadPacket(Drop.TRUNCATED)
            if next_header != IPPROTO_GRE:
                raise BadPacket(Drop.NOT_GRE)  # extension headers included: see ipv6.py
        else:
            raise BadPacket(Drop.IP_VERSION)
        if end - start >= _GRE_KEYED_SIZE:
            flags, protocol, key = GRE_KEYED.unpack_from(view, start)
            good = (
                flags & _GRE_CHECKED_BITS == NVGRE_FLAGS
                and protocol == ETHERTYPE_TEB
                and VSID_MIN <= key >> VSID_SHIFT <= VSID_MAX
            )
        else:
            good = False
        if not good:
            key = _check_gre(view, start, end)  # raises, with the precise reason
        inner_offset = start + _GRE_KEYED_SIZE
        inner_length = end - inner_offset
        if inner_length < ETH_HEADER_SIZE:
            raise BadPacket(Drop.INNER_TRUNCATED)
        (ethertype,) = _ETH_TYPE.unpack_from(view, inner_offset + ETH_OFFSET_TYPE)
        if ethertype in VLAN_ETHERTYPES:
            raise BadPacket(Drop.INNER_VLAN)  # RFC 7637 sec. 3.3: the decapsulator drops it
    except (struct.error, IndexError, ValueError):
        raise BadPacket(Drop.TRUNCATED) from None
    return NvgrePacket(
        version,
        src,
        dst,
        key >> VSID_SHIFT,
        key & _FLOW_ID_MASK,
        inner_offset,
        inner_length,
        ethertype,
        view[inner_offset:end],
    )


def build_gre_nvgre(vsid: int, flow_id: int) -> bytes:
    """The 8-byte NVGRE GRE header. Reserved VSIDs are refused: sending one is a bug."""
    if not VSID_MIN <= vsid <= VSID_MAX:
        raise ValueError(f"VSID {vsid} is reserved or out of range ({VSID_MIN}..{VSID_MAX})")
    if not 0 <= flow_id <= _FLOW_ID_MASK:
        raise ValueError(f"FlowID {flow_id} is not 8 bits")
    return GRE_KEYED.pack(NVGRE_FLAGS, ETHERTYPE_TEB, (vsid << VSID_SHIFT) | flow_id)


def _check_inner(inner_frame: Buffer) -> None:
    if len(inner_frame) < ETH_HEADER_SIZE:
        raise ValueError("the inner frame is shorter than an Ethernet header")
    ethertype = (inner_frame[ETH_OFFSET_TYPE] << 8) | inner_frame[ETH_OFFSET_TYPE + 1]
    if ethertype in VLAN_ETHERTYPES:
        raise ValueError("strip the 802.1Q tag before encapsulating (RFC 7637 sec. 3.3)")


def build_nvgre_ipv4_header(
    src_pa: bytes,
    dst_pa: bytes,
    vsid: int,
    flow_id: int,
    inner_length: int,
    *,
    ttl: int = _DEFAULT_TTL,
    ident: int = 0,
) -> bytes:
    """The 28 bytes before an inner frame of ``inner_length`` bytes.

    Separate from ``encapsulate_ipv4`` so the sender can pass header and frame to one
    ``sendmsg`` without concatenating them.
    """
    gre = build_gre_nvgre(vsid, flow_id)
    outer = build_ipv4(
        src_pa,
        dst_pa,
        IPPROTO_GRE,
        _GRE_KEYED_SIZE + inner_length,
        ttl=ttl,
        ident=ident,
        flags=IPV4_FLAG_DF,
    )
    return outer + gre


def encapsulate_ipv4(
    src_pa: bytes,
    dst_pa: bytes,
    vsid: int,
    flow_id: int,
    inner_frame: Buffer,
    ttl: int = _DEFAULT_TTL,
    ident: int = 0,
) -> bytes:
    """An NVGRE datagram over IPv4: DF set, checksum computed, protocol 47."""
    _check_inner(inner_frame)
    header = build_nvgre_ipv4_header(
        src_pa, dst_pa, vsid, flow_id, len(inner_frame), ttl=ttl, ident=ident
    )
    return header + bytes(inner_frame)


def _build_nvgre_ipv6_header(
    src_pa: bytes,
    dst_pa: bytes,
    vsid: int,
    flow_id: int,
    inner_length: int,
    *,
    hop_limit: int = _DEFAULT_HOP_LIMIT,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """The 48 bytes before an inner frame of ``inner_length`` bytes."""
    gre = build_gre_nvgre(vsid, flow_id)
    outer = build_ipv6(
        src_pa,
        dst_pa,
        IPPROTO_GRE,
        _GRE_KEYED_SIZE + inner_length,
        hop_limit=hop_limit,
        traffic_class=traffic_class,
        flow_label=flow_label,
    )
    return outer + gre


def encapsulate_ipv6(
    src_pa: bytes,
    dst_pa: bytes,
    vsid: int,
    flow_id: int,
    inner_frame: Buffer,
    hop_limit: int = _DEFAULT_HOP_LIMIT,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """An NVGRE datagram over IPv6, GRE right after the fixed header.

    ``flow_label`` is left to the caller: RFC 6438 suggests filling it from the inner
    flow for ECMP, which the FlowID in the key already gives NVGRE-aware switches.
    """
    _check_inner(inner_frame)
    header = _build_nvgre_ipv6_header(
        src_pa,
        dst_pa,
        vsid,
        flow_id,
        len(inner_frame),
        hop_limit=hop_limit,
        traffic_class=traffic_class,
        flow_label=flow_label,
    )
    return header + bytes(inner_frame)
