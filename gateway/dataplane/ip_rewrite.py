"""IP-Rewrite on the provider link: the daemon's own PAs, framed by the daemon.

A rewrite PA is the daemon's, not the kernel's (the kernel would answer its traffic
with RSTs), so the daemon answers its ARP, resolves the PAs it sends to
(``neighbors.py``), frames rewritten packets itself and turns packets addressed to its
PAs back into the CA's frame.
"""

from __future__ import annotations

from gateway.dataplane._frame import (
    ETH_DST,
    ETH_SRC,
    IP,
    IP_DST_ADDR,
    IP_MIN_FRAME,
    IP_SRC_ADDR,
    IP_TOTAL_LENGTH_FIELD,
)
from gateway.dataplane.host import HostNode
from gateway.errors import BadPacket, Drop
from gateway.wire import (
    ARP_OP_REPLY,
    ARP_OP_REQUEST,
    BROADCAST_MAC,
    ETH_GROUP_BIT,
    ETH_HEADER,
    ETH_HEADER_SIZE,
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ZERO_MAC,
    build_arp,
    build_arp_reply,
    build_ethernet,
    parse_arp,
    rewrite_ipv4_dst,
    rewrite_ipv4_src,
)


def to_link(node: HostNode, src_pa: bytes, dst_pa: bytes, frame: memoryview) -> bool:
    """Frame a rewritten packet for the provider link, resolving ``dst_pa`` first
    (the frame waits, copied, in a bounded queue); False when it was dropped."""
    drops = node.counters.drops
    if node.provider_mac is None:
        drops[Drop.PROVIDER_UNREACHABLE] += 1
        return False
    mac, ask = node.neighbors.resolve(dst_pa, node.now)
    if ask:
        request = build_arp(ARP_OP_REQUEST, node.provider_mac, src_pa, ZERO_MAC, dst_pa)
        node.out.to_provider_link(
            build_ethernet(BROADCAST_MAC, node.provider_mac, ETHERTYPE_ARP) + request
        )
    frame[ETH_SRC] = node.provider_mac
    if mac is None:
        if not node.neighbors.park(dst_pa, bytearray(frame)):
            drops[Drop.TX_FULL] += 1
            return False
        return True
    frame[ETH_DST] = mac
    node.out.to_provider_link(frame)
    return True


def from_provider_link(node: HostNode, frame: memoryview) -> None:
    """IP-Rewrite's receive side: an Ethernet frame from the provider link.

    A rewrite PA is the daemon's, not the kernel's (the kernel would answer its
    traffic with RSTs), so its ARP is answered here and packets to it are turned
    back into the CA's frame. Frames for anything else are none of our business.
    """
    if len(frame) < ETH_HEADER_SIZE:
        return
    dst_mac, src_mac, ethertype = ETH_HEADER.unpack_from(frame)
    if dst_mac != node.provider_mac and not dst_mac[0] & ETH_GROUP_BIT:
        # Another host's unicast: it reaches us only when a switch floods an
        # unknown destination or the link is promiscuous, and the kernel would
        # not take it either. Counted all the same: a steady rise means flooding
        # (a switch's table too small) or someone probing.
        node.counters.drops[Drop.FOREIGN_MAC] += 1
        return
    tables = node.tables
    if ethertype == ETHERTYPE_ARP:
        _arp_from_link(node, frame, src_mac)
        return
    if ethertype != ETHERTYPE_IPV4 or len(frame) < IP_MIN_FRAME:
        return
    record = tables.rewrite_by_pa.get(bytes(frame[IP_DST_ADDR]))
    if record is None:
        return
    counters = node.counters
    counters.provider_rx_packets += 1
    counters.provider_rx_bytes += len(frame) - ETH_HEADER_SIZE
    src_pa = bytes(frame[IP_SRC_ADDR])
    sender = tables.rewrite_sender(src_pa)
    if sender is None or sender.rdid != record.rdid:
        counters.drops[Drop.SPOOFED_PA] += 1
        return
    port = tables.port_by_key.get((record.vsid, record.mac_bytes))
    if port is None:
        counters.drops[Drop.NO_PORT] += 1
        return
    end = IP + int.from_bytes(frame[IP_TOTAL_LENGTH_FIELD], "big")
    try:
        packet = frame[IP:end]
        rewrite_ipv4_dst(packet, record.ca_bytes)
        rewrite_ipv4_src(packet, sender.ca_bytes)
    except BadPacket as bad:
        counters.drops[bad.reason] += 1
        return
    frame[ETH_DST] = port.mac
    frame[ETH_SRC] = sender.mac_bytes if sender.vsid == record.vsid else port.router_mac
    node.out.to_tap(port, frame[:end])
    counters.ip_rewritten_in += 1
    port.counters.to_vm_packets += 1
    port.counters.to_vm_bytes += end


def _arp_from_link(node: HostNode, frame: memoryview, src_mac: bytes) -> None:
    """A request for one of our PAs is answered; a reply about a PA we send to is
    learned if it answers our own request. Either must come from its sender: a
    unicast, non-zero sender MAC equal to the frame's source. ARP about anything
    else is the kernel's or other hosts' business, and is left alone."""
    try:
        arp = parse_arp(frame, ETH_HEADER_SIZE)
    except BadPacket:
        return
    tables = node.tables
    request = arp.opcode == ARP_OP_REQUEST
    if request:
        if arp.target_ip not in tables.rewrite_by_pa:
            return
    elif arp.opcode != ARP_OP_REPLY or tables.rewrite_sender(arp.sender_ip) is None:
        return
    drops = node.counters.drops
    sender_mac = arp.sender_mac
    if sender_mac != src_mac or sender_mac[0] & ETH_GROUP_BIT or sender_mac == ZERO_MAC:
        drops[Drop.ARP_REFUSED] += 1
        return
    if request:
        if node.provider_mac is not None:
            node.out.to_provider_link(build_arp_reply(arp, node.provider_mac))
            node.counters.arp_replies += 1
        return
    neighbors = node.neighbors
    waiting = neighbors.learn(arp.sender_ip, sender_mac, node.now)
    if waiting is None:
        drops[Drop.ARP_REFUSED] += 1
        neighbors.doubt(arp.sender_ip, sender_mac)
        return
    out = node.out
    for parked in waiting:
        parked[ETH_DST] = sender_mac
        out.to_provider_link(parked)
