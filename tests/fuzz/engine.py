"""One chunk of a campaign: inputs for one node, each judged four ways.

Each input (a mutated seed of one entry point, or random bytes) goes:

1. through every wire parser at the layer it carries (``parsers.py``);
2. to the *warm* data plane, whose flow cache holds the chunk's earlier inputs, and
   the oracle judges the outcome (``oracle.py``);
3. to the warm data plane again: a second feed must end as the first (caching, or
   any state, must not change a verdict);
4. to the *cold* data plane, whose flow cache is emptied before each input: it must
   end as the warm one did (a cached verdict is the verdict);
5. for NVGRE over IPv4 without options and with a right header checksum, the same
   datagram with a 4-byte option: the fast path cannot read it, so ``parse_nvgre`` and
   ``_verdict`` decide it, and they must decide as the fast path did. (Half of the
   NVGRE inputs get their outer checksum made right after mutation, as the kernel or
   the receive ring's filter lets only those through to the fast path.)

IP-Rewrite's neighbour table, and a gateway's per TAP, is state the verdict rightly
depends on, so before each feed it is rebuilt to one of a few states drawn per input
(empty, learned, learned long ago, asked and waiting, asked too long ago): every
feed of one input meets the same table. So is a gateway's NAT: every feed meets the
same sessions (``gateway_nat.NatState``), not one the feed before opened. A
gateway's per-domain route caches are emptied for the cold data plane too.

A chunk starts from fresh data planes and a generator seeded by (campaign seed,
policy, node, chunk number), so ``replay`` re-runs it exactly up to any input.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from gateway.dataplane import GatewayNode, HostNode
from gateway.policy import NodeRole, Rule
from gateway.wire import checksum_ok, internet_checksum

from . import parsers
from .frames import (
    ENTRIES,
    PORT,
    PROVIDER,
    Seed,
    ipv4_frame,
    link_macs,
    provider_mac,
    seeds_for,
    tokens_for,
)
from .gateway_frames import CORP_MAC, TAP, gateway_seeds_for, neighbour_addresses
from .gateway_nat import NatState, gateway_taps
from .mutate import mutate
from .oracle import CountingNeighbors, NodeView, Outcome, Recorder, check_outcome, run, silence
from .policies import Target

NOW: Final = 1000.0  # the data planes' clock; neighbour states are set relative to it
CHUNK: Final = 2000  # inputs per chunk: fresh data planes and a fresh generator each
EXAMPLES_PER_SIGNATURE: Final = 3  # findings kept per kind of finding and chunk
OFFSET_SHARE: Final = 0.125  # inputs that also try a parser at an edge offset
CHECKED_SHARE: Final = 0.5  # NVGRE inputs whose outer IPv4 checksum is made right
OPTION: Final = b"\x01\x01\x01\x00"  # three NOPs and an end of options: IHL 5 -> 6
_NEIGHBOR_PAS: Final = 8  # remote IP-Rewrite PAs given a neighbour state per input
_NUMBERS = re.compile(r"(?<![A-Za-z])\d+")  # IPv4 and l4.py keep their digits


def signature(kind: str, detail: str) -> str:
    """What makes two findings the same finding: the text without its numbers."""
    return f"{kind}: {_NUMBERS.sub('N', detail)}"


@dataclass
class ChunkResult:
    inputs: int = 0
    outcomes: Counter = field(default_factory=Counter)  # "entry label" -> inputs
    counts: Counter = field(default_factory=Counter)  # signature -> findings
    findings: list[dict[str, Any]] = field(default_factory=list)  # examples

    def merge(self, other: ChunkResult, keep: int | None = None) -> None:
        """Add ``other`` in, keeping at most ``keep`` examples per signature."""
        self.inputs += other.inputs
        self.outcomes.update(other.outcomes)
        self.counts.update(other.counts)
        for finding in other.findings:
            same = sum(1 for f in self.findings if f["signature"] == finding["signature"])
            if keep is None or same < keep:
                self.findings.append(finding)


class Bench:
    """Everything one target needs between chunks: its seeds, tokens and views."""

    def __init__(self, target: Target) -> None:
        self.target = target
        policy = target.snapshot.policy
        node = policy.node(target.node)
        self.gateway = node.role is NodeRole.GATEWAY
        self.node_index = [n.name for n in policy.nodes].index(target.node)
        probe = self.dataplane()
        self.view = NodeView.of(probe)
        self._neighbors: dict[tuple[str, int], CountingNeighbors] = {}
        self.nat: NatState | None = None
        if isinstance(probe, GatewayNode):
            tables = probe.tables
            self.nat = NatState(probe, NOW)
            self.seeds = gateway_seeds_for(target.snapshot, tables, self.nat)
            self.entries = [entry for entry in (PROVIDER, TAP) if self.seeds[entry]]
            taps = gateway_taps(tables)
            macs = {mac for _, mac in tables.port_by_key} | {tap.mac for tap in taps}
            own = {address for tap in taps for address in tap.answers}
            self.tokens = tokens_for(target.snapshot, tables.local_pas | own, macs | {CORP_MAC})
            self.rewrite = True  # neighbour states, per TAP
            self.waiting = {
                tap.name: [
                    (address, CORP_MAC, ipv4_frame(bytes(6), tap.mac, tap.own_ip, address, 1))
                    for address in addresses
                ]
                for tap in taps
                for addresses in [neighbour_addresses(tables)[tap.name]]
            }
            return
        self.seeds = seeds_for(target.snapshot, probe.tables, self.node_index)
        self.entries = [entry for entry in ENTRIES if self.seeds[entry]]
        macs = {p.mac for p in probe.tables.ports[:64]}
        self.tokens = tokens_for(target.snapshot, probe.tables.local_pas, macs)
        self.rewrite = any(r.rule is Rule.IP_REWRITE for r in target.snapshot.records)
        self.waiting = {"": self._neighbor_pas(probe)}

    def dataplane(self) -> HostNode | GatewayNode:
        snapshot, name = self.target.snapshot, self.target.node
        if self.gateway:
            return GatewayNode(snapshot, name, Recorder())
        return HostNode(snapshot, name, Recorder(), provider_mac=provider_mac(self.node_index))

    def _neighbor_pas(self, probe: HostNode) -> list[tuple[bytes, bytes, bytes]]:
        """(remote PA, its MAC, a frame that waits for it) for a few IP-Rewrite PAs.
        Only a node with an IP-Rewrite PA of its own sends IP-Rewrite frames, so only
        its table holds them waiting (from that PA); another node's holds none."""
        macs = link_macs(self.target.snapshot)
        local = sorted(pa for pa in probe.tables.rewrite_by_pa if len(pa) == 4)
        if not local:
            return []
        found = []
        for record in self.target.snapshot.records:
            pa = record.pa_bytes
            if record.rule is Rule.IP_REWRITE and pa not in probe.tables.local_pas and len(pa) == 4:
                frame = ipv4_frame(bytes(6), provider_mac(self.node_index), local[0], pa, 1)
                found.append((pa, macs.get(pa, bytes(6)), frame))
        return found[:_NEIGHBOR_PAS]

    def attach(self, plane: HostNode | GatewayNode, state: int) -> None:
        """Give ``plane`` its neighbour tables in ``state`` (one per TAP on a gateway),
        and a gateway its NAT as every feed starts it (``gateway_nat.py``)."""
        if isinstance(plane, GatewayNode):
            for tap in gateway_taps(plane.tables):
                tables = self.neighbors(state, tap.mac, tap.name)
                tap.neighbors = plane.neighbors[tap.name] = tables
            if self.nat is not None:
                self.nat.install(plane)
        else:
            plane.neighbors = self.neighbors(state, plane.provider_mac or b"")

    def neighbors(self, state: int, source_mac: bytes, tap: str = "") -> CountingNeighbors:
        """A neighbour table in state ``state`` for a link the node sends on from
        ``source_mac``: the last one built, if nothing used it since, else a new one."""
        table = self._neighbors.get((tap, state))
        if table is None or table.touched:
            waiting = self.waiting[tap]
            table = self._neighbors[tap, state] = self._new_neighbors(state, waiting, source_mac)
        return table

    @staticmethod
    def _new_neighbors(
        state: int, waiting: list[tuple[bytes, bytes, bytes]], source_mac: bytes
    ) -> CountingNeighbors:
        """A neighbour table in one of five states for every address of ``waiting``."""
        table = CountingNeighbors(source_mac)
        for pa, mac, frame in waiting:
            if state == 1:  # learned a moment ago
                table.resolve(pa, NOW - 1.0)
                table.learn(pa, mac, NOW - 0.9)
            elif state == 2:  # learned long ago: due for a refresh
                table.resolve(pa, NOW - 100.0)
                table.learn(pa, mac, NOW - 99.9)
            elif state == 3:  # asked just now, one frame waiting
                table.resolve(pa, NOW - 0.5)
                table.park(pa, bytearray(frame))
            elif state == 4:  # asked too long ago for an answer to count
                table.resolve(pa, NOW - 10.0)
        table.parked = 0
        table.answered = 0
        table.touched = False
        return table

    def source(self, plane: HostNode | GatewayNode, entry: str, index: int) -> object:
        """The port (``from_port``) or TAP (``from_tap``) an input enters by, if any."""
        if entry == PORT:
            return plane.tables.ports[index]  # type: ignore[union-attr]
        if entry == TAP:
            return gateway_taps(plane.tables)[index]  # type: ignore[arg-type]
        return None


def _cold(plane: HostNode | GatewayNode) -> None:
    """Empty every cache of ``plane``'s tables (the flow cache; a gateway's routes)."""
    plane.tables.flows.clear()
    if isinstance(plane, GatewayNode):
        for domain in plane.tables.domains.values():
            domain.routes.clear()


class Planes:
    """The two data planes a chunk judges its inputs with: warm keeps its flow cache
    across inputs, cold has it emptied before each one."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.warm, self.cold = bench.dataplane(), bench.dataplane()

    def judge(
        self, entry: str, port_index: int, data: bytes, state: int
    ) -> tuple[list[tuple[str, str]], tuple[Outcome | None, ...]]:
        """Steps 1-5 of the module docstring for one input: (findings, the outcomes of
        the first feed, the second, the cold one and the optioned twin)."""
        bench, warm, cold = self.bench, self.warm, self.cold
        found: list[tuple[str, str]] = []
        if entry == PROVIDER:
            parsers.check_datagram(data, found)
        else:
            parsers.check_frame(data, found)
        port = bench.source(warm, entry, port_index)
        cold_port = bench.source(cold, entry, port_index)
        if bench.rewrite:
            bench.attach(warm, state)
        first = run(warm, entry, port, data, NOW)
        found += check_outcome(entry, port, data, first, bench.view, getattr(warm, "napt", None))
        if bench.rewrite:
            bench.attach(warm, state)
        again = run(warm, entry, port, data, NOW)
        if first.raised is None and again != first:
            found.append(("twice", f"{entry}: fed twice, {first.label()} then {again.label()}"))
        _cold(cold)
        if bench.rewrite:
            bench.attach(cold, state)
        fresh = run(cold, entry, cold_port, data, NOW)
        if first.raised is None and fresh != first:
            found.append(("cache", f"{entry}: warm cache {first.label()}, cold {fresh.label()}"))
        twin = _with_option(data) if entry == PROVIDER else None
        slow: Outcome | None = None
        if twin is not None:
            _cold(cold)
            if bench.rewrite:
                bench.attach(cold, state)
            slow = run(cold, entry, None, twin, NOW)
            if first.raised is None and (slow.drops, slow.events) != (first.drops, first.events):
                found.append(
                    ("path", f"{entry}: fast path {first.label()}, parse_nvgre {slow.label()}")
                )
        return found, (first, again, fresh, slow)


def run_chunk(
    bench: Bench,
    seed: str,
    chunk: int,
    count: int,
    *,
    stop_at: int | None = None,
    show: Any = None,
) -> ChunkResult:
    """``count`` inputs for ``bench``'s target; with ``stop_at``, only up to that input
    (and ``show(index, entry, port, base, data, outcomes, findings)`` for it)."""
    target = bench.target
    rng = random.Random(f"{seed}:{target.name}:{chunk}")
    planes = Planes(bench)
    result = ChunkResult()
    for index in range(count if stop_at is None else stop_at + 1):
        entry = rng.choice(bench.entries)
        base = rng.choice(bench.seeds[entry])
        data = mutate(rng, base, bench.seeds[entry], bench.tokens)
        if entry == PROVIDER and rng.random() < CHECKED_SHARE:
            data = with_checksum(data)
        state = rng.randrange(5) if bench.rewrite else 0
        found, outcomes = planes.judge(entry, base.port, data, state)
        if rng.random() < OFFSET_SHARE:
            parsers.check_offsets(data, rng, found)
        result.inputs += 1
        label = outcomes[0].label()  # type: ignore[union-attr]
        if label == "nothing":
            label = f"silent:{silence(entry, data, bench.view)}"
        result.outcomes[f"{entry} {label}"] += 1
        port = bench.source(planes.warm, entry, base.port)
        for kind, detail in found:
            _record(result, kind, detail, target, seed, chunk, index, entry, port, base, data)
        if show is not None and index == stop_at:
            show(index, entry, port, base, data, outcomes, found)
    return result


def _with_option(data: bytes) -> bytes | None:
    """The datagram with a 4-byte outer IPv4 option (IHL 6, total length + 4, checksum
    recomputed), or None when that twin would not be decided like it: not IPv4 without
    options, a length that would overflow, or a header checksum that does not hold
    (the slow path checks it; the fast path's datagrams had it checked before they
    reached it, by the kernel or the receive ring's filter)."""
    if len(data) < 20 or data[0] != 0x45 or not checksum_ok(data[:20]):
        return None
    total = int.from_bytes(data[2:4], "big") + 4
    if total > 0xFFFF:
        return None
    header = bytearray(b"\x46" + data[1:2] + total.to_bytes(2, "big") + data[4:20] + OPTION)
    header[10:12] = b"\0\0"
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    return bytes(header) + data[20:]


def with_checksum(data: bytes) -> bytes:
    """``data`` with its outer IPv4 header checksum made right, as a datagram that came
    through the kernel's or the ring filter's check would have it."""
    if len(data) < 20 or data[0] >> 4 != 4 or len(data) < (data[0] & 0x0F) * 4:
        return data
    header = bytearray(data[: max(20, (data[0] & 0x0F) * 4)])
    header[10:12] = b"\0\0"
    header[10:12] = internet_checksum(header).to_bytes(2, "big")
    return bytes(header) + data[len(header) :]


def record(result: ChunkResult, kind: str, detail: str, where: dict[str, Any]) -> None:
    """Count a finding by its signature; keep it, with ``where`` it happened, as one
    of the first few examples of its kind."""
    key = signature(kind, detail)
    result.counts[key] += 1
    if result.counts[key] <= EXAMPLES_PER_SIGNATURE:
        result.findings.append({"kind": kind, "signature": key, "detail": detail, **where})


class Located(Protocol):
    """What names a target in a finding: a policy's node, or a core."""

    policy: str
    node: str
    daemon_accepts: bool

    @property
    def name(self) -> str: ...


def where(
    target: Located,
    seed: str,
    chunk: int,
    index: int,
    entry: str,
    port: str | None,
    what: str,
    data: bytes,
) -> dict[str, Any]:
    """Where a finding happened, and what ``--replay`` needs to re-run it."""
    return {
        "policy": target.policy,
        "node": target.node,
        "daemon_accepts": target.daemon_accepts,
        "entry": entry,
        "port": port,
        "seed_frame": what,
        "frame": data.hex(),
        "replay": f"{seed}:{target.name}:{chunk}:{index}",
    }


def _record(
    result: ChunkResult,
    kind: str,
    detail: str,
    target: Target,
    seed: str,
    chunk: int,
    index: int,
    entry: str,
    port: Any,
    base: Seed,
    data: bytes,
) -> None:
    name = port.name if port is not None else None
    record(result, kind, detail, where(target, seed, chunk, index, entry, name, base.what, data))
