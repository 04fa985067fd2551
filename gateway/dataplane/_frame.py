"""Where things sit in an untagged inner Ethernet frame carrying IPv4.

wire's offsets (RFC 791 sec. 3.1, IEEE 802.3 clause 3.2), moved past the Ethernet
header once here, so that the per-packet code indexes a frame by name with no
arithmetic of its own. Slices are constants too: ``frame[IP_SRC_ADDR]`` builds no
slice per packet.
"""

from __future__ import annotations

from typing import Final

from gateway.wire import (
    ETH_ADDR_SIZE,
    ETH_HEADER_SIZE,
    ETH_OFFSET_DST,
    ETH_OFFSET_SRC,
    IPV4_ADDR_SIZE,
    IPV4_DF,
    IPV4_HEADER_SIZE,
    IPV4_OFFSET_DST,
    IPV4_OFFSET_FRAGMENT,
    IPV4_OFFSET_SRC,
    IPV4_OFFSET_TOTAL_LENGTH,
    IPV4_OFFSET_VERSION_IHL,
)

ETH_DST: Final = slice(ETH_OFFSET_DST, ETH_OFFSET_DST + ETH_ADDR_SIZE)
ETH_SRC: Final = slice(ETH_OFFSET_SRC, ETH_OFFSET_SRC + ETH_ADDR_SIZE)
IP: Final = ETH_HEADER_SIZE  # where the inner IPv4 header starts
IP_MIN_FRAME: Final = ETH_HEADER_SIZE + IPV4_HEADER_SIZE  # an Ethernet and an IPv4 header
IP_VERSION_IHL: Final = IP + IPV4_OFFSET_VERSION_IHL
IP_TOTAL_LENGTH: Final = IP + IPV4_OFFSET_TOTAL_LENGTH
IP_TOTAL_LENGTH_FIELD: Final = slice(IP_TOTAL_LENGTH, IP_TOTAL_LENGTH + 2)
IP_FLAGS: Final = IP + IPV4_OFFSET_FRAGMENT  # the byte holding DF and MF
IP_FLAG_DF: Final = IPV4_DF >> 8  # DF within that byte
IP_SRC_ADDR: Final = slice(IP + IPV4_OFFSET_SRC, IP + IPV4_OFFSET_SRC + IPV4_ADDR_SIZE)
IP_DST_ADDR: Final = slice(IP + IPV4_OFFSET_DST, IP + IPV4_OFFSET_DST + IPV4_ADDR_SIZE)
