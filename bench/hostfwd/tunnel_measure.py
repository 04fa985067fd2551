"""One measurement of the tunnel part (``bench/gateway_tunnel.py``): the gateway side
started (the daemon, or the anchor's wireguard-go), its delivery checked, then the
sweep of offered rates (``tunnel_sweep.py``), each a window between two snapshots
of the kernel's counters, and its figures.

* ``asyncio``, ``trio``: ``paced_send.py`` in the sender namespace sends NVGRE to the
  PA at a fixed rate, evenly; the daemon (pinned to the receiver core) routes it into its tunnel,
  encrypts it and sends it to the site. Offered = the sender veth's tx.
* ``wggo`` (the anchor): the same sender writes the same inner packets into the anchor's TUN
  in the host namespace; its wireguard-go (pinned to the receiver core) encrypts and
  sends them to the site. Offered = the TUN's tx.

Delivered, for both, is the site's TUN rx (what the site's wireguard-go decrypted
and wrote); what went into the tunnel is the WAN veth's tx in the host namespace, so
the first rate that lost too much says who limited it: the gateway side (it sent
less than was offered) or the site (it got everything and delivered less).
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    CHECK_FRAMES,
    HOST_DEV,
    HOST_PA,
    NS_HOST,
    NS_SITE,
    NS_SND,
    RCV_CPU,
    REMOTE_VM,
    SCRATCH,
    SND_CPU,
    SND_DEV,
    SND_PA,
    VSID,
    WG_GW,
    WG_SITE,
    BenchError,
    CheckFailed,
    log,
    nsx,
    start,
    stop,
)
from .counters import cpu_shares, cpustat, delta, netdev, proc_cpu, rss_kib, tree_cpu
from .gateway_setup import GW_RECORD
from .namespaces import HOLD
from .paced_send import check
from .receivers import Receiver, start_bare
from .sources import Source, gateway_hash
from .traffic import SENDER, wait_flowing
from .tunnel_setup import INNER, NODE, PORT, WAN_SITE_ADDR, start_anchor
from .tunnel_sweep import LOSS_MAX, Plan, Step, best, first_failed, next_rate

ANCHOR = "wggo"
BARE = "bare"  # the ceiling: ``bench/bare_tunnel.py``, Python's loop with nothing else
DAEMONS = ("asyncio", "trio")
KINDS = (ANCHOR, BARE, *DAEMONS)
ANCHOR_FROM = (NS_HOST, WG_GW)
SLOW_RATE = 2000  # pps: the handshake's first packets and the check's
HANDSHAKE_S = 8.0
DAEMON_COUNTS = ("provider_rx_packets", "kernel_rx_drops")  # from its /metrics
PACED_SEND = Path(__file__).with_name("paced_send.py")


@dataclass
class Side:
    """The gateway side of one measurement: its pid, its daemon (for /metrics) if it
    is one, and where its traffic is sent from."""

    pid: int
    daemon: Receiver | None
    sent_from: tuple[str, str]

    def scrape(self) -> dict[str, Any]:
        return self.daemon.scrape() if self.daemon else {"drops": {}}

    def drops(self) -> dict[str, int]:
        return self.scrape()["drops"]


@contextlib.contextmanager
def gateway_side(
    kind: str, config: Path, source: Source, daemon_args: list[str], keys: dict[str, Any]
) -> Iterator[Side]:
    if kind == ANCHOR:
        proc = start_anchor(keys)
        try:
            yield Side(proc.pid, None, ANCHOR_FROM)
        finally:
            stop(proc)
        return
    if kind == BARE:
        proc, _ = start_bare(
            "bare_tunnel.py",
            HOST_PA,
            str(VSID),
            str(keys["gw"][0]),
            keys["site"][1],
            f"{WAN_SITE_ADDR}:{PORT}",
            str(PORT),
            SND_PA,
            REMOTE_VM[1],
            GW_RECORD[1],
        )
        try:
            yield Side(proc.pid, None, SENDER)
        finally:
            stop(proc)
        return
    with Receiver(f"tunnel-{kind}", source, daemon_args, config, NODE, kind) as daemon:
        yield Side(daemon.pid, daemon, SENDER)


def paced(
    frames: Path, where: tuple[str, str], rate: int, secs: float, count: int = 0
) -> tuple[subprocess.Popen, Path]:
    """``paced_send.py`` on the sender core at ``rate`` pps for at most ``secs`` (or
    ``count`` frames), and the file its report goes to when it ends."""
    ns, dev = where
    report = SCRATCH / "paced_send.json"
    report.unlink(missing_ok=True)
    cmd = ["taskset", "-c", str(SND_CPU), sys.executable, str(PACED_SEND), dev, str(frames)]
    cmd += [str(rate), "--seconds", str(secs), "--count", str(count), "--report", str(report)]
    return start(nsx(ns, *cmd), "paced_send.log"), report


def sender_report(proc: subprocess.Popen, report: Path) -> dict[str, Any]:
    """The report of a sender that has stopped."""
    if not report.exists():
        raise BenchError(f"paced_send wrote no report, exit {proc.returncode} (see {SCRATCH})")
    return json.loads(report.read_text())


def send_slowly(frames: Path, where: tuple[str, str], count: int) -> None:
    proc, _ = paced(frames, where, SLOW_RATE, count / SLOW_RATE + 10, count)
    try:
        proc.wait(timeout=count / SLOW_RATE + 12)
    finally:
        stop(proc, signal.SIGINT)


def site_rx() -> dict[str, int]:
    return netdev(NS_SITE)[WG_SITE]


def handshake(cfg: Path, side: Side) -> float:
    """A few packets at a time until the site delivers one (the handshake done);
    seconds it took."""
    t0 = time.monotonic()
    first = site_rx()["rx_packets"]
    while site_rx()["rx_packets"] == first:
        if time.monotonic() - t0 > HANDSHAKE_S:
            raise BenchError(f"no packet through the tunnel in {HANDSHAKE_S:.0f} s (see {SCRATCH})")
        send_slowly(cfg, side.sent_from, 4)
        time.sleep(0.3)
    time.sleep(0.3)
    return round(time.monotonic() - t0, 2)


def check_delivery(cfg: Path, side: Side) -> dict[str, Any]:
    """CHECK_FRAMES packets at a low rate: exactly that many, whole, out of the site's
    TUN, and (the daemon) none counted dropped."""
    before, drops_before = site_rx(), side.drops()
    send_slowly(cfg, side.sent_from, CHECK_FRAMES)
    time.sleep(0.3)
    after, drops_after = site_rx(), side.drops()
    got = after["rx_packets"] - before["rx_packets"]
    nbytes = after["rx_bytes"] - before["rx_bytes"]
    dropped = {k: v - drops_before.get(k, 0) for k, v in drops_after.items()}
    dropped = {k: v for k, v in dropped.items() if v}
    ok = got == CHECK_FRAMES and nbytes == CHECK_FRAMES * INNER and not dropped
    check: dict[str, Any] = {"sent": CHECK_FRAMES, "delivered": got, "bytes": nbytes, "ok": ok}
    if side.daemon is not None:
        check["daemon_drops"] = dropped
    return check


def udp_counters(ns: str) -> dict[str, int]:
    """``ns``'s UDP counters (/proc/net/snmp), of which at the site: ``InDatagrams``
    and ``InErrors``, every datagram that came through the tunnel (counted one by one
    also when it travelled in a run, which the WAN veth counts as one packet);
    ``RcvbufErrors``, what its wireguard-go was too slow to read."""
    with open(f"/proc/{HOLD[ns]}/net/snmp") as f:
        head, values = (line.split() for line in f if line.startswith("Udp:"))
    return dict(zip(head[1:], map(int, values[1:]), strict=True))


def _snap(side: Side, site_pid: int, sender_pid: int) -> dict[str, Any]:
    return {
        "t": time.monotonic(),
        "dev": {ns: netdev(ns) for ns in (NS_SND, NS_HOST, NS_SITE)},
        "site_udp": udp_counters(NS_SITE),
        "cpu": cpustat(),
        "proc": proc_cpu(side.pid),
        "site": proc_cpu(site_pid),
        "sender": tree_cpu(sender_pid),
    }


def window(
    cfg: Path, side: Side, site_pid: int, rate: int, dur: float, warm: float
) -> dict[str, Any]:
    """One window at ``rate`` pps offered: its figures, with the sender's report (its
    whole run, the warm-up too) and whether it kept to its schedule."""
    proc, report = paced(cfg, side.sent_from, rate, warm + dur + 8)
    try:
        wait_flowing(where=side.sent_from)
        time.sleep(warm)
        s0 = _snap(side, site_pid, proc.pid)
        time.sleep(dur)
        s1 = _snap(side, site_pid, proc.pid)
    finally:
        stop(proc, signal.SIGINT)
    sent = sender_report(proc, report)
    refused = check(sent, rate)
    return {**step_figures(s0, s1, side.sent_from, rate), "sender": sent, "refused": refused}


def step_figures(
    s0: dict[str, Any], s1: dict[str, Any], sent_from: tuple[str, str], rate: int
) -> dict[str, Any]:
    dt = s1["t"] - s0["t"]
    sent = delta(s0, s1, *sent_from)
    # a veth's tx_drop is what the sender offered and its peer refused; a TUN's counts
    # what the kernel could not queue to wireguard-go, out of its tx_packets already
    offered = sent["tx_packets"] + (sent["tx_drop"] if sent_from[1] == SND_DEV else 0)
    site_udp = {key: s1["site_udp"][key] - s0["site_udp"][key] for key in s0["site_udp"]}
    into = site_udp["InDatagrams"] + site_udp["InErrors"]
    got = delta(s0, s1, NS_SITE, WG_SITE)
    cpus = cpu_shares(s0["cpu"], s1["cpu"], dt)

    def cores(key: str) -> float:
        return sum(b - a for a, b in zip(s0[key], s1[key], strict=True)) / dt

    recv, site, sender = cores("proc"), cores("site"), cores("sender")
    ours = recv + site + sender
    busy = sum(cpus[f"cpu{c}"]["busy"] - cpus[f"cpu{c}"]["softirq"] for c in (SND_CPU, RCV_CPU))
    return {
        "rate": rate,
        "window_s": round(dt, 3),
        "offered_pps": round(offered / dt),
        "host_veth_rx_pps": round(delta(s0, s1, NS_HOST, HOST_DEV)["rx_packets"] / dt),
        "into_tunnel_pps": round(into / dt),
        "delivered_pps": round(got["rx_packets"] / dt),
        "delivered_bytes_per_packet": round(got["rx_bytes"] / got["rx_packets"], 1)
        if got["rx_packets"]
        else None,
        "site_udp_drops_pps": round(site_udp["RcvbufErrors"] / dt),
        "recv_cores": round(recv, 3),
        "site_cores": round(site, 3),
        "sender_cores": round(sender, 3),
        "recv_cpu_s_per_mpkt": round(recv / into * dt * 1e6, 3) if into else None,
        "cpus": cpus,
        # neither ours nor softirq (the veths' and the TUNs' receive work): another job
        "other_cores": round(max(0.0, busy - ours), 3),
    }


def sweep(
    cfg: Path, side: Side, site_pid: int, plan: Plan, dur: float, warm: float
) -> list[dict[str, Any]]:
    steps: list[Step] = []
    windows: list[dict[str, Any]] = []
    while (rate := next_rate(plan, steps)) is not None:
        w = window(cfg, side, site_pid, rate, dur, warm)
        windows.append(w)
        log(
            f"  {rate} pps asked: offered {w['offered_pps']}, into the tunnel"
            f" {w['into_tunnel_pps']}, delivered {w['delivered_pps']} (the site's UDP"
            f" buffer overflowed {w['site_udp_drops_pps']}/s), gateway side"
            f" {w['recv_cores']:.2f} cores, other jobs {w['other_cores']:.2f}"
            + (f"; refused: {w['refused']}" if w["refused"] else "")
        )
        steps.append(as_step(w))
    return windows


def as_step(w: dict[str, Any]) -> Step:
    return Step(w["rate"], w["offered_pps"], w["delivered_pps"], paced=not w["refused"])


def sweep_figures(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """The sweep's figures: the best rate at <= 1 % loss with its window's CPU, the
    most delivered at any rate, and who limited it (at the lowest rate that lost
    more): the gateway side, the site, or nobody (the sender's ceiling)."""
    steps = [as_step(w) for w in windows]
    held, failed = best(steps), first_failed(steps)
    at = windows[steps.index(held)] if held else {}
    r: dict[str, Any] = {
        "delivered_pps": held.delivered_pps if held else 0,
        "delivered_counter": "site TUN rx_packets (decrypted by the site's wireguard-go)",
        "offered_pps": held.offered_pps if held else 0,
        "max_delivered_pps": max(s.delivered_pps for s in steps),
        "other_load": {"cores": max(w["other_cores"] for w in windows)},
        "steps": windows,
    }
    if held:
        r.update(
            recv_cores=at["recv_cores"],
            site_cores=at["site_cores"],
            cpu_s_per_mpkt=at["recv_cpu_s_per_mpkt"],
        )
    if failed is None:
        r["bottleneck"] = "sender"
    else:
        w = windows[steps.index(failed)]
        r["loss_at_limit"] = round(failed.loss, 4)
        r["cpu_s_per_mpkt_at_limit"] = w["recv_cpu_s_per_mpkt"]
        r["recv_cores_at_limit"] = w["recv_cores"]
        gateway_lost = w["into_tunnel_pps"] < (1 - LOSS_MAX) * w["offered_pps"]
        r["bottleneck"] = "receiver (gateway side)" if gateway_lost else "site"
    return r


def measure_tunnel(
    kind: str,
    cfg: Path,
    config: Path,
    source: Source,
    daemon_args: list[str],
    keys: dict[str, Any],
    site_pid: int,
    plan: Plan,
    dur: float,
    warm: float,
) -> dict[str, Any]:
    """One measurement of ``kind``: started, checked, swept."""
    with gateway_side(kind, config, source, daemon_args, keys) as side:
        r: dict[str, Any] = {"rss_start_kib": rss_kib(side.pid)}
        if kind in DAEMONS:
            r["gateway_py_sha256"] = gateway_hash(source.path)
        r["handshake_s"] = handshake(cfg, side)
        r["check"] = check_delivery(cfg, side)
        if not r["check"]["ok"]:
            raise CheckFailed(f"tunnel {kind}: delivery check failed: {r['check']}")
        m0 = side.scrape()
        windows = sweep(cfg, side, site_pid, plan, dur, warm)
        r["rss_end_kib"] = rss_kib(side.pid)
        if side.daemon is not None:
            # the daemon's own view of the sweep (warm-ups included): what it refused,
            # and what its receive ring could not take
            m1 = side.scrape()
            view = {k: m1[k] - m0.get(k, 0) for k in DAEMON_COUNTS if k in m1}
            drops = {k: v - m0["drops"].get(k, 0) for k, v in m1["drops"].items()}
            r["daemon_in_sweep"] = {**view, "drops": {k: v for k, v in drops.items() if v}}
    r.update(sweep_figures(windows))
    return r
