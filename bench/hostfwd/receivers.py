"""The receivers in the host namespace, pinned to the receiver core: the bare loop
(``bench/bare_decap.py``) or an nvgw daemon from a given source; and one measurement
of one of them (delivery check, latency, a window under load, the figures)."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import (
    BENCH,
    CHECK_FRAMES,
    HOST_PA,
    LATENCY_FRAMES,
    LATENCY_INTERVAL_S,
    LOCAL_VM,
    NS_HOST,
    NS_SND,
    PORT,
    RCV_CPU,
    SCRATCH,
    SND_CPU,
    SND_DEV,
    TAP_MTU,
    VSID,
    BenchError,
    CheckFailed,
    ipn,
    log,
    nsx,
    run,
    start,
    stop,
)
from .counters import delta, netdev, packet_count, raw_gre_count, rss_kib
from .sources import Source, gateway_hash
from .traffic import blast, bottleneck, nvgre_frames, sender_figures, start_trafgen


class Receiver:
    """One receiver process in the host namespace, pinned to the receiver core."""

    def __init__(
        self,
        kind: str,
        source: Source,
        daemon_args: list[str],
        config: Path = SCRATCH / "bench.yaml",
        node: str = "bench",
        backend: str | None = None,
    ) -> None:
        self.kind = kind
        self.source = source
        self.daemon_args = daemon_args
        self.config, self.node = config, node  # a daemon's: the host's unless given
        self.backend = backend or kind
        self.metrics: str | None = None
        self.rcvbuf: int | None = None
        self.proc: subprocess.Popen | None = None
        self.pid = 0

    def __enter__(self) -> Receiver:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        if self.kind == "bare":
            self.proc, line = start_bare("bare_decap.py", HOST_PA, PORT, str(VSID))
            self.pid = self.proc.pid
            self.rcvbuf = int(line.split()[1])
            ipn(NS_HOST, "link", "set", PORT, "address", LOCAL_VM[1], "mtu", str(TAP_MTU), "up")
        else:
            ready_r, ready_w = os.pipe()
            cmd = [sys.executable, "-m", "gateway", "run", "--config", str(self.config)]
            cmd += ["--node", self.node, "--backend", self.backend, "--metrics", "127.0.0.1:0"]
            cmd += ["--ready-fd", str(ready_w), "--log-level", "info", *self.daemon_args]
            try:
                self.proc = start(
                    nsx(NS_HOST, "taskset", "-c", str(RCV_CPU), *cmd),
                    f"nvgw-{self.kind}.log",
                    pass_fds=(ready_w,),
                    cwd=self.source.path,
                )
                os.close(ready_w)
                ready = json.loads(read_line(self.proc, ready_r, f"nvgw {self.kind}", 30))
            finally:
                os.close(ready_r)
            self.pid = int(ready["pid"])
            self.metrics = ready["metrics"]
            if self.pid != self.proc.pid:  # ip netns exec and taskset exec, never fork
                raise BenchError(f"daemon pid {self.pid} is not the started pid {self.proc.pid}")
        with open(f"/proc/{self.pid}/cmdline", "rb") as f:
            if b"python" not in f.read():
                raise BenchError(f"pid {self.pid} is not the receiver")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop(self.proc)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def scrape(self) -> dict[str, Any]:
        """The daemon's counters from its /metrics (inside its namespace)."""
        code = (
            "import sys, urllib.request; "
            "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
        )
        text = run(nsx(NS_HOST, sys.executable, "-c", code, f"http://{self.metrics}/metrics"))
        out: dict[str, Any] = {"drops": {}}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, value = line.rsplit(" ", 1)
            if name.startswith("nvgw_drops_total{"):
                out["drops"][name.split('reason="')[1].split('"')[0]] = int(float(value))
            elif name.startswith("nvgw_port_to_vm_packets_total{"):
                out["to_vm_packets"] = int(float(value))
            elif name == "nvgw_provider_rx_packets_total":
                out["provider_rx_packets"] = int(float(value))
            elif name == "nvgw_kernel_rx_drops_total":  # receive ring full (ring mode)
                out["kernel_rx_drops"] = int(float(value))
        return out


def start_bare(script: str, *args: str) -> tuple[subprocess.Popen, str]:
    """A bare loop (``bench/bare_*.py``) in the host namespace, pinned to the receiver
    core, once it said ``ready``: its process, and that line (some loops report
    something after the word)."""
    cmd = [sys.executable, str(BENCH / script), *args]
    proc = start(nsx(NS_HOST, "taskset", "-c", str(RCV_CPU), *cmd), stdout=subprocess.PIPE)
    try:
        line = read_line(proc, proc.stdout.fileno(), "bare loop", 10)
        if not line.startswith("ready"):
            raise BenchError(f"{script}: {line!r}")
    except BaseException:
        stop(proc)
        raise
    return proc, line


def read_line(proc: subprocess.Popen, fd: int, what: str, timeout: float) -> str:
    data = b""
    t_end = time.monotonic() + timeout
    while b"\n" not in data:
        left = t_end - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise BenchError(f"{what} did not get ready (rc {proc.poll()}): {_log_tail(what)}")
        ready, _, _ = select.select([fd], [], [], min(left, 0.2))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                time.sleep(0.1)
                continue
            data += chunk
    return data.decode().strip()


def _log_tail(what: str) -> str:
    if not what.startswith("nvgw "):
        return ""
    path = SCRATCH / f"nvgw-{what.split()[1]}.log"
    try:
        return path.read_text()[-800:]
    except OSError:
        return ""


def check_delivery(cfg: Path, size: int) -> dict[str, Any]:
    """CHECK_FRAMES frames through the receiver: exactly that many, whole, on the TAP."""
    before = netdev(NS_HOST)[PORT]
    trafgen = start_trafgen(cfg, 8, count=CHECK_FRAMES)
    try:
        trafgen.wait(timeout=12)
    finally:
        stop(trafgen, signal.SIGINT)
    time.sleep(0.3)
    after = netdev(NS_HOST)[PORT]
    got = after["rx_packets"] - before["rx_packets"]
    nbytes = after["rx_bytes"] - before["rx_bytes"]
    ok = got == CHECK_FRAMES and nbytes == CHECK_FRAMES * size
    return {"sent": CHECK_FRAMES, "delivered": got, "bytes": nbytes, "ok": ok}


def _diff_drops(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def measure_receiver(
    rx: Receiver, size: int, cfg: Path, dur: float, warm: float, profile: Path | None
) -> dict[str, Any]:
    """One measurement of a receiver not yet started (``rx``): it starts, passes the
    delivery check, is timed one frame at a time, then measured in a window (and a
    daemon profiled into ``profile`` after it, if given)."""
    kind = rx.kind
    code = gateway_hash(rx.source.path)
    with rx:
        r: dict[str, Any] = {"rss_start_kib": rss_kib(rx.pid), "gateway_py_sha256": code}
        check = check_delivery(cfg, size)
        r["check"] = check
        if kind != "bare":
            m0 = rx.scrape()
            check["daemon"] = m0
            if m0.get("to_vm_packets") != CHECK_FRAMES or any(m0["drops"].values()):
                check["ok"] = False
        if not check["ok"]:
            raise CheckFailed(f"{kind} {size} B: delivery check failed: {json.dumps(check)}")
        r.update(measure_latency(size))
        after = None
        if profile is not None and kind != "bare":
            after = lambda: py_spy(rx.pid, profile, dur)  # noqa: E731
        s0, s1 = blast(cfg, dur, warm, rx.pid, after)
        if not rx.alive():
            raise BenchError(f"{kind} died during the window (rc {rx.proc.returncode})")
        r["rss_end_kib"] = rss_kib(rx.pid)
        # which receive path the receiver used: a raw socket, or an AF_PACKET ring
        r["host_ns_sockets"] = {"raw_gre": raw_gre_count(), "packet": packet_count()}
        if kind == "bare":
            r["so_rcvbuf"] = rx.rcvbuf
        else:
            # from after the check to after the window (warm-up included): the
            # daemon's own view, to see what it refused and why
            m1 = rx.scrape()
            r["daemon_since_check"] = {
                "provider_rx_packets": m1.get("provider_rx_packets", 0)
                - m0.get("provider_rx_packets", 0),
                "to_vm_packets": m1.get("to_vm_packets", 0) - m0.get("to_vm_packets", 0),
                "drops": _diff_drops(m1["drops"], m0["drops"]),
            }
            if "kernel_rx_drops" in m1:
                r["daemon_since_check"]["kernel_rx_drops"] = m1["kernel_rx_drops"] - m0.get(
                    "kernel_rx_drops", 0
                )
    r.update(window_figures(s0, s1, (NS_HOST, PORT)))
    require_flow(r, f"{kind} {size} B")
    return r


def require_flow(r: dict[str, Any], what: str) -> None:
    """A receiver that delivered next to nothing in its window fails the whole run."""
    if r["delivered_pps"] < max(1000, 0.01 * r["offered_pps"]):
        raise CheckFailed(
            f"{what} delivered next to nothing: {r['delivered_pps']} pps of "
            f"{r['offered_pps']} offered; the daemon's view: {r.get('daemon_since_check')}"
        )


def window_figures(s0: dict[str, Any], s1: dict[str, Any], tap: tuple[str, str]) -> dict[str, Any]:
    """The figures of a window of NVGRE from the sender veth into a TAP (``tap``: its
    namespace and name): the sender's, what the TAP took (rx: frames written into
    it), the receiver's CPU, what was lost in the host namespace, and who limited it."""
    r = sender_figures(s0, s1)
    dt = s1["t"] - s0["t"]
    taken = delta(s0, s1, *tap)
    user, system = (b - a for a, b in zip(s0["proc"], s1["proc"], strict=True))
    cpu = user + system
    r.update(
        delivered_pps=round(taken["rx_packets"] / dt),
        delivered_counter="TAP rx_packets",
        delivered_bytes_per_frame=round(taken["rx_bytes"] / taken["rx_packets"], 1)
        if taken["rx_packets"]
        else None,
        recv_cpu_s=round(cpu, 2),
        recv_user_s=round(user, 2),
        recv_sys_s=round(system, 2),
        recv_cores=round(cpu / dt, 3),
        cpu_s_per_mpkt=round(cpu / taken["rx_packets"] * 1e6, 3) if taken["rx_packets"] else None,
    )
    # reached the host namespace but not the TAP: its raw socket or its ring was full
    r["host_ns_lost_pps"] = r["host_veth_rx_pps"] - r["delivered_pps"]
    r["pps_per_recv_core"] = round(r["delivered_pps"] / r["recv_cores"]) if cpu else None
    load = r["other_load"]
    load[f"cpu{RCV_CPU}"] = round(max(0.0, load[f"cpu{RCV_CPU}"] - r["recv_cores"]), 3)
    r["bottleneck"] = bottleneck(r)
    return r


def measure_latency(size: int) -> dict[str, Any]:
    """One frame at a time at a low rate (latency_probe.py): veth in to TAP out."""
    frame = nvgre_frames(size)[0]
    probe = [sys.executable, str(BENCH / "latency_probe.py"), NS_HOST, PORT, SND_DEV]
    probe += [str(LATENCY_FRAMES), str(LATENCY_INTERVAL_S), frame.hex()]
    out = run(
        nsx(NS_SND, "taskset", "-c", str(SND_CPU), *probe),
        timeout=LATENCY_FRAMES * (LATENCY_INTERVAL_S + 0.1) + 30,
    )
    found = json.loads(out.splitlines()[-1])
    latencies = sorted(found["latencies_us"])
    if len(latencies) < LATENCY_FRAMES // 2:
        raise BenchError(f"latency: {found['lost']} of {LATENCY_FRAMES} frames never arrived")
    return {
        "latency_us_median": statistics.median(latencies),
        "latency_us_p99": latencies[int(0.99 * (len(latencies) - 1))],
        "latency_lost": found["lost"],
    }


def py_spy(pid: int, out: Path, dur: float) -> None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        log("py-spy not found: no profile")
        return
    cmd = [exe, "record", "--nonblocking", "--pid", str(pid), "--duration", str(int(dur))]
    cmd += ["--rate", "250", "--format", "raw", "--output", str(out)]
    run(cmd, check=False, timeout=dur + 30)
    log(f"profile: {out}")
