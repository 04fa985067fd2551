"""Two sans-IO devices that reach each other through lists (aioquic's two engines).

``A`` and ``B`` stand for two UDP endpoints; ``deliver`` moves what one device put
in its outbox into the other, as a network that loses and reorders nothing would.
Randomness is seeded, so every run makes the same keys and indexes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gateway.wire import IPPROTO_UDP, build_ipv4
from gateway.wireguard import Device, Limits, Peer

A = ("198.51.100.1", 51820)
B = ("198.51.100.2", 51820)
WALL_OFFSET_S = 1_700_000_000.0  # the wall clock at now = 0


def packet(size: int = 60, ident: int = 0) -> bytes:
    """An IPv4 packet of ``size`` bytes (what a tunnel carries)."""
    payload = bytes(size - 20)
    return (
        build_ipv4(
            bytes([10, 1, 0, 1]), bytes([10, 2, 0, 1]), IPPROTO_UDP, len(payload), ident=ident
        )
        + payload
    )


@dataclass
class Pair:
    a: Device
    b: Device
    ab: Peer  # B, as A's peer
    ba: Peer  # A, as B's peer
    delivered: list[tuple[Device, Peer, bytes]] = field(default_factory=list)

    def deliver(self, sender: Device, now: float, under_load: bool = False) -> list[bytes]:
        """Everything ``sender`` has to send, received by the other device; returns the
        datagrams moved (so a test can replay or forge them)."""
        receiver, source = (self.b, A) if sender is self.a else (self.a, B)
        moved = [bytes(d) for d, _ in sender.outbox]
        sender.outbox.clear()
        for datagram in moved:
            got = receiver.receive(datagram, source, now, under_load)
            if got is not None:
                self.delivered.append((receiver, *got))
        return moved

    def settle(self, now: float, rounds: int = 4) -> None:
        """Deliver back and forth until both outboxes are empty."""
        for _ in range(rounds):
            if not (self.a.outbox or self.b.outbox):
                return
            self.deliver(self.a, now)
            self.deliver(self.b, now)
        assert not (self.a.outbox or self.b.outbox), "still talking"


def device(seed: int, limits: Limits | None = None, jitter: float = 0.0) -> Device:
    rng = random.Random(seed)
    return Device(
        rng.randbytes(32),
        limits=limits,
        wall_offset_s=WALL_OFFSET_S,
        random_bytes=rng.randbytes,
        jitter=lambda: jitter,
    )


def make_pair(
    psk: bytes | None = None,
    limits: Limits | None = None,
    jitter: float = 0.0,
    b_knows_a: bool = False,
) -> Pair:
    """A knows B's endpoint; B learns A's from A's first packet (unless ``b_knows_a``)."""
    a, b = device(1, limits, jitter), device(2, limits, jitter)
    ab = a.add_peer(b.identity.public, preshared_key=psk, endpoint=B)
    ba = b.add_peer(a.identity.public, preshared_key=psk, endpoint=A if b_knows_a else None)
    return Pair(a, b, ab, ba)


def established(psk: bytes | None = None, limits: Limits | None = None, now: float = 0.0) -> Pair:
    """A pair whose handshake A started and finished (B confirmed by A's keepalive)."""
    pair = make_pair(psk, limits)
    pair.a.initiate(pair.ab, now)
    pair.settle(now)
    assert pair.ab.handshakes == pair.ba.handshakes == 1
    return pair
