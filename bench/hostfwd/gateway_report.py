"""From the gateway part's runs to figures: each daemon's ratio to its path's bare loop
and (``in``) to Open vSwitch, taken within each repetition, then the median; the table;
results-gateway.json."""

from __future__ import annotations

import argparse
from typing import Any

from .gateway_setup import NODE
from .report import (
    _ratio,
    bound_cell,
    figure_rows,
    print_ending,
    print_rows,
    ratio_within_reps,
    run_header,
    summarize_one_source,
    write_json,
)

DAEMONS = ("asyncio", "trio")
ANCHORS = ("bare", "ovs")


def key_of(path: str, kind: str, size: int) -> str:
    return f"{path}-{kind}_{size}"


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """``in-asyncio_64/bare`` and the like (OVS too: ``in-ovs_64/bare``): per
    repetition, then median (min..max)."""
    out = {}
    for key, e in results.items():
        name, size = key.split("_")
        path, kind = name.split("-")
        if kind == "bare":
            continue
        for anchor in ANCHORS:
            base_e = results.get(key_of(path, anchor, int(size)))
            if anchor == kind or not base_e:
                continue
            ratio = ratio_within_reps(e, base_e)
            if ratio:
                out[f"{key}/{anchor}"] = ratio
    return out


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
    """Summaries, checks and ratios, written to ``a.out`` and printed; 2 on a problem."""
    summarize_one_source(results, problems)
    rat = ratios(results)
    below = [
        k
        for k, v in rat.items()
        if k.endswith("/bare") and k.split("_")[0].split("-")[1] in DAEMONS and v["median"] < 1.0
    ]
    out = run_header("gateway_forwarding", a, machine, t_start, NODE)
    out["params"]["paths"] = {path: list(kinds) for path, kinds in a.plan.items()}
    out.update(ratios=rat, below_bare_loop=below, problems=problems, results=results)
    write_json(a.out, out)
    print()
    print_table(results, rat)
    line = "BELOW THE BARE LOOP: " + ", ".join(below) if below else ""
    return print_ending(results, line, a.out, problems)
