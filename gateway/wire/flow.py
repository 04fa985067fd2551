"""The NVGRE FlowID: 8 bits of per-flow entropy for ECMP (RFC 7637 sec. 3.2 and 4.1).

FlowID = zlib.crc32(packed inner tuple) & 0xFF, where the tuple is

    src IP, dst IP, protocol, src port, dst port   TCP and UDP (``!4s4sBHH``, ``!16s16sBHH``)
    src IP, dst IP, protocol                       otherwise   (``!4s4sB``, ``!16s16sB``)

CRC-32 rather than ``hash()``: Python salts ``hash()`` per process, and every gateway and
host must give one flow one FlowID, or a flow's packets would spread over ECMP paths and
arrive out of order. The FlowID is entropy, not policy, so frames that cannot be read
never raise: non-IP frames get FlowID 0, which RFC 7637 sec. 3.2 prescribes when no
FlowID is generated, and unreadable IP headers get the 3-tuple or 0.

Fragments hash without ports even when the first one carries them, so that all the
fragments of a datagram stay on one path.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

from gateway.wire._types import Buffer
from gateway.wire.ethernet import (
    _ETH_TYPE,
    ETH_HEADER_SIZE,
    ETH_OFFSET_TYPE,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
)
from gateway.wire.ipv4 import (
    _IPV4_HEADER,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV4_FRAGMENT_MASK,
    IPV4_HEADER_SIZE,
    IPV4_IHL_MASK,
    IPV4_VERSION,
)
from gateway.wire.ipv6 import _IPV6_HEADER, IPV6_HEADER_SIZE, IPV6_VERSION
from gateway.wire.l4 import _L4_PORTS, _L4_PORTS_SIZE
from gateway.wire.nvgre import _FLOW_ID_MASK

_FLOW_KEY_V4: Final = struct.Struct("!4s4sBHH")  # 5-tuple: TCP and UDP
_FLOW_KEY_V4_NO_PORTS: Final = struct.Struct("!4s4sB")  # 3-tuple: everything else
_FLOW_KEY_V6: Final = struct.Struct("!16s16sBHH")
_FLOW_KEY_V6_NO_PORTS: Final = struct.Struct("!16s16sB")
_NO_FLOW_ID: Final = 0  # "not generated" (RFC 7637 sec. 3.2)

_PORTED: Final = frozenset((IPPROTO_TCP, IPPROTO_UDP))


def flow_id_of_tuple(
    src: bytes, dst: bytes, protocol: int, src_port: int | None = None, dst_port: int | None = None
) -> int:
    """The FlowID of an inner flow given as addresses (4 or 16 bytes) and ports.

    Ports count only for TCP and UDP, and only when given: pass none for a fragment.
    """
    v6 = len(src) == 16
    if protocol in _PORTED and src_port is not None and dst_port is not None:
        key = (_FLOW_KEY_V6 if v6 else _FLOW_KEY_V4).pack(src, dst, protocol, src_port, dst_port)
    else:
        key = (_FLOW_KEY_V6_NO_PORTS if v6 else _FLOW_KEY_V4_NO_PORTS).pack(src, dst, protocol)
    return zlib.crc32(key) & _FLOW_ID_MASK


def flow_id_of_frame(frame: Buffer) -> int:
    """The FlowID of an inner Ethernet frame (untagged), never raising.

    IPv6 extension headers are not walked: the next header found after the fixed
    header is the protocol hashed, with ports only when it is TCP or UDP directly.
    """
    try:
        if len(frame) < ETH_HEADER_SIZE:
            return _NO_FLOW_ID
        (ethertype,) = _ETH_TYPE.unpack_from(frame, ETH_OFFSET_TYPE)
        at = ETH_HEADER_SIZE
        if ethertype == ETHERTYPE_IPV4:
            if len(frame) - at < IPV4_HEADER_SIZE:
                return _NO_FLOW_ID
            ver_ihl, _, _, _, fragment, _, protocol, _, src, dst = _IPV4_HEADER.unpack_from(
                frame, at
            )
            if ver_ihl >> 4 != IPV4_VERSION:
                return _NO_FLOW_ID
            l4 = at + (ver_ihl & IPV4_IHL_MASK) * 4
            ported = protocol in _PORTED and not fragment & IPV4_FRAGMENT_MASK
            key = _FLOW_KEY_V4
            key_no_ports = _FLOW_KEY_V4_NO_PORTS
        elif ethertype == ETHERTYPE_IPV6:
            if len(frame) - at < IPV6_HEADER_SIZE:
                return _NO_FLOW_ID
            first, _, protocol, _, src, dst = _IPV6_HEADER.unpack_from(frame, at)
            if first >> 28 != IPV6_VERSION:
                return _NO_FLOW_ID
            l4 = at + IPV6_HEADER_SIZE
            ported = protocol in _PORTED
            key = _FLOW_KEY_V6
            key_no_ports = _FLOW_KEY_V6_NO_PORTS
        else:
            return _NO_FLOW_ID
        if ported and l4 - at >= IPV4_HEADER_SIZE and len(frame) - l4 >= _L4_PORTS_SIZE:
            src_port, dst_port = _L4_PORTS.unpack_from(frame, l4)
            packed = key.pack(src, dst, protocol, src_port, dst_port)
        else:
            packed = key_no_ports.pack(src, dst, protocol)
        return zlib.crc32(packed) & _FLOW_ID_MASK
    except (struct.error, IndexError, ValueError):
        return _NO_FLOW_ID
