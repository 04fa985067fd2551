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
    HOST_PA,
    NS_HOST,
    NS_INET,
    RCV_CPU,
    REMOTE_VM,
    SND_CPU,
    SND_PA,
    VSID,
    BenchError,
    CheckFailed,
    nsx,
    start,
    stop,
)
from .counters import cpu_shares, delta, netdev, rss_kib
from .gateway_setup import NVGRE_OVERHEAD
from .nat_setup import (
    EXT_ADDR,
    EXT_TAP,
    K_INET,
    SERVER,
    SERVER_PORT,
    attach_internet,
    kernel_router_down,
    kernel_router_up,
    reply_config,
)
from .receivers import (
    Receiver,
    _diff_drops,
    read_line,
    require_flow,
    start_bare,
    window_figures,
)
from .report import _ratio, bound_cell, figure_rows, print_rows, ratio_within_reps
from .sources import Source, gateway_hash
from .traffic import SENDER, blast, bottleneck, sender_figures, start_trafgen

PATHS = ("out", "back")
KINDS = ("kernel", "bare", "asyncio", "trio")
DAEMONS = KINDS[2:]
# The Python ceiling of each way's I/O: a bare loop with the NAT's endpoints (the
# gateway's PA, the external TAP) that translates nothing.
BARE = {"out": "bare_decap.py", "back": "bare_encap.py"}
MEASURED_AGAINST = {"kernel": ("bare", *DAEMONS), "bare": DAEMONS}  # the ratios' anchors
PRIME_FRAMES = 8  # one per flow: each opens its session
TENANT_PORTS = list(range(40001, 40001 + FLOWS))  # the flows' source ports


class Running:
    """A started NAT, or a bare loop: where it delivers, its pid (None: the kernel),
    its daemon."""

    def __init__(
        self, where: tuple[str, str], pid: int | None = None, daemon: Receiver | None = None
    ) -> None:
        self.where, self.daemon, self.pid = where, daemon, pid
        self.translates = pid is None or daemon is not None  # a bare loop does not
        # the kernel's frames queue on the receiver core (RPS): trafgen's slow path
        self.slow = pid is None

    def drops(self) -> dict[str, int]:
        return self.daemon.scrape()["drops"] if self.daemon else {}


@contextlib.contextmanager
def nat(
    kind: str, path: str, config: Path, source: Source, daemon_args: list[str]
) -> Iterator[Running]:
    """The kernel's NAT router; or the daemon, or ``path``'s bare loop, pinned to the
    receiver core with its external TAP in the internet namespace."""
    if kind == "kernel":
        try:
            kernel_router_up()
            yield Running((NS_INET, K_INET))
        finally:
            kernel_router_down()
        return
    if kind == "bare":
        remote = [SND_PA] if path == "back" else []
        proc, _ = start_bare(BARE[path], HOST_PA, *remote, EXT_TAP, str(VSID))
        try:
            attach_internet()
            yield Running((NS_INET, EXT_TAP), proc.pid)
        finally:
            stop(proc)
            wait_gone(EXT_TAP)
        return
    try:
        with Receiver(f"gw-{kind}", source, daemon_args, config, "gw", kind) as daemon:
            attach_internet()
            yield Running((NS_INET, EXT_TAP), daemon.pid, daemon)
    finally:
        wait_gone(EXT_TAP)


def wait_gone(dev: str, timeout: float = 5.0) -> None:
    """The TAP goes with its last fd, not always by the time its process is reaped."""
    t_end = time.monotonic() + timeout
    while any(dev in netdev(ns) for ns in (NS_HOST, NS_INET)):
        if time.monotonic() > t_end:
            raise BenchError(f"{dev} still there {timeout:.0f} s after its daemon")
        time.sleep(0.05)


def send(cfg: Path, count: int, slow: bool, where: tuple[str, str] = SENDER) -> None:
    trafgen = start_trafgen(cfg, 8, count=count, slow=slow, where=where)
    try:
        trafgen.wait(timeout=12)
    finally:
        stop(trafgen, signal.SIGINT)


def capture(where: tuple[str, str], count: int) -> subprocess.Popen:
    ns, dev = where
    cmd = [sys.executable, str(BENCH / "hostfwd" / "nat_capture.py"), dev, str(count), "5"]
    proc = start(nsx(ns, *cmd), stdout=subprocess.PIPE)
    line = read_line(proc, proc.stdout.fileno(), "capture", 10)
    if line != "ready":
        raise BenchError(f"nat_capture.py: {line!r}")
    return proc


def checked(
    cfg: Path, rx: Running, sent_from: tuple[str, str], counted: tuple[str, str]
) -> tuple[dict[str, Any], list[list[Any]]]:
    """CHECK_FRAMES frames sent, and what ``counted`` received meanwhile (count,
    bytes, each frame's endpoints) and the daemon's drops."""
    before, drops_before = netdev(counted[0])[counted[1]], rx.drops()
    reader = capture(counted, CHECK_FRAMES)
    try:
        send(cfg, CHECK_FRAMES, rx.slow, sent_from)
        out, _ = reader.communicate(timeout=15)  # ends after CHECK_FRAMES frames, or 5 s
        seen = json.loads(out)
    finally:
        stop(reader)
    after, drops_after = netdev(counted[0])[counted[1]], rx.drops()
    got, nbytes = after["rx_packets"] - before["rx_packets"], after["rx_bytes"] - before["rx_bytes"]
    check: dict[str, Any] = {"sent": CHECK_FRAMES, "delivered": got, "bytes": nbytes}
    if rx.daemon is not None:
        check["daemon_drops"] = _diff_drops(drops_after, drops_before)
    return check, seen


def check_translation(cfg: Path, size: int, rx: Running) -> dict[str, Any]:
    """The way out: the eight sessions opened, then every frame from the external
    address to the server, from eight external ports (from a bare loop: every frame
    as the tenant sent it)."""
    ns, dev = rx.where
    send(cfg, PRIME_FRAMES, rx.slow)
    t_end = time.monotonic() + 3
    while netdev(ns)[dev]["rx_packets"] == 0 and time.monotonic() < t_end:
        time.sleep(0.05)
    time.sleep(0.2)
    check, seen = checked(cfg, rx, SENDER, rx.where)
    source = EXT_ADDR if rx.translates else REMOTE_VM[0]
    check["translated"] = all(s[0] == source and s[2:4] == [SERVER, SERVER_PORT] for s in seen)
    check["external_ports"] = sorted({s[1] for s in seen})
    check["ok"] = (
        check["delivered"] == len(seen) == CHECK_FRAMES
        and check["bytes"] == CHECK_FRAMES * size
        and check["translated"]
        and len(check["external_ports"]) == FLOWS
        and not check.get("daemon_drops")
    )
    return check


def check_way_back(cfg: Path, size: int, rx: Running) -> dict[str, Any]:
    """The way back: every reply reaches the sender veth (NVGRE from the daemon,
    plain IPv4 from the kernel) to the VM's address and its eight source ports (from
    a bare loop: in NVGRE, as the server sent it)."""
    check, seen = checked(cfg, rx, rx.where, SENDER)
    frame = size + (NVGRE_OVERHEAD if rx.pid else 0)
    to = REMOTE_VM[0] if rx.translates else EXT_ADDR
    check["translated"] = all(
        s[:3] == [SERVER, SERVER_PORT, to] and s[3] in TENANT_PORTS for s in seen
    )
    check["ok"] = (
        check["delivered"] == len(seen) == CHECK_FRAMES
        and check["bytes"] == CHECK_FRAMES * frame
        and check["translated"]
        and not check.get("daemon_drops")
    )
    return check


def measure_kind(
    path: str,
    kind: str,
    size: int,
    cfg: Path,
    config: Path,
    source: Source,
    daemon_args: list[str],
    dur: float,
    warm: float,
) -> dict[str, Any]:
    """One measurement of ``kind``'s NAT at ``size`` (``cfg``: trafgen's frames for the
    way out) on ``path``: ``out`` (tenant -> internet) or ``back`` (the server's
    replies to the sessions the way out opened; a bare loop, which opens none, gets
    them to the tenant's own ports)."""
    with nat(kind, path, config, source, daemon_args) as rx:
        r: dict[str, Any] = {}
        if rx.daemon is not None:
            r["rss_start_kib"] = rss_kib(rx.pid)
            r["gateway_py_sha256"] = gateway_hash(source.path)
        sender, counted = SENDER, rx.where
        if path == "back" and not rx.translates:
            cfg = reply_config(kind, size, TENANT_PORTS)
            r["check"] = check_way_back(cfg, size, rx)
            sender, counted = rx.where, SENDER
        else:
            r["check"] = check_translation(cfg, size, rx)
        if path == "back" and rx.translates and r["check"]["ok"]:
            cfg = reply_config(kind, size, r["check"]["external_ports"])
            r["check_out"] = r["check"]
            r["check"] = check_way_back(cfg, size, rx)
            sender, counted = rx.where, SENDER
        if not r["check"]["ok"]:
            raise CheckFailed(f"{path} {kind} {size} B: translation check failed: {r['check']}")
        drops0 = rx.drops()
        s0, s1 = blast(cfg, dur, warm, rx.pid, where=sender, slow=rx.slow)
        if rx.daemon is not None:
            r["rss_end_kib"] = rss_kib(rx.pid)
            r["daemon_drops_in_window"] = _diff_drops(rx.drops(), drops0)
    if path == "back":
        r.update(way_back_figures(s0, s1, sender, rx.pid))
    else:
        r.update(window_figures(s0, s1, counted) if rx.pid else kernel_figures(s0, s1))
    require_flow(r, f"{path} {kind} {size} B")
    return r


def way_back_figures(
    s0: dict[str, Any], s1: dict[str, Any], sent_from: tuple[str, str], pid: int | None
) -> dict[str, Any]:
    """A window of the way back: offered = what trafgen put on the internet router's
    device (tx, and tx_dropped when the TAP's queue to the daemon was full), delivered
    = what reached the sender veth; the receiver's CPU is the daemon's, or the kernel's
    softirq on the receiver core."""
    dt = s1["t"] - s0["t"]
    offered, got = delta(s0, s1, *sent_from), delta(s0, s1, *SENDER)
    cpus = cpu_shares(s0["cpu"], s1["cpu"], dt)
    snd, rcv = cpus[f"cpu{SND_CPU}"], cpus[f"cpu{RCV_CPU}"]
    sender_cpu = sum(b - a for a, b in zip(s0["sender"], s1["sender"], strict=True))
    if pid:
        cpu = sum(b - a for a, b in zip(s0["proc"], s1["proc"], strict=True))
        other_rcv = rcv["busy"] - rcv["softirq"] - cpu / dt
    else:
        cpu = rcv["busy"] * dt
        other_rcv = rcv["busy"] - rcv["softirq"]
    r: dict[str, Any] = {
        "window_s": round(dt, 3),
        "offered_pps": round((offered["tx_packets"] + offered["tx_drop"]) / dt),
        "tx_queue_drops": offered["tx_drop"],
        "delivered_pps": round(got["rx_packets"] / dt),
        "delivered_counter": "sender veth rx_packets",
        "delivered_bytes_per_frame": round(got["rx_bytes"] / got["rx_packets"], 1)
        if got["rx_packets"]
        else None,
        "sender_cores": round(sender_cpu / dt, 3),
        "recv_cpu_s": round(cpu, 2),
        "recv_cores": round(cpu / dt, 3),
        "cpu_s_per_mpkt": round(cpu / got["rx_packets"] * 1e6, 3) if got["rx_packets"] else None,
        "cpus": cpus,
        "other_load": {
            f"cpu{SND_CPU}": round(max(snd["busy"] - snd["softirq"] - sender_cpu / dt, 0.0), 3),
            f"cpu{RCV_CPU}": round(max(other_rcv, 0.0), 3),
        },
    }
    if r["offered_pps"] > 1.02 * r["delivered_pps"]:
        r["bottleneck"] = "receiver"
    elif snd["busy"] < 0.9:
        r["bottleneck"] = "receiver (sender back-pressured)"
    else:
        r["bottleneck"] = "sender"
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


def key_of(path: str, kind: str, size: int) -> str:
    return f"{path}-{kind}_{size}"


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """``out-asyncio_64/kernel``, ``out-bare_64/kernel`` (the ceiling's) and
    ``out-asyncio_64/bare`` and the like: per repetition, then median (min..max)."""
    out = {}
    for key, e in results.items():
        name, size = key.split("_")
        path, kind = name.split("-")
        for anchor, measured in MEASURED_AGAINST.items():
            base = results.get(key_of(path, anchor, int(size)))
            if kind in measured and base and (ratio := ratio_within_reps(e, base)):
                out[f"{key}/{anchor}"] = ratio
    return out


def below(rat: dict[str, Any], target: float) -> list[str]:
    """The daemons' ratios to the kernel under ``target`` (the bare loop's is its
    ceiling's, not a verdict)."""
    return [
        key
        for key, value in rat.items()
        if key.endswith("/kernel") and key.split("_")[0].split("-")[1] in DAEMONS
        if value["median"] < target
    ]


def print_table(results: dict[str, Any], rat: dict[str, Any]) -> None:
    head = ("id", "delivered pps", "offered pps", "x kernel", "x bare", "recv cores")
    head += ("CPU s/Mpkt", "recv-bound", "other load")

    def ratio(key: str, e: dict[str, Any]) -> tuple[str, ...]:
        cells = []
        for anchor in MEASURED_AGAINST:
            value = rat.get(f"{key}/{anchor}")
            cells.append(_ratio(value) if value else "1.00" if f"-{anchor}_" in key else "-")
        return tuple(cells)

    def bound_and_load(key: str, e: dict[str, Any]) -> tuple[str, ...]:
        other = max(max(r["other_load"].values()) for r in e["runs"])
        return bound_cell(e), f"{other:.0%} max"

    print_rows(head, figure_rows(results, len(head), ratio, bound_and_load))


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
