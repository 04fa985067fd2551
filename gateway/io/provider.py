"""Sockets on the provider network.

* NVGRE: one raw IPPROTO_GRE socket per NVGRE PA, bound to it, for both
  directions. The kernel hands it every GRE datagram addressed to that PA (a
  kernel address), outer IPv4 header first, already checksummed and reassembled;
  because a raw listener exists, it sends no protocol-unreachable for GRE. On send
  the kernel builds the outer IPv4 header (protocol 47, our PA, its checksum) in
  front of the GRE header and frame we pass with sendmsg (no concatenation), and
  with IP_PMTUDISC_DO it sets DF and never fragments: an NVGRE datagram that does
  not fit is refused (EMSGSIZE) rather than split (design.md, MTU). One socket per
  PA, not a shared receiver plus senders: every raw socket that matches gets its
  own copy of each datagram, and a send-only socket would fill up with copies.
* IP-Rewrite: its PAs are the daemon's, not the kernel's, so the kernel can neither
  receive nor send for them. Rewritten packets and the ARP for those PAs go both
  ways through an AF_PACKET socket on the provider interface, framed by the data
  plane itself.
"""

from __future__ import annotations

import socket

from gateway.io.linux import (
    ETH_P_ALL,
    IP_MTU_DISCOVER,
    IP_PMTUDISC_DO,
    PACKET_IGNORE_OUTGOING,
    SOL_PACKET,
)

RECEIVE_BUFFER_BYTES = 4 << 20  # absorbs bursts while the loop serves other fds


def _raw(protocol: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, protocol)
    sock.setblocking(False)
    return sock


def open_gre_socket(pa: bytes) -> socket.socket:
    sock = _raw(socket.IPPROTO_GRE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    sock.bind((socket.inet_ntoa(pa), 0))
    return sock


def open_link(interface: str) -> socket.socket:
    """The IP-Rewrite PAs' socket on the provider link. It must not see what this
    host sends (PACKET_IGNORE_OUTGOING): our own rewritten frames and the kernel's
    NVGRE go to other hosts' MACs, and would read as frames addressed elsewhere."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    sock.bind((interface, ETH_P_ALL))
    sock.setblocking(False)
    return sock


def link_mtu(interface: str) -> int:
    with open(f"/sys/class/net/{interface}/mtu") as f:
        return int(f.read())


def link_mac(interface: str) -> bytes:
    with open(f"/sys/class/net/{interface}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))
