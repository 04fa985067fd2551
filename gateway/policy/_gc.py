"""Pause the cyclic garbage collector while a policy or snapshot is built, and keep
it off what a large build (a whole load, a batch) left.

Building 100,000 records allocates a few hundred thousand container objects, and
every 700 allocations CPython's collector runs; the older generations it scans hold
everything built so far, so the build becomes quadratic-ish. Measured on the 100,000
records of ``bench/snapshot_build.py``: ``load_policy`` twice as fast, ``compile_policy``
three to five times, the one young-generation pass after switching back included.
What is built here holds no reference cycles, so nothing is left for the
collector to find afterwards; it is switched back on (if it was on) on the way out.

Switched back on, though, the collector still walks what was built, once per
generation it climbs: after a whole load of 10^5 records a young pass of 1.7 s and
a full one of 2.3 s here (0.8 s at load 1.25, 7.8 s at load 7), holding the GIL, so
the event loop and the data plane stall; a batch of 10^5 records taken as one change
builds as much. ``kept_build`` freezes what such a build left (``gc.freeze``: the
collector never walks it again). Frozen objects are still freed by their reference
counts, and the policy's, snapshot's and store's objects hold no cycles, so the next
load's swap frees them. Frozen cyclic garbage is never collected, though: the young
generations are collected first (a pass over a few thousand objects), which leaves
what a freeze keeps for good to the cyclic garbage already in the oldest generation
(the collector's next full pass would have freed it) and what was alive then and
later dies in a cycle (a gateway's tables in force: three objects per routing
domain), once per large build (a start, a reload, a follower's whole read, a change
that left more than ``FREEZE_OVER`` young objects), never per small change.
Collecting everything first instead would walk the running policy, and the heap a
small deployment never freezes, at each load: the stall again.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# A build that leaves more young objects than this is frozen (a whole load, or a
# batch, of 10^5 records leaves millions); a smaller one (a change of a few entries)
# is left to the collector, whose passes over it cost a few milliseconds.
FREEZE_OVER = 100_000


@contextmanager
def paused_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def kept_build() -> Iterator[None]:
    """Build under one pause (a whole read's steps pause the collector each, and it
    ran between them, walking what the earlier ones built), and freeze what the
    build left if it is large (a whole load), so that no pass walks it afterwards."""
    gc.collect(1)  # the young garbage of before, which a freeze would keep for ever
    with paused_gc():
        yield
        if gc.get_count()[0] > FREEZE_OVER:
            gc.freeze()
