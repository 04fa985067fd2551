"""What a device does with its peers' sessions: send, handshake, rotate, forget.

``Sessions`` is the half of ``Device`` that acts on our own initiative or on the
caller's: encrypting packets (or holding them while a handshake runs), starting
handshakes, installing and confirming keypairs, zeroing them, and the receiver-index
table they are named by. ``Device`` (device.py) adds what comes in: datagrams,
configuration and timer ticks. Both move the peer timers exactly where wireguard-go
moves them (``timers.go``), named after its functions in the comments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from gateway.wireguard.crypto import KEY_SIZE, NONCE
from gateway.wireguard.keypairs import Keypair, Limits
from gateway.wireguard.messages import (
    PADDING_MULTIPLE,
    TRANSPORT,
    TRANSPORT_HEADER,
    build_initiation,
    padded_length,
)
from gateway.wireguard.noise import StaticIdentity, create_initiation, derive_keys
from gateway.wireguard.peer import Endpoint, Peer
from gateway.wireguard.reasons import Reason

MAX_PEERS: Final = 1 << 16  # peers on one device (wireguard-go's MaxPeers)
INDEXES_PER_PEER: Final = 4  # a handshake in progress and three keypairs
DEFAULT_MTU: Final = 1420  # wg-quick's default: 1500 - 20 (IPv4) - 8 (UDP) - 32 - 20 spare
MAX_PACKET: Final = 0xFFFF  # what an IP length field can say: the largest packet to send
# The zeros a plaintext is padded with, by how many (0 to 15).
_PADDING: Final = tuple(bytes(count) for count in range(PADDING_MULTIPLE))

Transmit = tuple[bytes | bytearray, Endpoint]


class Sessions:
    """The sending half of a device (see ``Device`` for the whole)."""

    def __init__(
        self,
        private_key: bytes,
        limits: Limits | None,
        wall_offset_s: float,
        random_bytes: Callable[[int], bytes],
        jitter: Callable[[], float],
        max_indexes: int,
        mtu: int,
    ) -> None:
        self.identity = StaticIdentity(private_key)
        self.limits = limits or Limits()
        self.wall_offset_s = wall_offset_s
        self._random = random_bytes
        self._jitter = jitter  # a fraction in [0, 1) of the retransmit jitter
        self.max_indexes = max_indexes
        self.mtu = mtu
        self.indexes: dict[int, tuple[Peer, Keypair | None]] = {}
        self.outbox: list[Transmit] = []
        self.refused = [0] * len(Reason)  # per Reason: datagrams refused, packets dropped

    # Input: packets to send.

    def send(self, peer: Peer, packet: bytes | bytearray | memoryview, now: float) -> None:
        """Encrypt ``packet`` for ``peer`` into the outbox, or hold it (at most
        ``limits.max_staged``, the oldest shed) and start a handshake."""
        datagram = self.seal(peer, packet, now)
        if datagram is not None:
            self.outbox.append((datagram, peer.endpoint))  # type: ignore[arg-type]

    def seal(self, peer: Peer, packet: bytes | bytearray | memoryview, now: float) -> bytes | None:
        """``send`` without the outbox when it can be (the data path's way: no tuple
        and no second pass per packet): the transport message to send to
        ``peer.endpoint`` now; or None, when the packet is held or what goes out
        waits in the outbox (a rekey's initiation goes after the message, in order)."""
        if len(packet) > MAX_PACKET:
            raise ValueError(f"an IP packet is at most {MAX_PACKET} bytes")
        keypair = peer.keypairs.current
        limits = self.limits
        if (  # _usable, inline
            keypair is None
            or peer.staged
            or keypair.send_counter >= limits.reject_after_messages
            or now - keypair.created >= limits.reject_after_time_s
        ):
            self._stage(peer, bytes(packet))
            self._flush(peer, now)
            return None
        return self._seal(peer, keypair, packet, now)

    def _usable(self, peer: Peer, now: float) -> Keypair | None:
        """The current keypair if it may still send (reject-after-time and -messages)."""
        keypair = peer.keypairs.current
        if (
            keypair is None
            or keypair.send_counter >= self.limits.reject_after_messages
            or now - keypair.created >= self.limits.reject_after_time_s
        ):
            return None
        return keypair

    def _stage(self, peer: Peer, packet: bytes) -> None:
        if len(peer.staged) >= self.limits.max_staged:
            peer.staged.popleft()
            self.refused[Reason.STAGED_FULL] += 1
        peer.staged.append(packet)

    def _flush(self, peer: Peer, now: float) -> None:
        """Send the packets waiting, or start a handshake when no keypair may send."""
        keypair = self._usable(peer, now)
        if keypair is None:
            self._initiate(peer, now)
            return
        staged = peer.staged
        while staged:
            datagram = self._seal(peer, keypair, staged.popleft(), now)
            if datagram is not None:
                self.outbox.append((datagram, peer.endpoint))  # type: ignore[arg-type]

    def _seal(
        self, peer: Peer, keypair: Keypair, packet: bytes | bytearray | memoryview, now: float
    ) -> bytes | None:
        """One transport message (paper 5.4.6), and the timers it moves: returned, or
        None when a rekey starts (then the message is in the outbox, before the
        initiation)."""
        limits = self.limits
        counter = keypair.send_counter
        keypair.send_counter = counter + 1
        length = len(packet)
        padded = padded_length(length, self.mtu)
        if padded != length:
            # A copy and a concatenation: three slice operations on a scratch buffer
            # cost 500 (1400 B) to 1,800 (64 B) instructions more a packet
            # (``bench/gateway_callgrind.py``, ``tunnel``).
            packet = bytes(packet) + _PADDING[padded - length]
        # The header packed and the ciphertext appended: cheaper than sealing into a
        # new buffer through a view (``encrypt_into``), by a third at 1400 B.
        datagram = TRANSPORT_HEADER.pack(
            TRANSPORT, keypair.remote_index, counter
        ) + keypair.send.encrypt(NONCE.pack(counter), packet, None)
        # _transmit, inline (the caller sends it).
        peer.tx_bytes += len(datagram)
        peer.keepalive_at = None
        if peer.persistent_keepalive_s > 0:
            peer.persistent_keepalive_at = now + peer.persistent_keepalive_s
        if length:
            peer.tx_packets += 1
            if peer.new_handshake_at is None:  # nothing back within this: rehandshake
                peer.new_handshake_at = now + limits.keepalive_timeout_s + self._retry_after()
        if counter + 1 > limits.rekey_after_messages or (
            keypair.initiator and now - keypair.created > limits.rekey_after_time_s
        ):
            self.outbox.append((datagram, peer.endpoint))  # type: ignore[arg-type]
            self._initiate(peer, now)
            return None
        return datagram

    def _send_keepalive(self, peer: Peer, now: float) -> None:
        """An empty transport message, unless packets are waiting (they do the same)."""
        if not peer.staged:
            peer.staged.append(b"")
        self._flush(peer, now)

    # Handshakes and sessions.

    def initiate(self, peer: Peer, now: float) -> None:
        """Start a handshake with ``peer`` now (at most one per rekey-timeout)."""
        self._initiate(peer, now)

    def _initiate(self, peer: Peer, now: float, retry: bool = False) -> None:
        if not retry:
            peer.handshake_attempts = 0
        if now - peer.last_sent_handshake < self.limits.rekey_timeout_s:
            return
        if peer.endpoint is None:
            self.refused[Reason.NO_ENDPOINT] += 1
            return
        self._forget_index(peer.handshake.local_index)
        index = self._new_index(peer)
        if index is None:
            self.refused[Reason.INDEXES_FULL] += 1
            return
        peer.last_sent_handshake = now
        initiation = build_initiation(
            create_initiation(
                self.identity,
                peer.handshake,
                self._random(KEY_SIZE),
                index,
                now + self.wall_offset_s,
            )
        )
        peer.cookie.add_macs(initiation, now)
        self._transmit(peer, initiation, now)
        peer.retransmit_at = now + self._retry_after()

    def _derive(self, peer: Peer, now: float) -> None:
        """The finished handshake's keypair, under the index the handshake had."""
        handshake = peer.handshake
        local, remote = handshake.local_index, handshake.remote_index
        send_key, receive_key, initiator = derive_keys(handshake)
        keypair = Keypair(send_key, receive_key, initiator, local, remote, now)
        self.indexes[local] = (peer, keypair)
        for dropped in peer.keypairs.install(keypair):
            self._forget_index(dropped.local_index)
        peer.zero_keys_at = now + 3 * self.limits.reject_after_time_s

    def _confirmed(self, peer: Peer, keypair: Keypair, now: float) -> None:
        """The initiator sent with our new keypair: it becomes current (responder)."""
        dropped = peer.keypairs.confirm(keypair)
        if dropped is not None:
            self._forget_index(dropped.local_index)
        self._handshake_complete(peer, now)
        if peer.staged:
            self._flush(peer, now)

    def _handshake_complete(self, peer: Peer, now: float) -> None:
        peer.retransmit_at = None
        peer.handshake_attempts = 0
        peer.sent_last_minute_handshake = False
        peer.handshakes += 1
        peer.last_handshake_s = now

    def _zero(self, peer: Peer) -> None:
        """Forget every session and the handshake in progress; drop what waits."""
        for dropped in peer.keypairs.clear():
            self._forget_index(dropped.local_index)
        self._forget_index(peer.handshake.local_index)
        peer.handshake.clear()
        self.refused[Reason.NO_SESSION] += len(peer.staged)
        peer.staged.clear()

    # Bookkeeping.

    def _transmit(self, peer: Peer, datagram: bytearray, now: float) -> None:
        """Queue an authenticated datagram to the peer and move the timers sending
        moves: any send cancels a pending keepalive and re-arms a persistent one
        (``_seal`` does the same inline)."""
        self.outbox.append((datagram, peer.endpoint))  # type: ignore[arg-type]
        peer.tx_bytes += len(datagram)
        peer.keepalive_at = None
        if peer.persistent_keepalive_s > 0:
            peer.persistent_keepalive_at = now + peer.persistent_keepalive_s

    def _authenticated_received(self, peer: Peer, now: float) -> None:
        peer.new_handshake_at = None
        if peer.persistent_keepalive_s > 0:
            peer.persistent_keepalive_at = now + peer.persistent_keepalive_s

    def _retry_after(self) -> float:
        return self.limits.rekey_timeout_s + self._jitter() * self.limits.rekey_timeout_jitter_max_s

    def _new_index(self, peer: Peer) -> int | None:
        """A fresh random receiver index for ``peer``'s handshake, None when full."""
        if len(self.indexes) >= self.max_indexes:
            return None
        while True:
            index = int.from_bytes(self._random(4), "little")
            if index and index not in self.indexes:  # 0 means "none" in a Handshake
                self.indexes[index] = (peer, None)
                return index

    def _forget_index(self, index: int) -> None:
        if index:
            self.indexes.pop(index, None)
