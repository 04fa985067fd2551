"""Linux constants the ``socket`` module lacks, for the provider sockets, in one place.

Packet sockets and their receive ring (``ring.py``), the IP-Rewrite link socket and
the raw GRE sockets (``provider.py``) use these; each is the kernel's value from the
header named beside it, which is stable ABI.
"""

from __future__ import annotations

import socket
from typing import Final

ETH_P_ALL: Final = 0x0003  # every protocol (linux/if_ether.h)
SOL_PACKET: Final = 263  # setsockopt level of packet sockets (linux/socket.h)
# Packet socket options (linux/if_packet.h).
PACKET_RX_RING: Final = 5
PACKET_STATISTICS: Final = 6
PACKET_VERSION: Final = 10
PACKET_IGNORE_OUTGOING: Final = 23
TPACKET_V2: Final = 1
# A ring slot's owner (tpacket2_hdr.tp_status, linux/if_packet.h).
TP_STATUS_KERNEL: Final = 0
TP_STATUS_USER: Final = 1
SO_ATTACH_FILTER: Final = 26  # a classic BPF socket filter (asm-generic/socket.h)
# Path MTU discovery on a raw IPv4 socket: always set DF, never fragment (linux/in.h).
IP_MTU_DISCOVER: Final = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DO: Final = getattr(socket, "IP_PMTUDISC_DO", 2)
