"""The WireGuard core as a fuzz target: a Device with two peers, fed hostile datagrams.

The device under test, T, has two peers: A, with an established session (A started
the handshake and confirmed it), and C, to which T sent an initiation that C has not
yet seen answered. The seeds are real messages of every type, captured from that
exchange between our own devices: A's initiations (one consumed in setting up, two
fresh ones), C's response and C's cookie reply to T's initiation, A's transport
data (IPv4 packets, a keepalive, a payload that is no IP packet), and an initiation
from a stranger's key. Inputs are those seeds as they are (the first time data is
delivered, later a replay), mutated or truncated (``mutate.py``), with mac1
recomputed by a forger who knows T's public key (tests/wireguard/test_malformed.py),
or random bytes; under load or not, from the right endpoint or another. Now and
then T is handed a packet to send (to A: sealed; to C: staged behind the handshake)
or a timer tick, or asked to start a handshake with C, and the clock jumps; C
answers every initiation T sends it, and its answers become the seeds.

The oracle, per datagram: no exception; refused and counted exactly once (and in
the peer's counter too, for a decryption failure or a replay), or accepted only
when it is genuine: a transport message A sent, delivered once with its plaintext;
a handshake message A or C made (only the sender index, which no AEAD covers, and
the macs may differ); C's cookie reply (its receiver index may differ). Nothing is
answered but a valid initiation (with a response), a valid response (with
transport data), accepted data (a keepalive, or the handshake it starts), or, under
load, a handshake message with a valid mac1 (with one cookie reply): no peer holds
a cookie of T's, so under load every such message is refused so. After every
input: the receiver-index table within its bound and naming only live handshakes
and keypairs, at most four indexes a peer, the staged queues within theirs, the
outbox within what one input may queue.
"""

from __future__ import annotations

import random
from typing import Final

from gateway.wireguard import Device, Limits, Peer, Reason
from gateway.wireguard.cookie import LABEL_MAC1
from gateway.wireguard.crypto import digest, mac
from gateway.wireguard.messages import (
    COOKIE_REPLY,
    COOKIE_REPLY_SIZE,
    INITIATION,
    INITIATION_SIZE,
    RESPONSE,
    RESPONSE_SIZE,
    TRANSPORT,
)
from gateway.wireguard.sessions import INDEXES_PER_PEER
from tests.wireguard._pair import WALL_OFFSET_S, packet

from .cores import Step, exception
from .frames import Seed
from .mutate import mutate

T_END: Final = ("198.51.100.10", 51820)
A_END: Final = ("198.51.100.1", 51820)
C_END: Final = ("198.51.100.3", 51820)
OTHER_END: Final = ("203.0.113.9", 4444)  # a spoofed or roamed source
LIMITS: Final = Limits(max_staged=8)  # small, so the fuzzer meets the bound
MAX_INDEXES: Final = 6  # fewer than two peers' four each: the table can fill
AS_IS_SHARE: Final = 0.15  # seeds fed unmutated: delivered once, then replays
FORGED_SHARE: Final = 0.35  # handshake messages whose mac1 a forger recomputes
LOAD_SHARE: Final = 0.25  # datagrams received under load
OTHER_SOURCE_SHARE: Final = 0.1
SEND_SHARE: Final = 0.05
TICK_SHARE: Final = 0.02
INITIATE_SHARE: Final = 0.01  # the caller starts a handshake with C (rate-limited: 5 s)
JUMP_SHARE: Final = 0.002  # inputs after which the clock jumps 5-60 s
_SENDING: Final = Reason.NO_ENDPOINT  # reasons from here on count packets, not datagrams
_ENTRIES: Final = {
    INITIATION: "wg_initiation",
    RESPONSE: "wg_response",
    COOKIE_REPLY: "wg_cookie_reply",
    TRANSPORT: "wg_transport",
}
# What each accepted message type may make the device send (an initiation: its
# response; a response: key confirmation or the packets waiting; data: a keepalive
# or a handshake it starts; a cookie reply: nothing).
_ANSWERS: Final = {
    INITIATION: {RESPONSE},
    RESPONSE: {TRANSPORT},
    TRANSPORT: {TRANSPORT, INITIATION},
    COOKIE_REPLY: set(),
}


def _device(rng: random.Random) -> Device:
    seeded = random.Random(rng.random())
    return Device(
        seeded.randbytes(32),
        limits=LIMITS,
        wall_offset_s=WALL_OFFSET_S,
        random_bytes=seeded.randbytes,
        jitter=seeded.random,
        max_peers=2,
        max_indexes=MAX_INDEXES,
    )


def mac1_valid(mac1_key: bytes, data: bytes) -> bool:
    """A handshake message of its type's length whose mac1 is the device's (the key:
    ``digest(LABEL_MAC1, its public key)``)."""
    size = {INITIATION: INITIATION_SIZE, RESPONSE: RESPONSE_SIZE}.get(data[0] if data else 0)
    return (
        len(data) == size and data[1:4] == bytes(3) and data[-32:-16] == mac(mac1_key, data[:-32])
    )


def _drain(device: Device) -> list[bytes]:
    sent = [bytes(d) for d, _ in device.outbox]
    device.outbox.clear()
    return sent


def _fields(kind: int) -> tuple[tuple[int, int], ...]:
    head = ((0, 1), (1, 3), (4, 4))
    if kind == INITIATION:
        return (*head, (8, 32), (40, 48), (88, 28), (116, 16), (132, 16))
    if kind == RESPONSE:
        return (*head, (8, 4), (12, 32), (44, 16), (60, 16), (76, 16))
    if kind == COOKIE_REPLY:
        return (*head, (8, 24), (32, 32))
    return (*head, (8, 8), (16, 16), (32, 16))


def _authenticated(message: bytes) -> bytes:
    """What of a message only its sender could have made. A handshake message: all
    but the sender index, which only mac1 covers (a forger recomputes it, and the
    answer then goes astray), and the macs (mac1 checked apart, mac2 not when not
    under load). A cookie reply: all but the receiver index, which no AEAD covers
    (another index of the same peer finds the same cookie generator)."""
    if message[0] == COOKIE_REPLY:
        return message[:4] + message[8:]
    return message[:4] + message[8:-32]


def _seed(kind: int, data: bytes, what: str) -> Seed:
    return Seed(_ENTRIES[kind], -1, data, _fields(kind), what)


class WireguardCore:
    """T and its two peers' state for one chunk, and the seeds captured making it."""

    def __init__(self, rng: random.Random) -> None:
        t, a, c, stranger = (_device(rng) for _ in range(4))
        self.t, self.c = t, c
        self.ta = t.add_peer(a.identity.public, endpoint=A_END)
        self.tc = t.add_peer(c.identity.public, endpoint=C_END)
        at = a.add_peer(t.identity.public, endpoint=T_END)
        c.add_peer(t.identity.public, endpoint=T_END)
        stranger.add_peer(t.identity.public, endpoint=T_END)
        # A <-> T, established; A's keepalive confirms T's keypair.
        a.initiate(at, 0.0)
        (init1,) = _drain(a)
        t.receive(init1, A_END, 0.0)
        for response in _drain(t):
            a.receive(response, T_END, 0.0)
        for keepalive in _drain(a):
            t.receive(keepalive, A_END, 0.0)
        assert self.ta.handshakes == 1, "the setup handshake did not complete"
        # T -> C: C's cookie reply (under load) and response, neither delivered.
        t.initiate(self.tc, 0.0)
        (to_c,) = _drain(t)
        cookie_reply, response = self._as_c(to_c, 0.0)
        # A's data, and two fresh initiations (newer timestamps) T has not seen.
        self.plaintexts: dict[bytes, bytes] = {}
        for size, ident in ((20, 1), (60, 2), (61, 3), (200, 4), (1400, 5), (0, 0)):
            payload = packet(size, ident) if size else b""
            a.send(at, payload, 1.0)
            (datagram,) = _drain(a)
            self.plaintexts[datagram] = payload
        a.send(at, b"\x15" + bytes(39), 1.0)  # decrypts, but is no IP packet
        (not_ip,) = _drain(a)
        fresh = []
        for when in (6.0, 12.0):
            a.initiate(at, when)
            fresh.append(_drain(a)[0])
        stranger.initiate(stranger.peers[t.identity.public], 0.0)
        (unknown,) = _drain(stranger)
        self.seeds: list[Seed] = [
            _seed(INITIATION, init1, "initiation (consumed)"),
            *(_seed(INITIATION, d, "initiation") for d in fresh),
            _seed(INITIATION, unknown, "initiation (unknown key)"),
            _seed(RESPONSE, response, "response"),
            _seed(COOKIE_REPLY, cookie_reply, "cookie reply"),
            *(_seed(TRANSPORT, d, f"data ({len(p)} B)") for d, p in self.plaintexts.items()),
            _seed(TRANSPORT, not_ip, "data (not IP)"),
        ]
        self.c_at = 4  # where C's response and cookie reply are in the seeds
        self.sources = {
            **{d: A_END for d in (init1, *fresh, not_ip, *self.plaintexts)},
            unknown: OTHER_END,
            response: C_END,
            cookie_reply: C_END,
        }
        # The genuine bytes of each handshake message and cookie reply.
        self.genuine = {
            INITIATION: {_authenticated(d) for d in (init1, *fresh)},
            RESPONSE: {_authenticated(response)},
            COOKIE_REPLY: {_authenticated(cookie_reply)},
        }
        self.delivered: set[bytes] = set()
        self.mac1_key = digest(LABEL_MAC1, t.identity.public)
        indexes = [i.to_bytes(4, "little") for i in t.indexes]
        self.tokens = {1: tuple(bytes([k]) for k in range(6)), 4: (*indexes, bytes(4))}
        self.now = 1.0

    def _as_c(self, initiation: bytes, now: float) -> list[bytes]:
        """C's cookie reply (under load) and response to T's ``initiation`` (only the
        cookie reply when C refuses it: one initiation per 1/50 s)."""
        c = self.c
        c.receive(initiation, T_END, now, under_load=True)
        c.receive(initiation, T_END, now)
        return _drain(c)

    def _answer_c(self) -> None:
        """T sent C a new initiation (a send or a timer did): C's answers to it become
        the seeds, so the handshake with C stays one that can complete."""
        for datagram, end in self.t.outbox:
            answers = self._as_c(bytes(datagram), self.now) if end == C_END else []
            if datagram[0] == INITIATION and len(answers) == 2:
                cookie_reply, response = answers
                self.genuine[RESPONSE].add(_authenticated(response))
                self.genuine[COOKIE_REPLY].add(_authenticated(cookie_reply))
                self.sources[response] = self.sources[cookie_reply] = C_END
                self.seeds[self.c_at : self.c_at + 2] = [
                    _seed(RESPONSE, response, "response"),
                    _seed(COOKIE_REPLY, cookie_reply, "cookie reply"),
                ]

    def step(self, rng: random.Random) -> Step:
        self.now += rng.expovariate(200.0)
        if rng.random() < JUMP_SHARE:
            self.now += rng.uniform(5.0, 60.0)
        roll = rng.random()
        if roll < TICK_SHARE:
            return self._tick()
        if roll < TICK_SHARE + INITIATE_SHARE:
            return self._tick(initiate=True)
        if roll < TICK_SHARE + INITIATE_SHARE + SEND_SHARE:
            return self._send(rng)
        return self._receive(rng)

    # -- inputs -------------------------------------------------------------------

    def _receive(self, rng: random.Random) -> Step:
        seed = rng.choice(self.seeds)
        if rng.random() < AS_IS_SHARE:
            data, what = seed.data, seed.what
        else:
            data, what = mutate(rng, seed, self.seeds, self.tokens), seed.what
        if len(data) in (INITIATION_SIZE, RESPONSE_SIZE) and rng.random() < FORGED_SHARE:
            data, what = self._forge(data), f"{what}, mac1 forged"
        source = self.sources.get(seed.data, A_END)
        if rng.random() < OTHER_SOURCE_SHARE:
            source = OTHER_END
        under_load = rng.random() < LOAD_SHARE
        entry = _ENTRIES.get(data[0] if data else 0, "wg_other")
        return self._judge_receive(entry, what, data, source, under_load)

    def _forge(self, data: bytes) -> bytes:
        message = bytearray(data)
        message[-32:-16] = mac(self.mac1_key, bytes(message[:-32]))
        return bytes(message)

    def _send(self, rng: random.Random) -> Step:
        t = self.t
        peer = self.ta if rng.random() < 0.5 else self.tc
        size = rng.choice((0, 20, rng.randrange(1500)))
        staged, full = len(peer.staged), list(t.refused)
        try:
            t.send(peer, packet(size, 7) if size >= 20 else rng.randbytes(size), self.now)
        except Exception as error:
            return Step("wg_send", "packet", b"", "raised", [exception(error)])
        found = self._bounds()
        shed = t.refused[Reason.STAGED_FULL] - full[Reason.STAGED_FULL]
        if staged == LIMITS.max_staged and peer.staged and not t.outbox and shed != 1:
            found.append(("counted", "wg_send: a packet shed from a full queue, uncounted"))
        label = "sealed" if any(d[0] == TRANSPORT for d, _ in t.outbox) else "staged"
        self._answer_c()
        _drain(t)
        return Step("wg_send", "packet", b"", label, found)

    def _tick(self, initiate: bool = False) -> Step:
        """The timers, or (``initiate``) a handshake with C the caller asks for."""
        entry = "wg_initiate" if initiate else "wg_tick"
        try:
            if initiate:
                self.t.initiate(self.tc, self.now)
            else:
                self.t.tick(self.now)
        except Exception as error:
            return Step(entry, entry, b"", "raised", [exception(error)])
        found = self._bounds()
        label = "sent" if self.t.outbox else "quiet"
        self._answer_c()
        _drain(self.t)
        return Step(entry, entry, b"", label, found)

    # -- the oracle ---------------------------------------------------------------

    def _judge_receive(
        self, entry: str, what: str, data: bytes, source: tuple[str, int], under_load: bool
    ) -> Step:
        t = self.t
        t.outbox.clear()
        before = list(t.refused)
        failures = self._peer_counters()
        try:
            got = t.receive(data, source, self.now, under_load)
        except Exception as error:
            _drain(t)
            return Step(entry, what, data, "raised", [exception(error)])
        delta = [n - b for n, b in zip(t.refused, before, strict=True)]
        refused = [(Reason(i), n) for i, n in enumerate(delta[:_SENDING]) if n]
        sent = [(bytes(d), end) for d, end in t.outbox]
        found = self._bounds()
        _drain(t)
        # We hold no cookie of T's: under load, every handshake message with a valid
        # mac1 is refused for want of mac2, with one cookie reply to its source.
        needs_cookie = under_load and self._mac1_valid(data)
        if got is not None or not refused:
            found += self._accepted(entry, data, got, sent, refused)
            if needs_cookie:
                found.append(("cookie", f"{entry}: accepted under load without a cookie"))
            return Step(entry, what, data, "delivered" if got else "accepted", found)
        if len(refused) > 1 or refused[0][1] > 1:
            found.append(("counted", f"{entry}: refused {refused} for one datagram"))
        reason = refused[0][0]
        cookie_reply = (
            len(sent) == 1
            and sent[0][0][0] == COOKIE_REPLY
            and len(sent[0][0]) == COOKIE_REPLY_SIZE
            and sent[0][1] == source
        )
        if needs_cookie != (reason is Reason.COOKIE_REQUIRED):
            found.append(("cookie", f"{entry}: under load {under_load}, refused as {reason.label}"))
        elif not (cookie_reply if needs_cookie else not sent):
            found.append(("answered", f"{entry}: refused as {reason.label}, answered {len(sent)}"))
        after = self._peer_counters()
        moved = [after[0] - failures[0], after[1] - failures[1]]
        expected = [0, 0]
        if reason is Reason.DECRYPT_FAILED:
            expected = [1, 0]
        elif reason is Reason.REPLAYED:
            expected = [0, 1]
        if moved != expected:
            found.append(("counted", f"{entry}: {reason.label}, peer counters moved {moved}"))
        return Step(entry, what, data, f"refused:{reason.label}", found)

    def _mac1_valid(self, data: bytes) -> bool:
        return mac1_valid(self.mac1_key, data)

    def _peer_counters(self) -> tuple[int, int]:
        """Decryption failures and replays, over both peers."""
        peers = (self.ta, self.tc)
        return sum(p.decryption_failures for p in peers), sum(p.replays for p in peers)

    def _accepted(
        self,
        entry: str,
        data: bytes,
        got: tuple[Peer, bytes | memoryview] | None,
        sent: list[tuple[bytes, tuple[str, int]]],
        refused: list[tuple[Reason, int]],
    ) -> list[tuple[str, str]]:
        """An input nothing refused: it must be a genuine message, and the device's
        answer one that message may have."""
        found: list[tuple[str, str]] = []
        kind = int.from_bytes(data[:4], "little") if len(data) >= 4 else 0
        if refused:
            found.append(("counted", f"{entry}: delivered and refused {refused}"))
        if kind == TRANSPORT:
            plaintext = self.plaintexts.get(data)
            if plaintext is None:
                found.append(("forged", f"{entry}: accepted data A never sent"))
            elif data in self.delivered:
                found.append(("replayed", f"{entry}: A's data accepted twice"))
            elif (bytes(got[1]) if got else b"") != plaintext:
                found.append(("forged", f"{entry}: delivered other than what A sent"))
            self.delivered.add(data)
        elif kind in self.genuine:
            if _authenticated(data) not in self.genuine[kind]:
                found.append(("forged", f"{entry}: accepted a message no peer made"))
        else:
            found.append(("unrefused", f"{entry}: a datagram of type {kind} neither refused"))
        answers = {d[0] for d, _ in sent}
        if not answers <= _ANSWERS.get(kind, set()):
            found.append(("answered", f"{entry}: accepted, answered types {sorted(answers)}"))
        return found

    def _bounds(self) -> list[tuple[str, str]]:
        return device_bounds(self.t, LIMITS.max_staged + 2)


def device_bounds(t: Device, max_outbox: int) -> list[tuple[str, str]]:
    """The device's containers within their bounds, and no index orphaned; at most
    ``max_outbox`` datagrams queued (what one input may queue before it is drained)."""
    found = []
    if len(t.indexes) > t.max_indexes:
        found.append(("bounds", f"{len(t.indexes)} receiver indexes, bound {t.max_indexes}"))
    per_peer: dict[int, int] = {}
    for index, (peer, keypair) in t.indexes.items():
        per_peer[id(peer)] = per_peer.get(id(peer), 0) + 1
        live = (peer.keypairs.current, peer.keypairs.previous, peer.keypairs.next)
        if peer.public_key not in t.peers or (
            keypair is None and index != peer.handshake.local_index
        ):
            found.append(("bounds", "an index names a handshake that is gone"))
        elif keypair is not None and keypair not in live:
            found.append(("bounds", "an index names a keypair the peer dropped"))
    if per_peer and max(per_peer.values()) > INDEXES_PER_PEER:
        found.append(("bounds", f"a peer holds {max(per_peer.values())} indexes"))
    for peer in t.peers.values():
        if len(peer.staged) > t.limits.max_staged:
            found.append(("bounds", f"{len(peer.staged)} packets staged for a peer"))
    if len(t.outbox) > max_outbox:
        found.append(("bounds", f"{len(t.outbox)} datagrams queued by one input"))
    return found
