"""How long one control-API change takes, by policy size.

    python bench/api_change.py [--records 100 1000 10000 100000] [--repeat 3]
                               [--whole] [--out FILE]

A change on the SQLite store takes the database's write lock, applies the edit,
validates it, prepares the snapshot the daemon would swap in, writes the rows that
differ durably (fsync) and swaps it in. A change of lookup records (issue 14's
O(change) path, ``control/incremental.py``) is validated against the store's
indexes, writes its own rows and updates the running snapshot by its delta, as the
daemon's ``prepare`` does (it hands ``compile_policy`` the snapshot in force);
``--whole`` turns that path off, for the whole-policy path the store had before
(build the document of every row, validate it whole, compile it, compare every row),
measured in the same run. This times ``PolicyStore.change`` (one lookup record added,
then removed) on generated deployments of N records, and ``PolicyStore.load`` (what
SIGHUP, or following another daemon's write, does) for comparison, with the steps
of a change timed apart: validation (the indexes', or the whole policy's) and the
snapshot (updated, or compiled). The swap itself is a pointer assignment and is left
out. Prints a table and writes JSON with the figures, N, the path, Python, the
machine, its load and the git commit. A benchmark, not a test: nothing here asserts
a duration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from snapshot_build import generate  # noqa: E402

from gateway.control import new_yaml  # noqa: E402
from gateway.control import store as store_module  # noqa: E402
from gateway.control.edits import add, remove  # noqa: E402
from gateway.control.kinds import LOOKUP_RECORDS  # noqa: E402
from gateway.control.store import PolicyStore  # noqa: E402
from gateway.policy import IndexedPolicy, Policy, Snapshot, compile_policy, load_policy  # noqa: E402


def _record(document: dict[str, Any]) -> dict[str, Any]:
    """A new record beside the first IPv4 encap one, at a CA the generator never uses."""
    first = next(
        r for r in document["lookup_records"] if r["rule"] == "encap" and ":" not in r["ca"]
    )
    ca = ".".join([*first["ca"].split(".")[:2], "200", "200"])
    return {"vsid": first["vsid"], "ca": ca, "mac": "02-aa-00-00-00-01",
            "pa": first["pa"], "rule": "encap"}  # fmt: skip


def measure(records: int, repeat: int, whole: bool) -> dict[str, Any]:
    document = generate(records)
    entry = _record(document)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "deployment.yaml"
        with open(path, "w", encoding="utf-8") as f:
            new_yaml().dump(document, f)

        async def no_swap(snapshot: Any) -> None:
            del snapshot

        steps: dict[str, list[float]] = {}
        running: list[Snapshot] = []

        def prepare(policy: Policy) -> Snapshot:
            """As the daemon prepares: the snapshot in force is handed on."""
            with _timed(steps, "  snapshot"):
                snapshot = compile_policy(policy, running[-1] if running else None)
            running[:] = [snapshot]
            return snapshot

        store: PolicyStore[Any] = PolicyStore(f"sqlite:{directory}/policy.db", prepare, no_swap)
        if whole:  # the whole-policy path only, as before the incremental one
            store.backend._records.change = lambda *args: None  # type: ignore[attr-defined]
        seed = (load_policy(document), str(path))
        _time_validation(steps)

        async def run() -> dict[str, list[float]]:
            times: dict[str, list[float]] = {"load (SIGHUP)": [], "change": []}
            changes: dict[str, list[float]] = {}
            await store.load(seed)
            for _ in range(repeat):
                started = time.perf_counter()
                await store.load()
                times["load (SIGHUP)"].append(time.perf_counter() - started)
                steps.clear()
                for edit in (
                    add(LOOKUP_RECORDS, entry),
                    remove(LOOKUP_RECORDS, {"ca": entry["ca"]}),
                ):
                    started = time.perf_counter()
                    await store.change(edit)
                    times["change"].append(time.perf_counter() - started)
                for name, values in steps.items():  # a change's, not the load's
                    changes.setdefault(name, []).extend(values)
            return times | changes

        times = anyio.run(run)
        store.close()
        size = path.stat().st_size
    result = {name: _summary(values) for name, values in times.items()}
    return {"records": records, "file_bytes": size, **result}


@contextmanager
def _timed(steps: dict[str, list[float]], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        steps.setdefault(name, []).append(time.perf_counter() - started)


def _time_validation(steps: dict[str, list[float]]) -> None:
    """Time a change's validation, the indexes' or the whole policy's, by wrapping
    the functions the store calls."""
    indexed = IndexedPolicy.change_records

    def change_records(self: IndexedPolicy, *args: Any, **kwargs: Any) -> Any:
        with _timed(steps, "  validate"):
            return indexed(self, *args, **kwargs)

    IndexedPolicy.change_records = change_records  # type: ignore[method-assign]
    whole = store_module.load_policy

    def load_policy_timed(document: Any) -> Any:
        with _timed(steps, "  validate"):
            return whole(document)

    store_module.load_policy = load_policy_timed  # type: ignore[attr-defined]


def _summary(values: list[float]) -> dict[str, float]:
    return {"best_s": round(min(values), 4), "median_s": round(statistics.median(values), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[100, 1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--whole", action="store_true", help="the whole-policy path only (the incremental one off)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results-api-sqlite.json"
    )  # results-api.json: the file store before issue 14, kept to compare with
    parser.add_argument(
        "--batch", type=int, metavar="N", help="instead: one batch of N records imported and "
        "a daemon's start on them (bench/api_batch.py), into bench/results-api.json",
    )  # fmt: skip
    args = parser.parse_args()
    if args.batch:
        import api_batch

        api_batch.write(ROOT / "bench" / "results-api.json", api_batch.measure(args.batch))
        return
    rows = []
    for records in args.records:
        print(f"{records} records ...", file=sys.stderr, flush=True)
        rows.append(measure(records, args.repeat, args.whole))
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
        "cpus": len(os.sched_getaffinity(0)),
        "repeat": args.repeat,
        "path": "whole" if args.whole else "incremental",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "results": rows,
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
