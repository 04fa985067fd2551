"""One peer of a device: its keys, sessions, endpoint, timers and counters.

The timers are deadlines on the monotonic ``now`` (None: not pending), the five of
wireguard-go's ``timers.go``: retransmit the initiation, send a keepalive (data came
in and nothing went out), start a new handshake (data went out and nothing came
back), zero the keys (no new handshake for 3 x reject-after-time) and the optional
persistent keepalive. The device moves them at the same events wireguard-go does and
fires them from ``Device.tick``; nothing here reads a clock.

Counters are plain ints, read by whoever reports them (``wg show``'s transfer,
latest handshake; the metrics of a later slice).
"""

from __future__ import annotations

from collections import deque

from gateway.wireguard.cookie import CookieGenerator
from gateway.wireguard.keypairs import Keypairs
from gateway.wireguard.noise import Handshake, StaticIdentity

Endpoint = tuple[str, int]  # (address, port) as a UDP socket gives it


class Peer:
    """A peer, known by its public key; the caller routes by it (allowed IPs)."""

    __slots__ = (
        "cookie",
        "decryption_failures",
        "endpoint",
        "handshake",
        "handshake_attempts",
        "handshakes",
        "keepalive_at",
        "keypairs",
        "last_handshake_s",
        "last_sent_handshake",
        "need_another_keepalive",
        "new_handshake_at",
        "persistent_keepalive_at",
        "persistent_keepalive_s",
        "public_key",
        "replays",
        "retransmit_at",
        "rx_bytes",
        "rx_packets",
        "sent_last_minute_handshake",
        "staged",
        "tx_bytes",
        "tx_packets",
        "zero_keys_at",
    )

    def __init__(
        self,
        identity: StaticIdentity,
        public_key: bytes,
        preshared_key: bytes | None,
        endpoint: Endpoint | None,
        persistent_keepalive_s: float,
        cookie_refresh_s: float,
    ) -> None:
        self.public_key = public_key
        self.handshake = Handshake(identity, public_key, preshared_key)
        self.cookie = CookieGenerator(public_key, cookie_refresh_s)
        self.keypairs = Keypairs()
        # Set by configuration, then only by an authenticated packet from the peer
        # (roaming, paper 2.1): a forged datagram cannot move it.
        self.endpoint = endpoint
        self.persistent_keepalive_s = persistent_keepalive_s  # 0: off
        self.staged: deque[bytes] = deque()  # packets waiting for a session
        # Timers (deadlines on ``now``) and their bookkeeping.
        self.retransmit_at: float | None = None
        self.keepalive_at: float | None = None
        self.new_handshake_at: float | None = None
        self.zero_keys_at: float | None = None
        self.persistent_keepalive_at: float | None = None
        self.need_another_keepalive = False
        self.handshake_attempts = 0
        self.sent_last_minute_handshake = False
        self.last_sent_handshake = float("-inf")
        # Counters.
        self.handshakes = 0  # completed (response received, or the new keypair confirmed)
        self.last_handshake_s: float | None = None  # ``now`` of the latest one
        self.rx_packets = 0  # data packets delivered (keepalives not counted)
        self.rx_bytes = 0  # every authenticated datagram from the peer, whole
        self.tx_packets = 0  # data packets sent (keepalives not counted)
        self.tx_bytes = 0  # every datagram sent to the peer, whole
        self.decryption_failures = 0  # transport data on our index that did not decrypt
        self.replays = 0  # transport data that decrypted but was seen already

    def deadlines(self) -> list[float]:
        """The pending timers' deadlines."""
        return [
            at
            for at in (
                self.retransmit_at,
                self.keepalive_at,
                self.new_handshake_at,
                self.zero_keys_at,
                self.persistent_keepalive_at,
            )
            if at is not None
        ]
