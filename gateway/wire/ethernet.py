"""Ethernet II headers, the inner frame of every NVGRE packet, and MAC address helpers.

The MAC helpers parse operator input (config files, the API), not packets, so they
raise ``ValueError`` like any config parser; only ``parse_ethernet`` sees the network.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from gateway.errors import BadPacket, Drop
from gateway.wire._types import Buffer

ETH_HEADER: Final = struct.Struct("!6s6sH")  # dst, src, ethertype (IEEE 802.3 clause 3.2.6)
ETH_HEADER_SIZE: Final = ETH_HEADER.size  # 14
ETH_ADDR_SIZE: Final = 6
ETH_OFFSET_DST: Final = 0
ETH_OFFSET_SRC: Final = 6
ETH_OFFSET_TYPE: Final = 12
_ETH_TYPE: Final = struct.Struct("!H")  # unpack_from(view, ETH_OFFSET_TYPE) in the hot loop

ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_ARP: Final = 0x0806
ETHERTYPE_IPV6: Final = 0x86DD
_ETHERTYPE_VLAN: Final = 0x8100  # IEEE 802.1Q C-tag
_ETHERTYPE_QINQ: Final = 0x88A8  # IEEE 802.1ad S-tag
_ETHERTYPE_QINQ_LEGACY: Final = 0x9100  # pre-802.1ad S-tag, still sent by some switches
VLAN_ETHERTYPES: Final = frozenset((_ETHERTYPE_VLAN, _ETHERTYPE_QINQ, _ETHERTYPE_QINQ_LEGACY))

BROADCAST_MAC: Final = b"\xff" * ETH_ADDR_SIZE
ZERO_MAC: Final = bytes(ETH_ADDR_SIZE)
# I/G bit: least significant bit of a MAC's first octet; set in broadcast and multicast
# addresses (IEEE 802-2014 sec. 8.2).
ETH_GROUP_BIT: Final = 0x01


@dataclass(frozen=True, slots=True)
class EthernetHeader:
    dst: bytes
    src: bytes
    ethertype: int


def parse_ethernet(data: Buffer, offset: int = 0) -> EthernetHeader:
    """Read an Ethernet II header from hostile bytes.

    The ethertype is returned as found (a value below 0x0600 is an 802.3 length, a VLAN
    tag is a VLAN tag): deciding what to accept is the caller's job, since NVGRE refuses
    tags (``parse_nvgre``) while a TAP port may not.
    """
    if offset < 0 or len(data) - offset < ETH_HEADER_SIZE:
        raise BadPacket(Drop.TRUNCATED)
    try:
        dst, src, ethertype = ETH_HEADER.unpack_from(data, offset)
    except struct.error:
        raise BadPacket(Drop.TRUNCATED) from None
    return EthernetHeader(dst, src, ethertype)


def build_ethernet(dst: bytes, src: bytes, ethertype: int) -> bytes:
    """An Ethernet II header; ``struct`` would silently pad or cut a wrong-size MAC."""
    if len(dst) != ETH_ADDR_SIZE or len(src) != ETH_ADDR_SIZE:
        raise ValueError("a MAC address is 6 bytes")
    return ETH_HEADER.pack(dst, src, ethertype)


def is_multicast(mac: Buffer) -> bool:
    """Group address (broadcast included): not forwarded by default (design.md)."""
    return bool(mac[0] & ETH_GROUP_BIT)


def is_broadcast(mac: Buffer) -> bool:
    return bytes(mac) == BROADCAST_MAC


def mac_from_str(text: str) -> bytes:
    """A MAC from config: ``00:00:5e:00:53:01``, ``00-00-5E-00-53-01`` (Windows/HNV
    style, as the seed's PowerShell prints) or bare ``00005e005301``."""
    cleaned = text.strip()
    if len(cleaned) == 17:
        sep = cleaned[2]
        if sep not in ":-" or cleaned.split(sep) != [cleaned[i : i + 2] for i in range(0, 17, 3)]:
            raise ValueError(f"not a MAC address: {text!r}")
        digits = cleaned.replace(sep, "")
    elif len(cleaned) == 12:
        digits = cleaned
    else:
        raise ValueError(f"not a MAC address: {text!r}")
    if not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes.fromhex(digits)


def mac_to_str(mac: Buffer) -> str:
    """A MAC as nvgw prints it wherever a person reads one (trace, replay, the CLI's
    tables, the API, config files, logs): lower-case hex in dashes,
    ``00-00-00-00-00-11``, the HNV admin's notation (Windows and the seed's cmdlets
    print MACs so; Linux tools' colons are theirs). One spelling, made here only."""
    if len(mac) != ETH_ADDR_SIZE:
        raise ValueError("a MAC address is 6 bytes")
    return bytes(mac).hex("-")
