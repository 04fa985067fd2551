"""Labs for end-to-end tests: real namespaces, real daemons, always torn down.

Each scenario is brought up once per backend (module scope) and many things are
asserted per bring-up, to keep the suite's time down. The lab's own state file
makes teardown complete even when a test fails halfway (decisions.md, Cleanup).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.lab.commands import CONFIGS
from gateway.lab.topology import Lab
from tests.conftest import require_root, require_tool

INJECT = Path(__file__).with_name("_inject.py")


def lab_prefix(tag: str) -> str:
    """Unique per test run and scenario, never the person's own lab ("nvgw")."""
    return f"nvt{os.getpid() % 10000}{tag}"


def running_lab(scenario: str, backend: str, tag: str) -> Iterator[Lab]:
    require_root()
    for tool in ("ip", "ping"):
        require_tool(tool)
    lab = Lab(lab_prefix(tag))
    try:
        lab.up(CONFIGS / f"{scenario}.yaml", scenario, backend)
        yield lab
    finally:
        lab.down()


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def drops_rose(lab: Lab, node: str, before: dict, expected: dict[str, int]) -> dict[str, float]:
    """How ``node``'s drop counters rose since ``before``, by the reasons ``expected``
    names, once they rose that much (frames injected are counted when the daemon reads
    them) or after 50 scrapes."""
    for _ in range(50):
        after = lab.metrics(node)
        rose = {
            reason: value(after, "nvgw_drops_total", reason=reason)
            - value(before, "nvgw_drops_total", reason=reason)
            for reason in expected
        }
        if rose == expected:
            break
    return rose


def ping(lab: Lab, vm: str, address: str, count: int = 1) -> bool:
    namespace = f"{lab.prefix}-{vm}"
    command = [
        "ip",
        "netns",
        "exec",
        namespace,
        "ping",
        "-n",
        "-q",
        "-c",
        str(count),
        "-i",
        "0.05",
        "-W",
        "2",
        address,
    ]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def link_mac(namespace: str, ifname: str) -> str:
    out = subprocess.run(
        ["ip", "-n", namespace, "-j", "link", "show", ifname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)[0]["address"]


def inject(lab: Lab, frames: list[bytes]) -> None:
    """Send whole Ethernet frames onto the provider bridge, as a rogue host would."""
    subprocess.run(
        ["ip", "netns", "exec", f"{lab.prefix}-pnet", sys.executable, str(INJECT), "br0"],
        input="\n".join(frame.hex() for frame in frames).encode(),
        check=True,
        timeout=20,
    )


@contextmanager
def provider_capture(lab: Lab, path: Path, capture_filter: str, count: int) -> Iterator[None]:
    """``capture`` on the provider bridge."""
    with capture(f"{lab.prefix}-pnet", "br0", path, capture_filter, count):
        yield


@contextmanager
def capture(
    namespace: str,
    interface: str,
    path: Path,
    capture_filter: str,
    count: int | None,
    duration_s: int = 20,
) -> Iterator[None]:
    """tshark on ``interface`` of ``namespace`` while the body runs; it stops by itself
    after ``count`` packets (the body must cause them), or is stopped when the body
    fails; ``count=None``: everything until the body ends (at most ``duration_s``)."""
    tshark = require_tool("tshark")
    command = ["ip", "netns", "exec", namespace, tshark, "-i", interface, "-f", capture_filter]
    command += ["-w", str(path), "-a", f"duration:{duration_s}"]
    command += [] if count is None else ["-c", str(count)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:  # type: ignore[union-attr]
            if "Capture started" in line:  # "Capturing on" is printed before it is true
                break
        yield
        if count is not None:
            process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=20)


def capture_fields(path: Path, *fields: str) -> list[list[str]]:
    """One row per packet of a capture, one string per field (tshark's -T fields)."""
    command = [require_tool("tshark"), "-r", str(path), "-T", "fields", "-E", "separator=;"]
    for field in fields:
        command += ["-e", field]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [line.split(";") for line in out.splitlines() if line]


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="package", params=["asyncio", "trio"])
def gateway_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """The gateway scenario, up once per backend for every module that uses it (pytest
    runs all of a backend's tests before it brings up the other's)."""
    yield from running_lab("gateway", request.param, f"g{request.param[0]}")


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def hybrid_lab(request: pytest.FixtureRequest) -> Iterator[tuple[Lab, str]]:
    """The hybrid scenario, up once per backend, with its backend (a test restarts
    the gateway's daemon on it)."""
    for tool in ("wireguard-go", "wg", "tshark"):
        require_tool(tool)
    for lab in running_lab("hybrid", request.param, f"h{request.param[0]}"):
        yield lab, request.param


FOLLOW_WAIT_S = 30.0  # only bounds a failure: daemons follow the lab's store in ms
EXTRA_PA = {"node": "host1", "interface": "pa0", "pa": "198.18.0.99", "prefix_length": 24}


@contextmanager
def a_change_host1_cannot_serve(lab: Lab) -> Iterator[float]:
    """Another daemon (host2's API) commits a valid policy that host1 cannot run
    while it runs (a PA more for host1): host1 follows the store, refuses it, counts
    a refused reload and keeps its policy. Yields host1's revision; afterwards the
    PA goes again and host1 runs the store's revision once more."""
    before = lab.metrics("host1")
    refused = value(before, "nvgw_policy_reloads_total", result="refused")
    revision = value(before, "nvgw_policy_revision", node="host1")
    with lab.api("host2") as api:
        api.request("POST", "/v1/provider-addresses", json=EXTRA_PA)
    try:
        waited(
            lambda: (
                value(lab.metrics("host1"), "nvgw_policy_reloads_total", result="refused") > refused
            ),
            "host1 refused the change",
        )
        yield revision
    finally:
        with lab.api("host2") as api:
            gone = api.request("DELETE", "/v1/provider-addresses", params={"pa": EXTRA_PA["pa"]})
        waited(
            lambda: (
                value(lab.metrics("host1"), "nvgw_policy_revision", node="host1")
                == gone["revision"]
            ),
            "host1 runs the store's policy again",
        )


def waited(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + FOLLOW_WAIT_S
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {FOLLOW_WAIT_S:.0f} s: {what}")
        time.sleep(0.01)
