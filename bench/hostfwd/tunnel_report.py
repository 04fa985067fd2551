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
from .tunnel_measure import ANCHOR, BARE
from .tunnel_setup import INNER, NODE
from .tunnel_sweep import LOSS_MAX

TARGET = 1.0  # decisions.md, "Performance": tunnels >= 1.0x wireguard-go
LIMITS = {"receiver (gateway side)": "gateway", "site": "site", "sender": "sender"}


def key_of(kind: str) -> str:
    return f"tunnel-{kind}_{INNER}"


def tcp_key_of(kind: str) -> str:
    return f"tcp-{kind}"


def ratios(
    results: dict[str, Any],
    anchor: str = key_of(ANCHOR),
    figure: str = "delivered_pps",
    name: str = ANCHOR,
    measured: list[str] | None = None,
) -> dict[str, Any]:
    """``tunnel-asyncio_1400/wggo``, ``tcp-asyncio/wggo`` (``name``: the anchor's kind):
    each ``measured`` entry's ``figure`` (every other one's by default) over the
    ``anchor`` entry's, per repetition, then median (min..max)."""
    base = results.get(anchor)
    out = {}
    for key in results if measured is None else measured:
        if key == anchor or key not in results or not base:
            continue
        ratio = ratio_within_reps(results[key], base, figure)
        if ratio:
            out[f"{key}/{name}"] = ratio
    return out


def daemon_keys(results: dict[str, Any]) -> list[str]:
    """The daemons' entries: neither the anchor's nor the bare loop's."""
    return [key for key in results if ANCHOR not in key and BARE not in key]


def limit_cell(e: dict[str, Any]) -> str:
    """Who limited each run, at the lowest rate that lost more than allowed: the
    gateway side, the site, or the sender (nothing lost at its ceiling)."""
    seen = [LIMITS.get(r.get("bottleneck", ""), "?") for r in e["runs"]]
    return ",".join(sorted(set(seen), key=seen.index))


def versus_cells(key: str, rat: dict[str, Any], anchor: str, bare: str) -> tuple[str, str]:
    """An entry's ratio to wireguard-go and to the bare loop, as table cells."""
    cells = []
    for name, own in ((ANCHOR, anchor), (BARE, bare)):
        value = rat.get(f"{key}/{name}")
        cells.append(_ratio(value) if value else "1.00" if key == own else "-")
    return cells[0], cells[1]


def print_table(results: dict[str, Any], rat: dict[str, Any]) -> None:
    head = ("id", f"pps at <={LOSS_MAX:.0%} loss", "offered pps", "x wg-go", "x bare")
    head += ("recv cores", "CPU s/Mpkt", "most pps", "limit")

    def versus(key: str, e: dict[str, Any]) -> tuple[str, ...]:
        return versus_cells(key, rat, key_of(ANCHOR), key_of(BARE))

    def extras(key: str, e: dict[str, Any]) -> tuple[str, ...]:
        most = e["summary"].get("max_delivered_pps")
        return (_k(most["median"]) if most else "", limit_cell(e))

    print_rows(head, figure_rows(results, len(head), versus, extras))


def print_tcp_table(tcp: dict[str, Any], rat: dict[str, Any]) -> None:
    head = ("id", "Mbit/s", "x wg-go", "x bare", "gateway cores", "host cores", "retransmits")
    rows: list[tuple[object, ...]] = []
    for key, e in tcp.items():
        s = e["summary"]
        if "mbit_s" not in s:
            failed = "FAILED: " + (e.get("error") or "no runs")[:70]
            rows.append((key, failed, *[""] * (len(head) - 2)))
            continue
        mbit = s["mbit_s"]
        versus = versus_cells(key, rat, tcp_key_of(ANCHOR), tcp_key_of(BARE))
        cells = [
            f"{s[k]['median']:.2f}" if k in s else "-" for k in ("gateway_cores", "host_cores")
        ]
        retransmits = f"{s['retransmits']['median']:.0f}"
        rows.append(
            (
                key,
                f"{mbit['median']:.0f} ({mbit['min']:.0f}..{mbit['max']:.0f})",
                *versus,
                *cells,
                retransmits,
            )
        )
    print_rows(head, rows)


def verdicts(
    results: dict[str, Any], tcp: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Both parts' ratios: each entry's to wireguard-go (the bare loop's is the
    ceiling's), each daemon's to the bare loop; and the daemons' ratios to wireguard-go
    under the target (only the daemons are held to it)."""
    rat = ratios(results) | ratios(results, key_of(BARE), name=BARE, measured=daemon_keys(results))
    tcp_rat = ratios(tcp, tcp_key_of(ANCHOR), "mbit_s") | ratios(
        tcp, tcp_key_of(BARE), "mbit_s", BARE, daemon_keys(tcp)
    )
    held = {f"{key}/{ANCHOR}" for key in daemon_keys(results) + daemon_keys(tcp)}
    below = [k for k, v in (rat | tcp_rat).items() if k in held and v["median"] < TARGET]
    return rat, tcp_rat, below


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
    rat, tcp_rat, below = verdicts(results, tcp)
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
