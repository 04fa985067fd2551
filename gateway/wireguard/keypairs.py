"""Keypairs (the transport sessions a handshake yields) and the protocol's limits.

A peer has up to three keypairs (paper 5.4.6, wireguard-go's ``Keypairs``): *current*
(what we send with), *previous* (still received with, for packets in flight across a
rekey) and *next* (the responder's new keypair, unused for sending until the
initiator proves it has it by sending with it: key confirmation). ``Keypairs``
rotates them as wireguard-go's ``BeginSymmetricSession`` and ``ReceivedWithKeypair``
do, and returns the keypairs it drops so the device can free their indexes.

``Limits`` holds every duration and message count of the protocol with the paper's
defaults (section 6.1), in one frozen dataclass, so tests and the lab use seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from gateway.wireguard.cookie import COOKIE_REFRESH_S
from gateway.wireguard.noise import INITIATION_RATE_S
from gateway.wireguard.replay import ReplayWindow


@dataclass(frozen=True, slots=True)
class Limits:
    """The protocol's timers and counts (paper 6.1; wireguard-go ``constants.go``)."""

    rekey_after_messages: int = 1 << 60  # the initiator starts a new handshake past it
    reject_after_messages: int = (1 << 64) - (1 << 13) - 1  # no counter at or past it
    rekey_after_time_s: float = 120.0  # the initiator's keypair this old: rekey on send
    reject_after_time_s: float = 180.0  # a keypair this old is used for nothing
    rekey_attempt_time_s: float = 90.0  # retransmitted initiations give up after it
    rekey_timeout_s: float = 5.0  # an unanswered initiation is sent again after it
    rekey_timeout_jitter_max_s: float = 0.334  # plus a random part below this
    keepalive_timeout_s: float = 10.0  # data received and nothing sent: a keepalive
    cookie_refresh_s: float = COOKIE_REFRESH_S  # cookie secrets and cookies live this long
    initiation_rate_s: float = INITIATION_RATE_S  # one initiation per peer per this
    max_staged: int = 128  # packets a peer holds while its handshake runs (wireguard-go)

    @property
    def max_retransmits(self) -> int:
        """Retransmitted initiations before giving up (90 / 5 = 18)."""
        return int(self.rekey_attempt_time_s / self.rekey_timeout_s)


class Keypair:
    """One transport session: two ChaCha20-Poly1305 keys, our send counter, the replay
    window of what we received, and the two indexes that name it on the wire."""

    __slots__ = (
        "created",
        "initiator",
        "local_index",
        "receive",
        "remote_index",
        "replay",
        "send",
        "send_counter",
    )

    def __init__(
        self,
        send_key: bytes,
        receive_key: bytes,
        initiator: bool,
        local_index: int,
        remote_index: int,
        now: float,
    ) -> None:
        self.send = ChaCha20Poly1305(send_key)
        self.receive = ChaCha20Poly1305(receive_key)
        self.send_counter = 0
        self.replay = ReplayWindow()
        self.initiator = initiator
        self.local_index = local_index
        self.remote_index = remote_index
        self.created = now


class Keypairs:
    """A peer's previous, current and next keypairs."""

    __slots__ = ("current", "next", "previous")

    def __init__(self) -> None:
        self.previous: Keypair | None = None
        self.current: Keypair | None = None
        self.next: Keypair | None = None

    def install(self, keypair: Keypair) -> list[Keypair]:
        """Add a freshly derived keypair; return those that are dropped.

        The initiator sends with it at once (it already knows the responder has it).
        The responder keeps it as *next* until the initiator uses it, and keeps sending
        with *current* meanwhile.
        """
        dropped = [k for k in (self.previous,) if k is not None]
        if keypair.initiator:
            if self.next is not None:
                self.previous, self.next = self.next, None
                if self.current is not None:
                    dropped.append(self.current)
            else:
                self.previous = self.current
            self.current = keypair
        else:
            if self.next is not None:
                dropped.append(self.next)
            self.next = keypair
            self.previous = None
        return dropped

    def confirm(self, keypair: Keypair) -> Keypair | None:
        """The peer sent with ``keypair``: if it is *next*, it becomes *current*; return
        the keypair dropped for it (the old previous), or None when nothing changed."""
        if keypair is not self.next:
            return None
        dropped = self.previous
        self.previous, self.current, self.next = self.current, keypair, None
        return dropped

    def clear(self) -> list[Keypair]:
        """Drop all three (reject-after-time x 3 without a new handshake)."""
        dropped = [k for k in (self.previous, self.current, self.next) if k is not None]
        self.previous = self.current = self.next = None
        return dropped
