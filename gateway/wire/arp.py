"""ARP for IPv4 over Ethernet (RFC 826), which the gateway answers itself.

HNV never lets ARP leave the host: requests are answered from the lookup records
(design.md). So only the one form that matters is accepted: hardware type Ethernet,
protocol IPv4, 6- and 4-byte addresses. Any other combination is INNER_MALFORMED,
which also keeps a reply from ever echoing attacker-chosen address lengths.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from gateway.errors import BadPacket, Drop
from gateway.wire._types import Buffer
from gateway.wire.ethernet import ETH_ADDR_SIZE, ETHERTYPE_ARP, ETHERTYPE_IPV4, build_ethernet
from gateway.wire.ipv4 import IPV4_ADDR_SIZE

# htype, ptype, hlen, plen, opcode, sender MAC, sender IP, target MAC, target IP (RFC 826)
_ARP_IPV4: Final = struct.Struct("!HHBBH6s4s6s4s")
ARP_IPV4_SIZE: Final = _ARP_IPV4.size  # 28
_ARP_FIXED: Final = struct.Struct("!HHBB")  # htype, ptype, hlen, plen: what the rest looks like
_ARP_FIXED_SIZE: Final = _ARP_FIXED.size  # 8
_ARP_HTYPE_ETHERNET: Final = 1
ARP_OP_REQUEST: Final = 1
ARP_OP_REPLY: Final = 2
_ETHERNET_IPV4: Final = (_ARP_HTYPE_ETHERNET, ETHERTYPE_IPV4, ETH_ADDR_SIZE, IPV4_ADDR_SIZE)


@dataclass(frozen=True, slots=True)
class ArpPacket:
    opcode: int  # ARP_OP_REQUEST, ARP_OP_REPLY, or anything a peer sent (RARP, InARP)
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes


def parse_arp(data: Buffer, offset: int = 0) -> ArpPacket:
    """An Ethernet/IPv4 ARP packet (the inner frame's payload) from hostile bytes.

    The opcode is returned as found; answering only requests is the caller's policy.
    The first 8 bytes are checked before the length, so a short packet of some other
    hardware/protocol pair is INNER_MALFORMED, and only a cut Ethernet/IPv4 one TRUNCATED.
    """
    available = len(data) - offset
    if offset < 0 or available < _ARP_FIXED_SIZE:
        raise BadPacket(Drop.TRUNCATED)
    try:
        if _ARP_FIXED.unpack_from(data, offset) != _ETHERNET_IPV4:
            raise BadPacket(Drop.INNER_MALFORMED)
        if available < ARP_IPV4_SIZE:
            raise BadPacket(Drop.TRUNCATED)
        _, _, _, _, opcode, sha, spa, tha, tpa = _ARP_IPV4.unpack_from(data, offset)
    except struct.error:
        raise BadPacket(Drop.TRUNCATED) from None
    return ArpPacket(opcode, sha, spa, tha, tpa)


def build_arp(
    opcode: int, sender_mac: bytes, sender_ip: bytes, target_mac: bytes, target_ip: bytes
) -> bytes:
    """The 28-byte ARP body (no Ethernet header)."""
    if len(sender_mac) != ETH_ADDR_SIZE or len(target_mac) != ETH_ADDR_SIZE:
        raise ValueError("a MAC address is 6 bytes")
    if len(sender_ip) != IPV4_ADDR_SIZE or len(target_ip) != IPV4_ADDR_SIZE:
        raise ValueError("an IPv4 address is 4 bytes")
    return _ARP_IPV4.pack(
        _ARP_HTYPE_ETHERNET,
        ETHERTYPE_IPV4,
        ETH_ADDR_SIZE,
        IPV4_ADDR_SIZE,
        opcode,
        sender_mac,
        sender_ip,
        target_mac,
        target_ip,
    )


def build_arp_reply(request: ArpPacket, answer_mac: bytes) -> bytes:
    """The whole Ethernet frame answering ``request`` with "target_ip is at answer_mac".

    Unicast back to the asker, as RFC 826 does. Not padded to 60 bytes: the frame goes
    into a TAP device or an NVGRE payload, never straight onto a wire.
    """
    if request.opcode != ARP_OP_REQUEST:
        raise ValueError("only a request can be answered")
    body = build_arp(
        ARP_OP_REPLY, answer_mac, request.target_ip, request.sender_mac, request.sender_ip
    )
    return build_ethernet(request.sender_mac, answer_mac, ETHERTYPE_ARP) + body
