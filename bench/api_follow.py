"""How soon the other daemons sharing a store have a change in force (issue 14: <= 100
ms at p99 after the writer's answer, at 100,000 records).

``propagation`` starts N followers, each a process of its own (``python
bench/api_follow.py URL``) holding a ``PolicyStore`` on the shared store (the SQLite
file, or the etcd prefix) and following it as ``nvgw run`` does
(``gateway/io/daemon.py``'s ``_follow``: the committed revision asked whenever
``PolicyStore.moves`` says another writer may have committed, and a reload of the
store when it moved, with the snapshot
in force handed to ``compile_policy`` as the daemon's ``prepare`` hands it). Its
commit callback, where the daemon swaps the snapshot in, writes the revision and
``time.monotonic_ns()`` to its stdout: when that revision was in force. Once every
follower serves the seeded policy, the writer (the measuring process, on the same
store) makes M changes, a lookup record added then removed, ``gap`` seconds apart,
and notes ``time.monotonic_ns()`` at each answer: the one clock of the machine
(per boot, the same in every process), so the lag of each change on each follower
is the difference of two readings of it (``api_report.lags``). Reported: median,
p99 and max of the M x N lags, and the writer's own changes meanwhile.

A follower is stopped by its PID (SIGTERM) once it has the last revision in force.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from api_report import lags, summary  # noqa: E402

from gateway.control.edits import Edit  # noqa: E402
from gateway.control.store import BACKSTOP_S, PolicyStore  # noqa: E402
from gateway.policy import Policy, Snapshot, compile_policy  # noqa: E402

WAIT_S = 900.0  # bounds a failure only: a follower's first read of 10^5 records on etcd
# takes seconds, two of them at once on a busy machine more


class Follower:
    """One follower process, and the (revision, monotonic ns) of each of its commits."""

    def __init__(self, url: str) -> None:
        self.in_force: list[tuple[int, int]] = []
        self._seen = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, __file__, url], stdout=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            revision, at = line.split()
            with self._seen:
                self.in_force.append((int(revision), int(at)))
                self._seen.notify_all()
        with self._seen:  # ended: whoever waits learns it now
            self._seen.notify_all()

    def wait_for(self, revision: int) -> None:
        """Until this follower has ``revision`` (or a newer one) in force."""
        with self._seen:
            reached = self._seen.wait_for(
                lambda: (
                    bool(self.in_force and self.in_force[-1][0] >= revision)
                    or self.process.poll() is not None
                ),
                WAIT_S,
            )
            if not reached or not self.in_force or self.in_force[-1][0] < revision:
                code = self.process.poll()
                raise RuntimeError(f"a follower (exit {code}) never had revision {revision}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@contextmanager
def followers(url: str, count: int, revision: int) -> Iterator[list[Follower]]:
    """``count`` followers of ``url``, each serving ``revision`` or newer; stopped after."""
    with ExitStack() as stack:
        started = []
        for _ in range(count):
            follower = Follower(url)
            stack.callback(follower.stop)
            started.append(follower)
        for follower in started:
            follower.wait_for(revision)
        yield started


async def propagation(
    store: PolicyStore[Any], edits: Sequence[Edit], count: int, changes: int, gap: float
) -> dict[str, Any]:
    """The writer's ``changes`` changes (``edits`` in turn) on ``store``, and each one's
    lag on each of ``count`` followers."""
    assert store.policy is not None
    answers: dict[int, int] = {}
    took: list[float] = []
    with followers(store.url, count, store.policy.revision) as following:
        for n in range(changes):
            started = time.perf_counter()
            accepted = await store.change(edits[n % len(edits)])
            answers[accepted.policy.revision] = time.monotonic_ns()
            took.append(time.perf_counter() - started)
            await anyio.sleep(gap)
        for follower in following:
            await anyio.to_thread.run_sync(follower.wait_for, max(answers))
    seconds = [ns / 1e9 for f in following for ns in lags(answers, f.in_force)]
    return {
        "followers": count,
        "changes": changes,
        "gap_s": gap,
        "follow": f"on the store's signal (SQLite's files, etcd's watch), at least every "
        f"{BACKSTOP_S} s",
        "in_force_after_answer": summary(seconds),
        "reloads": [len(f.in_force) - 1 for f in following],  # fewer than changes: coalesced
        "writer_change": summary(took),
    }


def follow(url: str) -> None:
    """In the child: follow ``url`` as the daemon does, each commit written out."""
    running: list[Snapshot] = []

    def prepare(policy: Policy) -> Snapshot:
        snapshot = compile_policy(policy, running[-1] if running else None)
        running[:] = [snapshot]
        return snapshot

    async def commit(snapshot: Snapshot) -> None:
        at = time.monotonic_ns()
        print(snapshot.revision, at, flush=True)

    store: PolicyStore[Snapshot] = PolicyStore(url, prepare, commit)

    async def run() -> None:
        await store.load()
        async with store.moves() as moved:
            while True:
                await moved()
                revision = await store.committed_revision()
                policy = store.policy
                if revision is not None and policy is not None and revision != policy.revision:
                    await store.load(moved_only=True)

    anyio.run(run)


if __name__ == "__main__":
    follow(sys.argv[1])
