"""From the tunnel part's runs to figures: each daemon's ratio to wireguard-go (the
anchor), its rate and its TCP goodput each taken within each repetition, then the
median; the tables; results-gateway-tunnel.json."""

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


def tcp_key_of(kind: str) -> str:
    return f"tcp-{kind}"


def ratios(
    results: dict[str, Any], anchor: str = key_of(ANCHOR), figure: str = "delivered_pps"
) -> dict[str, Any]:
    """``tunnel-asyncio_1400/wggo``, ``tcp-asyncio/wggo``: each measurement's
    ``figure`` over the anchor's, per repetition, then median (min..max)."""
    base = results.get(anchor)
    out = {}
    for key, e in results.items():
        if key == anchor or not base:
            continue
        ratio = ratio_within_reps(e, base, figure)
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


def print_tcp_table(tcp: dict[str, Any], rat: dict[str, Any]) -> None:
    head = ("id", "Mbit/s", "x wg-go", "gateway cores", "host cores", "retransmits")
    rows: list[tuple[object, ...]] = []
    for key, e in tcp.items():
        s = e["summary"]
        if "mbit_s" not in s:
            rows.append((key, "FAILED: " + (e.get("error") or "no runs")[:70], "", "", "", ""))
            continue
        mbit = s["mbit_s"]
        value = rat.get(f"{key}/{ANCHOR}")
        versus = _ratio(value) if value else "1.00" if key == tcp_key_of(ANCHOR) else "-"
        cells = [
            f"{s[k]['median']:.2f}" if k in s else "-" for k in ("gateway_cores", "host_cores")
        ]
        retransmits = f"{s['retransmits']['median']:.0f}"
        rows.append(
            (
                key,
                f"{mbit['median']:.0f} ({mbit['min']:.0f}..{mbit['max']:.0f})",
                versus,
                *cells,
                retransmits,
            )
        )
    print_rows(head, rows)


def finish(
    a: argparse.Namespace,
    machine: dict[str, Any],
    results: dict[str, Any],
    tcp: dict[str, Any],
    problems: list[str],
    t_start: float,
) -> int:
    """Summaries, checks and ratios of both parts, written to ``a.out`` and printed; 2
    on a problem."""
    summarize_versions(results, problems)
    summarize_versions(tcp, problems)
    rat = ratios(results)
    tcp_rat = ratios(tcp, tcp_key_of(ANCHOR), "mbit_s")
    below = [k for k, v in (rat | tcp_rat).items() if v["median"] < TARGET]
    out = run_header("gateway_tunnel", a, machine, t_start, NODE)
    out["params"].update(
        sizes_inner_bytes=[INNER],
        kinds=a.kinds,
        sweep={"start_pps": a.start_pps, "max_steps": a.max_steps, "loss_max": LOSS_MAX},
    )
    out["params"].update(parts=a.only, tcp_kinds=a.tcp_kinds, tcp_streams=1)
    out.update(ratios=rat, below_wireguard_go=below, problems=problems, results=results)
    out["tcp"] = {"ratios": tcp_rat, "results": tcp}
    write_json(a.out, out)
    if results:
        print()
        print_table(results, rat)
    if tcp:
        print()
        print_tcp_table(tcp, tcp_rat)
    line = f"BELOW WIREGUARD-GO (target {TARGET:.1f}x): " + ", ".join(below) if below else ""
    return print_ending(results | tcp, line, a.out, problems)
