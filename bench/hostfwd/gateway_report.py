"""From the gateway part's runs to figures: each daemon's ratio to its path's bare loop
and (``in``) to Open vSwitch, taken within each repetition, then the median; with
several sources of the daemon (``--rev OLD --rev NEW``), the comparison of their
ratios to the bare loop and its verdict (``report.compare``); the table;
results-gateway.json."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .common import SIZES
from .gateway_setup import NODE
from .report import (
    Case,
    _ratio,
    bound_cell,
    compare,
    figure_rows,
    print_comparison,
    print_ending,
    print_rows,
    ratio_within_reps,
    run_header,
    summarize_versions,
    write_json,
)

DAEMONS = ("asyncio", "trio")
ANCHORS = ("bare", "ovs")


def key_of(path: str, kind: str, size: int, label: str | None = None) -> str:
    """``in-asyncio_64``, or ``in-asyncio_64@<label>`` when several sources of the
    daemon are measured (the anchors are never labelled)."""
    return f"{path}-{kind}_{size}" if label is None else f"{path}-{kind}_{size}@{label}"


def split_key(key: str) -> tuple[str, str, int, str | None]:
    """(path, kind, size, label) of a ``key_of``."""
    name, _, label = key.partition("@")
    case, size = name.split("_")
    path, kind = case.split("-")
    return path, kind, int(size), label or None


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """``in-asyncio_64/bare`` and the like (OVS too: ``in-ovs_64/bare``;
    ``in-asyncio_64@<label>/bare`` per source when several): per repetition, then
    median (min..max)."""
    out = {}
    for key, e in results.items():
        path, kind, size, _ = split_key(key)
        if kind == "bare":
            continue
        for anchor in ANCHORS:
            base_e = results.get(key_of(path, anchor, size))
            if anchor == kind or not base_e:
                continue
            ratio = ratio_within_reps(e, base_e)
            if ratio:
                out[f"{key}/{anchor}"] = ratio
    return out


def cases(plan: dict[str, list[str]]) -> list[Case]:
    """The comparison's lines: each daemon of each path at each size, by its ratio to
    that path's bare loop."""

    def key(path: str, kind: str, size: int) -> Callable[[str], str]:
        return lambda label: f"{key_of(path, kind, size, label)}/bare"

    return [
        (f"{path}-{kind}", size, key(path, kind, size))
        for path, kinds in plan.items()
        for kind in kinds
        if kind in DAEMONS
        for size in SIZES
    ]


def print_table(results: dict[str, Any], rat: dict[str, Any]) -> None:
    head = ("id", "delivered pps", "offered pps", "x bare", "x OVS", "recv cores", "CPU s/Mpkt")
    head += ("recv-bound",)

    def versus(key: str, e: dict[str, Any]) -> tuple[str, ...]:
        values = [rat.get(f"{key}/{anchor}") for anchor in ANCHORS]
        return tuple(
            _ratio(v) if v else "1.00" if f"-{anchor}_" in key else "-"
            for v, anchor in zip(values, ANCHORS, strict=True)
        )

    print_rows(head, figure_rows(results, len(head), versus, lambda key, e: (bound_cell(e),)))


def finish(
    a: argparse.Namespace,
    machine: dict[str, Any],
    results: dict[str, Any],
    problems: list[str],
    t_start: float,
) -> int:
    """Summaries, checks, ratios (and the comparison of several sources), written to
    ``a.out`` and printed; 2 on a problem, 1 when a later source is slower."""
    summarize_versions(results, problems)
    rat = ratios(results)
    below = [
        k
        for k, v in rat.items()
        if k.endswith("/bare") and split_key(k[: -len("/bare")])[1] in DAEMONS and v["median"] < 1.0
    ]
    out = run_header("gateway_forwarding", a, machine, t_start, NODE)
    out["params"]["paths"] = {path: list(kinds) for path, kinds in a.plan.items()}
    out.update(ratios=rat, below_bare_loop=below, problems=problems, results=results)
    comparison = None
    if len(a.labels) > 1:
        comparison = out["comparison"] = compare(rat, a.labels, a.reps, cases(a.plan))
    write_json(a.out, out)
    print()
    print_table(results, rat)
    if comparison is not None:
        print()
        print_comparison(comparison)
    line = "BELOW THE BARE LOOP: " + ", ".join(below) if below else ""
    status = print_ending(results, line, a.out, problems)
    return status or (0 if comparison is None or comparison["no_slower"] else 1)
