"""What every benchmark script of this directory does around its measurements: the
checks and set-up before, one measurement kept or done again while another job
disturbs it, and the clean-up after, also on Ctrl-C and SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .common import (
    ATTEMPTS,
    OTHER_LOAD_MAX,
    PACKAGES,
    SCRATCH,
    BenchError,
    CheckFailed,
    Stop,
    ensure_packages,
    log,
)
from .counters import wait_quiet
from .namespaces import cleanup


def _on_term(*_: object) -> None:
    raise Stop


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def window_arguments(doc: str) -> argparse.ArgumentParser:
    """A parser with the options every benchmark has: repetitions, window, warm-up,
    and --quick (one repetition of 2 s windows: checks that it runs)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions (interleaved)")
    ap.add_argument("--dur", type=float, default=5.0, help="measured window, seconds")
    ap.add_argument("--warmup", type=float, default=1.5, help="seconds of traffic before it")
    ap.add_argument("--quick", action="store_true", help="1 repetition of 2 s windows")
    return ap


def begin(cleanup_only: bool, packages: dict[str, str] = PACKAGES) -> bool:
    """Root, 2 CPUs, the packages, what a killed run left removed; False when that was
    all that was asked (``--cleanup``)."""
    name = Path(sys.argv[0]).stem
    if os.geteuid() != 0:
        sys.exit(f"{name}: run as root (namespaces, veth, TAP)")
    if (os.cpu_count() or 1) < 2:
        sys.exit(f"{name}: needs 2 CPUs or more (sender core + receiver core)")
    signal.signal(signal.SIGTERM, _on_term)
    # also when started in the background by a shell, which leaves SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ensure_packages(packages)
    SCRATCH.mkdir(exist_ok=True)
    _hold_the_lock(name)
    cleanup()
    if cleanup_only:
        return False
    for old in SCRATCH.glob("*.log"):
        old.unlink()
    return True


_LOCKS: list[int] = []  # the lock's fd, held until the process exits


def _hold_the_lock(name: str) -> None:
    """One run at a time: every run uses the same namespaces and removes what it finds
    of them first, so a second run would tear down the first one's mid-measurement."""
    fd = os.open(SCRATCH / "run.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f"{name}: another benchmark run is under way ({SCRATCH}/run.lock): wait for it")
    _LOCKS.append(fd)


def guarded(measure: Callable[[], None], problems: list[str]) -> None:
    """``measure()``; what stops it (Ctrl-C, SIGTERM, a failed check) becomes a problem
    of the run, and the namespaces and processes go in any case."""
    try:
        measure()
    except (KeyboardInterrupt, Stop):
        problems.append("interrupted")
        log("interrupted: cleaning up")
    except BenchError as error:
        problems.append(str(error))
        log(f"FAILED: {error}")
    finally:
        with signals_ignored():
            cleanup()


def measure_kept(
    e: dict[str, Any],
    tag: str,
    rep: int,
    measure: Callable[[], dict[str, Any]],
    quiet_wait_s: float = 120.0,
    said: Callable[[dict[str, Any]], str] | None = None,
) -> None:
    """One measurement into ``e["runs"]``, done again (up to ATTEMPTS) while another
    job disturbs it (those kept apart in ``e["disturbed_runs"]``); before each, up to
    ``quiet_wait_s`` waiting for the machine to go quiet. A failed check stops the
    whole run; a measurement that could not run is recorded in ``e["error"]``.
    ``said`` puts its figures in the log line (``rate_said``: delivered pps)."""
    for attempt in range(1, ATTEMPTS + 1):
        wait_quiet(quiet_wait_s)
        try:
            r = measure()
        except CheckFailed as error:
            e["error"] = str(error)
            raise
        except BenchError as error:
            e["error"] = str(error)
            log(f"{tag}: FAILED: {error}")
            return
        r["rep"], r["attempt"] = rep, attempt
        other = max(r["other_load"].values())
        r["disturbed"] = other > OTHER_LOAD_MAX
        log(f"{tag}: {(said or rate_said)(r)}, other load {other:.0%}")
        if r["disturbed"] and attempt < ATTEMPTS:
            e.setdefault("disturbed_runs", []).append(r)
            log(f"{tag}: another job took {other:.0%} of a core: again")
            continue
        e["runs"].append(r)
        return


def rate_said(r: dict[str, Any]) -> str:
    """A rate measurement's figures for its log line."""
    extra = ""
    if "recv_cores" in r:
        extra = (
            f", recv {r['recv_cores']:.2f} cores,"
            f" {r['cpu_s_per_mpkt']} CPU s/Mpkt, {r['bottleneck']}-bound"
        )
    return f"delivered {r['delivered_pps']} pps, offered {r['offered_pps']}{extra}"
