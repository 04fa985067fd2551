"""The lab leaves nothing behind: after a run, after a failed bring-up, after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.control import load_config
from gateway.lab.commands import CONFIGS
from gateway.lab.onprem import UAPI_DIR, uapi_socket
from gateway.lab.plan import plan_lab
from gateway.lab.state import STATE_DIR, LabState
from gateway.lab.topology import Lab, LabError
from tests.conftest import require_root

from .conftest import lab_prefix

pytestmark = pytest.mark.netns
NVGW = [sys.executable, "-m", "gateway"]


def leftovers(prefix: str) -> list[str]:
    """Anything of the lab's still on the machine: namespaces, links, processes, files."""
    found = []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [
        f"netns {line.split()[0]}"
        for line in namespaces.splitlines()
        if line.startswith(f"{prefix}-")
    ]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [
        f"root link {line.split(':')[1].strip()}"
        for line in links.splitlines()
        if prefix[:8] in line
    ]
    config = str(STATE_DIR / f"lab-{prefix}.yaml")
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            # a daemon, a corp's server, wireguard-go; Open vSwitch, by its run directory
            if config in cmdline or f" {prefix}-" in cmdline or f"/lab-{prefix}-" in cmdline:
                found.append(f"process {proc.name}: {cmdline[:80]}")
    found += [f"file {p}" for p in STATE_DIR.glob(f"lab-{prefix}*")]
    found += [f"socket {p}" for p in UAPI_DIR.glob(f"{prefix[:8]}*")]  # wireguard-go's
    return found


@pytest.mark.parametrize(
    ("scenario", "tag", "shown"),
    [
        ("single-host", "x", "who reaches whom"),
        # Its corp networks and their servers too; and the run says who reached which.
        ("gateway", "y", "who reaches which corp network"),
        # Its WAN and on-prem sites: wireguard-go, its socket, the lab's keys.
        ("hybrid", "z", "who reaches which on-prem site"),
    ],
)
def test_lab_run_leaves_nothing_behind(scenario: str, tag: str, shown: str) -> None:
    require_root()
    prefix = lab_prefix(tag)
    result = subprocess.run(
        [*NVGW, "lab", "run", "--scenario", scenario, "--prefix", prefix],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert shown in result.stdout and f"lab {scenario}: as the policy says" in result.stdout
    assert leftovers(prefix) == []


def test_a_failed_bring_up_leaves_nothing_behind() -> None:
    require_root()
    prefix = lab_prefix("f")
    lab = Lab(prefix)
    try:
        with pytest.raises(LabError, match="did not get ready"):
            lab.up(CONFIGS / "two-hosts.yaml", "two-hosts", backend="no-such-loop")
        assert leftovers(prefix) == []
    finally:
        lab.down()


@contextmanager
def crashed(scenario: str, prefix: str, when: Callable[[LabState], bool]) -> Iterator[None]:
    """``nvgw lab up`` killed (SIGKILL) mid-bring-up, once its state says ``when``;
    the body then runs ``nvgw lab down`` (``down_leaves_nothing``)."""
    process = subprocess.Popen(
        [*NVGW, "lab", "up", "--scenario", scenario, "--prefix", prefix],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = LabState.load(prefix)
            if state is not None and when(state):
                break
            time.sleep(0.01)
        else:
            pytest.fail("the lab never got that far")
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        yield
    finally:
        if process.poll() is None:
            process.kill()
        Lab(prefix).down()


def down_leaves_nothing(prefix: str) -> None:
    down = subprocess.run(
        [*NVGW, "lab", "down", "--prefix", prefix], capture_output=True, text=True, timeout=60
    )
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(prefix) == []


def test_a_wireguard_go_socket_not_ours_stops_the_bring_up_and_is_left_alone() -> None:
    """Another wireguard-go's control socket where a site's would go (they are the
    machine's, not a namespace's): the lab refuses before it builds anything, and
    leaves that socket where it was."""
    require_root()
    prefix = lab_prefix("w")
    theirs = uapi_socket(plan_lab(load_config(CONFIGS / "hybrid.yaml"), prefix).sites[0])
    UAPI_DIR.mkdir(parents=True, exist_ok=True)
    theirs.touch(exist_ok=False)
    lab = Lab(prefix)
    try:
        with pytest.raises(LabError, match="a wireguard-go not ours"):
            lab.up(CONFIGS / "hybrid.yaml", "hybrid")
        assert theirs.exists()
        assert leftovers(prefix) == [f"socket {theirs}"]
    finally:
        theirs.unlink(missing_ok=True)
        lab.down()


def test_down_after_a_crash_removes_everything() -> None:
    require_root()
    prefix = lab_prefix("c")
    with crashed("two-hosts", prefix, lambda state: any(p.metrics for p in state.processes)):
        # crashed once a daemon is up, mid-bring-up
        assert leftovers(prefix), "the crash left a half-built lab: the test needs one"
        down_leaves_nothing(prefix)


def wireguard_go_running(state: LabState) -> bool:
    sockets = [name for name in state.files if name.endswith(".sock")]
    running = any("wireguard-go" in p.what for p in state.processes)
    return running and bool(sockets) and Path(sockets[0]).exists()


def test_down_after_a_crash_removes_a_hybrid_labs_keys_and_killed_wireguard_gos_sockets() -> None:
    """The lab is killed once its first site's wireguard-go runs, and so is that
    wireguard-go (SIGKILL: it leaves its control socket behind): down removes the
    keys, the sockets, the namespaces and every process."""
    require_root()
    prefix = lab_prefix("k")
    with crashed("hybrid", prefix, wireguard_go_running):
        state = LabState.load(prefix)
        assert state is not None
        wireguard = next(p for p in state.processes if "wireguard-go" in p.what)
        os.kill(wireguard.pid, signal.SIGKILL)  # the lab's, by its recorded PID
        assert any(name.endswith(".key") for name in state.files)
        left = leftovers(prefix)
        assert any(item.startswith("socket ") for item in left), left
        assert any(item.endswith("-keys") for item in left), left
        down_leaves_nothing(prefix)
