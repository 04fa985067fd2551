"""Names, sizes and CPUs of the benchmark's topology, its errors, and the processes it
starts (all recorded, so that an interrupted run still stops every one of them)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]  # bench/: bare_decap.py, latency_probe.py
ROOT = BENCH.parent

NS_SND, NS_HOST = "nvb-snd", "nvb-host"
NAMESPACES = (NS_SND, NS_HOST)
NS_CORP = "nvb-corp"  # the gateway part's corp network, behind the gateway's TAP
NS_INET = "nvb-inet"  # the NAT part's internet, behind the external TAP (or the kernel's veth)
NS_SITE = "nvb-site"  # the tunnel part's on-premises site, running wireguard-go
OWNED_NAMESPACES = (*NAMESPACES, NS_CORP, NS_INET, NS_SITE)  # what a run may leave behind
# wireguard-go's interfaces (the tunnel part's site, and its anchor beside the gateway):
# their control sockets are in /var/run/wireguard for the whole machine
WG_SITE, WG_GW = "nvbwgsite", "nvbwggw"
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
DAEMONS = RECEIVERS[1:]
SCRATCH = Path("/tmp/nvb-bench")
# A measurement during which another job (on this shared machine: a test run, say) took
# more than this share of the sender's or the receiver's core is done again, up to
# ATTEMPTS times; the disturbed ones are kept in the results apart.
OTHER_LOAD_MAX = 0.10
ATTEMPTS = 3
TCK = os.sysconf("SC_CLK_TCK")
# command -> Debian package that brings it
PACKAGES = {"trafgen": "netsniff-ng", "ip": "iproute2", "taskset": "util-linux"}


class BenchError(RuntimeError):
    """A measurement could not run or a check failed."""


class CheckFailed(BenchError):
    """The receiver did not deliver what it must: the whole run is wrong, stop it."""


class Stop(BaseException):
    """SIGTERM: unwind like Ctrl-C so that the namespaces are removed."""


STARTED: list[subprocess.Popen] = []


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


def ensure_packages(packages: dict[str, str] = PACKAGES) -> None:
    missing = sorted({pkg for cmd, pkg in packages.items() if shutil.which(cmd) is None})
    if not missing:
        return
    if os.environ.get("CI"):
        sys.exit(f"{Path(sys.argv[0]).stem}: missing {' '.join(missing)} (not installed under CI)")
    log(f"installing {' '.join(missing)} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=env
    )
