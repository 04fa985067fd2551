"""Packets per second through an nvgw host daemon, next to a bare Python loop.

    python bench/host_forwarding.py [--reps 5] [--dur 5] [--warmup 1.5] [--quick]
                                    [--only bare,asyncio,trio] [--profile DIR] [--out FILE]
    python bench/host_forwarding.py --cleanup   # remove what a killed run left behind

Needs root, 2 CPUs or more, /dev/net/tun and veth. It installs what it lacks
(netsniff-ng for trafgen, iproute2) with apt-get when run as root outside CI; under
CI=true it only says what is missing. Run by ``make bench``; never by the tests.

Topology (two namespaces of its own, removed at the end, also on SIGINT/SIGTERM; the
root namespace is never touched)::

    [nvb-snd] nvbs0 198.18.0.1 ==veth== nvbh0 198.18.0.2 [nvb-host] -> receiver -> TAP nvbvm2
     trafgen, CPU 0 (a "remote host")                     CPU 1      (the local VM's port)

The receiver is one of: the bare loop (``bare_decap.py``: blocking raw IPPROTO_GRE
socket, ``recv_into()``, GRE/VSID check, ``os.write()`` to the TAP: the Python ceiling),
or ``python -m gateway run`` (``--backend asyncio`` or ``trio``) with a generated config
in which node ``bench`` owns PA 198.18.0.2 on nvbh0 and serves one port, the TAP, for
the local VM (VSID 5010, CA 10.10.10.2, MAC 02:aa:00:00:00:02); the remote VM's record
(10.10.10.1, 02:aa:00:00:00:01) has PA 198.18.0.1, so every frame passes anti-spoofing
and is written to the TAP. trafgen sends eight static NVGRE frames (FlowID 1..8, key
5010 << 8 | FlowID, DF, inner Ethernet/IPv4/UDP 10.10.10.1 -> 10.10.10.2) round robin
at full speed, for 64 B and 1400 B inner frames.

Method (the same as ``shared/bench-anchors``): sender pinned to CPU 0, receiver to CPU 1
(taskset); trafgen starts, 1.5 s warm-up, then the kernel's counters are read twice,
5 s apart (``/proc/<pid>/net/dev`` of a process in each namespace). Delivered = the
TAP's ``rx_packets`` (a frame the receiver writes into a TAP is the TAP's rx); offered =
the sender veth's tx_packets + tx_dropped. Receiver CPU is user+system of the whole
process from ``/proc/<pid>/stat``; its RSS (VmRSS) is read once it is ready and again
after the window. Before each window 64 frames must reach the TAP exactly (count and
bytes), and for the daemon its /metrics must count them delivered and nothing dropped;
a receiver that delivers next to nothing fails the run. Each repetition measures, per
size: the sender alone (the host veth takes another MAC, so its kernel drops every frame
on arrival), the bare loop, nvgw on asyncio, nvgw on trio, so that drift on a shared VM
hits all alike; the ratio nvgw / bare is taken within a repetition, then the median.
Five repetitions by default: on a 2-vCPU KVM guest one receiver's rate moves by up to
+-25 % between two windows a few seconds apart at the same CPU use (the host, not the
code), and three left single outliers deciding a median.

``recv-bound`` is yes when in every repetition the receiver limited the rate: more than
2 % of the frames that reached the host veth never reached the TAP (its raw socket's
buffer or its receive ring was full: the kernel's raw-socket drop counter, or the
daemon's ``nvgw_kernel_rx_drops``, says which), or the sender's core was under 90 %
busy (it waited on the receiver). No means the sender was the limit and the figure is a
lower bound of the receiver's capacity.

The machine is shared (tests, labs): before each measurement the script waits (up to 2
minutes) until both cores are idle, and a measurement during which another job took
more than 10 % of the sender's or the receiver's core is done again (up to 3 times;
the disturbed ones are kept apart in the results). The daemon runs from this work tree
as found: every run records a digest of gateway/*.py, and a run that saw two versions
(someone editing meanwhile) says so.

Writes ``bench/results.json`` (every run, every counter, the checks, the machine, the
Python, the git commit and trafgen's version) and prints a table; exit status 2 when a
check failed or a measurement could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from gateway.control import load_config  # noqa: E402
from gateway.errors import ConfigError  # noqa: E402

# ---------------------------------------------------------------- topology and frames

NS_SND, NS_HOST = "nvb-snd", "nvb-host"
NAMESPACES = (NS_SND, NS_HOST)
SND_DEV, HOST_DEV = "nvbs0", "nvbh0"
SND_MAC, HOST_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
OTHER_MAC = "02:00:00:00:00:12"  # the host veth's MAC while the sender runs alone
SND_PA, HOST_PA, PA_PREFIX = "198.18.0.1", "198.18.0.2", 24
PORT = "nvbvm2"  # the local VM's port: the TAP's name
VSID = 5010
REMOTE_VM = ("10.10.10.1", "02:aa:00:00:00:01")  # CA, MAC; behind SND_PA
LOCAL_VM = ("10.10.10.2", "02:aa:00:00:00:02")  # behind HOST_PA, on PORT
TAP_MTU = 1458  # what the daemon gives its TAPs (1500 - 42 of NVGRE)
FLOWS = 8
SIZES = (64, 1400)  # inner Ethernet frame, no FCS
CHECK_FRAMES = 64
LATENCY_FRAMES, LATENCY_INTERVAL_S = 1000, 0.002  # 500 frames/s: a quiet link
SND_CPU, RCV_CPU = 0, 1
RECEIVERS = ("bare", "asyncio", "trio")
SCRATCH = Path("/tmp/nvb-bench")
# A measurement during which another job (on this shared machine: a test run, say) took
# more than this share of the sender's or the receiver's core is done again, up to
# ATTEMPTS times; the disturbed ones are kept in the results apart.
OTHER_LOAD_MAX = 0.10
ATTEMPTS = 3
TCK = os.sysconf("SC_CLK_TCK")
# command -> Debian package that brings it
PACKAGES = {"trafgen": "netsniff-ng", "ip": "iproute2", "taskset": "util-linux"}


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _ip4(text: str) -> bytes:
    return bytes(int(part) for part in text.split("."))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, _ip4(src), _ip4(dst)
    )
    checksum = struct.pack("!H", _checksum(header))
    return header[:10] + checksum + header[12:] + payload


def inner_frame(size: int, sport: int) -> bytes:
    """The remote VM's Ethernet/IPv4/UDP frame to the local VM, ``size`` bytes long."""
    (src, smac), (dst, dmac) = REMOTE_VM, LOCAL_VM
    data = b"x" * (size - 14 - 20 - 8)
    udp = struct.pack("!HHHH", sport, 5678, 8 + len(data), 0) + data
    pseudo = _ip4(src) + _ip4(dst) + struct.pack("!BBH", 0, 17, len(udp))
    udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    return _mac(dmac) + _mac(smac) + b"\x08\x00" + _ipv4(src, dst, 17, udp)


def nvgre_frames(size: int) -> list[bytes]:
    """FLOWS outer frames: sender veth -> host veth, IPv4 DF proto 47, GRE K + TEB."""
    frames = []
    for flow in range(1, FLOWS + 1):
        gre = struct.pack("!HHI", 0x2000, 0x6558, VSID << 8 | flow)
        outer_ip = _ipv4(SND_PA, HOST_PA, 47, gre + inner_frame(size, 40000 + flow))
        frames.append(_mac(HOST_MAC) + _mac(SND_MAC) + b"\x08\x00" + outer_ip)
    return frames


def trafgen_config(size: int) -> Path:
    path = SCRATCH / f"nvgre_{size}.trafgen"
    lines = [f"/* NVGRE VSID {VSID}, inner {size} B, FlowID 1..{FLOWS}, round robin */"]
    for frame in nvgre_frames(size):
        lines.append("{ " + ", ".join(f"0x{byte:02x}" for byte in frame) + " }")
    path.write_text("\n".join(lines) + "\n")
    return path


def nvgw_config() -> Path:
    """The benchmark node's config, validated with the daemon's own loader."""
    (remote_ca, remote_mac), (local_ca, local_mac) = REMOTE_VM, LOCAL_VM
    rdid = "{6e766222-0000-4000-8000-000000005010}"
    text = f"""\
# Written by bench/host_forwarding.py for one run; not a shipped config.
revision: 1
routing_domains:
  - rdid: "{rdid}"
    name: bench
    virtual_subnets:
      - vsid: {VSID}
        prefixes: [10.10.10.0/24]
lookup_records:
  - {{vsid: {VSID}, ca: {remote_ca}, mac: {remote_mac}, pa: {SND_PA}, rule: encap, vm: remote}}
  - {{vsid: {VSID}, ca: {local_ca}, mac: {local_mac}, pa: {HOST_PA}, rule: encap, vm: local}}
customer_routes:
  - {{rdid: "{rdid}", vsid: {VSID}, destination: 10.10.10.0/24, next_hop: 0.0.0.0}}
nodes:
  bench:
    role: host
    provider_addresses:
      - {{interface: {HOST_DEV}, pa: {HOST_PA}, prefix_length: {PA_PREFIX}}}
    ports:
      - {{name: {PORT}, vsid: {VSID}, mac: {local_mac}}}
"""
    path = SCRATCH / "bench.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as error:
        raise BenchError(
            "generated config refused: " + "; ".join(str(i) for i in error.issues)
        ) from None
    return path


# ---------------------------------------------------------------- processes and commands


class BenchError(RuntimeError):
    """A measurement could not run or a check failed."""


class CheckFailed(BenchError):
    """The receiver did not deliver what it must: the whole run is wrong, stop it."""


class Stop(BaseException):
    """SIGTERM: unwind like Ctrl-C so that the namespaces are removed."""


STARTED: list[subprocess.Popen] = []
DAEMON_EXTRA: list[str] = []  # --daemon-arg: more options for ``nvgw run``
DAEMON_SRC = [ROOT]  # where ``python -m gateway`` runs from: the work tree, or --rev's copy
HOLD: dict[str, int] = {}  # namespace -> pid of a process living in it (for /proc/<pid>/net)


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S ") + message, file=sys.stderr, flush=True)


def run(cmd: list[str], check: bool = True, timeout: float = 30, cwd: Path | None = None) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if check and r.returncode:
        output = (r.stderr or r.stdout).strip()[-500:]
        raise BenchError(f"{' '.join(cmd)} -> rc {r.returncode}: {output}")
    return r.stdout


def nsx(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def ipn(ns: str, *args: str) -> None:
    run(["ip", "-n", ns, *args])


def start(cmd: list[str], log_name: str | None = None, **kw: Any) -> subprocess.Popen:
    if "stdout" in kw:
        proc = subprocess.Popen(cmd, **kw)
    elif log_name:
        with open(SCRATCH / log_name, "ab") as out:  # the child keeps its own copy
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)
    else:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, **kw)
    STARTED.append(proc)
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
    if proc in STARTED:
        STARTED.remove(proc)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def ensure_packages() -> None:
    missing = sorted({pkg for cmd, pkg in PACKAGES.items() if shutil.which(cmd) is None})
    if not missing:
        return
    if os.environ.get("CI"):
        sys.exit(f"host_forwarding: missing {' '.join(missing)} (not installed under CI)")
    log(f"installing {' '.join(missing)} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=env
    )


# ---------------------------------------------------------------- kernel counters


def netdev(ns: str) -> dict[str, dict[str, int]]:
    out = {}
    with open(f"/proc/{HOLD[ns]}/net/dev") as f:
        for line in f.readlines()[2:]:
            name, rest = line.split(":", 1)
            v = [int(x) for x in rest.split()]
            out[name.strip()] = {
                "rx_bytes": v[0],
                "rx_packets": v[1],
                "rx_drop": v[3],
                "tx_bytes": v[8],
                "tx_packets": v[9],
                "tx_drop": v[11],
            }
    return out


def raw_gre_drops(ns: str) -> int:
    """Datagrams the namespace's raw GRE sockets dropped (receive buffer full)."""
    total = 0
    with open(f"/proc/{HOLD[ns]}/net/raw") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(":002F"):
                total += int(fields[-1])
    return total


def raw_gre_count() -> int:
    with open(f"/proc/{HOLD[NS_HOST]}/net/raw") as f:
        return sum(1 for line in f.readlines()[1:] if line.split()[1].endswith(":002F"))


def packet_count() -> int:
    with open(f"/proc/{HOLD[NS_HOST]}/net/packet") as f:
        return len(f.readlines()) - 1


def proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a whole process, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[11]) / TCK, int(rest[12]) / TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def cpustat() -> dict[str, list[int]]:
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                # user nice system idle iowait irq softirq steal
                fields = line.split()
                out[fields[0]] = [int(x) for x in fields[1:9]]
    return out


def snap(pid: int | None, sender_pid: int) -> dict[str, Any]:
    return {
        "t": time.monotonic(),
        "dev": {ns: netdev(ns) for ns in NAMESPACES},
        "raw_drops": raw_gre_drops(NS_HOST),
        "cpu": cpustat(),
        "proc": proc_cpu(pid) if pid else None,
        "sender": tree_cpu(sender_pid),
    }


def tree_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and its live descendants (trafgen under
    ``timeout`` forks its worker)."""
    user = system = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            u, s = proc_cpu(p)
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
        user, system = user + u, system + s
    return user, system


def wait_quiet(limit_s: float = 120.0, threshold: float = 0.10) -> float:
    """Wait until both cores are nearly idle (another job on this shared machine, such
    as a test run, would take CPU from the sender or the receiver). Returns the
    busiest core's share over the last second; goes on anyway after ``limit_s``."""
    t_end = time.monotonic() + limit_s
    said = False
    while True:
        c0 = cpustat()
        time.sleep(1.0)
        shares = cpu_shares(c0, cpustat(), 1.0)
        busiest = max(shares[f"cpu{c}"]["busy"] for c in (SND_CPU, RCV_CPU))
        if busiest <= threshold:
            return busiest
        if time.monotonic() > t_end:
            log(f"machine still busy ({busiest:.0%} of a core): measuring anyway")
            return busiest
        if not said:
            log(f"waiting for the machine to go quiet (a core is {busiest:.0%} busy)")
            said = True


def cpu_shares(c0: dict[str, list[int]], c1: dict[str, list[int]], dt: float) -> dict[str, Any]:
    out = {}
    for cpu in sorted(c1):
        d = [b - a for a, b in zip(c0[cpu], c1[cpu], strict=True)]

        def share(ticks: int) -> float:
            return round(ticks / TCK / dt, 3)

        out[cpu] = {
            "busy": share(sum(d) - d[3] - d[4]),
            "user": share(d[0] + d[1]),
            "system": share(d[2]),
            "softirq": share(d[5] + d[6]),
            "steal": share(d[7]),
        }
    return out


def delta(s0: dict[str, Any], s1: dict[str, Any], ns: str, dev: str) -> dict[str, int]:
    a, b = s0["dev"][ns][dev], s1["dev"][ns][dev]
    return {k: b[k] - a[k] for k in a}


# ---------------------------------------------------------------- topology


def make_namespace(ns: str) -> None:
    run(["ip", "netns", "add", ns])
    ipn(ns, "link", "set", "lo", "up")
    # no IPv6 anywhere here: no router solicitations or MLD on the veth or the TAP
    run(nsx(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"))
    run(nsx(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"))
    HOLD[ns] = start(nsx(ns, "sleep", "infinity")).pid


def build_topology() -> None:
    for ns in NAMESPACES:
        make_namespace(ns)
    veth = ["ip", "link", "add", SND_DEV, "netns", NS_SND, "address", SND_MAC, "type", "veth"]
    run([*veth, "peer", "name", HOST_DEV, "netns", NS_HOST, "address", HOST_MAC])
    ipn(NS_SND, "addr", "add", f"{SND_PA}/{PA_PREFIX}", "dev", SND_DEV)
    ipn(NS_HOST, "addr", "add", f"{HOST_PA}/{PA_PREFIX}", "dev", HOST_DEV)
    ipn(NS_SND, "link", "set", SND_DEV, "up")
    ipn(NS_HOST, "link", "set", HOST_DEV, "up")


def cleanup() -> None:
    for proc in list(STARTED):
        try:
            stop(proc, timeout=5)
        except Exception as error:
            log(f"cleanup: pid {proc.pid}: {error}")
    HOLD.clear()
    existing = run(["ip", "netns", "list"], check=False).split()
    for ns in NAMESPACES:
        if ns in existing:
            # processes an earlier, killed run of this script left in its own namespaces
            for pid in run(["ip", "netns", "pids", ns], check=False).split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run(["ip", "netns", "del", ns], check=False)


# ---------------------------------------------------------------- sender


def start_trafgen(cfg: Path, secs: float, count: int | None = None) -> subprocess.Popen:
    # -P 1: one worker on CPU 0. Only the long options keep trafgen 0.6.8 off the global
    # socket-memory sysctls and the IRQ affinity; SIGINT (timeout -s INT) stops it cleanly.
    cmd = ["timeout", "-s", "INT", str(int(secs)), "taskset", "-c", str(SND_CPU), "trafgen"]
    cmd += ["--dev", SND_DEV, "--conf", str(cfg), "-P", "1"]
    cmd += ["--no-sock-mem", "--notouch-irq", "--no-cpu-stats"]
    if count:
        cmd += ["-n", str(count)]
    return start(nsx(NS_SND, *cmd), "trafgen.log")


def wait_flowing(timeout: float = 8.0) -> None:
    t_end = time.monotonic() + timeout
    first = netdev(NS_SND)[SND_DEV]["tx_packets"]
    while time.monotonic() < t_end:
        time.sleep(0.1)
        if netdev(NS_SND)[SND_DEV]["tx_packets"] > first + 1000:
            return
    raise BenchError(f"no traffic from trafgen within {timeout:.0f} s (see {SCRATCH}/trafgen.log)")


def blast(
    cfg: Path, dur: float, warm: float, pid: int | None, after: Callable[[], None] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    extra = dur + 10 if after else 0
    trafgen = start_trafgen(cfg, warm + dur + 8 + extra)
    try:
        wait_flowing()
        time.sleep(warm)
        s0 = snap(pid, trafgen.pid)
        time.sleep(dur)
        s1 = snap(pid, trafgen.pid)
        if after is not None:
            after()  # under the same load, after the window: does not disturb its figures
    finally:
        stop(trafgen, signal.SIGINT)
    if trafgen.returncode not in (0, 130, -signal.SIGINT, 124):
        raise BenchError(f"trafgen exited with {trafgen.returncode} (see {SCRATCH}/trafgen.log)")
    return s0, s1


def sender_figures(s0: dict[str, Any], s1: dict[str, Any]) -> dict[str, Any]:
    dt = s1["t"] - s0["t"]
    d = delta(s0, s1, NS_SND, SND_DEV)
    host_rx = delta(s0, s1, NS_HOST, HOST_DEV)["rx_packets"]
    cpus = cpu_shares(s0["cpu"], s1["cpu"], dt)
    sender_user, sender_sys = (b - a for a, b in zip(s0["sender"], s1["sender"], strict=True))
    r = {
        "window_s": round(dt, 3),
        "offered_pps": round((d["tx_packets"] + d["tx_drop"]) / dt),
        "sender_veth_drops": d["tx_drop"],
        "host_veth_rx_pps": round(host_rx / dt),
        "raw_socket_drops": s1["raw_drops"] - s0["raw_drops"],
        "sender_cores": round((sender_user + sender_sys) / dt, 3),
        "cpus": cpus,
    }
    # CPU time on the two cores that is neither ours nor the kernel's receive work for
    # our frames (softirq on the sender's core): another job on a shared machine. On the
    # sender's core, softirq ticks that land in trafgen's context count twice (as softirq
    # and as trafgen's system time), so the first estimate is low; the second, user time
    # that is not trafgen's, catches the usual other job (a test run, Python, tshark).
    snd, rcv = cpus[f"cpu{SND_CPU}"], cpus[f"cpu{RCV_CPU}"]
    other_snd = max(
        snd["busy"] - snd["softirq"] - r["sender_cores"], snd["user"] - sender_user / dt, 0.0
    )
    r["other_load"] = {
        f"cpu{SND_CPU}": round(other_snd, 3),
        f"cpu{RCV_CPU}": rcv["busy"],  # the receiver's own share is taken off by the caller
    }
    return r


def bottleneck(r: dict[str, Any]) -> str:
    """Who limited the run. The receiver: frames reached the host namespace but not the
    TAP (its raw socket's buffer or its receive ring was full: it could not keep up), or
    the sender waited on it (its core not busy). Else the sender veth (drops) or the
    sender itself: then the delivered rate is a lower bound of the receiver's."""
    if r["host_ns_lost_pps"] > 0.02 * r["host_veth_rx_pps"]:
        return "receiver"
    if r["cpus"][f"cpu{SND_CPU}"]["busy"] < 0.9:
        return "receiver (sender back-pressured)"
    if r["offered_pps"] > 1.02 * r["host_veth_rx_pps"]:
        return "sender veth (dropped before the host namespace)"
    return "sender"


def measure_sender_alone(cfg: Path, dur: float, warm: float) -> dict[str, Any]:
    """trafgen's own ceiling on this veth: the host veth takes another MAC, so its
    kernel drops every frame on arrival (a raw socket without a listener would be
    slower, not faster: the kernel answers with ICMP protocol-unreachable)."""
    ipn(NS_HOST, "link", "set", HOST_DEV, "address", OTHER_MAC)
    try:
        s0, s1 = blast(cfg, dur, warm, None)
    finally:
        ipn(NS_HOST, "link", "set", HOST_DEV, "address", HOST_MAC)
    r = sender_figures(s0, s1)
    r["delivered_pps"] = r["host_veth_rx_pps"]
    r["delivered_counter"] = "host veth rx_packets (dropped on arrival)"
    return r


# ---------------------------------------------------------------- receivers


class Receiver:
    """One receiver process in the host namespace, pinned to the receiver core."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
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
        pin = ["taskset", "-c", str(RCV_CPU)]
        if self.kind == "bare":
            cmd = [sys.executable, str(HERE / "bare_decap.py"), HOST_PA, PORT, str(VSID)]
            self.proc = start(nsx(NS_HOST, *pin, *cmd), stdout=subprocess.PIPE)
            line = _read_line(self.proc, self.proc.stdout.fileno(), "bare loop", 10)
            if not line.startswith("ready"):
                raise BenchError(f"bare loop: {line!r}")
            self.pid = self.proc.pid
            self.rcvbuf = int(line.split()[1])
            ipn(NS_HOST, "link", "set", PORT, "address", LOCAL_VM[1], "mtu", str(TAP_MTU), "up")
        else:
            ready_r, ready_w = os.pipe()
            cmd = [sys.executable, "-m", "gateway", "run", "--config", str(SCRATCH / "bench.yaml")]
            cmd += ["--node", "bench", "--backend", self.kind, "--metrics", "127.0.0.1:0"]
            cmd += ["--ready-fd", str(ready_w), "--log-level", "info", *DAEMON_EXTRA]
            try:
                self.proc = start(
                    nsx(NS_HOST, *pin, *cmd),
                    f"nvgw-{self.kind}.log",
                    pass_fds=(ready_w,),
                    cwd=DAEMON_SRC[0],
                )
                os.close(ready_w)
                ready = json.loads(_read_line(self.proc, ready_r, f"nvgw {self.kind}", 30))
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


def _read_line(proc: subprocess.Popen, fd: int, what: str, timeout: float) -> str:
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
    kind: str, size: int, cfg: Path, dur: float, warm: float, profile: Path | None
) -> dict[str, Any]:
    code = gateway_hash()
    with Receiver(kind) as rx:
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
            after = lambda: py_spy(rx.pid, profile / f"nvgw-{kind}-{size}.txt", dur)  # noqa: E731
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
    r.update(sender_figures(s0, s1))
    dt = s1["t"] - s0["t"]
    tap = delta(s0, s1, NS_HOST, PORT)
    user, system = (b - a for a, b in zip(s0["proc"], s1["proc"], strict=True))
    cpu = user + system
    r.update(
        delivered_pps=round(tap["rx_packets"] / dt),
        delivered_counter="TAP rx_packets",
        delivered_bytes_per_frame=round(tap["rx_bytes"] / tap["rx_packets"], 1)
        if tap["rx_packets"]
        else None,
        recv_cpu_s=round(cpu, 2),
        recv_user_s=round(user, 2),
        recv_sys_s=round(system, 2),
        recv_cores=round(cpu / dt, 3),
        cpu_s_per_mpkt=round(cpu / tap["rx_packets"] * 1e6, 3) if tap["rx_packets"] else None,
    )
    # reached the host namespace but not the TAP: its raw socket or its ring was full
    r["host_ns_lost_pps"] = r["host_veth_rx_pps"] - r["delivered_pps"]
    r["pps_per_recv_core"] = round(r["delivered_pps"] / r["recv_cores"]) if cpu else None
    load = r["other_load"]
    load[f"cpu{RCV_CPU}"] = round(max(0.0, load[f"cpu{RCV_CPU}"] - r["recv_cores"]), 3)
    r["bottleneck"] = bottleneck(r)
    if r["delivered_pps"] < max(1000, 0.01 * r["offered_pps"]):
        raise CheckFailed(
            f"{kind} {size} B delivered next to nothing: {r['delivered_pps']} pps of "
            f"{r['offered_pps']} offered; the daemon's view: {r.get('daemon_since_check')}"
        )
    return r


def measure_latency(size: int) -> dict[str, Any]:
    """One frame at a time at a low rate (latency_probe.py): veth in to TAP out."""
    frame = nvgre_frames(size)[0]
    probe = [sys.executable, str(HERE / "latency_probe.py"), NS_HOST, PORT, SND_DEV]
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


# ---------------------------------------------------------------- report


def gateway_hash() -> str:
    """A digest of the daemon's code as it is now: the work tree may change under a
    long run (it is measured as found), and a run that saw two versions is flagged."""
    tree = hashlib.sha256()
    src = DAEMON_SRC[0]
    for path in sorted((src / "gateway").rglob("*.py")):
        tree.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    return tree.hexdigest()[:16]


def export_rev(rev: str) -> None:
    """Run the daemon from ``rev``'s gateway/ (git archive into the scratch directory)
    instead of the work tree, so that the figures belong to one commit whatever is
    being edited meanwhile; checks that ``python -m gateway`` there imports that copy."""
    commit = run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"]).strip()
    src = SCRATCH / f"src-{commit[:12]}"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "gateway"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
    where = run([sys.executable, "-c", "import gateway; print(gateway.__file__)"], cwd=src)
    if not Path(where.strip()).is_relative_to(src):
        raise BenchError(f"python -m gateway in {src} imports {where.strip()}, not the copy")
    DAEMON_SRC[0] = src
    MEASURED_REV.append(commit)


MEASURED_REV: list[str] = []


def versions() -> dict[str, Any]:
    def first(cmd: list[str]) -> str | None:
        try:
            return (run(cmd, check=False).strip().splitlines() or [None])[0]
        except (OSError, subprocess.SubprocessError):
            return None

    with open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    dirty = run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "gateway"], check=False)
    return {
        "cpu_model": model,
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "git_commit": first(["git", "-C", str(ROOT), "rev-parse", "HEAD"]),
        # the daemon runs from the work tree: changes not yet committed are part of it
        # what the daemon ran: a commit's gateway/ (--rev), or the work tree as found,
        # with the files that differed from git_commit
        "daemon_source": MEASURED_REV[0] if MEASURED_REV else "work tree",
        "gateway_uncommitted": [] if MEASURED_REV else dirty.splitlines(),
        "gateway_py_sha256": gateway_hash(),  # every gateway/*.py at the start
        "trafgen": first(["trafgen", "-v"]),
    }


def summarize(runs: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """nvgw / bare delivered pps within each repetition, then median (min..max)."""
    out = {}
    for kind in RECEIVERS[1:]:
        for size in SIZES:
            nv, bare = results.get(f"{kind}_{size}"), results.get(f"bare_{size}")
            if not nv or not bare:
                continue
            base = {r["rep"]: r["delivered_pps"] for r in bare["runs"]}
            per_rep = [
                round(r["delivered_pps"] / base[r["rep"]], 3)
                for r in nv["runs"]
                if base.get(r["rep"])
            ]
            if per_rep:
                out[f"{kind}_{size}"] = {
                    "per_rep": per_rep,
                    "median": round(statistics.median(per_rep), 3),
                    "min": min(per_rep),
                    "max": max(per_rep),
                }
    return out


def _k(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1000:.0f}k" if x >= 10000 else f"{x:.0f}"


def print_table(results: dict[str, Any], rat: dict[str, Any]) -> None:
    head = (
        "id",
        "delivered pps",
        "offered pps",
        "x bare",
        "recv cores",
        "CPU s/Mpkt",
        "RSS start>end MiB",
        "recv-bound",
    )
    rows = []
    for key, e in results.items():
        s = e["summary"]
        main = s.get("delivered_pps")
        if main is None:
            rows.append((key, "FAILED: " + (e.get("error") or "no runs")[:70], *[""] * 6))
            continue
        rng = f"{_k(main['median'])} ({_k(main['min'])}..{_k(main['max'])})"
        ratio = rat.get(key)
        rtxt = f"{ratio['median']:.2f} ({ratio['min']:.2f}..{ratio['max']:.2f})" if ratio else "-"
        if key.startswith("bare"):
            rtxt = "1.00"
        cores = s.get("recv_cores")
        per_m = s.get("cpu_s_per_mpkt")
        rss = ""
        if s.get("rss_start_kib"):
            a, b = s["rss_start_kib"]["median"], s["rss_end_kib"]["median"]
            rss = f"{a / 1024:.1f} > {b / 1024:.1f}"
        bound = e.get("receiver_bound")
        if any(r.get("disturbed") for r in e["runs"]):
            rng += " *"
        rows.append(
            (
                key,
                rng,
                _k(s["offered_pps"]["median"]),
                rtxt if not key.startswith("sender") else "",
                f"{cores['median']:.2f}" if cores else "",
                f"{per_m['median']:.2f}" if per_m else "",
                rss,
                "" if bound is None else ("yes" if bound else "NO"),
            )
        )
    width = [max(len(str(r[i])) for r in [*rows, head]) for i in range(len(head))]
    line = "  ".join(f"{head[i]:<{width[i]}}" for i in range(len(head)))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(f"{r[i]!s:<{width[i]}}" for i in range(len(head))))


def print_latency(results: dict[str, Any]) -> None:
    """One-way latency at 500 frames/s: median and p99 (median over repetitions),
    and the median next to the bare loop's, taken within each repetition."""
    print(f"latency, {LATENCY_FRAMES} frames at {1 / LATENCY_INTERVAL_S:.0f}/s (us)")
    for key, e in results.items():
        s = e.get("summary", {})
        median, p99 = s.get("latency_us_median"), s.get("latency_us_p99")
        if not median or not p99:
            continue
        base = {
            r["rep"]: r.get("latency_us_median")
            for r in results.get("bare_" + key.split("_")[1], {}).get("runs", [])
        }
        per_rep = [r["latency_us_median"] / base[r["rep"]] for r in e["runs"] if base.get(r["rep"])]
        versus = f"  x bare {statistics.median(per_rep):.2f}" if per_rep else ""
        print(f"  {key:<12} median {median['median']:7.1f}  p99 {p99['median']:7.1f}{versus}")


# ---------------------------------------------------------------- main


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions (interleaved)")
    ap.add_argument("--dur", type=float, default=5.0, help="measured window, seconds")
    ap.add_argument("--warmup", type=float, default=1.5, help="seconds of traffic before it")
    ap.add_argument("--quick", action="store_true", help="1 repetition of 2 s windows")
    ap.add_argument("--only", default=",".join(RECEIVERS), help="receivers: bare,asyncio,trio")
    ap.add_argument("--profile", type=Path, help="py-spy the daemon after each window into DIR")
    ap.add_argument(
        "--daemon-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more argument for nvgw run (repeat), e.g. --daemon-arg=--provider-rx=socket",
    )
    ap.add_argument("--rev", help="run the daemon from this commit's gateway/ (git archive)")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    ap.add_argument("--cleanup", action="store_true", help="remove a killed run's leftovers")
    a = ap.parse_args()
    if a.quick:
        a.reps, a.dur = 1, 2.0
    kinds = [k for k in RECEIVERS if k in a.only.split(",")]
    DAEMON_EXTRA[:] = a.daemon_arg
    if os.geteuid() != 0:
        sys.exit("host_forwarding: run as root (namespaces, veth, TAP)")
    if (os.cpu_count() or 1) < 2:
        sys.exit("host_forwarding: needs 2 CPUs or more (sender core + receiver core)")
    signal.signal(signal.SIGTERM, _on_term)
    # also when started in the background by a shell, which leaves SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ensure_packages()
    SCRATCH.mkdir(exist_ok=True)
    cleanup()
    if a.cleanup:
        return 0
    for old in SCRATCH.glob("*.log"):
        old.unlink()
    if a.profile:
        a.profile.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    problems: list[str] = []
    t_start = time.time()
    if a.rev:
        try:
            export_rev(a.rev)
        except (BenchError, subprocess.CalledProcessError) as error:
            sys.exit(f"host_forwarding: --rev {a.rev}: {error}")
        log(f"daemon from {a.rev} = {MEASURED_REV[0][:12]} ({DAEMON_SRC[0]})")
    machine = versions()

    def entry(key: str, what: str) -> dict[str, Any]:
        return results.setdefault(key, {"what": what, "runs": []})

    labels = {
        "sender": "trafgen alone (host veth drops every frame on arrival)",
        "bare": "bare Python loop: blocking recv_into + os.write to the TAP",
        "asyncio": "nvgw host daemon, --backend asyncio",
        "trio": "nvgw host daemon, --backend trio",
    }
    total = a.reps * len(SIZES) * (1 + len(kinds))
    done = 0
    try:
        cfg_file = nvgw_config()
        cfgs = {size: trafgen_config(size) for size in SIZES}
        log(f"config {cfg_file} valid; building namespaces {', '.join(NAMESPACES)}")
        build_topology()
        for rep in range(1, a.reps + 1):
            for size in SIZES:
                for kind in ("sender", *kinds):
                    key = f"{kind}_{size}"
                    e = entry(key, f"{labels[kind]}, {size} B inner")
                    done += 1
                    tag = f"[{done}/{total}] rep {rep} {key}"
                    for attempt in range(1, ATTEMPTS + 1):
                        wait_quiet()
                        try:
                            if kind == "sender":
                                r = measure_sender_alone(cfgs[size], a.dur, a.warmup)
                            else:
                                r = measure_receiver(
                                    kind, size, cfgs[size], a.dur, a.warmup, a.profile
                                )
                        except CheckFailed as error:
                            e["error"] = str(error)
                            raise
                        except BenchError as error:
                            e["error"] = str(error)
                            log(f"{tag}: FAILED: {error}")
                            break
                        r["rep"], r["attempt"] = rep, attempt
                        other = max(r["other_load"].values())
                        r["disturbed"] = other > OTHER_LOAD_MAX
                        extra = ""
                        if kind != "sender":
                            extra = (
                                f", recv {r['recv_cores']:.2f} cores,"
                                f" {r['cpu_s_per_mpkt']} CPU s/Mpkt, {r['bottleneck']}-bound"
                            )
                        log(
                            f"{tag}: delivered {r['delivered_pps']} pps,"
                            f" offered {r['offered_pps']}{extra}, other load {other:.0%}"
                        )
                        if other > OTHER_LOAD_MAX and attempt < ATTEMPTS:
                            e.setdefault("disturbed_runs", []).append(r)
                            log(f"{tag}: another job took {other:.0%} of a core: again")
                            continue
                        e["runs"].append(r)
                        break
    except (KeyboardInterrupt, Stop):
        problems.append("interrupted")
        log("interrupted: cleaning up")
    except BenchError as error:
        problems.append(str(error))
        log(f"FAILED: {error}")
    finally:
        with signals_ignored():
            cleanup()

    for key, e in results.items():
        numeric = {k for r in e["runs"] for k, v in r.items() if isinstance(v, int | float)}
        e["summary"] = {k: summarize(e["runs"], k) for k in sorted(numeric) if k != "rep"}
        if e["runs"] and all("bottleneck" in r for r in e["runs"]):
            e["receiver_bound"] = all(r["bottleneck"].startswith("receiver") for r in e["runs"])
        if e.get("error") or not e["runs"]:
            problems.append(f"{key}: {e.get('error') or 'no runs'}")
    seen = {r["gateway_py_sha256"] for e in results.values() for r in e["runs"] if "check" in r}
    if len(seen) > 1:
        problems.append(f"gateway/ changed during the run: {len(seen)} versions measured")
    for key, e in results.items():
        for r in e["runs"]:
            if "check" in r:
                checks.setdefault(key, []).append(r["check"]["ok"])
    rat = ratios(results)
    out = {
        "benchmark": "host_forwarding",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": round(time.time() - t_start),
        "machine": machine,
        "params": {
            "reps": a.reps,
            "window_s": a.dur,
            "warmup_s": a.warmup,
            "sizes_inner_bytes": list(SIZES),
            "receivers": kinds,
            "daemon_command": "python -m gateway run --config FILE --node bench --backend"
            " asyncio|trio --metrics 127.0.0.1:0 --ready-fd N --log-level info"
            + "".join(f" {arg}" for arg in DAEMON_EXTRA),
            "sender_cpu": SND_CPU,
            "receiver_cpu": RCV_CPU,
            "vsid": VSID,
            "flows": FLOWS,
            "check_frames": CHECK_FRAMES,
            "tap_mtu": TAP_MTU,
        },
        "ratio_nvgw_over_bare": rat,
        "delivery_checks_ok": checks,
        "problems": problems,
        "results": results,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=a.out.parent, delete=False, suffix=".tmp") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    os.chmod(f.name, 0o644)
    os.replace(f.name, a.out)
    print()
    print_table(results, rat)
    if any(r.get("disturbed") for e in results.values() for r in e["runs"]):
        print(f"* another job took more than {OTHER_LOAD_MAX:.0%} of a core in a kept run")
    print()
    print_latency(results)
    print(f"\nresults: {a.out}")
    if problems:
        print("PROBLEMS:\n  " + "\n  ".join(problems))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
