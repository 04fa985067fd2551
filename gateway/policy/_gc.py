"""Pause the cyclic garbage collector while a policy or snapshot is built.

Building 100,000 records allocates a few hundred thousand container objects, and
every 700 allocations CPython's collector runs; the older generations it scans hold
everything built so far, so the build becomes quadratic-ish. Measured on the 100,000
records of ``bench/snapshot_build.py``: ``load_policy`` twice as fast, ``compile_policy``
three to five times, the one young-generation pass after switching back included.
What is built here holds no reference cycles, so nothing is left for the
collector to find afterwards; it is switched back on (if it was on) on the way out.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
