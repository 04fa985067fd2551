"""How long one control-API change takes, by policy size.

    python bench/api_change.py [--records 1000 10000 100000] [--repeat 3] [--out FILE]

A change on the SQLite store takes the database's write lock, builds the policy
from its rows, applies the edit, validates the whole policy, compiles it (the
daemon's ``prepare``), writes the rows that differ durably and swaps it in: all but
the write still scale with the policy (O(change) validation is the next step), so
this times ``PolicyStore.change`` (one lookup record added, then removed) on
generated deployments of N records, and ``PolicyStore.load`` (what SIGHUP, or
following another daemon's write, does) for comparison, each step of the change
timed apart as well. The swap itself is a pointer assignment and is left out.
Prints a table and writes JSON with the figures, N, Python, the machine and the git
commit. A benchmark, not a test: nothing here asserts a duration.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from snapshot_build import generate  # noqa: E402

from gateway.control import new_yaml  # noqa: E402
from gateway.control import sqlite_store as store_module  # noqa: E402
from gateway.control.edits import add, remove  # noqa: E402
from gateway.control.kinds import LOOKUP_RECORDS  # noqa: E402
from gateway.control.store import PolicyStore  # noqa: E402
from gateway.policy import compile_policy, load_policy  # noqa: E402


def _record(document: dict[str, Any]) -> dict[str, Any]:
    """A new record beside the first IPv4 encap one, at a CA the generator never uses."""
    first = next(
        r for r in document["lookup_records"] if r["rule"] == "encap" and ":" not in r["ca"]
    )
    ca = ".".join([*first["ca"].split(".")[:2], "200", "200"])
    return {"vsid": first["vsid"], "ca": ca, "mac": "02-aa-00-00-00-01",
            "pa": first["pa"], "rule": "encap"}  # fmt: skip


def measure(records: int, repeat: int) -> dict[str, Any]:
    document = generate(records)
    entry = _record(document)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "deployment.yaml"
        with open(path, "w", encoding="utf-8") as f:
            new_yaml().dump(document, f)

        async def no_swap(snapshot: Any) -> None:
            del snapshot

        store: PolicyStore[Any] = PolicyStore(
            f"sqlite:{directory}/policy.db", compile_policy, no_swap
        )
        seed = (load_policy(document), str(path))
        steps = _step_timer()

        async def run() -> dict[str, list[float]]:
            times: dict[str, list[float]] = {"load (SIGHUP)": [], "change": []}
            await store.load(seed)
            for _ in range(repeat):
                started = time.perf_counter()
                await store.load()
                times["load (SIGHUP)"].append(time.perf_counter() - started)
                for edit in (
                    add(LOOKUP_RECORDS, entry),
                    remove(LOOKUP_RECORDS, {"ca": entry["ca"]}),
                ):
                    started = time.perf_counter()
                    await store.change(edit)
                    times["change"].append(time.perf_counter() - started)
            return times

        times = anyio.run(run)
        store.close()
        size = path.stat().st_size
    result = {name: _summary(values) for name, values in times.items()}
    result |= {name: _summary(values) for name, values in steps.items()}
    return {"records": records, "file_bytes": size, **result}


def _step_timer() -> dict[str, list[float]]:
    """Time the steps of a change by wrapping the functions the store calls."""
    steps: dict[str, list[float]] = {}

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                steps.setdefault(name, []).append(time.perf_counter() - started)

        return wrapper

    store_module.document = timed("  rows to policy", store_module.document)  # type: ignore[attr-defined]
    store_module.load_policy = timed("  validate", load_policy)  # type: ignore[attr-defined]
    store_module.rows = timed("  policy to rows", store_module.rows)  # type: ignore[attr-defined]
    return steps


def _summary(values: list[float]) -> dict[str, float]:
    return {"best_s": round(min(values), 4), "median_s": round(statistics.median(values), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results-api-sqlite.json"
    )  # results-api.json: the file store before issue 14, kept to compare with
    args = parser.parse_args()
    rows = []
    for records in args.records:
        print(f"{records} records ...", file=sys.stderr, flush=True)
        rows.append(measure(records, args.repeat))
    for row in rows:
        print(f"\n{row['records']} lookup records, {row['file_bytes'] / 1e6:.1f} MB of YAML")
        for name, figures in row.items():
            if isinstance(figures, dict):
                best, median = figures["best_s"], figures["median_s"]
                print(f"  {name:<16} best {best:8.3f} s   median {median:8.3f} s")
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    out = {
        "benchmark": "api_change",
        "commit": commit,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": len(__import__("os").sched_getaffinity(0)),
        "repeat": args.repeat,
        "results": rows,
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
