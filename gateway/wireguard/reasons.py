"""Why the WireGuard core refused a datagram or dropped a packet: one counter each.

Kept apart from ``gateway.errors.Drop`` for now: this package is the protocol alone,
and the slice that serves tunnels from the gateway maps these onto its drop counters
and metric labels. As with ``Drop``, members are list indexes for the per-reason
counters (``Device.refused``), so they are only ever appended.

``Refused`` is the one exception the message handlers raise on hostile bytes (trio's
``BadPacket`` habit): ``Device.receive`` catches it, counts its reason and answers
nothing. Anything else escaping ``receive`` is a bug.
"""

from __future__ import annotations

import enum


class Reason(enum.IntEnum):
    """Why a datagram got no further (received) or a packet was not sent."""

    # Any datagram: what the bytes alone say.
    TRUNCATED = 0  # shorter than the smallest message (a 32-byte keepalive)
    UNKNOWN_TYPE = 1  # the little-endian type field is not 1..4 (reserved bytes not zero)
    BAD_LENGTH = 2  # a handshake message whose length is not its type's fixed size
    # Handshake messages (initiation, response): unauthenticated until consumed.
    BAD_MAC1 = 3  # mac1 is not ours: not meant for this key, forged or corrupted
    COOKIE_REQUIRED = 4  # under load and mac2 missing or stale: a cookie reply went back
    HANDSHAKE_AUTH = 5  # the static key, timestamp or empty payload does not authenticate
    UNKNOWN_PEER = 6  # an initiation from a static key that is not one of our peers
    TIMESTAMP_REPLAY = 7  # TAI64N not newer than the peer's last: a replayed initiation
    INITIATION_FLOOD = 8  # a second initiation from one peer within 1/50 s
    UNKNOWN_INDEX = 9  # the receiver index names no handshake or keypair of ours
    UNEXPECTED_RESPONSE = 10  # a response to a handshake that is not awaiting one
    BAD_COOKIE_REPLY = 11  # a cookie reply that does not decrypt under our last mac1
    INDEXES_FULL = 12  # the receiver-index table is at its bound: no new session
    # Transport data.
    KEY_EXPIRED = 13  # the keypair is older than reject-after-time
    DECRYPT_FAILED = 14  # the Poly1305 tag does not authenticate
    REPLAYED = 15  # counter seen already, or behind the sliding window
    INNER_MALFORMED = 16  # decrypted, but not an IPv4/IPv6 packet within its length
    # Sending.
    NO_ENDPOINT = 17  # the peer has no endpoint yet (it must reach us first)
    STAGED_FULL = 18  # no session yet and the peer's queue of waiting packets is full
    NO_SESSION = 19  # handshakes gave up (rekey-attempt-time): waiting packets dropped

    @property
    def label(self) -> str:
        """The metric label value: stable, lower case, one word."""
        return self.name.lower()


class Refused(Exception):
    """A datagram refused, with why. Raised only inside the core; never escapes it."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.label)
        self.reason = reason
