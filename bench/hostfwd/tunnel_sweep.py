"""The search for a tunnel's best rate at <= 1 % loss (bench-anchors D3's figure): fixed
offered rates, one window each, climbing by a factor from a start while the loss
stays within bounds, then halving the gap (geometrically) between the best rate
that held and the lowest that did not, until the two are within ``refine``. Pure:
the caller measures each rate and hands the steps back."""

from __future__ import annotations

import math
from dataclasses import dataclass

LOSS_MAX = 0.01


@dataclass(frozen=True)
class Plan:
    start: int  # the first offered rate, pps
    factor: float = 1.4  # climb by
    refine: float = 1.1  # done once the lowest failing rate is within this of a good one
    max_steps: int = 7
    floor: int = 1000  # no rate below this is tried


@dataclass(frozen=True)
class Step:
    """One window at ``rate`` pps asked: what the sender offered and what arrived, and
    whether the sender kept to its schedule (``paced_send.check``): a window it did
    not is refused, neither held nor failed (no figure comes from it)."""

    rate: int
    offered_pps: float
    delivered_pps: float
    paced: bool = True

    @property
    def loss(self) -> float:
        if not self.offered_pps:
            return 1.0
        return max(0.0, 1 - self.delivered_pps / self.offered_pps)

    @property
    def ok(self) -> bool:
        return self.loss <= LOSS_MAX


def next_rate(plan: Plan, steps: list[Step]) -> int | None:
    """The next rate to try, or None when the search is done: out of steps, nothing
    held down to the floor, or the failing and the holding rates within ``refine`` of
    each other. A window the sender could not pace bounds the search from above as
    one that lost does: the sender's ceiling is searched for as the tunnel's is."""
    if not steps:
        return plan.start
    if len(steps) >= plan.max_steps:
        return None
    held = [s.rate for s in steps if s.ok and s.paced]
    failed = [s.rate for s in steps if not (s.ok and s.paced)]
    if not failed:
        return round(max(held) * plan.factor)
    high = min(failed)
    below = [rate for rate in held if rate < high]
    if not below:
        rate = round(high / plan.factor)
        return rate if rate >= plan.floor else None
    low = max(below)
    if high <= low * plan.refine:
        return None
    return round(math.sqrt(low * high))


def best(steps: list[Step]) -> Step | None:
    """The paced step that delivered most with loss within bounds; None if none held."""
    return max((s for s in steps if s.ok and s.paced), key=lambda s: s.delivered_pps, default=None)


def first_failed(steps: list[Step]) -> Step | None:
    """The lowest paced rate that lost more than allowed: where to see what limited it."""
    return min((s for s in steps if s.paced and not s.ok), key=lambda s: s.rate, default=None)
