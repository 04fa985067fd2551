"""The gateway's two paths, each measured with one receiver on the receiver core:

* ``in`` (NVGRE -> gateway -> TAP): trafgen in the sender namespace sends NVGRE to the
  PA; counted as the TAP's rx in the corp namespace (OVS: in the host namespace,
  where its own TAP stays). Receivers: ``bare`` (``bare_decap.py``, A1), ``ovs`` (B),
  ``asyncio`` and ``trio`` (``nvgw run --node gw``).
* ``out`` (TAP -> gateway -> NVGRE): trafgen in the corp namespace sends on the TAP's
  kernel end (what it sends, the receiver reads from the TAP); counted as the sender
  veth's rx (the NVGRE the receiver sent to the sender's PA, dropped on arrival).
  Receivers: ``bare`` (``bare_encap.py``), ``asyncio``, ``trio``.

Each measurement: the receiver starts, its TAP goes to the corp namespace, the
gateway resolves the corp server (a few frames first, its ARP answered by the corp's
kernel), CHECK_FRAMES frames must arrive exactly (count and bytes; for the daemon,
nothing counted dropped), then a window under full load between two snapshots of
the kernel's counters.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import (
    CHECK_FRAMES,
    HOST_PA,
    NS_CORP,
    NS_HOST,
    NS_SND,
    RCV_CPU,
    SND_CPU,
    SND_DEV,
    SND_PA,
    VSID,
    BenchError,
    CheckFailed,
    stop,
)
from .counters import cpu_shares, delta, netdev, rss_kib
from .gateway_ovs import ovs_start, ovs_stop
from .gateway_setup import CORP_MAC, GW_TAP, NODE, NVGRE_OVERHEAD, attach_corp
from .receivers import Receiver, require_flow, start_bare, window_figures
from .sources import Source, gateway_hash
from .traffic import SENDER, blast, start_trafgen

PATHS = {"in": ("bare", "ovs", "asyncio", "trio"), "out": ("bare", "asyncio", "trio")}
BARE = {"in": "bare_decap.py", "out": "bare_encap.py"}
PRIME_FRAMES = 8  # the first frames in: the gateway asks the corp server's MAC


class Running:
    """What a measurement needs of a started receiver: its pid, and its daemon (for
    /metrics) if it is one."""

    def __init__(self, pid: int, daemon: Receiver | None = None) -> None:
        self.pid = pid
        self.daemon = daemon

    def drops(self) -> dict[str, int]:
        return self.daemon.scrape()["drops"] if self.daemon else {}


@contextlib.contextmanager
def receiver(
    path: str, kind: str, config: Path, source: Source, daemon_args: list[str]
) -> Iterator[Running]:
    """Start ``kind`` for ``path`` pinned to the receiver core, its TAP in place."""
    if kind == "ovs":
        try:
            yield Running(ovs_start())
        finally:
            ovs_stop()
        return
    if kind == "bare":
        remote = [SND_PA] if path == "out" else []
        proc, _ = start_bare(BARE[path], HOST_PA, *remote, GW_TAP, str(VSID))
        try:
            attach_corp(CORP_MAC)
            yield Running(proc.pid)
        finally:
            stop(proc)
            wait_tap_gone()
        return
    try:
        with Receiver(f"gw-{kind}", source, daemon_args, config, NODE, kind) as daemon:
            attach_corp(None)
            yield Running(daemon.pid, daemon)
    finally:
        wait_tap_gone()


def wait_tap_gone(timeout: float = 5.0) -> None:
    """The TAP goes with its last fd, but not always by the time its process has been
    reaped: the next receiver's TAP of the same name must not meet it in the corp
    namespace."""
    t_end = time.monotonic() + timeout
    while any(GW_TAP in netdev(ns) for ns in (NS_HOST, NS_CORP)):
        if time.monotonic() > t_end:
            raise BenchError(f"TAP {GW_TAP} still there {timeout:.0f} s after its receiver")
        time.sleep(0.05)


def counted_at(path: str, kind: str) -> tuple[str, str]:
    """Where delivered frames are counted (rx): the TAP's kernel end, or the sender veth."""
    if path == "out":
        return NS_SND, SND_DEV
    return (NS_HOST if kind == "ovs" else NS_CORP), GW_TAP


def sent_from(path: str) -> tuple[str, str]:
    return SENDER if path == "in" else (NS_CORP, GW_TAP)


def send_count(cfg: Path, path: str, count: int) -> None:
    trafgen = start_trafgen(cfg, 8, count=count, where=sent_from(path))
    try:
        trafgen.wait(timeout=12)
    finally:
        stop(trafgen, signal.SIGINT)


def check_delivery(path: str, kind: str, cfg: Path, size: int, rx: Running) -> dict[str, Any]:
    """PRIME_FRAMES frames (the neighbour resolved), then CHECK_FRAMES frames: exactly
    that many, whole, where delivered ones are counted, and no drop counted."""
    where = counted_at(path, kind)
    send_count(cfg, path, PRIME_FRAMES)
    t_end = time.monotonic() + 3
    while netdev(where[0])[where[1]]["rx_packets"] == 0 and time.monotonic() < t_end:
        time.sleep(0.05)
    time.sleep(0.2)
    before, drops_before = netdev(where[0])[where[1]], rx.drops()
    send_count(cfg, path, CHECK_FRAMES)
    time.sleep(0.3)
    after, drops_after = netdev(where[0])[where[1]], rx.drops()
    got = after["rx_packets"] - before["rx_packets"]
    nbytes = after["rx_bytes"] - before["rx_bytes"]
    frame = size + (NVGRE_OVERHEAD if path == "out" else 0)
    dropped = {k: v - drops_before.get(k, 0) for k, v in drops_after.items()}
    dropped = {k: v for k, v in dropped.items() if v}
    ok = got == CHECK_FRAMES and nbytes == CHECK_FRAMES * frame and not dropped
    check = {"sent": CHECK_FRAMES, "delivered": got, "bytes": nbytes, "ok": ok}
    if rx.daemon is not None:
        check["daemon_drops"] = dropped
    return check


def measure_path(
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
    """One measurement of ``kind`` on ``path`` at ``size`` (``cfg``: trafgen's frames)."""
    with receiver(path, kind, config, source, daemon_args) as rx:
        r: dict[str, Any] = {"rss_start_kib": rss_kib(rx.pid)}
        if kind != "ovs":
            r["gateway_py_sha256"] = gateway_hash(source.path)
        r["check"] = check_delivery(path, kind, cfg, size, rx)
        if not r["check"]["ok"]:
            raise CheckFailed(f"{path} {kind} {size} B: delivery check failed: {r['check']}")
        drops0 = rx.drops()
        s0, s1 = blast(cfg, dur, warm, rx.pid, where=sent_from(path))
        r["rss_end_kib"] = rss_kib(rx.pid)
        if rx.daemon is not None:
            drops1 = rx.drops()
            r["daemon_drops_in_window"] = {
                k: v - drops0.get(k, 0) for k, v in drops1.items() if v - drops0.get(k, 0)
            }
    if path == "in":
        r.update(window_figures(s0, s1, counted_at(path, kind)))
    else:
        r.update(outbound_figures(s0, s1))
    require_flow(r, f"{path} {kind} {size} B")
    return r


def outbound_figures(s0: dict[str, Any], s1: dict[str, Any]) -> dict[str, Any]:
    """A window of the ``out`` path: offered = what trafgen put on the TAP's kernel end
    (tx, and tx_dropped when the TAP's queue to the receiver was full), delivered = the
    NVGRE the sender veth received."""
    dt = s1["t"] - s0["t"]
    offered = delta(s0, s1, NS_CORP, GW_TAP)
    got = delta(s0, s1, NS_SND, SND_DEV)
    user, system = (b - a for a, b in zip(s0["proc"], s1["proc"], strict=True))
    cpu = user + system
    sender_user, sender_sys = (b - a for a, b in zip(s0["sender"], s1["sender"], strict=True))
    cpus = cpu_shares(s0["cpu"], s1["cpu"], dt)
    r: dict[str, Any] = {
        "window_s": round(dt, 3),
        "offered_pps": round((offered["tx_packets"] + offered["tx_drop"]) / dt),
        "tap_queue_drops": offered["tx_drop"],
        "delivered_pps": round(got["rx_packets"] / dt),
        "delivered_counter": "sender veth rx_packets (NVGRE)",
        "delivered_bytes_per_frame": round(got["rx_bytes"] / got["rx_packets"], 1)
        if got["rx_packets"]
        else None,
        "sender_cores": round((sender_user + sender_sys) / dt, 3),
        "recv_cpu_s": round(cpu, 2),
        "recv_user_s": round(user, 2),
        "recv_sys_s": round(system, 2),
        "recv_cores": round(cpu / dt, 3),
        "cpu_s_per_mpkt": round(cpu / got["rx_packets"] * 1e6, 3) if got["rx_packets"] else None,
        "cpus": cpus,
    }
    r["pps_per_recv_core"] = round(r["delivered_pps"] / r["recv_cores"]) if cpu else None
    snd, rcv = cpus[f"cpu{SND_CPU}"], cpus[f"cpu{RCV_CPU}"]
    # the sender veth's receive work for what the receiver sends runs on the
    # receiver's core, in softirq: not another job's
    r["other_load"] = {
        f"cpu{SND_CPU}": round(max(snd["busy"] - r["sender_cores"], 0.0), 3),
        f"cpu{RCV_CPU}": round(max(rcv["busy"] - rcv["softirq"] - r["recv_cores"], 0.0), 3),
    }
    if r["offered_pps"] > 1.02 * r["delivered_pps"]:
        r["bottleneck"] = "receiver"
    elif snd["busy"] < 0.9:
        r["bottleneck"] = "receiver (sender back-pressured)"
    else:
        r["bottleneck"] = "sender"
    return r
