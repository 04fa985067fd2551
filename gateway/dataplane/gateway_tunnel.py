"""Site-to-site tunnels on a gateway (hybrid cloud): what its tables and its state
hold of them, and the way out into one.

Per snapshot (``GatewayTables.tunnels``), each tunnel the node serves is a
``GatewayTunnel``: its routing domain, its MTU (the WAN's less the outer IPv4 and UDP
headers and WireGuard's 32 bytes of header and tag: 1440 on a 1500 WAN, so a DF
packet too big for it gets fragmentation-needed with that MTU), its allowed IPs as
a set of networks per mask (the sources accepted from the peer: cryptokey routing), and
the gateway's CA in its routing domain, the source of the ICMP errors it sends back
into the tunnel (the on-prem side routes the tenant's addresses to us). A route to it
is the action ``ToTunnel``.

Per node (``GatewayNode.tunnel_ports``), one ``TunnelPort`` per listen port: the
WireGuard ``Device`` (sans IO, ``gateway.wireguard``) holding that port's private key
and one peer per tunnel. The node adopts each snapshot's tunnels with
``adopt_tunnels``: a port whose key is unchanged keeps its device, and with it every
session of the tunnels that stay (a peer whose public key, preshared key, endpoint
and keepalive are unchanged is kept; only added and removed tunnels change). The
keys come from the io layer (``TunnelKeys``: read from the node's key files), never
from the policy, which holds their paths.

What a device has to send (data, handshakes, keepalives, cookie replies) waits in its
outbox; ``flush`` hands it to ``Output.to_udp`` from the port's socket. The device
counts what it refuses per ``Reason``; ``count_refusals`` adds what is new to the
node's drop counters, grouped as ``REASON_DROP`` says (called after what it received
and at each tick, so a drop of the sending side shows within a tick).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from gateway.dataplane.tables import UNDERLAY_MTU
from gateway.errors import Drop
from gateway.policy import TUNNEL_LOAD_THRESHOLD, Tunnel, decode_key, endpoint_pair
from gateway.wire import IPV4_HEADER_SIZE
from gateway.wireguard import KEY_SIZE, TRANSPORT_OVERHEAD, Device, Limits, Peer, Reason

if TYPE_CHECKING:
    from gateway.dataplane.gateway_node import GatewayNode
    from gateway.dataplane.gateway_tables import GatewayDomain

UDP_HEADER_SIZE: Final = 8  # RFC 768
# A tunnel's MTU: what a WAN packet carries after the outer IPv4 and UDP headers and
# WireGuard's transport header and tag (16 + 16 bytes): 1500 - 20 - 8 - 32 = 1440.
TUNNEL_MTU: Final = UNDERLAY_MTU - IPV4_HEADER_SIZE - UDP_HEADER_SIZE - TRANSPORT_OVERHEAD
_FULL_MASK: Final = 0xFFFFFFFF

REASON_DROP: Final = {
    Reason.TRUNCATED: Drop.TUNNEL_MALFORMED,
    Reason.UNKNOWN_TYPE: Drop.TUNNEL_MALFORMED,
    Reason.BAD_LENGTH: Drop.TUNNEL_MALFORMED,
    Reason.INNER_MALFORMED: Drop.TUNNEL_MALFORMED,
    Reason.BAD_MAC1: Drop.TUNNEL_UNAUTHENTICATED,
    Reason.HANDSHAKE_AUTH: Drop.TUNNEL_UNAUTHENTICATED,
    Reason.UNKNOWN_PEER: Drop.TUNNEL_UNAUTHENTICATED,
    Reason.UNKNOWN_INDEX: Drop.TUNNEL_UNAUTHENTICATED,
    Reason.UNEXPECTED_RESPONSE: Drop.TUNNEL_UNAUTHENTICATED,
    Reason.BAD_COOKIE_REPLY: Drop.TUNNEL_UNAUTHENTICATED,
    Reason.DECRYPT_FAILED: Drop.TUNNEL_UNAUTHENTICATED,
    Reason.TIMESTAMP_REPLAY: Drop.TUNNEL_REPLAYED,
    Reason.REPLAYED: Drop.TUNNEL_REPLAYED,
    Reason.COOKIE_REQUIRED: Drop.TUNNEL_UNDER_LOAD,
    Reason.INITIATION_FLOOD: Drop.TUNNEL_UNDER_LOAD,
    Reason.INDEXES_FULL: Drop.TUNNEL_UNDER_LOAD,
    Reason.KEY_EXPIRED: Drop.TUNNEL_KEY_EXPIRED,
    Reason.NO_ENDPOINT: Drop.TUNNEL_NO_SESSION,
    Reason.STAGED_FULL: Drop.TUNNEL_NO_SESSION,
    Reason.NO_SESSION: Drop.TUNNEL_NO_SESSION,
}
_DROPS: Final = tuple(REASON_DROP[reason] for reason in Reason)  # indexed by Reason

# What a tunnel's peer counts (``Peer``'s plain ints), ``(name, help)``: the one list
# the ``nvgw_tunnel_<name>_total`` metrics and ``nvgw tunnel show``'s JSON are made of.
PEER_TOTALS: Final = (
    ("handshakes", "WireGuard handshakes completed with the tunnel's peer"),
    ("rx_packets", "IP packets received from the peer and decrypted (keepalives not counted)"),
    ("rx_bytes", "bytes of every authenticated datagram from the peer, whole"),
    ("tx_packets", "IP packets sent to the peer (keepalives not counted)"),
    ("tx_bytes", "bytes of every datagram sent to the peer, whole"),
    ("decryption_failures", "transport data on one of the peer's sessions that did not decrypt"),
    ("replays", "transport data from the peer that decrypted but was seen already"),
)


@dataclass(frozen=True)
class TunnelKeys:
    """A gateway's secrets, read by the io layer from the files the policy names:
    the private key per listen port, the preshared key per tunnel name (32 bytes
    each). Never printed: ``repr`` names the ports and tunnels only."""

    private: Mapping[int, bytes] = field(default_factory=dict)
    preshared: Mapping[str, bytes] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"TunnelKeys(ports={sorted(self.private)}, preshared={sorted(self.preshared)})"


class GatewayTunnel:
    """One tunnel the node serves, in one snapshot's tables (module docstring).
    ``port`` and ``peer`` are the node's, attached when it adopts the tables (None:
    no key for its port, so nothing can be sent)."""

    __slots__ = ("allowed", "config", "domain", "mtu", "name", "own_ip", "peer", "port")

    def __init__(self, tunnel: Tunnel, domain: GatewayDomain, own_ip: bytes | None) -> None:
        self.config = tunnel
        self.name = tunnel.name
        self.domain = domain
        self.own_ip = own_ip
        self.mtu = TUNNEL_MTU
        # The allowed IPs as a set of networks per prefix length (by its mask): a
        # source is checked with one lookup per length, however many prefixes.
        by_mask: dict[int, set[int]] = {}
        for prefix in tunnel.allowed_ips:
            mask = _FULL_MASK ^ (_FULL_MASK >> prefix.prefixlen)
            by_mask.setdefault(mask, set()).add(int(prefix.network_address))
        self.allowed = tuple((mask, frozenset(networks)) for mask, networks in by_mask.items())
        self.port: TunnelPort | None = None
        self.peer: Peer | None = None

    def latest_handshake(self) -> float:
        """When the latest handshake with the peer completed, in seconds since the
        epoch as ``wg show`` gives it (0: none yet): the device's monotonic ``now``
        of it plus the wall clock's offset the io layer gave the device."""
        peer = self.peer
        if peer is None or peer.last_handshake_s is None:
            return 0.0
        return peer.last_handshake_s + self.port.device.wall_offset_s  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"GatewayTunnel({self.name!r}, {self.domain.name})"


class ToTunnel:
    """Into ``tunnel``: encrypted for its peer and sent from its listen port."""

    __slots__ = ("tunnel",)

    def __init__(self, tunnel: GatewayTunnel) -> None:
        self.tunnel = tunnel


# When a listen port is under load (WireGuard paper 5.3: handshakes must then carry a
# cookie, and a cookie reply answers those that do not): more than the node's
# ``tunnel_load_threshold`` handshake messages in one batch of its socket (the io
# layer reads a batch at one ``now``: 64 datagrams at most), and for ``UNDER_LOAD_S``
# after (wireguard-go's UnderLoadAfterTime).
UNDER_LOAD_S: Final = 1.0


class TunnelPort:
    """One listen port's WireGuard device and the tunnels it serves, by the peers'
    public keys (how a received packet finds its tunnel), and its load: handshake
    messages counted per batch (``now``), and until when it is under load."""

    __slots__ = (
        "batch_handshakes",
        "batch_now",
        "device",
        "key",
        "listen_port",
        "load_threshold",
        "loaded_until",
        "seen",
        "tunnels",
    )

    def __init__(self, listen_port: int, key: bytes, device: Device) -> None:
        self.listen_port = listen_port
        self.key = key
        self.device = device
        self.tunnels: dict[bytes, GatewayTunnel] = {}
        self.seen = [0] * len(Reason)  # the device's refusals already counted as drops
        self.load_threshold = TUNNEL_LOAD_THRESHOLD  # the node's, set by ``adopt_tunnels``
        self.batch_now = float("-inf")
        self.batch_handshakes = 0
        self.loaded_until = float("-inf")

    def under_load(self, now: float) -> bool:
        """Count one handshake message of the batch at ``now``; whether the port is
        under load (this batch past the threshold, or one within ``UNDER_LOAD_S``)."""
        if now != self.batch_now:
            self.batch_now, self.batch_handshakes = now, 0
        self.batch_handshakes += 1
        if self.batch_handshakes > self.load_threshold:
            self.loaded_until = now + UNDER_LOAD_S
        return now < self.loaded_until


# How a node makes a device: tests inject randomness and limits (``Device``'s own).
DeviceFactory = Callable[[bytes], Device]


def compile_tunnels(
    tunnels: Iterable[Tunnel], domains: Mapping[str, GatewayDomain], cas: Mapping[str, bytes]
) -> dict[str, ToTunnel]:
    """The node's tunnels of one snapshot, as route actions by name; ``cas`` gives
    the gateway's CA per routing domain (the source of errors into the tunnel)."""
    return {
        tunnel.name: ToTunnel(GatewayTunnel(tunnel, domains[tunnel.rdid], cas.get(tunnel.rdid)))
        for tunnel in tunnels
        if tunnel.rdid in domains
    }


def adopt_tunnels(
    node: GatewayNode,
    actions: Mapping[str, ToTunnel],
    keys: TunnelKeys,
    make: DeviceFactory,
    load_threshold: int = TUNNEL_LOAD_THRESHOLD,
) -> None:
    """Give each tunnel of the new tables its port and peer (module docstring), and
    each port the node's load threshold."""
    ports: dict[int, TunnelPort] = {}
    for action in actions.values():
        tunnel = action.tunnel
        listen_port = tunnel.config.listen_port
        port = ports.get(listen_port)
        if port is None:
            key = keys.private.get(listen_port)
            if key is None:
                continue  # no key (a trace of a config): the tunnel cannot send
            port = node.tunnel_ports.get(listen_port)
            if port is None or port.key != key:
                port = TunnelPort(listen_port, key, make(key))
            port.tunnels = {}
            port.load_threshold = load_threshold
            ports[listen_port] = port
        try:
            peer = _peer(port.device, tunnel.config, keys.preshared.get(tunnel.name))
        except ValueError:
            continue  # a low-order point, or the port's own public key: it cannot send
        tunnel.port, tunnel.peer = port, peer
        port.tunnels[peer.public_key] = tunnel
    for port in ports.values():
        for public_key, peer in list(port.device.peers.items()):
            if public_key not in port.tunnels:
                port.device.remove_peer(peer)  # a tunnel removed: only its sessions go
    node.tunnel_ports = ports


def _peer(device: Device, config: Tunnel, preshared: bytes | None) -> Peer:
    """The device's peer for ``config``: the one it has when nothing that keys or
    reaches it changed (its sessions kept), else a new one."""
    public_key = decode_key(config.public_key)
    endpoint = None if config.endpoint is None else endpoint_pair(config.endpoint)
    keepalive = float(config.persistent_keepalive or 0)
    peer = device.peers.get(public_key)
    if peer is not None:
        if peer.handshake.preshared_key == (preshared or bytes(KEY_SIZE)):
            if endpoint is not None and endpoint != peer.endpoint:
                peer.endpoint = endpoint  # the config moved it (roaming still may)
            if keepalive != peer.persistent_keepalive_s:
                peer.persistent_keepalive_s = keepalive
                # As when a peer is added: one goes out at once (wireguard-go's way).
                peer.persistent_keepalive_at = float("-inf") if keepalive > 0 else None
            return peer
        device.remove_peer(peer)
    return device.add_peer(
        public_key, preshared_key=preshared, endpoint=endpoint, persistent_keepalive_s=keepalive
    )


def new_device(
    wall_offset_s: float, limits: Limits | None = None, **options: object
) -> DeviceFactory:
    """A factory of devices for a node: the wall clock's offset from ``now`` (TAI64N
    timestamps keep rising across restarts), the tunnels' MTU, and anything else
    ``Device`` takes (tests: randomness)."""

    def make(key: bytes) -> Device:
        return Device(
            key,
            limits=limits,
            wall_offset_s=wall_offset_s,
            mtu=TUNNEL_MTU,
            **options,  # type: ignore[arg-type]
        )

    return make


def send_to_tunnel(node: GatewayNode, tunnel: GatewayTunnel, packet: memoryview) -> None:
    """Encrypt ``packet`` (a routed IPv4 packet, header final) for the tunnel's peer,
    or hold it while a handshake starts; what is ready goes out at once."""
    port = tunnel.port
    if port is None:
        node.counters.drops[Drop.TUNNEL_NO_SESSION] += 1
        return
    device = port.device
    peer = tunnel.peer
    datagram = device.seal(peer, packet, node.now)  # type: ignore[arg-type]
    if datagram is not None:  # in session: straight out, no outbox
        node.out.to_udp(port.listen_port, peer.endpoint, datagram)  # type: ignore[union-attr]
    if device.outbox:
        flush(node, port)


def flush(node: GatewayNode, port: TunnelPort) -> None:
    """Hand what the port's device has to send to the Output, in order."""
    outbox = port.device.outbox
    to_udp = node.out.to_udp
    listen_port = port.listen_port
    for datagram, endpoint in outbox:
        to_udp(listen_port, endpoint, datagram)
    outbox.clear()


def count_refusals(node: GatewayNode, port: TunnelPort) -> None:
    """Add what the device refused since the last call to the node's drops."""
    refused, seen, drops = port.device.refused, port.seen, node.counters.drops
    for reason, count in enumerate(refused):
        if count != seen[reason]:
            drops[_DROPS[reason]] += count - seen[reason]
            seen[reason] = count
