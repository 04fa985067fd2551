"""How long one control-API change takes, by policy size, on each store; how soon the
other daemons sharing the store have it in force; and the file store of an older
commit beside them, in the same run (issue 14's targets).

    python bench/api_change.py [--records 100 1000 10000 100000] [--repeat 3]
                               [--store sqlite etcd] [--whole]
                               [--propagate 100000] [--followers 2] [--changes 200]
                               [--gap 0.1] [--rev 5cdcc4a] [--rev-records 1000 10000]
                               [--out bench/results-api.json]

A change on a database store (``--store``: SQLite, a file of the run's own, and
etcd, a real one started on loopback with a prefix of the run's own,
``api_stores.py``) validates the edit, prepares the snapshot the daemon would swap
in, writes the rows that differ durably (SQLite: fsync; etcd: one transaction,
which etcd syncs) and swaps it in. A change of lookup records (issue 14's O(change)
path, ``control/incremental.py``) is validated against the store's indexes, writes
its own rows and updates the running snapshot by its delta, as the daemon's
``prepare`` does (it hands ``compile_policy`` the snapshot in force); ``--whole``
turns that path off, for the whole-policy path the store had before (build the
document of every row, validate it whole, compile it, compare every row). This
times ``PolicyStore.change`` (one lookup record added, then removed) on generated
deployments of N records, and ``PolicyStore.load`` (what SIGHUP, or following
another daemon's write, does) for comparison, with the steps of a change timed
apart: validation (the indexes', or the whole policy's) and the snapshot (updated,
or compiled). The swap itself is a pointer assignment and is left out.

At each size of ``--propagate``, the same store then serves ``--followers`` other
daemons while it takes ``--changes`` more (``api_follow.py``): the time from the
writer's answer to each of them having the change in force. ``--rev REV`` runs
REV's own benchmark, its YAML file store, at ``--rev-records`` (``api_rev.py``).

Prints a table and writes JSON with the figures, N, the stores, Python, the
machine, its load (other work on it inflates every figure) and the git commit,
keeping ``"batch"`` (``api_batch.py``'s) of the file it replaces. A benchmark, not
a test: nothing here asserts a duration.
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

from api_follow import propagation  # noqa: E402
from api_report import table  # noqa: E402
from api_rev import file_store  # noqa: E402
from api_stores import KINDS, stores  # noqa: E402
from snapshot_build import generate  # noqa: E402

from gateway.control import new_yaml  # noqa: E402
from gateway.control import store as store_module  # noqa: E402
from gateway.control.edits import add, remove  # noqa: E402
from gateway.control.kinds import LOOKUP_RECORDS  # noqa: E402
from gateway.control.store import PolicyStore  # noqa: E402
from gateway.policy import IndexedPolicy, Policy, Snapshot, compile_policy, load_policy  # noqa: E402

STEPS: dict[str, list[float]] = {}  # a change's steps, as the wrapped functions time them


def _record(document: dict[str, Any]) -> dict[str, Any]:
    """A new record beside the first IPv4 encap one, at a CA the generator never uses."""
    first = next(
        r for r in document["lookup_records"] if r["rule"] == "encap" and ":" not in r["ca"]
    )
    ca = ".".join([*first["ca"].split(".")[:2], "200", "200"])
    return {"vsid": first["vsid"], "ca": ca, "mac": "02-aa-00-00-00-01",
            "pa": first["pa"], "rule": "encap"}  # fmt: skip


def measure(
    url: str, records: int, repeat: int, whole: bool, spread: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The store at ``url`` seeded with N records; its change and load timed, and, with
    ``spread`` (``propagation``'s arguments), how soon its followers have a change."""
    document = generate(records)
    entry = _record(document)
    edits = [add(LOOKUP_RECORDS, entry), remove(LOOKUP_RECORDS, {"ca": entry["ca"]})]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "deployment.yaml"
        with open(path, "w", encoding="utf-8") as f:
            new_yaml().dump(document, f)
        size = path.stat().st_size
    seed = (load_policy(document), f"generate({records})")
    del document

    async def no_swap(snapshot: Any) -> None:
        del snapshot

    running: list[Snapshot] = []

    def prepare(policy: Policy) -> Snapshot:
        """As the daemon prepares: the snapshot in force is handed on."""
        with _timed("  snapshot"):
            snapshot = compile_policy(policy, running[-1] if running else None)
        running[:] = [snapshot]
        return snapshot

    store: PolicyStore[Any] = PolicyStore(url, prepare, no_swap)
    if whole:  # the whole-policy path only, as before the incremental one
        store.backend._records.change = lambda *args: None  # type: ignore[attr-defined]

    async def run() -> tuple[dict[str, list[float]], dict[str, Any] | None]:
        times: dict[str, list[float]] = {"load (SIGHUP)": [], "change": []}
        changes: dict[str, list[float]] = {}
        await store.load(seed)
        for _ in range(repeat):
            started = time.perf_counter()
            await store.load()
            times["load (SIGHUP)"].append(time.perf_counter() - started)
            STEPS.clear()
            for edit in edits:
                started = time.perf_counter()
                await store.change(edit)
                times["change"].append(time.perf_counter() - started)
            for name, values in STEPS.items():  # a change's, not the load's
                changes.setdefault(name, []).extend(values)
        spread_figures = await propagation(store, edits, **spread) if spread else None
        return times | changes, spread_figures

    try:
        times, spread_figures = anyio.run(run)
    finally:
        store.close()
    result = {name: _summary(values) for name, values in times.items()}
    row = {"records": records, "file_bytes": size, **result}
    return row, None if spread_figures is None else {"records": records, **spread_figures}


@contextmanager
def _timed(name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        STEPS.setdefault(name, []).append(time.perf_counter() - started)


def _time_validation() -> None:
    """Time a change's validation, the indexes' or the whole policy's, by wrapping
    the functions the store calls (once: each measurement clears STEPS)."""
    indexed = IndexedPolicy.change_records

    def change_records(self: IndexedPolicy, *args: Any, **kwargs: Any) -> Any:
        with _timed("  validate"):
            return indexed(self, *args, **kwargs)

    IndexedPolicy.change_records = change_records  # type: ignore[method-assign]
    whole = store_module.load_policy

    def load_policy_timed(document: Any) -> Any:
        with _timed("  validate"):
            return whole(document)

    store_module.load_policy = load_policy_timed  # type: ignore[attr-defined]


def _summary(values: list[float]) -> dict[str, float]:
    return {"best_s": round(min(values), 4), "median_s": round(statistics.median(values), 4)}


def run_all(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Every size on every store, interleaved (the stores of one size measured one
    after the other, under the same load), then the file store of ``--rev``: into
    ``results`` as they come."""
    _time_validation()
    changed: dict[str, list[dict[str, Any]]] = {kind: [] for kind in args.store}
    spread: dict[str, list[dict[str, Any]]] = {}
    results.update(change=changed, propagation=spread)
    with stores(args.store) as url:
        for records in args.records:
            for kind in args.store:
                print(f"{records} records on {kind} ...", file=sys.stderr, flush=True)
                following = None
                if records in args.propagate:
                    following = {"count": args.followers, "changes": args.changes,
                                 "gap": args.gap}  # fmt: skip
                row, figures = measure(
                    url(kind, f"n{records}"), records, args.repeat, args.whole, following
                )
                changed[kind].append(row)
                if figures is not None:
                    spread.setdefault(kind, []).append(figures)
    if args.rev:
        print(f"{args.rev}'s file store ...", file=sys.stderr, flush=True)
        results["file_store"] = file_store(args.rev, args.rev_records, args.repeat)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[100, 1000, 10000, 100000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument(
        "--whole", action="store_true", help="the whole-policy path only (the incremental one off)"
    )
    parser.add_argument("--propagate", type=int, nargs="*", default=[100000], metavar="N",
                        help="sizes (among --records) at which followers are timed")  # fmt: skip
    parser.add_argument("--followers", type=int, default=2)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between the changes")
    parser.add_argument("--rev", help="also this commit's file store (5cdcc4a: before issue 14)")
    parser.add_argument("--rev-records", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-api.json")
    parser.add_argument(
        "--batch", type=int, metavar="N", help="instead: one batch of N records imported and "
        "a daemon's start on them (bench/api_batch.py), into --out",
    )  # fmt: skip
    return parser.parse_args()


def main() -> None:
    args = arguments()
    if args.batch:
        import api_batch

        api_batch.write(args.out, api_batch.measure(args.batch))
        return
    load = [round(x, 2) for x in os.getloadavg()]
    commit, dirty = (  # at the start: others may commit while it runs
        subprocess.run(["git", "-C", str(ROOT), *words], capture_output=True, text=True).stdout
        for words in (["rev-parse", "--short", "HEAD"], ["status", "--porcelain", "gateway"])
    )
    results: dict[str, Any] = {}
    try:
        run_all(args, results)
    except BaseException:  # what was measured, apart: never over a whole run's file
        partial = args.out.with_suffix(".partial.json")
        partial.write_text(json.dumps({"load_average_at_start": load, **results}, indent=2))
        print(f"stopped; what was measured is in {partial}", file=sys.stderr)
        raise
    print("\n" + "\n".join(table(results)))
    out = {
        "benchmark": "api_change",
        "commit": commit.strip(),
        "gateway_uncommitted": dirty.splitlines(),  # measured as found in the work tree
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": len(os.sched_getaffinity(0)),
        "repeat": args.repeat,
        "path": "whole" if args.whole else "incremental",
        "load_average_at_start": load,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **results,
    }
    _write(args.out, out)
    print(f"\nwrote {args.out}")


def _write(path: Path, out: dict[str, Any]) -> None:
    """``out`` into ``path``, keeping the ``"batch"`` figures already there."""
    found = json.loads(path.read_text()) if path.exists() else {}
    if "batch" in found:
        out["batch"] = found["batch"]
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
