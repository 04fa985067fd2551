"""A campaign: many chunks over every target, one worker process per core.

Chunks go round-robin over the targets (chunk ``c`` is chunk ``c // T`` of target
``c % T``), so every node of every policy, and every sans-IO core (``cores.py``),
gets its share whatever the total (the input budget is split, not grown), and a
campaign is the same set of inputs for a given seed and size on any machine. The
workers build each target once (its policy, seeds and tokens) and send back counts
and a few example findings per chunk; the parent prints a progress line every few
seconds and writes the summary.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from .cores import CoreTarget, core_targets
from .engine import CHUNK, Bench, ChunkResult, run_chunk
from .policies import Target, targets

EXAMPLES_KEPT: Final = 3  # example findings per signature in the summary and findings file
ROOT: Final = Path(__file__).resolve().parents[2]

_benches: dict[int, Bench] = {}
_targets: list[Target | CoreTarget] = []


def select(policies: list[str] | None, cores: list[str] | None) -> list[Target | CoreTarget]:
    """The nodes of the policies named and the cores named; every one of both when
    neither is named."""
    if policies is None and cores is None:
        return [*targets(), *core_targets()]
    return [*(targets(policies) if policies else []), *(core_targets(cores) if cores else [])]


def _start_worker(policies: list[str] | None, cores: list[str] | None) -> None:
    _targets[:] = select(policies, cores)


def _work(task: tuple[str, int, int, int]) -> ChunkResult:
    seed, target_index, chunk, count = task
    target = _targets[target_index]
    if isinstance(target, CoreTarget):
        return target.run_chunk(seed, chunk, count)
    bench = _benches.get(target_index)
    if bench is None:
        bench = _benches[target_index] = Bench(target)
    return run_chunk(bench, seed, chunk, count)


def tasks(seed: str, inputs: int, target_count: int) -> Iterator[tuple[str, int, int, int]]:
    """(seed, target index, chunk number, inputs) for every chunk of the campaign."""
    done, n = 0, 0
    while done < inputs:
        count = min(CHUNK, inputs - done)
        yield seed, n % target_count, n // target_count, count
        done += count
        n += 1


def campaign(
    inputs: int,
    seed: str,
    workers: int,
    policies: list[str] | None = None,
    progress_s: float = 5.0,
    say: Callable[[str], None] = print,
    cores: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``inputs`` inputs; return the summary (see ``summary``)."""
    found = select(policies, cores)
    total = ChunkResult()
    started = time.monotonic()
    last = started
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=_start_worker, initargs=(policies, cores)) as pool:
        for result in pool.imap_unordered(_work, tasks(seed, inputs, len(found))):
            new = [s for s in result.counts if s not in total.counts]
            total.merge(result, keep=EXAMPLES_KEPT)
            for key in new:
                example = next(f for f in result.findings if f["signature"] == key)
                say(f"NEW {key}\n    {_where(example)}")
            now = time.monotonic()
            if now - last >= progress_s:
                last = now
                say(_progress(total.inputs, inputs, now - started, total.counts))
    seconds = time.monotonic() - started
    say(_progress(total.inputs, inputs, seconds, total.counts))
    return summary(total, seed, workers, seconds, found)


def _where(finding: dict[str, Any]) -> str:
    port = f" port {finding['port']}" if finding["port"] else ""
    return (
        f"{finding['policy']} node {finding['node']} {finding['entry']}{port} "
        f"(from a {finding['seed_frame']} frame): --replay {finding['replay']}\n"
        f"    frame {finding['frame'][:160]}{'...' if len(finding['frame']) > 160 else ''}"
    )


def _progress(done: int, inputs: int, seconds: float, counts: Counter) -> str:
    rate = done / seconds if seconds else 0.0
    left = (inputs - done) / rate if rate else 0.0
    return (
        f"fuzz: {done:,}/{inputs:,} inputs, {rate:,.0f}/s, "
        f"{sum(counts.values()):,} findings of {len(counts)} kinds, {left:,.0f} s left"
    )


def summary(
    total: ChunkResult,
    seed: str,
    workers: int,
    seconds: float,
    found: list[Target | CoreTarget],
) -> dict[str, Any]:
    """What a run tried and found, for ``last-run.json`` and the README."""
    outcomes: dict[str, dict[str, int]] = {}
    for key, count in sorted(total.outcomes.items()):
        entry, label = key.split(" ", 1)
        outcomes.setdefault(entry, {})[label] = count
    findings: dict[str, dict[str, Any]] = {}
    for key, count in total.counts.most_common():
        examples = [f for f in total.findings if f["signature"] == key][:EXAMPLES_KEPT]
        findings[key] = {"kind": examples[0]["kind"], "count": count, "examples": examples}
    return {
        "command": " ".join(["python -m tests.fuzz", *sys.argv[1:]]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "seed": seed,
        "inputs": total.inputs,
        "seconds": round(seconds, 1),
        "inputs_per_s": round(total.inputs / seconds) if seconds else 0,
        "workers": workers,
        "targets": [
            {"core": t.core}
            if isinstance(t, CoreTarget)
            else {"policy": t.policy, "node": t.node, "daemon_accepts": t.daemon_accepts}
            for t in found
        ],
        "findings_total": sum(total.counts.values()),
        "findings": findings,
        "outcomes": outcomes,
    }


def _commit() -> str:
    """HEAD's short hash, with "+changes" when tracked files differ from it."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+changes" if dirty else head


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def write_findings(path: Path, result: dict[str, Any]) -> None:
    """Every example finding of ``result``, one JSON object a line."""
    with path.open("w", encoding="utf-8") as out:
        for entry in result["findings"].values():
            for example in entry["examples"]:
                out.write(json.dumps(example) + "\n")
