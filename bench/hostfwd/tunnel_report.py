"""From the tunnel part's runs to figures: each daemon's ratio to wireguard-go (the
anchor), taken within each repetition, then the median; the table;
results-gateway-tunnel.json."""

from __future__ import annotations

import argparse
from typing import Any

from .report import (
    _k,
    _ratio,
    figure_rows,
    print_ending,
    print_rows,
    ratio_within_reps,
    run_header,
    summarize_versions,
    write_json,
)
from .tunnel_measure import ANCHOR
from .tunnel_setup import INNER, NODE
from .tunnel_sweep import LOSS_MAX

TARGET = 1.0  # decisions.md, "Performance": tunnels >= 1.0x wireguard-go
LIMITS = {"receiver (gateway side)": "gateway", "site": "site", "sender": "sender"}


def key_of(kind: str) -> str:
    return f"tunnel-{kind}_{INNER}"


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """``tunnel-asyncio_1400/wggo``: per repetition, then median (min..max)."""
    base = results.get(key_of(ANCHOR))
    out = {}
    for key, e in results.items():
        if key == key_of(ANCHOR) or not base:
            continue
        ratio = ratio_within_reps(e, base)
        if ratio:
            out[f"{key}/{ANCHOR}"] = ratio
    return out


def limit_cell(e: dict[str, Any]) -> str:
    """Who limited each run, at the lowest rate that lost more than allowed: the
    gateway side, the site, or the sender (nothing lost at its ceiling)."""
    seen = [LIMITS.get(r.get("bottleneck", ""), "?") for r in e["runs"]]
    return ",".join(sorted(set(seen), key=seen.index))


def print_table(results: dict[str, Any], rat: dict[str, Any]) -> None:
    head = ("id", f"pps at <={LOSS_MAX:.0%} loss", "offered pps", "x wg-go", "recv cores")
    head += ("CPU s/Mpkt", "most pps", "limit")

    def versus(key: str, e: dict[str, Any]) -> tuple[str, ...]:
        value = rat.get(f"{key}/{ANCHOR}")
        return (_ratio(value) if value else "1.00" if key == key_of(ANCHOR) else "-",)

    def extras(key: str, e: dict[str, Any]) -> tuple[str, ...]:
        most = e["summary"].get("max_delivered_pps")
        return (_k(most["median"]) if most else "", limit_cell(e))

    print_rows(head, figure_rows(results, len(head), versus, extras))


def finish(
    a: argparse.Namespace,
    machine: dict[str, Any],
    results: dict[str, Any],
    problems: list[str],
    t_start: float,
) -> int:
    """Summaries, checks and ratios, written to ``a.out`` and printed; 2 on a problem."""
    summarize_versions(results, problems)
    rat = ratios(results)
    below = [k for k, v in rat.items() if v["median"] < TARGET]
    out = run_header("gateway_tunnel", a, machine, t_start, NODE)
    out["params"].update(
        sizes_inner_bytes=[INNER],
        kinds=a.kinds,
        sweep={"start_pps": a.start_pps, "max_steps": a.max_steps, "loss_max": LOSS_MAX},
    )
    out.update(ratios=rat, below_wireguard_go=below, problems=problems, results=results)
    write_json(a.out, out)
    print()
    print_table(results, rat)
    line = f"BELOW WIREGUARD-GO (target {TARGET:.1f}x): " + ", ".join(below) if below else ""
    return print_ending(results, line, a.out, problems)
