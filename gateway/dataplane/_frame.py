"""Where things sit in an untagged inner Ethernet frame carrying IPv4."""

from __future__ import annotations

from typing import Final

from gateway.wire import ETH_HEADER_SIZE, IPV4_OFFSET_TOTAL_LENGTH

IP: Final = ETH_HEADER_SIZE  # where the inner IPv4 header starts
IP_MIN_FRAME: Final = ETH_HEADER_SIZE + 20  # an Ethernet header and an IPv4 header
IP_TOTAL_LENGTH: Final = IP + IPV4_OFFSET_TOTAL_LENGTH
IP_SRC: Final = IP + 12
IP_DST: Final = IP + 16
