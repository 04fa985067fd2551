"""One measurement of the NAT part (``bench/gateway_nat.py``): the kernel's NAT or an
nvgw gateway's, its translation checked, then a window under full load; and the
ratios and tables of the run.

The check: a few frames open the eight sessions (the daemon asks the internet
router's MAC), then CHECK_FRAMES frames must reach the internet end exactly (count
and bytes), each from the NAT's external address to the server, from eight distinct
source ports, as ``nat_capture.py`` reads them on the router's device; the daemon
counting no drop.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import (
    BENCH,
    CHECK_FRAMES,
    FLOWS,
    NS_HOST,
    NS_INET,
    RCV_CPU,
    BenchError,
    CheckFailed,
    nsx,
    start,
    stop,
)
from .counters import cpu_shares, delta, netdev, rss_kib
from .nat_setup import (
    EXT_ADDR,
    EXT_TAP,
    K_INET,
    SERVER,
    SERVER_PORT,
    attach_internet,
    kernel_router_down,
    kernel_router_up,
)
from .receivers import Receiver, _read_line, require_flow, window_figures
from .report import _k, _ratio, delivered_cell, print_rows, ratio_within_reps
from .sources import Source, gateway_hash
from .traffic import blast, bottleneck, sender_figures, start_trafgen

KINDS = ("kernel", "asyncio", "trio")
DAEMONS = KINDS[1:]
PRIME_FRAMES = 8  # one per flow: each opens its session


class Running:
    """A started NAT: where it delivers, its pid (None: the kernel), its daemon."""

    def __init__(self, where: tuple[str, str], daemon: Receiver | None = None) -> None:
        self.where, self.daemon = where, daemon
        self.pid = daemon.pid if daemon else None
        # the kernel's frames queue on the receiver core (RPS): trafgen's slow path
        self.slow = daemon is None

    def drops(self) -> dict[str, int]:
        return self.daemon.scrape()["drops"] if self.daemon else {}


@contextlib.contextmanager
def nat(kind: str, config: Path, source: Source, daemon_args: list[str]) -> Iterator[Running]:
    """The kernel's NAT router, or the daemon pinned to the receiver core with its
    external TAP in the internet namespace."""
    if kind == "kernel":
        try:
            kernel_router_up()
            yield Running((NS_INET, K_INET))
        finally:
            kernel_router_down()
        return
    try:
        with Receiver(f"gw-{kind}", source, daemon_args, config, "gw", kind) as daemon:
            attach_internet()
            yield Running((NS_INET, EXT_TAP), daemon)
    finally:
        wait_gone(EXT_TAP)


def wait_gone(dev: str, timeout: float = 5.0) -> None:
    """The TAP goes with its last fd, not always by the time its process is reaped."""
    t_end = time.monotonic() + timeout
    while any(dev in netdev(ns) for ns in (NS_HOST, NS_INET)):
        if time.monotonic() > t_end:
            raise BenchError(f"{dev} still there {timeout:.0f} s after its daemon")
        time.sleep(0.05)


def send(cfg: Path, count: int, slow: bool) -> None:
    trafgen = start_trafgen(cfg, 8, count=count, slow=slow)
    try:
        trafgen.wait(timeout=12)
    finally:
        stop(trafgen, signal.SIGINT)


def capture(dev: str, count: int) -> subprocess.Popen:
    cmd = [sys.executable, str(BENCH / "hostfwd" / "nat_capture.py"), dev, str(count), "5"]
    proc = start(nsx(NS_INET, *cmd), stdout=subprocess.PIPE)
    line = _read_line(proc, proc.stdout.fileno(), "capture", 10)
    if line != "ready":
        raise BenchError(f"nat_capture.py: {line!r}")
    return proc


def check_translation(cfg: Path, size: int, rx: Running) -> dict[str, Any]:
    ns, dev = rx.where
    send(cfg, PRIME_FRAMES, rx.slow)
    t_end = time.monotonic() + 3
    while netdev(ns)[dev]["rx_packets"] == 0 and time.monotonic() < t_end:
        time.sleep(0.05)
    time.sleep(0.2)
    before, drops_before = netdev(ns)[dev], rx.drops()
    reader = capture(dev, CHECK_FRAMES)
    try:
        send(cfg, CHECK_FRAMES, rx.slow)
        out, _ = reader.communicate(timeout=15)  # ends after CHECK_FRAMES frames, or 5 s
        seen = json.loads(out)
    finally:
        stop(reader)
    after, drops_after = netdev(ns)[dev], rx.drops()
    got, nbytes = after["rx_packets"] - before["rx_packets"], after["rx_bytes"] - before["rx_bytes"]
    dropped = {k: v - drops_before.get(k, 0) for k, v in drops_after.items()}
    dropped = {k: v for k, v in dropped.items() if v}
    translated = all(s[0] == EXT_ADDR and s[2:4] == [SERVER, SERVER_PORT] for s in seen)
    ports = sorted({s[1] for s in seen})
    ok = (
        got == len(seen) == CHECK_FRAMES
        and nbytes == CHECK_FRAMES * size
        and translated
        and len(ports) == FLOWS
        and not dropped
    )
    check = {"sent": CHECK_FRAMES, "delivered": got, "bytes": nbytes, "translated": translated}
    check.update(external_ports=ports, ok=ok)
    if rx.daemon is not None:
        check["daemon_drops"] = dropped
    return check


def measure_kind(
    kind: str,
    size: int,
    cfg: Path,
    config: Path,
    source: Source,
    daemon_args: list[str],
    dur: float,
    warm: float,
) -> dict[str, Any]:
    """One measurement of ``kind``'s NAT at ``size`` (``cfg``: trafgen's frames)."""
    with nat(kind, config, source, daemon_args) as rx:
        r: dict[str, Any] = {}
        if rx.pid is not None:
            r["rss_start_kib"] = rss_kib(rx.pid)
            r["gateway_py_sha256"] = gateway_hash(source.path)
        r["check"] = check_translation(cfg, size, rx)
        if not r["check"]["ok"]:
            raise CheckFailed(f"{kind} {size} B: translation check failed: {r['check']}")
        drops0 = rx.drops()
        s0, s1 = blast(cfg, dur, warm, rx.pid, slow=rx.slow)
        if rx.daemon is not None:
            r["rss_end_kib"] = rss_kib(rx.pid)
            drops1 = rx.drops()
            r["daemon_drops_in_window"] = {
                k: v - drops0.get(k, 0) for k, v in drops1.items() if v - drops0.get(k, 0)
            }
    r.update(window_figures(s0, s1, rx.where) if rx.pid else kernel_figures(s0, s1))
    require_flow(r, f"{kind} {size} B")
    return r


def kernel_figures(s0: dict[str, Any], s1: dict[str, Any]) -> dict[str, Any]:
    """A window of the kernel's NAT: its work is the receiver core's softirq (RPS), so
    that core's busy share is its ``recv_cores``; the rest of that core is another
    job's."""
    r = sender_figures(s0, s1)
    dt = s1["t"] - s0["t"]
    got = delta(s0, s1, NS_INET, K_INET)
    rcv = cpu_shares(s0["cpu"], s1["cpu"], dt)[f"cpu{RCV_CPU}"]
    r.update(
        delivered_pps=round(got["rx_packets"] / dt),
        delivered_counter="internet veth rx_packets (after NAT)",
        delivered_bytes_per_frame=round(got["rx_bytes"] / got["rx_packets"], 1)
        if got["rx_packets"]
        else None,
        recv_cores=round(rcv["busy"], 3),
        recv_softirq_cores=rcv["softirq"],
        cpu_s_per_mpkt=round(rcv["busy"] * dt / got["rx_packets"] * 1e6, 3)
        if got["rx_packets"]
        else None,
    )
    r["host_ns_lost_pps"] = r["host_veth_rx_pps"] - r["delivered_pps"]
    r["pps_per_recv_core"] = round(r["delivered_pps"] / rcv["busy"]) if rcv["busy"] else None
    r["other_load"][f"cpu{RCV_CPU}"] = round(max(0.0, rcv["busy"] - rcv["softirq"]), 3)
    r["bottleneck"] = bottleneck(r)
    return r


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """``nat-asyncio_64/kernel`` and the like: per repetition, then median (min..max)."""
    out = {}
    for key, e in results.items():
        kind, size = key.removeprefix("nat-").split("_")
        base = results.get(f"nat-kernel_{size}")
        if kind in DAEMONS and base and (ratio := ratio_within_reps(e, base)):
            out[f"{key}/kernel"] = ratio
    return out


def print_table(results: dict[str, Any], rat: dict[str, Any]) -> None:
    head = ("id", "delivered pps", "offered pps", "x kernel", "recv cores", "CPU s/Mpkt")
    head += ("recv-bound", "other load")
    rows = []
    for key, e in results.items():
        s = e["summary"]
        rng = delivered_cell(e)
        if rng is None:
            rows.append((key, "FAILED: " + (e.get("error") or "no runs")[:70], *[""] * 6))
            continue
        ratio = rat.get(f"{key}/kernel")
        cores, per_m = s.get("recv_cores"), s.get("cpu_s_per_mpkt")
        bound = e.get("receiver_bound")
        other = max(max(r["other_load"].values()) for r in e["runs"])
        rows.append(
            (
                key,
                rng,
                _k(s["offered_pps"]["median"]),
                _ratio(ratio) if ratio else "1.00" if "-kernel_" in key else "-",
                f"{cores['median']:.2f}" if cores else "",
                f"{per_m['median']:.2f}" if per_m else "",
                "" if bound is None else ("yes" if bound else "NO"),
                f"{other:.0%} max",
            )
        )
    print_rows(head, rows)


def print_memory(memory: list[dict[str, Any]]) -> None:
    if not memory:
        return
    print()
    head = ("NAT sessions", "bytes per session", "table held", "empty table")
    rows = [
        (
            f"{m['sessions']:,}",
            f"{m['bytes_per_session']:,}",
            f"{m['bytes'] / 2**20:.1f} MiB",
            f"{m['empty_table_bytes'] / 2**20:.1f} MiB",
        )
        for m in memory
    ]
    print_rows(head, rows)
