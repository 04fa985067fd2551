"""Sans-IO core targets: protocol cores fuzzed on their own, beside the data planes.

A data-plane target is one node of one policy (``policies.Target``, ``engine.py``);
a core target is one sans-IO core with its own state, inputs and oracle: the
WireGuard ``Device`` (``wireguard_core.py``), the NAPT table (``napt_core.py``),
and a gateway node's tunnel path around its devices (``gateway_tunnel.py``: a node
with its own inputs and oracle, where the data-plane targets share one engine).
Each core module has a ``Core`` class, built fresh per chunk
from the chunk's generator, whose ``step`` makes one input, feeds it, and judges
it: (entry, what the input was mutated from, the input, the outcome's label, the
findings). ``CoreTarget.run_chunk`` drives it the way ``engine.run_chunk`` drives a
data plane, and records outcomes and findings in the same ``ChunkResult`` shape, so
campaigns, summaries and ``--replay`` (``core/NAME:CHUNK:INDEX``) treat both alike.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from .engine import ChunkResult, record, where

CORE: Final = "core"  # the policy column of a core target ("core/wireguard")


@dataclass(frozen=True, slots=True)
class Step:
    """One input of a core and how it was judged."""

    entry: str  # what was fed: "wg_initiation", "napt_outbound", ...
    what: str  # the valid input it was mutated from (or "random")
    data: bytes  # the input as fed (empty for inputs that are no bytes: a tick)
    label: str  # the outcome, for the summary: "refused:bad_mac1", "session", ...
    findings: list[tuple[str, str]]


class Core(Protocol):
    def __init__(self, rng: random.Random) -> None: ...

    def step(self, rng: random.Random) -> Step: ...


@dataclass(frozen=True)
class CoreTarget:
    """A sans-IO core, fuzzed with fresh state per chunk."""

    core: str

    policy: str = CORE
    daemon_accepts: bool = True  # (a data-plane target's column; every core runs)

    @property
    def node(self) -> str:
        return self.core

    @property
    def name(self) -> str:
        return f"{CORE}/{self.core}"

    def run_chunk(
        self,
        seed: str,
        chunk: int,
        count: int,
        *,
        stop_at: int | None = None,
        show: Callable[[int, Step], None] | None = None,
    ) -> ChunkResult:
        """``count`` inputs for the core (up to ``stop_at`` only, then ``show`` it)."""
        rng = random.Random(f"{seed}:{self.name}:{chunk}")
        result = ChunkResult()
        try:
            core = _cores()[self.core](rng)
        except Exception as error:  # the setup feeds the core its seeds: it may raise
            step = Step("setup", "setup", b"", "raised", [exception(error)])
            result.inputs = count if stop_at is None else stop_at + 1
            result.outcomes["setup raised"] += result.inputs
            self._record(result, step.findings[0], seed, chunk, 0, step)
            if show is not None:
                show(0, step)
            return result
        for index in range(count if stop_at is None else stop_at + 1):
            try:
                step = core.step(rng)
            except Exception as error:  # raised past the step's own guards
                step = Step("step", "?", b"", "raised", [exception(error)])
            result.inputs += 1
            result.outcomes[f"{step.entry} {step.label}"] += 1
            for finding in step.findings:
                self._record(result, finding, seed, chunk, index, step)
            if show is not None and index == stop_at:
                show(index, step)
        return result

    def _record(
        self,
        result: ChunkResult,
        finding: tuple[str, str],
        seed: str,
        chunk: int,
        index: int,
        step: Step,
    ) -> None:
        place = where(self, seed, chunk, index, step.entry, None, step.what, step.data)
        record(result, *finding, place)


def _cores() -> dict[str, type[Core]]:
    # Imported here: the core modules import this one (Step, exception).
    from .gateway_tunnel import GatewayTunnelCore
    from .napt_core import NaptCore
    from .wireguard_core import WireguardCore

    return {"wireguard": WireguardCore, "napt": NaptCore, "gateway_tunnel": GatewayTunnelCore}


def core_names() -> list[str]:
    return list(_cores())


def core_targets(names: list[str] | None = None) -> list[CoreTarget]:
    """The cores named (all by default), in a stable order."""
    return [CoreTarget(name) for name in (names or core_names())]


def exception(error: BaseException) -> tuple[str, str]:
    """An exception as a finding: its type, message and where it was raised."""
    frame = traceback.extract_tb(error.__traceback__)[-1]
    return ("exception", f"{type(error).__name__}: {error} at {frame.filename}:{frame.lineno}")
