"""The arithmetic and the table of ``bench/api_change.py``, apart from what it times
(tested on made-up figures in tests/test_bench_api.py).

- ``percentile``: the nearest-rank percentile (the smallest value with at least p %
  of the values at or below it), so a p99 is a value that was measured, never an
  interpolation between two;
- ``lags``: per change, the time from the writer's answer to each follower having a
  revision at least as new in force. A follower that jumped past a revision (it
  reads the store as committed when it looks, so several changes may land in one
  reload) had that change in force when it had the later one;
- ``table``: the figures of one run, a row per policy size, a column per store (the
  file store of ``--rev`` beside them, where it was measured).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ``values`` (0 < p <= 100)."""
    if not values or not 0 < p <= 100:
        raise ValueError(f"no {p}th percentile of {len(values)} values")
    ordered = sorted(values)
    return ordered[math.ceil(p / 100 * len(ordered)) - 1]


def lags(answers: Mapping[int, int], in_force: Sequence[tuple[int, int]]) -> list[int]:
    """For each revision the writer answered (``answers``: revision -> the answer's
    time), the time until the follower first had that revision or a newer one in
    force (``in_force``: (revision, time) as its commits happened, in order), in
    the clock's units. ValueError names a revision the follower never reached."""
    lagged = []
    ordered = list(in_force)
    at = 0
    for revision in sorted(answers):
        while at < len(ordered) and ordered[at][0] < revision:
            at += 1
        if at == len(ordered):
            raise ValueError(f"the follower never had revision {revision} in force")
        lagged.append(ordered[at][1] - answers[revision])
    return lagged


def summary(seconds: Sequence[float]) -> dict[str, float | int]:
    """Median, p99 and max of ``seconds`` (rounded to 0.1 ms), with their count."""
    return {
        "samples": len(seconds),
        "median_s": round(statistics.median(seconds), 4),
        "p99_s": round(percentile(seconds, 99), 4),
        "max_s": round(max(seconds), 4),
    }


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(results: Mapping[str, Any]) -> list[str]:
    """The run's figures as text: per size, each store's change and reload (median),
    the file store's at ``--rev`` beside them, and the propagation's p99 and max."""
    columns: dict[str, dict[int, dict[str, Any]]] = {}
    for store, rows in results.get("change", {}).items():
        columns[store] = {row["records"]: row for row in rows}
    if "file_store" in results:
        rows = results["file_store"]["results"]
        columns[f"file@{results['file_store']['commit']}"] = {row["records"]: row for row in rows}
    spread = results.get("propagation", {})
    sizes = sorted({n for rows in columns.values() for n in rows} | {
        row["records"] for rows in spread.values() for row in rows
    })  # fmt: skip
    head = ["records"] + [f"change {s}" for s in columns] + [f"reload {s}" for s in columns]
    head += [f"others p99/max {s}" for s in spread]
    lines = [" | ".join(head)]
    for n in sizes:
        cells = [f"{n:,}"]
        for step in ("change", "load (SIGHUP)"):
            for rows in columns.values():
                cells.append(_ms(rows[n][step]["median_s"]) if n in rows else "-")
        for rows in spread.values():
            found = next((row for row in rows if row["records"] == n), None)
            lag = found["in_force_after_answer"] if found else None
            cells.append(f"{_ms(lag['p99_s'])} / {_ms(lag['max_s'])}" if lag else "-")
        lines.append(" | ".join(cells))
    return lines
