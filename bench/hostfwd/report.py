"""From runs to figures: the median and spread of each measurement, each daemon's ratio
to the bare loop taken within its repetition, the comparison of two sources of the
daemon (``--rev OLD --rev NEW``) with its verdict, the tables, and results.json."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import (
    CHECK_FRAMES,
    DAEMONS,
    FLOWS,
    LATENCY_FRAMES,
    LATENCY_INTERVAL_S,
    OTHER_LOAD_MAX,
    RCV_CPU,
    SIZES,
    SND_CPU,
    TAP_MTU,
    VSID,
)
from .sources import Source

# Issue 10's bar for a restructuring: no median ratio to the bare loop drops by more
# than the larger of 5 % and the reference's own spread ((max - min) / median of its
# per-repetition ratios: how far it moves between repetitions on this machine), with
# 5 repetitions or more.
MIN_ALLOWED_DROP = 0.05
MIN_COMPARE_REPS = 5


def result_key(kind: str, size: int, label: str | None) -> str:
    """``asyncio_64``, or ``asyncio_64@<label>`` when several sources are measured."""
    return f"{kind}_{size}" if label is None else f"{kind}_{size}@{label}"


def split_key(key: str) -> tuple[str, int, str | None]:
    name, _, label = key.partition("@")
    kind, size = name.split("_")
    return kind, int(size), label or None


def summarize(runs: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """nvgw / bare delivered pps within each repetition, then median (min..max)."""
    out = {}
    for kind in DAEMONS:
        for size in SIZES:
            bare = results.get(f"bare_{size}")
            for key, nv in results.items():
                if split_key(key)[:2] != (kind, size) or not nv or not bare:
                    continue
                ratio = ratio_within_reps(nv, bare)
                if ratio:
                    out[key] = ratio
    return out


def ratio_within_reps(
    measured: dict[str, Any], base: dict[str, Any], figure: str = "delivered_pps"
) -> dict[str, Any] | None:
    """``measured``'s ``figure`` (delivered pps) over ``base``'s, taken within each
    repetition that has both, then the median (min..max); None when no repetition
    has both."""
    by_rep = {r["rep"]: r[figure] for r in base["runs"]}
    per_rep = [
        round(r[figure] / by_rep[r["rep"]], 3) for r in measured["runs"] if by_rep.get(r["rep"])
    ]
    if not per_rep:
        return None
    return {
        "per_rep": per_rep,
        "median": round(statistics.median(per_rep), 3),
        "min": min(per_rep),
        "max": max(per_rep),
    }


# A line of a comparison: the receiver's name, the size, and the key of a source's
# ratio to the bare loop in the ratios, given the source's label.
Case = tuple[str, int, Callable[[str], str]]


def host_cases() -> list[Case]:
    """The host benchmark's lines: each daemon at each size."""
    return [
        (kind, size, lambda label, kind=kind, size=size: result_key(kind, size, label))
        for kind in DAEMONS
        for size in SIZES
    ]


def compare(
    rat: dict[str, Any], labels: list[str], reps: int, cases: list[Case] | None = None
) -> dict[str, Any]:
    """Each later source against the first (the reference), per case (by default each
    daemon at each size): the change of the median ratio, and whether it stays within
    the allowed drop."""
    reference, lines = labels[0], []
    for label in labels[1:]:
        for receiver, size, key in cases or host_cases():
            old, new = rat.get(key(reference)), rat.get(key(label))
            line: dict[str, Any] = {"receiver": receiver, "size": size, "against": label}
            if not old or not new:
                lines.append({**line, "ok": False, "missing": True})
                continue
            spread = (old["max"] - old["min"]) / old["median"]
            allowed = max(MIN_ALLOWED_DROP, spread)
            change = new["median"] / old["median"] - 1
            lines.append(
                {
                    **line,
                    "reference": {k: old[k] for k in ("median", "min", "max")},
                    "measured": {k: new[k] for k in ("median", "min", "max")},
                    "change": round(change, 4),
                    "allowed_drop": round(allowed, 4),
                    "ok": change >= -allowed,
                }
            )
    return {
        "reference": reference,
        "rule": f"no median ratio to the bare loop drops by more than the larger of "
        f"{MIN_ALLOWED_DROP:.0%} and the reference's spread ((max - min) / median)",
        "reps": reps,
        "enough_reps": reps >= MIN_COMPARE_REPS,
        "lines": lines,
        "no_slower": all(line["ok"] for line in lines),
    }


def print_comparison(comparison: dict[str, Any]) -> None:
    reference = comparison["reference"]
    print(f"comparison against {reference}: {comparison['rule']}")
    for line in comparison["lines"]:
        name = f"  {line['receiver']:<12}{line['size']:>5} B  {line['against']}"
        if line.get("missing"):
            print(f"{name}: MISSING (a measurement failed)")
            continue
        old, new = line["reference"], line["measured"]
        print(
            f"{name} {_ratio(new)} vs {reference} {_ratio(old)}: {line['change']:+.1%}"
            f" (allowed -{line['allowed_drop']:.1%}) {'ok' if line['ok'] else 'SLOWER'}"
        )
    slower = [line for line in comparison["lines"] if not line["ok"]]
    verdict = (
        "no median ratio dropped more than allowed"
        if not slower
        else (
            f"{len(slower)} of {len(comparison['lines'])} dropped more than allowed or are missing"
        )
    )
    print(f"verdict: {'NO SLOWER' if not slower else 'SLOWER'}: {verdict}")
    if not comparison["enough_reps"]:
        print(
            f"  (only {comparison['reps']} repetition(s): the bar needs "
            f"{MIN_COMPARE_REPS} or more, so this checks the machinery, not the speed)"
        )


def _ratio(r: dict[str, float]) -> str:
    return f"{r['median']:.2f} ({r['min']:.2f}..{r['max']:.2f})"


def _k(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1000:.0f}k" if x >= 10000 else f"{x:.0f}"


def delivered_cell(e: dict[str, Any]) -> str | None:
    """A measurement's delivered pps as the tables show it, median (min..max), with a
    star when another job disturbed a kept run; None when it has no runs."""
    main = e["summary"].get("delivered_pps")
    if main is None:
        return None
    rng = f"{_k(main['median'])} ({_k(main['min'])}..{_k(main['max'])})"
    return rng + " *" if any(r.get("disturbed") for r in e["runs"]) else rng


def figure_rows(
    results: dict[str, Any],
    width: int,
    ratios: Callable[[str, dict[str, Any]], tuple[str, ...]],
    extras: Callable[[str, dict[str, Any]], tuple[str, ...]],
) -> list[tuple[object, ...]]:
    """Every benchmark table's rows, ``width`` cells each: the id, delivered and
    offered pps, the table's ratio cells (``ratios``), the receiver's cores and CPU
    seconds per million frames, then its own last cells (``extras``); a measurement
    that failed says why across the row."""
    rows: list[tuple[object, ...]] = []
    for key, e in results.items():
        s = e["summary"]
        rng = delivered_cell(e)
        if rng is None:
            failed = "FAILED: " + (e.get("error") or "no runs")[:70]
            rows.append((key, failed, *[""] * (width - 2)))
            continue
        cores, per_m = s.get("recv_cores"), s.get("cpu_s_per_mpkt")
        rows.append(
            (
                key,
                rng,
                _k(s["offered_pps"]["median"]),
                *ratios(key, e),
                f"{cores['median']:.2f}" if cores else "",
                f"{per_m['median']:.2f}" if per_m else "",
                *extras(key, e),
            )
        )
    return rows


def bound_cell(e: dict[str, Any]) -> str:
    """Whether the receiver was the limit: yes, NO, or unknown (blank)."""
    bound = e.get("receiver_bound")
    return "" if bound is None else ("yes" if bound else "NO")


def print_table(results: dict[str, Any], rat: dict[str, Any]) -> None:
    head = (
        "id",
        "delivered pps",
        "offered pps",
        "x bare",
        "recv cores",
        "CPU s/Mpkt",
        "RSS start>end MiB",
        "recv-bound",
    )

    def ratio(key: str, e: dict[str, Any]) -> tuple[str, ...]:
        if key.startswith("sender"):
            return ("",)
        if key.startswith("bare"):
            return ("1.00",)
        value = rat.get(key)
        return (_ratio(value) if value else "-",)

    def rss_and_bound(key: str, e: dict[str, Any]) -> tuple[str, ...]:
        s, rss = e["summary"], ""
        if s.get("rss_start_kib"):
            a, b = s["rss_start_kib"]["median"], s["rss_end_kib"]["median"]
            rss = f"{a / 1024:.1f} > {b / 1024:.1f}"
        return rss, bound_cell(e)

    print_rows(head, figure_rows(results, len(head), ratio, rss_and_bound))


def print_rows(head: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    """A plain-text table, each column as wide as its widest cell."""
    width = [max(len(str(r[i])) for r in [*rows, head]) for i in range(len(head))]
    line = "  ".join(f"{head[i]:<{width[i]}}" for i in range(len(head)))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(f"{r[i]!s:<{width[i]}}" for i in range(len(head))))


def print_latency(results: dict[str, Any]) -> None:
    """One-way latency at 500 frames/s: median and p99 (median over repetitions),
    and the median next to the bare loop's, taken within each repetition."""
    print(f"latency, {LATENCY_FRAMES} frames at {1 / LATENCY_INTERVAL_S:.0f}/s (us)")
    width = max([12, *map(len, results)])
    for key, e in results.items():
        s = e.get("summary", {})
        median, p99 = s.get("latency_us_median"), s.get("latency_us_p99")
        if not median or not p99:
            continue
        base = {
            r["rep"]: r.get("latency_us_median")
            for r in results.get(f"bare_{split_key(key)[1]}", {}).get("runs", [])
        }
        per_rep = [r["latency_us_median"] / base[r["rep"]] for r in e["runs"] if base.get(r["rep"])]
        versus = f"  x bare {statistics.median(per_rep):.2f}" if per_rep else ""
        figures = f"median {median['median']:7.1f}  p99 {p99['median']:7.1f}{versus}"
        print(f"  {key:<{width}} {figures}")


def finish(
    a: argparse.Namespace,
    kinds: list[str],
    sources: list[Source],
    machine: dict[str, Any],
    results: dict[str, Any],
    problems: list[str],
    t_start: float,
) -> int:
    """Summaries, checks, ratios (and the comparison), written to ``a.out`` and printed."""
    checks: dict[str, Any] = {}
    summarize_versions(results, problems)
    for key, e in results.items():
        for r in e["runs"]:
            if "check" in r:
                checks.setdefault(key, []).append(r["check"]["ok"])
    rat = ratios(results)
    out = run_header("host_forwarding", a, machine, t_start, "bench")
    out["params"].update(receivers=kinds, tap_mtu=TAP_MTU)
    out.update(
        ratio_nvgw_over_bare=rat,
        delivery_checks_ok=checks,
        problems=problems,
        results=results,
    )
    comparison = None
    if len(sources) > 1:
        comparison = compare(rat, [source.label for source in sources], a.reps)
        out["comparison"] = comparison
    write_json(a.out, out)
    print()
    print_table(results, rat)
    if any(r.get("disturbed") for e in results.values() for r in e["runs"]):
        print(f"* another job took more than {OTHER_LOAD_MAX:.0%} of a core in a kept run")
    print()
    print_latency(results)
    if comparison is not None:
        print()
        print_comparison(comparison)
    print(f"\nresults: {a.out}")
    if problems:
        print("PROBLEMS:\n  " + "\n  ".join(problems))
        return 2
    return 0 if comparison is None or comparison["no_slower"] else 1


def summarize_entries(results: dict[str, Any], problems: list[str]) -> None:
    """Each measurement's summary (median, min, max of every figure over its runs),
    whether the receiver limited it in every run, and a problem for each that failed."""
    for key, e in results.items():
        numeric = {k for r in e["runs"] for k, v in r.items() if isinstance(v, int | float)}
        e["summary"] = {k: summarize(e["runs"], k) for k in sorted(numeric) if k != "rep"}
        if e["runs"] and all("bottleneck" in r for r in e["runs"]):
            e["receiver_bound"] = all(r["bottleneck"].startswith("receiver") for r in e["runs"])
        if e.get("error") or not e["runs"]:
            problems.append(f"{key}: {e.get('error') or 'no runs'}")


def summarize_versions(results: dict[str, Any], problems: list[str]) -> None:
    """``summarize_entries``, and a problem for each source of the daemon whose
    ``gateway/`` was not the same in every run of it: the work tree may change under
    a long run. A key's source is its label (``result_key``); keys with none (a run of
    one source, the anchors) record the first source's digest."""
    summarize_entries(results, problems)
    seen: dict[str, set[str]] = {}
    for key, e in results.items():
        digests = seen.setdefault(key.partition("@")[2], set())
        digests.update(r["gateway_py_sha256"] for r in e["runs"] if "gateway_py_sha256" in r)
    for label, digests in seen.items():
        if len(digests) > 1:
            which = f" of {label}" if label else ""
            problems.append(f"gateway/{which} changed during the run: {len(digests)} versions")


def print_ending(results: dict[str, Any], below: str, out: Path, problems: list[str]) -> int:
    """A table's last lines: a kept run another job disturbed, the figures below their
    target (``below``, when any), where the results went, the problems; 2 on one."""
    if any(r.get("disturbed") for e in results.values() for r in e["runs"]):
        print(f"* another job took more than {OTHER_LOAD_MAX:.0%} of a core in a kept run")
    if below:
        print(below)
    print(f"\nresults: {out}")
    if problems:
        print("PROBLEMS:\n  " + "\n  ".join(problems))
        return 2
    return 0


def run_header(
    benchmark: str, a: argparse.Namespace, machine: dict[str, Any], t_start: float, node: str
) -> dict[str, Any]:
    """The top of a results file: what ran, when, where, and with which parameters."""
    return {
        "benchmark": benchmark,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": round(time.time() - t_start),
        "machine": machine,
        "params": {
            "reps": a.reps,
            "window_s": a.dur,
            "warmup_s": a.warmup,
            "sizes_inner_bytes": list(SIZES),
            "daemon_command": f"python -m gateway run --config FILE --node {node} --backend"
            " asyncio|trio --metrics 127.0.0.1:0 --ready-fd N --log-level info"
            + "".join(f" {arg}" for arg in a.daemon_arg),
            "sender_cpu": SND_CPU,
            "receiver_cpu": RCV_CPU,
            "vsid": VSID,
            "flows": FLOWS,
            "check_frames": CHECK_FRAMES,
        },
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.chmod(f.name, 0o644)
    os.replace(f.name, path)
