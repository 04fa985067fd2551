"""What arrives on a gateway's tunnel listen ports, and the tunnels' timers
(``gateway_tunnel.py`` has the tunnels' state and the way out into one).

``gateway_from_tunnel(node, port, datagram, source)``: a UDP datagram from ``source``
to listen port ``port``. The port's WireGuard device takes it: handshake messages and
cookie replies are answered through its outbox (flushed here to ``Output.to_udp``),
anything unauthenticated is refused and counted, and transport data that
authenticates gives the peer's IP packet. The gateway then does what WireGuard's
cryptokey routing asks of the receiver: the packet's source must be in that peer's
allowed IPs (else ``tunnel_source``); it is routed in the tunnel's routing domain
like a packet from a TAP (``route_ipv4`` with the tunnel as its ingress: the TTL,
time-exceeded and fragmentation-needed sent back into the tunnel from the gateway's
CA in that domain).

A port whose batches bring many handshake messages is under load
(``TunnelPort.under_load``): then handshakes need a cookie, as the WireGuard paper
says (5.3), and those without one get a cookie reply and go no further.

``gateway_tunnel_tick(node)``: the devices' timers at ``node.now`` (handshake
retries, keepalives, rekeys, zeroing keys), then their outboxes and the drops they
counted; gives when to call again (None: nothing pending). The io layer calls it
every ~100 ms.
"""

from __future__ import annotations

import struct
from typing import Final

from gateway.dataplane.gateway_node import GatewayNode
from gateway.dataplane.gateway_routing import route_ipv4
from gateway.dataplane.gateway_tunnel import count_refusals, flush
from gateway.errors import Drop
from gateway.wire import ETH_ADDR_SIZE, ETHERTYPE_IPV4, IPV4_OFFSET_SRC, IPV4_VERSION
from gateway.wireguard import TRANSPORT_TYPE

_SOURCE: Final = struct.Struct("!I").unpack_from  # the source address, as an int
# The Ethernet header a decrypted packet is routed behind: its MACs are written on
# the way out, its ethertype says IPv4 (what goes into a VSID keeps it).
_ETHERNET: Final = bytes(2 * ETH_ADDR_SIZE) + ETHERTYPE_IPV4.to_bytes(2, "big")


def gateway_from_tunnel(
    node: GatewayNode, port: int, datagram: memoryview | bytes, source: tuple[str, int]
) -> None:
    """A datagram from ``source`` to listen port ``port`` (module docstring)."""
    listener = node.tunnel_ports.get(port)
    if listener is None:
        node.counters.drops[Drop.TUNNEL_UNAUTHENTICATED] += 1  # a port no longer served
        return
    device = listener.device
    # Transport data (type 4) is never asked for a cookie: only handshakes count
    # toward the port's load (``TunnelPort.under_load``).
    loaded = bool(datagram) and datagram[0] != TRANSPORT_TYPE and listener.under_load(node.now)
    received = device.receive(datagram, source, node.now, loaded)
    if device.outbox:
        flush(node, listener)
    if received is None:
        count_refusals(node, listener)  # or a handshake or keepalive: nothing new then
        return
    peer, packet = received
    tunnel = listener.tunnels[peer.public_key]
    if packet[0] >> 4 != IPV4_VERSION:
        node.counters.drops[Drop.UNSUPPORTED] += 1  # IPv6 is not forwarded yet
        return
    (address,) = _SOURCE(packet, IPV4_OFFSET_SRC)
    for mask, networks in tunnel.allowed:  # in the peer's allowed IPs (one set per length)
        if address & mask in networks:
            break
    else:
        node.counters.drops[Drop.TUNNEL_SOURCE] += 1
        return
    # Routed as a frame from a TAP is (the routing path reads the IP header at ``IP``
    # and writes the TTL in place): the plaintext is copied once, behind an Ethernet
    # header whose MACs the way out fills in.
    frame = bytearray(_ETHERNET)
    frame += packet
    route_ipv4(node, tunnel, memoryview(frame))


def gateway_tunnel_tick(node: GatewayNode) -> float | None:
    """Fire the tunnels' timers due at ``node.now`` (module docstring)."""
    deadline = None
    for listener in node.tunnel_ports.values():
        device = listener.device
        device.tick(node.now)
        if device.outbox:
            flush(node, listener)
        count_refusals(node, listener)
        due = device.next_deadline()
        if due is not None and (deadline is None or due < deadline):
            deadline = due
    return deadline
