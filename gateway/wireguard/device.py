"""A WireGuard device, sans IO: one static key (one listen port) and its peers.

Three inputs, each with the monotonic ``now``:

- ``receive(datagram, source, now, under_load)``: a UDP datagram from ``source``.
  Transport data that authenticates is returned as ``(peer, packet)``, trimmed to its
  IP length (a view of the plaintext when there was padding: no copy); the caller
  checks the packet's source against the peer's allowed IPs (cryptokey routing is
  routing, and routing is the caller's). Handshake messages are
  answered through the outbox. Anything unauthenticated is counted in ``refused`` by
  reason and gets no answer, except a cookie reply when the caller says we are under
  load and mac1 is valid (paper 5.3).
- ``send(peer, packet, now)``: a plaintext IP packet for the peer: encrypted into the
  outbox, or held (bounded) while a handshake is started.
- ``tick(now)``: fires the timers that are due; ``next_deadline()`` says when next.

Every datagram to send goes to ``outbox`` as ``(datagram, endpoint)``; the caller
drains it after each call or batch. The TAI64N of our initiations is the wall time
``now + wall_offset_s`` (the caller sets the offset from its wall clock: decisions.md,
"Clocks"). Randomness (ephemeral keys, indexes, cookie secrets) and the retransmit
jitter are injected, so tests are deterministic.

The receiver-index table maps the 32-bit indexes we chose to (peer, keypair), or to
(peer, None) for a handshake in progress. Each peer holds at most four (a handshake
and three keypairs), and the table is bounded besides (``max_indexes``).
"""

from __future__ import annotations

import ipaddress
import os
import random
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag

from gateway.wireguard.cookie import CookieChecker
from gateway.wireguard.crypto import KEY_SIZE, NONCE
from gateway.wireguard.keypairs import Limits
from gateway.wireguard.messages import (
    COOKIE_REPLY,
    INITIATION,
    KEEPALIVE_SIZE,
    RESPONSE,
    TRANSPORT,
    TRANSPORT_HEADER,
    TRANSPORT_HEADER_SIZE,
    build_response,
    message_type,
    parse_cookie_reply,
    parse_initiation,
    parse_response,
)
from gateway.wireguard.noise import (
    Handshake,
    consume_initiation,
    consume_response,
    create_response,
)
from gateway.wireguard.peer import Endpoint, Peer
from gateway.wireguard.reasons import Reason, Refused
from gateway.wireguard.sessions import DEFAULT_MTU, INDEXES_PER_PEER, MAX_PEERS, Sessions

_IPV4_MIN: Final = 20
_IPV6_HEADER: Final = 40
_NO_ENTRY: Final = (None, None)  # what an unknown receiver index finds


class Device(Sessions):
    """One listen port's WireGuard protocol state."""

    def __init__(
        self,
        private_key: bytes,
        *,
        limits: Limits | None = None,
        wall_offset_s: float = 0.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
        jitter: Callable[[], float] = random.random,
        max_peers: int = MAX_PEERS,
        max_indexes: int | None = None,
        mtu: int = DEFAULT_MTU,
    ) -> None:
        super().__init__(
            private_key,
            limits,
            wall_offset_s,
            random_bytes,
            jitter,
            max_indexes or INDEXES_PER_PEER * max_peers,
            mtu,
        )
        self.max_peers = max_peers
        # Past this age, data received on the initiator's keypair starts a rekey (the
        # handshake's last chance before reject-after-time, wireguard-go's
        # keepKeyFreshReceiving).
        limits = self.limits
        self._last_minute_s = (
            limits.reject_after_time_s - limits.keepalive_timeout_s - limits.rekey_timeout_s
        )
        self.cookies = CookieChecker(
            self.identity.public, random_bytes, self.limits.cookie_refresh_s
        )
        self.peers: dict[bytes, Peer] = {}
        self._handshakes: dict[bytes, Handshake] = {}  # by public key: consume_initiation
        self.cookie_replies_sent = 0
        self._handlers: dict[int, Callable[[bytes | memoryview, Endpoint, float, bool], None]] = {
            INITIATION: self._on_initiation,
            RESPONSE: self._on_response,
            COOKIE_REPLY: self._on_cookie_reply,
        }

    # Configuration.

    def add_peer(
        self,
        public_key: bytes,
        *,
        preshared_key: bytes | None = None,
        endpoint: Endpoint | None = None,
        persistent_keepalive_s: float = 0.0,
    ) -> Peer:
        """A new peer (``ValueError`` for a bad key, our own key, or one twice)."""
        if public_key in self.peers:
            raise ValueError("that public key is a peer already")
        if public_key == self.identity.public:
            raise ValueError("a peer cannot have the device's own public key")
        if len(self.peers) >= self.max_peers:
            raise ValueError(f"at most {self.max_peers} peers per device")
        peer = Peer(
            self.identity,
            public_key,
            preshared_key,
            endpoint,
            persistent_keepalive_s,
            self.limits.cookie_refresh_s,
        )
        self.peers[public_key] = peer
        self._handshakes[public_key] = peer.handshake
        if persistent_keepalive_s > 0:  # wireguard-go sends one as soon as it is set
            peer.persistent_keepalive_at = float("-inf")
        return peer

    def remove_peer(self, peer: Peer) -> None:
        """Forget the peer, its sessions and their indexes; other peers are untouched."""
        self._zero(peer)
        del self.peers[peer.public_key], self._handshakes[peer.public_key]

    # Input: datagrams.

    def receive(
        self, datagram: bytes | memoryview, source: Endpoint, now: float, under_load: bool = False
    ) -> tuple[Peer, bytes | memoryview] | None:
        """A datagram from ``source``: ``(peer, packet)`` for authenticated data, None for
        everything else (answered through the outbox, or refused and counted)."""
        try:
            if len(datagram) >= KEEPALIVE_SIZE:  # shorter: refused as truncated below
                kind, receiver, counter = TRANSPORT_HEADER.unpack_from(datagram)
                if kind == TRANSPORT:
                    return self._on_transport(datagram, receiver, counter, source, now)
            self._handlers[message_type(datagram)](datagram, source, now, under_load)
        except Refused as refusal:
            self.refused[refusal.reason] += 1
        return None

    def _on_transport(
        self,
        datagram: bytes | memoryview,
        receiver: int,
        counter: int,
        source: Endpoint,
        now: float,
    ) -> tuple[Peer, bytes | memoryview] | None:
        """Transport data (``receive`` checked it holds a header and a tag)."""
        peer, keypair = self.indexes.get(receiver, _NO_ENTRY)
        if keypair is None:  # no such index, or a handshake's
            raise Refused(Reason.UNKNOWN_INDEX)
        limits = self.limits
        if now - keypair.created >= limits.reject_after_time_s:
            raise Refused(Reason.KEY_EXPIRED)
        try:
            packet = keypair.receive.decrypt(
                NONCE.pack(counter), datagram[TRANSPORT_HEADER_SIZE:], None
            )
        except InvalidTag:
            peer.decryption_failures += 1
            raise Refused(Reason.DECRYPT_FAILED) from None
        if not keypair.replay.accept(counter, limits.reject_after_messages):
            peer.replays += 1
            raise Refused(Reason.REPLAYED)
        if keypair is peer.keypairs.next:
            self._confirmed(peer, keypair, now)
        peer.endpoint = source  # roaming: only an authenticated packet moves it
        peer.rx_bytes += len(datagram)
        current = peer.keypairs.current
        if (
            current is not None
            and current.initiator
            and not peer.sent_last_minute_handshake
            and now - current.created > self._last_minute_s
        ):  # our keypair is about to be rejected and data still comes in: rekey now
            peer.sent_last_minute_handshake = True
            self._initiate(peer, now)
        # _authenticated_received, inline (a call costs as much as these lines)
        peer.new_handshake_at = None
        if peer.persistent_keepalive_s > 0:
            peer.persistent_keepalive_at = now + peer.persistent_keepalive_s
        if not packet:
            return None  # a keepalive
        if packet[0] >> 4 == 4 and len(packet) >= _IPV4_MIN:  # IPv4, inline
            length = (packet[2] << 8) | packet[3]
            if not _IPV4_MIN <= length <= len(packet):
                raise Refused(Reason.INNER_MALFORMED)
        else:
            length = _ipv6_length(packet)
        peer.rx_packets += 1
        if peer.keepalive_at is None:
            peer.keepalive_at = now + limits.keepalive_timeout_s
        else:
            peer.need_another_keepalive = True
        return peer, packet if length == len(packet) else memoryview(packet)[:length]

    def _check_macs(
        self, message: bytes | memoryview, source: Endpoint, now: float, under_load: bool
    ) -> None:
        """mac1 always; mac2 under load, answering a cookie reply when it fails."""
        if not self.cookies.check_mac1(message):
            raise Refused(Reason.BAD_MAC1)
        if not under_load:
            return
        address = _source_bytes(source)
        if self.cookies.check_mac2(message, address, now):
            return
        sender = TRANSPORT_HEADER.unpack_from(message)[1]  # the sender index, offset 4
        reply = self.cookies.create_cookie_reply(message, sender, address, now)
        self.outbox.append((reply, source))
        self.cookie_replies_sent += 1
        raise Refused(Reason.COOKIE_REQUIRED)

    def _on_initiation(
        self, message: bytes | memoryview, source: Endpoint, now: float, under_load: bool
    ) -> None:
        self._check_macs(message, source, now, under_load)
        handshake = consume_initiation(
            self.identity,
            parse_initiation(message),
            self._handshakes,
            now,
            self.limits.initiation_rate_s,
        )
        peer = self.peers[handshake.remote_static]
        peer.endpoint = source
        peer.last_sent_handshake = now  # our response counts: no initiation of ours now
        peer.rx_bytes += len(message)
        self._authenticated_received(peer, now)
        self._forget_index(handshake.local_index)
        index = self._new_index(peer)
        if index is None:
            handshake.clear()
            raise Refused(Reason.INDEXES_FULL)
        response = build_response(create_response(handshake, self._random(KEY_SIZE), index))
        peer.cookie.add_macs(response, now)
        self._derive(peer, now)
        self._transmit(peer, response, now)

    def _on_response(
        self, message: bytes | memoryview, source: Endpoint, now: float, under_load: bool
    ) -> None:
        self._check_macs(message, source, now, under_load)
        response = parse_response(message)
        entry = self.indexes.get(response.receiver)
        if entry is None or entry[1] is not None:
            raise Refused(Reason.UNKNOWN_INDEX)
        peer = entry[0]
        consume_response(self.identity, peer.handshake, response)
        peer.endpoint = source
        peer.rx_bytes += len(message)
        self._authenticated_received(peer, now)
        self._derive(peer, now)
        self._handshake_complete(peer, now)
        self._send_keepalive(peer, now)  # key confirmation (or the packets waiting)

    def _on_cookie_reply(
        self, message: bytes | memoryview, source: Endpoint, now: float, under_load: bool
    ) -> None:
        reply = parse_cookie_reply(message)
        entry = self.indexes.get(reply.receiver)
        if entry is None:
            raise Refused(Reason.UNKNOWN_INDEX)
        if not entry[0].cookie.consume_cookie_reply(reply, now):
            raise Refused(Reason.BAD_COOKIE_REPLY)

    # Timers.

    def tick(self, now: float) -> None:
        """Fire every timer due at ``now`` (wireguard-go's ``expired*`` functions)."""
        for peer in list(self.peers.values()):
            if peer.retransmit_at is not None and now >= peer.retransmit_at:
                peer.retransmit_at = None
                if peer.handshake_attempts > self.limits.max_retransmits:
                    peer.keepalive_at = None  # give up until there is something to send
                    self.refused[Reason.NO_SESSION] += len(peer.staged)
                    peer.staged.clear()
                    if peer.zero_keys_at is None:
                        peer.zero_keys_at = now + 3 * self.limits.reject_after_time_s
                else:
                    peer.handshake_attempts += 1
                    self._initiate(peer, now, retry=True)
            if peer.keepalive_at is not None and now >= peer.keepalive_at:
                peer.keepalive_at = None
                self._send_keepalive(peer, now)
                if peer.need_another_keepalive:
                    peer.need_another_keepalive = False
                    peer.keepalive_at = now + self.limits.keepalive_timeout_s
            if peer.new_handshake_at is not None and now >= peer.new_handshake_at:
                peer.new_handshake_at = None
                self._initiate(peer, now)
            if peer.zero_keys_at is not None and now >= peer.zero_keys_at:
                peer.zero_keys_at = None
                self._zero(peer)
            if peer.persistent_keepalive_at is not None and now >= peer.persistent_keepalive_at:
                peer.persistent_keepalive_at = None
                if peer.persistent_keepalive_s > 0:
                    self._send_keepalive(peer, now)

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do (None: no timer pending)."""
        return min((at for peer in self.peers.values() for at in peer.deadlines()), default=None)


def _ipv6_length(packet: bytes) -> int:
    """The IPv6 packet's own length within the plaintext (the rest is padding);
    ``Refused`` when the plaintext is no IP packet (IPv4 is read inline)."""
    if packet[0] >> 4 == 6 and len(packet) >= _IPV6_HEADER:
        length = _IPV6_HEADER + ((packet[4] << 8) | packet[5])
        if length <= len(packet):
            return length
    raise Refused(Reason.INNER_MALFORMED)


def _source_bytes(source: Endpoint) -> bytes:
    """The cookie's input: the sender's address and port (paper 5.4.7)."""
    return ipaddress.ip_address(source[0]).packed + source[1].to_bytes(2, "big")
