"""TCP through the tunnel part (``bench/gateway_tunnel.py``), anchor D1's method: one
iperf3 stream (the client pinned to the sender core), the receiver's goodput in
Mbit/s over the window after a warm-up iperf3 leaves out, next to wireguard-go's in
the same repetition.

* ``asyncio``, ``trio`` (the headline's path: NVGRE in at the gateway's PA): the
  client runs in the sender namespace behind a TAP, the remote VM's NIC, whose host
  is ``bench/bare_host.py`` (this kernel has no GRE of its own): the VM's frames, from
  its record's CA 10.10.10.1 and MAC to the gateway's record, leave as NVGRE of VSID
  5010 to the gateway's PA, and NVGRE back is written into the TAP. The bare host
  shares the sender core with the client; the daemon (pinned to the receiver core)
  routes the frames into its tunnel.
* ``wggo`` (anchor D1): the client in the host namespace, through the anchor's
  wireguard-go (pinned to the receiver core).
* ``vm-asyncio``, ``vm-trio`` (the second figure: VM to site end to end): the hybrid
  lab (``nvgw lab up --scenario hybrid``, prefix ``nvbl``, from the same source as
  the daemons): the client in blue1's namespace, behind host1's daemon, through the
  gateway daemon's tunnel to the Blue site's wireguard-go. The lab pins none of its
  processes: host1's and the gateway's daemons and the site share the two cores
  with the client.

The server (``iperf3 -s``) listens on the site's 172.16.50.10, on its wireguard-go's
TUN (whose ingress drops only UDP, the rate part's sink). Before each run a ping
must come back (the WireGuard handshake made), as the rate part's check.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from .common import (
    BENCH,
    HOST_PA,
    NS_HOST,
    NS_SITE,
    NS_SND,
    REMOTE_VM,
    SCRATCH,
    SND_CPU,
    SND_PA,
    TAP_MTU,
    VSID,
    BenchError,
    ipn,
    nsx,
    run,
    start,
    stop,
)
from .counters import cpu_shares, cpustat, proc_cpu
from .gateway_setup import GW_RECORD
from .receivers import read_line
from .sources import Source, gateway_hash
from .tunnel_measure import ANCHOR, DAEMONS, HANDSHAKE_S, gateway_side
from .tunnel_setup import SERVER, SITE_NET

VM: Final = "vm-"  # the kinds measured through the hybrid lab
LAB_PREFIX: Final = "nvbl"
LAB_CLIENT, LAB_SITE = f"{LAB_PREFIX}-blue1", f"{LAB_PREFIX}-onprem-blue"
LAB_DAEMONS = {"gateway_cores": f"{LAB_PREFIX}-gw", "host_cores": f"{LAB_PREFIX}-host1"}
VM_TAP = "nvbvm1"  # the remote VM's NIC, on its host (``bare_host.py``)
LAB_TIMEOUT_S = 120.0


@contextlib.contextmanager
def remote_vm() -> Iterator[None]:
    """The remote VM's host in the sender namespace, for the block: ``bare_host.py``
    pinned to the sender core, its TAP the VM's NIC (the record's CA and MAC, the
    gateway's record its neighbour and the way to the site)."""
    cmd = [sys.executable, str(BENCH / "bare_host.py"), SND_PA, HOST_PA, VM_TAP, str(VSID)]
    pin = ["taskset", "-c", str(SND_CPU)]
    proc = start(nsx(NS_SND, *pin, *cmd), stdout=subprocess.PIPE)
    try:
        line = read_line(proc, proc.stdout.fileno(), "bare_host.py", 10)  # type: ignore[union-attr]
        if line != "ready":
            raise BenchError(f"bare_host.py: {line!r}")
        ipn(NS_SND, "link", "set", VM_TAP, "address", REMOTE_VM[1], "mtu", str(TAP_MTU), "up")
        ipn(NS_SND, "addr", "add", f"{REMOTE_VM[0]}/24", "dev", VM_TAP)
        ipn(NS_SND, "neigh", "replace", GW_RECORD[0], "lladdr", GW_RECORD[1], "dev", VM_TAP)
        ipn(NS_SND, "route", "add", SITE_NET, "via", GW_RECORD[0], "dev", VM_TAP)
        yield
    finally:
        stop(proc)


@contextlib.contextmanager
def iperf3_server(ns: str) -> Iterator[None]:
    """``iperf3 -s`` on the site's server address in ``ns``, for the block."""
    proc = start(nsx(ns, "iperf3", "-s", "-B", SERVER), f"iperf3-server-{ns}.log")
    try:
        yield
    finally:
        stop(proc)


def reach(ns: str) -> float:
    """Pings from ``ns`` until the site's server answers one (the handshake made);
    the seconds it took."""
    t0 = time.monotonic()
    ping = nsx(ns, "ping", "-q", "-c", "1", "-W", "1", SERVER)
    while subprocess.run(ping, capture_output=True, check=False).returncode:
        if time.monotonic() - t0 > HANDSHAKE_S:
            raise BenchError(f"no answer from {SERVER} through the tunnel in {HANDSHAKE_S:.0f} s")
    return round(time.monotonic() - t0, 2)


def pids_in(namespaces: list[str]) -> list[int]:
    """The processes in ``namespaces`` (daemons, wireguard-go, iperf3 included)."""
    return [int(p) for ns in namespaces for p in run(["ip", "netns", "pids", ns]).split()]


def cores_of(pids: list[int], before: dict[int, float], dt: float) -> float:
    """The cores ``pids`` took since ``before`` (those alive at both readings)."""
    now = cpu_seconds(pids)
    return sum(now[p] - before[p] for p in now.keys() & before.keys()) / dt


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """Each live process's CPU seconds, its own alone: a namespace lists every one."""
    seconds = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            seconds[pid] = sum(proc_cpu(pid))
    return seconds


def iperf3_client(
    ns: str, watched: dict[str, list[int]], ours: list[str], dur: float, warm: float
) -> dict[str, Any]:
    """One stream from ``ns`` to the server for ``warm`` + ``dur`` seconds (whole
    seconds: iperf3's), its figures over the last ``dur``: goodput, retransmits, the
    cores of each group of ``watched`` processes, and the cores neither ours (every
    process in the namespaces ``ours``) nor softirq took (another job)."""
    seconds, omit = max(1, round(dur)), max(1, round(warm))
    out = SCRATCH / "iperf3-client.json"
    cmd = ["taskset", "-c", str(SND_CPU), "iperf3", "-c", SERVER, "-t", str(seconds)]
    with open(out, "wb") as f:
        proc = subprocess.Popen([*nsx(ns, *cmd), "-O", str(omit), "-J"], stdout=f)
    try:
        everyone = pids_in(ours)
        time.sleep(omit + 0.3)  # connected, and past the part left out
        t0, cpu0 = time.monotonic(), cpustat()
        before = {name: cpu_seconds(pids) for name, pids in watched.items()}
        all_before = cpu_seconds(everyone)
        time.sleep(max(0.5, seconds - 0.6))
        dt = time.monotonic() - t0
        cpus = cpu_shares(cpu0, cpustat(), dt)
        cores = {name: cores_of(pids, before[name], dt) for name, pids in watched.items()}
        busy = sum(c["busy"] - c["softirq"] for c in cpus.values())
        other = max(0.0, busy - cores_of(everyone, all_before, dt))
        proc.wait(timeout=seconds + omit + 30)
    finally:
        stop(proc)
    report = json.loads(out.read_text() or "{}")
    if "end" not in report or "error" in report:
        raise BenchError(f"iperf3 from {ns}: {report.get('error', 'no report')}")
    end = report["end"]
    return {
        "mbit_s": round(end["sum_received"]["bits_per_second"] / 1e6, 1),
        "retransmits": end["sum_sent"].get("retransmits", 0),
        **{name: round(value, 3) for name, value in cores.items()},
        "other_load": {"cores": round(other, 3)},
        "cpus": cpus,
    }


def measure_tcp(
    kind: str,
    config: Path,
    source: Source,
    daemon_args: list[str],
    keys: dict[str, Any],
    ours: list[str],
    dur: float,
    warm: float,
) -> dict[str, Any]:
    """One TCP run of ``kind`` (``ours``: the benchmark's namespaces)."""
    if kind.startswith(VM):
        return through_lab(kind.removeprefix(VM), source, ours, dur, warm)
    client = NS_HOST if kind == ANCHOR else NS_SND
    vm = contextlib.nullcontext() if kind == ANCHOR else remote_vm()
    with gateway_side(kind, config, source, daemon_args, keys) as side, vm, iperf3_server(NS_SITE):
        r: dict[str, Any] = {"handshake_s": reach(client)}
        watched = {"gateway_cores": [side.pid], "site_cores": pids_in([NS_SITE])}
        r.update(iperf3_client(client, watched, ours, dur, warm))
    if kind in DAEMONS:
        r["gateway_py_sha256"] = gateway_hash(source.path)
    return r


def through_lab(
    backend: str, source: Source, ours: list[str], dur: float, warm: float
) -> dict[str, Any]:
    """The VM-to-site run: the hybrid lab up with ``backend``, one stream from blue1 to
    the Blue site's server, the lab down."""
    lab = [sys.executable, "-m", "gateway", "lab"]
    with open(SCRATCH / "lab.log", "ab") as log_file:
        up = [*lab, "up", "--scenario", "hybrid", "--prefix", LAB_PREFIX, "--backend", backend]
        done = subprocess.run(
            up, cwd=source.path, stdout=log_file, stderr=subprocess.STDOUT, timeout=LAB_TIMEOUT_S
        )
    try:
        if done.returncode:
            raise BenchError(f"nvgw lab up --scenario hybrid failed (see {SCRATCH}/lab.log)")
        namespaces = lab_namespaces()
        with iperf3_server(LAB_SITE):
            r: dict[str, Any] = {"handshake_s": reach(LAB_CLIENT)}
            watched = {name: pids_in([ns]) for name, ns in LAB_DAEMONS.items()}
            watched["site_cores"] = pids_in([LAB_SITE])
            r.update(iperf3_client(LAB_CLIENT, watched, [*ours, *namespaces], dur, warm))
        r["gateway_py_sha256"] = gateway_hash(source.path)
    finally:
        lab_down(source.path)
    return r


def lab_namespaces() -> list[str]:
    return [ns for ns in run(["ip", "netns", "list"]).split() if ns.startswith(f"{LAB_PREFIX}-")]


def lab_down(cwd: Path) -> None:
    """``nvgw lab down`` for the benchmark's lab (also a killed run's: its state file
    says what it made)."""
    down = [sys.executable, "-m", "gateway", "lab", "down", "--prefix", LAB_PREFIX]
    run(down, check=False, timeout=LAB_TIMEOUT_S, cwd=cwd)
