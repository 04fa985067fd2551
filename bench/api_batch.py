"""Batches at 100,000 records: one import in one request, a daemon's start on the
store that holds them, and the memory they take (issue 14's targets: <= 10 s, <= 3 s).

    python bench/api_batch.py [--records 100000] [--out bench/results-api.json]

(also ``bench/api_change.py --batch N``). The deployment is the two-hosts config with
its two VSIDs' prefixes widened to /13 (a /24 holds 253 VMs); the batch is a JSONL of
N lookup records spread over both VSIDs and both hosts' PAs, generated here.

- **import**: the JSONL read and checked as ``nvgw lookup-record add --from`` reads it
  (``batch_input.read_batch``), then POSTed as one JSON list to host1's control API
  in process (httpx's ASGI transport: the HTTP layer, the JSON parse, the indexes'
  validation, host1's ``prepare_node`` and the snapshot's delta, the durable commit
  of N rows on SQLite), timed apart and whole;
- **start**: a new process that opens the store and does what ``nvgw run`` does
  before it serves: read the rows, validate the policy, index it and compile host1's
  snapshot (``PolicyStore.load`` with the daemon's ``prepare``); its time (wall and
  the process's CPU), whether the store's seal let it skip the cross-entity checks
  (``trusted``), and the process's RSS before and after (the memory the policy and
  its tables take), plus the Python heap tracemalloc counts for the same load.
  Then the start again with the seal removed first, under ``start_whole``: what
  the first start after a hand edit or an nvgw upgrade pays.

Writes the figures under ``"batch"`` in ``--out`` (the rest of the file kept).
A benchmark, not a test: nothing here asserts a duration.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.cli.batch_input import read_batch  # noqa: E402
from gateway.control import build_api, load_config, new_yaml, to_plain  # noqa: E402
from gateway.control.kinds import LOOKUP_RECORDS  # noqa: E402
from gateway.control.store import PolicyStore  # noqa: E402
from gateway.dataplane import prepare_node  # noqa: E402
from gateway.policy import Policy, load_policy  # noqa: E402

PREFIX = "10.8.0.0/13"  # 524,286 addresses per VSID, 10.10.10.x among them
NODE = "host1"


def deployment(directory: Path) -> Path:
    """The two-hosts config with both VSIDs' prefixes (and on-link routes) at /13."""
    document = to_plain(load_config_document(ROOT / "configs" / "two-hosts.yaml"))
    for domain in document["routing_domains"]:
        for subnet in domain["virtual_subnets"]:
            subnet["prefixes"] = [PREFIX]
    for route in document["customer_routes"]:
        route["destination"] = PREFIX
    path = directory / "two-hosts-wide.yaml"
    with open(path, "w", encoding="utf-8") as f:
        new_yaml().dump(document, f)
    load_config(path)  # valid, or the benchmark stops here
    return path


def load_config_document(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return new_yaml().load(f)


def batch_file(directory: Path, records: int) -> Path:
    """N records, alternately in VSIDs 5010 and 5011 and on host1's and host2's PAs,
    at CAs from 10.12.0.1 on (clear of the config's 10.10.10.x)."""
    path = directory / "records.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for n in range(records):
            address = (10 << 24) + (12 << 16) + 1 + n // 2
            ca = ".".join(str(address >> shift & 255) for shift in (24, 16, 8, 0))
            record = {"vsid": 5010 + n % 2, "ca": ca, "mac": "02-" + n.to_bytes(5, "big").hex("-"),
                      "pa": f"198.18.0.{1 + (n // 2) % 2}", "rule": "encap"}  # fmt: skip
            f.write(json.dumps(record) + "\n")
    return path


def daemon_prepare() -> Any:
    """What host1's daemon does with each policy: its plan and snapshot, the running
    one handed on (a delta for a change of records)."""
    running: list[Any] = []

    def prepare(policy: Policy) -> Any:
        plan = prepare_node(policy, NODE, running[-1] if running else None)[1]
        running[:] = [plan]
        return plan

    return prepare


RUNNING: list[Any] = []  # what was swapped in, kept as the daemon keeps it (freeing a
# snapshot of 10^5 records is a second of its own, which no start pays)


async def _no_swap(prepared: Any) -> None:
    RUNNING[:] = [prepared]


def measure_import(directory: Path, config: Path, jsonl: Path) -> dict[str, Any]:
    store: PolicyStore[Any] = PolicyStore(
        f"sqlite:{directory}/policy.db", daemon_prepare(), _no_swap
    )
    figures: dict[str, Any] = {"jsonl_bytes": jsonl.stat().st_size}

    async def run() -> None:
        await store.load((load_policy(to_plain(load_config_document(config))), str(config)))
        app = build_api(store, NODE, dict)
        started = time.perf_counter()
        batch = read_batch(str(jsonl), LOOKUP_RECORDS, {}, lambda n: None)
        body = json.dumps(batch.entries, separators=(",", ":")).encode()
        read = time.perf_counter()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://nvgw") as client:
            answer = await client.post("/v1/lookup-records", content=body, timeout=600)
        done = time.perf_counter()
        assert answer.status_code == 201, answer.text[:2000]
        figures.update(
            read_s=round(read - started, 3),
            request_s=round(done - read, 3),
            total_s=round(done - started, 3),
            revision=answer.json()["revision"],
        )

    anyio.run(run)
    store.close()
    return figures


def measure_start(database: Path) -> dict[str, Any]:
    """A fresh process's start on the store (see ``_start``)."""
    found = subprocess.run(
        [sys.executable, __file__, "--start", str(database)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return dict(json.loads(found.stdout))


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _start(database: Path) -> None:
    """In the child: the daemon's start, timed, with RSS around it; then the same
    load again under tracemalloc (the Python heap the policy and tables hold)."""
    before = _rss()
    store: PolicyStore[Any] = PolicyStore(f"sqlite:{database}", daemon_prepare(), _no_swap)

    async def start() -> tuple[int, float, float]:
        """Timed inside the event loop, as a daemon starts; the process's CPU time
        too (on a machine loaded by other work, the wall time says more about the
        others than about the start). It hands back the count of records, not the
        policy: asyncio's runner, closing, looks up its SIGINT handler with
        ``signal.getsignal``, whose enum lookup fails on it (a partial holding the
        main task) with a message formatting the task and its result: seconds for a
        policy of 10^5 records (py-spy), which no daemon's start pays."""
        started, cpu = time.perf_counter(), time.process_time()
        loaded = await store.load()
        assert loaded is not None
        return len(loaded.lookup_records), time.perf_counter() - started, time.process_time() - cpu

    records, took, cpu = anyio.run(start)
    after = _rss()
    store.close()
    tracemalloc.start()
    again: PolicyStore[Any] = PolicyStore(f"sqlite:{database}", daemon_prepare(), _no_swap)

    async def load_again() -> None:
        await again.load()

    anyio.run(load_again)
    heap, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({
        "records": records,
        "start_s": round(took, 3),
        "start_cpu_s": round(cpu, 3),
        "trusted": store.backend.trusted,  # type: ignore[attr-defined]
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "rss_growth_mb": round((after - before) / 2**20, 1),
        "heap_traced_mb": round(heap / 2**20, 1),
    }))  # fmt: skip


def measure(records: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        config = deployment(directory)
        jsonl = batch_file(directory, records)
        imported = measure_import(directory, config, jsonl)
        started = measure_start(directory / "policy.db")
        with closing(sqlite3.connect(directory / "policy.db")) as db, db:
            db.execute("DELETE FROM trust")
        whole = measure_start(directory / "policy.db")
    return {"records": records, "import": imported, "start": started, "start_whole": whole}


def write(out: Path, figures: dict[str, Any]) -> None:
    """``figures`` under ``"batch"`` in ``out``, the rest of the file kept."""
    found = json.loads(out.read_text()) if out.exists() else {}
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    found["batch"] = {
        "commit": commit,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **figures,
    }
    out.write_text(json.dumps(found, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results-api.json")
    parser.add_argument("--start", type=Path, help=argparse.SUPPRESS)  # the child's
    args = parser.parse_args()
    if args.start is not None:
        _start(args.start)
        return
    figures = measure(args.records)
    print(json.dumps(figures, indent=2))
    write(args.out, figures)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
