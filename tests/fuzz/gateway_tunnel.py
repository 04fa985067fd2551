"""The gateway's tunnel path as a fuzz target: a gateway node with two tunnels, fed
hostile datagrams on its listen port, frames routed into the tunnels, and ticks.

The node is the hybrid lab's (``tests/dataplane/_tunnel_lab.py``) on the fabric:
tunnels ``onprem-blue`` and ``onprem-red`` on listen port 51820, in Blue's and Red's
routing domains, both with the allowed IPs 172.16.50.0/24 (tenants overlap on-prem
too). Blue's site, a device of our own core, has an established session (the
gateway started it for Blue's VM's ping); the gateway has sent Red's site an
initiation whose answers (a response, and a cookie reply under load) are seeds not
yet delivered. Seeds: Blue's site's transport data whose plaintext is an IPv4
packet inside its allowed IPs (to the VM, to the corp server behind Blue's TAP, to
the gateway's CA, with TTL 1, back to the other site's prefix), outside them, IPv6,
no IP at all, and a keepalive; fresh initiations from Blue's and Red's sites and
from a stranger's key; Red's response and cookie reply; and the NVGRE (from host1)
and TAP (from the corp side) frames that the gateway routes into each tunnel.
Inputs are the seeds as they are (first time delivered, then replays), mutated or
truncated (``mutate.py``), handshakes with mac1 recomputed by a forger who knows the
gateway's public key, from the right endpoint or another, under load or not; ticks
now and then, and the clock jumps.

The oracle. Every input: no exception; the device's receiver-index table, its
peers' staged queues and its outbox within their bounds (the outbox empty after
each call: it is flushed to the Output). A datagram: refused by the device and
counted exactly once, as the one node drop its reason maps to (``REASON_DROP``),
answered with nothing, or, under load, a handshake with a valid mac1 with exactly
one cookie reply to its source; or accepted only when genuine (data Blue's site
sent, delivered once; a handshake message a site made; Red's cookie reply), its
decrypted packet routed only in the routing domain of the peer that sent it: NVGRE
only in that domain's VSIDs, frames only to that domain's TAPs, datagrams only to
its source or to that domain's tunnels' peers (never Red's site from Blue's data),
and at most one drop (a packet outside the allowed IPs: ``tunnel_source``, and
nothing sent). A frame: what it leads to stays in its own routing domain the same
way. A tick: only handshakes and data to the peers' endpoints.

The drops the device counts on the sending side (a staged packet shed) reach the
node's counters at the next receive or tick (``count_refusals``); the harness
counts them in before each datagram, as the daemon's tick would within 100 ms, so
that a datagram's drops are its own.
"""

from __future__ import annotations

import random
from typing import Final

from gateway.dataplane import Step
from gateway.dataplane.gateway_tunnel import REASON_DROP, count_refusals
from gateway.errors import BadPacket, Drop
from gateway.wire import parse_nvgre
from gateway.wireguard import Reason
from gateway.wireguard.crypto import mac
from gateway.wireguard.messages import (
    COOKIE_REPLY,
    INITIATION,
    INITIATION_SIZE,
    RESPONSE_SIZE,
    TRANSPORT,
)
from tests.dataplane._gateway_lab import TAP
from tests.dataplane._tunnel_lab import PORT, SITE

from .cores import Step as CoreStep
from .cores import exception
from .frames import Seed
from .mutate import mutate
from .tunnel_seeds import NVGRE, OTHER_END, TunnelLab, entry_of
from .wireguard_core import (
    _ANSWERS,
    AS_IS_SHARE,
    FORGED_SHARE,
    _authenticated,
    device_bounds,
    mac1_valid,
)

LOAD_SHARE: Final = 0.25
OTHER_SOURCE_SHARE: Final = 0.1
RED_SHARE: Final = 0.1  # datagrams from Red's site's answers to the gateway's initiation
FRAME_SHARE: Final = 0.15  # NVGRE and TAP frames routed into a tunnel
TICK_SHARE: Final = 0.03
JUMP_SHARE: Final = 0.002  # inputs after which the clock jumps 5-60 s
_SENDING: Final = Reason.NO_ENDPOINT  # reasons from here on count packets, not datagrams
_ROUTED: Final = {TRANSPORT, INITIATION}  # into a tunnel: data, or the handshake it starts


class GatewayTunnelCore(TunnelLab):
    """The hybrid lab's gateway and sites (``TunnelLab``), fed and judged."""

    def step(self, rng: random.Random) -> CoreStep:
        self.now += rng.expovariate(200.0)
        if rng.random() < JUMP_SHARE:
            self.now += rng.uniform(5.0, 60.0)
        roll = rng.random()
        try:
            if roll < TICK_SHARE:
                return self._tick()
            if roll < TICK_SHARE + FRAME_SHARE:
                return self._frame(rng)
            return self._datagram(rng)
        finally:
            self._forget()

    # -- inputs -------------------------------------------------------------------

    def _input(
        self, rng: random.Random, seeds: list[Seed], as_is: float = AS_IS_SHARE
    ) -> tuple[Seed, bytes, str]:
        seed = rng.choice(seeds)
        if rng.random() < as_is:
            return seed, seed.data, seed.what
        return seed, mutate(rng, seed, seeds, self.tokens), seed.what

    def _datagram(self, rng: random.Random) -> CoreStep:
        if rng.random() < RED_SHARE:  # Red's answers, often as they are: before Red's
            seed, data, what = self._input(rng, self.datagrams[-2:], 0.5)  # own initiation
        else:  # gets in and makes them stale
            seed, data, what = self._input(rng, self.datagrams)
        if len(data) in (INITIATION_SIZE, RESPONSE_SIZE) and rng.random() < FORGED_SHARE:
            message = bytearray(data)
            message[-32:-16] = mac(self.mac1_key, bytes(message[:-32]))
            data, what = bytes(message), f"{what}, mac1 forged"
        source = self.sources.get(seed.data, SITE["blue"])
        if rng.random() < OTHER_SOURCE_SHARE:
            source = OTHER_END
        loaded = rng.random() < LOAD_SHARE
        port = self.port
        port.load_threshold = 0 if loaded else 1 << 30  # every handshake counts, or none
        port.loaded_until = float("-inf")
        count_refusals(self.node, port)  # what the sending side dropped: counted now
        entry = entry_of(data)
        before = list(self.device.refused)
        rx = {key: peer.rx_bytes for key, peer in self.device.peers.items()}
        try:
            step = self.network.from_tunnel("gw", PORT, data, source, self.now)
        except Exception as error:
            return CoreStep(entry, what, data, "raised", [exception(error)])
        delta = [n - b for n, b in zip(self.device.refused, before, strict=True)]
        refused = [(Reason(i), n) for i, n in enumerate(delta[:_SENDING]) if n]
        found = self._bounds()
        if refused:
            return self._refused(entry, what, data, source, loaded, refused, step, found)
        senders = [k for k, peer in self.device.peers.items() if peer.rx_bytes != rx.get(k)]
        found += self._accepted(entry, data, step, source, senders)
        return CoreStep(entry, what, data, _accepted_label(data, step), found)

    def _frame(self, rng: random.Random) -> CoreStep:
        seed, data, what = self._input(rng, self.frames)
        network, entry = self.network, seed.entry
        try:
            if entry == NVGRE:
                step = network.from_provider("gw", data, self.now)
                try:
                    rdid = self._rdid_of_vsid(parse_nvgre(memoryview(data)).vsid)
                except BadPacket:
                    rdid = None
            else:
                tenant = "blue" if "blue" in what else "red"
                step = network.from_tap("gw", TAP[tenant], data, self.now)
                rdid = self.rdid[f"onprem-{tenant}"]
        except Exception as error:
            return CoreStep(entry, what, data, "raised", [exception(error)])
        found = self._bounds() + self._contained(entry, step, rdid, None, _ROUTED)
        self._answer_red(step)
        label = "into tunnel" if step.udp else _drops_label(step) or "routed"
        return CoreStep(entry, what, data, label, found)

    def _tick(self) -> CoreStep:
        try:
            step = self.network.tick("gw", self.now)
        except Exception as error:
            return CoreStep("tunnel_tick", "tick", b"", "raised", [exception(error)])
        found = self._bounds()
        endpoints = {peer.endpoint for peer in self.device.peers.values()}
        for _, endpoint, datagram in step.udp:
            if endpoint not in endpoints or datagram[0] not in _ROUTED:
                found.append(("answered", f"tick: type {datagram[0]} to {endpoint}"))
        if step.nvgre or step.taps:
            found.append(("crossed", "tick: a frame out of the tunnel's way"))
        self._answer_red(step)
        return CoreStep("tunnel_tick", "tick", b"", "sent" if step.udp else "quiet", found)

    # -- the oracle ---------------------------------------------------------------

    def _refused(
        self,
        entry: str,
        what: str,
        data: bytes,
        source: tuple[str, int],
        loaded: bool,
        refused: list[tuple[Reason, int]],
        step: Step,
        found: list[tuple[str, str]],
    ) -> CoreStep:
        reason = refused[0][0]
        if len(refused) > 1 or refused[0][1] > 1:
            found.append(("counted", f"{entry}: refused {refused} for one datagram"))
        elif step.drops != {REASON_DROP[reason]: 1}:
            found.append(("counted", f"{entry}: {reason.label}, node drops {step.drops}"))
        needs_cookie = loaded and mac1_valid(self.mac1_key, data)
        sent = [(d, end) for _, end, d in step.udp]
        if needs_cookie != (reason is Reason.COOKIE_REQUIRED):
            found.append(("cookie", f"{entry}: under load {loaded}, refused as {reason.label}"))
        elif needs_cookie:
            if [(d[0], end) for d, end in sent] != [(COOKIE_REPLY, source)]:
                found.append(("answered", f"{entry}: under load, answered {len(sent)}"))
        elif sent:
            found.append(("answered", f"{entry}: refused as {reason.label}, answered"))
        if step.nvgre or step.taps:
            found.append(("crossed", f"{entry}: refused as {reason.label}, yet routed"))
        return CoreStep(entry, what, data, f"refused:{reason.label}", found)

    def _accepted(
        self,
        entry: str,
        data: bytes,
        step: Step,
        source: tuple[str, int],
        senders: list[bytes],
    ) -> list[tuple[str, str]]:
        """A datagram the device did not refuse: genuine, and what it led to stays in
        the routing domain of the peer that sent it."""
        found: list[tuple[str, str]] = []
        kind = int.from_bytes(data[:4], "little") if len(data) >= 4 else 0
        if kind == TRANSPORT:
            plaintext = self.plaintexts.get(data)
            if plaintext is None:
                found.append(("forged", f"{entry}: accepted data the site never sent"))
            elif data in self.delivered:
                found.append(("replayed", f"{entry}: the site's data accepted twice"))
            elif (
                plaintext[:1] == b"\x45"
                and plaintext[12] == 192
                and (  # 192.168.7.7
                    step.drops != {Drop.TUNNEL_SOURCE: 1} or step.nvgre or step.taps or step.udp
                )
            ):
                found.append(("allowed_ips", f"{entry}: outside the allowed IPs: {step.drops}"))
            self.delivered.add(data)
        elif kind in self.genuine:
            if _authenticated(data) not in self.genuine[kind]:
                found.append(("forged", f"{entry}: accepted a message no site made"))
        else:
            found.append(("unrefused", f"{entry}: a datagram of type {kind} neither refused"))
        if sum(step.drops.values()) > 1:
            found.append(("counted", f"{entry}: accepted, then {step.drops}"))
        if len(senders) > 1:
            found.append(("forged", f"{entry}: authenticated as {len(senders)} peers"))
        rdid = None
        if senders:
            rdid = self.port.tunnels[senders[0]].domain.rdid
        allowed = _ANSWERS.get(kind, set())  # what the core may answer; routed: the same
        return found + self._contained(entry, step, rdid, source, allowed)

    def _contained(
        self,
        entry: str,
        step: Step,
        rdid: str | None,
        source: tuple[str, int] | None,
        types: set[int],
    ) -> list[tuple[str, str]]:
        """What ``step`` sent stays in routing domain ``rdid`` (None: nothing may leave):
        NVGRE in its VSIDs, frames to its TAPs, datagrams of ``types`` to ``source``
        or to the peer of one of its tunnels."""
        found: list[tuple[str, str]] = []
        vsids = self.vsids.get(rdid, set()) if rdid else set()
        for _, _, datagram in step.nvgre:
            vsid = parse_nvgre(memoryview(datagram)).vsid
            if vsid not in vsids:
                found.append(("crossed", f"{entry}: NVGRE into VSID {vsid} from {rdid}"))
        for tap, _ in step.taps:
            if getattr(tap, "rdid", None) != rdid:
                found.append(("crossed", f"{entry}: a frame to TAP {tap.name} from {rdid}"))
        ends = {source}
        for tunnel in self.port.tunnels.values():
            if tunnel.domain.rdid == rdid and tunnel.peer is not None:
                ends.add(tunnel.peer.endpoint)
        for _, endpoint, datagram in step.udp:
            if rdid is None or endpoint not in ends:
                found.append(("crossed", f"{entry}: a datagram to {endpoint} from {rdid}"))
            elif datagram[0] not in types:
                found.append(("answered", f"{entry}: answered type {datagram[0]}"))
        return found

    def _rdid_of_vsid(self, vsid: int) -> str | None:
        return next((rdid for rdid, vsids in self.vsids.items() if vsid in vsids), None)

    def _bounds(self) -> list[tuple[str, str]]:
        """The port's device within its bounds; its outbox empty: flushed each call."""
        return device_bounds(self.device, 0)


def _drops_label(step: Step) -> str:
    return ",".join(f"drop:{reason.label}" for reason in step.drops)


def _accepted_label(data: bytes, step: Step) -> str:
    if data and data[0] == TRANSPORT:
        if step.nvgre or step.taps or step.udp:
            return "delivered"
        return _drops_label(step) or "keepalive"
    return "accepted"
