"""One frame never stops a node: a running daemon whose data plane raises on some
frames drops those, counts and logs them, and forwards the others, on both backends
(asyncio on uvloop's loop and on the standard library's), each named in its ready
line.

The daemon is host1 of the two-hosts config in a namespace of the test's own, run by
``_faulty_daemon.py`` (the real ``nvgw run`` with a data plane that raises on frames
ending in 0xEE). Frames go in both ways a daemon reads: written into blue1's TAP (ARP
requests, answered), and sent over the provider veth into the receive ring (NVGRE
for blue1, delivered). Everything is read back from /metrics and the log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scapy.layers.inet import GRE, ICMP, IP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.lab import netns
from gateway.lab.probe import scrape
from tests.conftest import require_root

from ._host import host_namespace, stop_process

pytestmark = pytest.mark.netns
HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parents[1] / "configs"
INJECT = HERE.parent / "lab" / "_inject.py"
BLUE1, BLUE2 = "00:00:00:00:00:11", "00:00:00:00:00:12"
SECRET = b"payload-never-logged"
MARK = b"\xee"
WAIT_S = 20.0  # only ever reached when the test fails


class Running:
    def __init__(self, namespace: str, process: subprocess.Popen[str], log: Path) -> None:
        self.namespace, self.process, self.log = namespace, process, log
        self.ready = json.loads(process.stdout.readline() or "{}")  # type: ignore[union-attr]
        assert self.ready, f"the daemon did not get ready: {log.read_text()[-3000:]}"

    def metric(self, name: str, **labels: str) -> float:
        samples = scrape(self.namespace, self.ready["metrics"])
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def inject(self, interface: str, frames: list[bytes]) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.namespace, sys.executable, str(INJECT), interface],
            input="\n".join(frame.hex() for frame in frames).encode(),
            check=True,
            timeout=20,
        )

    def wait_for(self, expected: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict:
        deadline = time.monotonic() + WAIT_S
        while True:
            samples = scrape(self.namespace, self.ready["metrics"])
            seen = {key: samples.get(key, 0.0) for key in expected}
            if seen == expected or time.monotonic() > deadline:
                return seen


# The event loops a daemon runs on: ``nvgw run``'s arguments for each, and the name
# its ready line gives (asyncio runs on uvloop unless told otherwise).
LOOPS = {
    "uvloop": (["--backend", "asyncio"], "uvloop"),
    "asyncio": (["--backend", "asyncio", "--no-uvloop"], "asyncio"),
    "trio": (["--backend", "trio"], "trio"),
}


@pytest.fixture(scope="module", params=list(LOOPS))
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    require_root()
    namespace = f"nvt-bar{os.getpid() % 10000}{request.param[0]}"
    directory = tmp_path_factory.mktemp(f"barrier-{request.param}")
    log = directory / "daemon.log"
    process = None
    try:
        host_namespace(namespace)
        command = [
            "ip", "netns", "exec", namespace, sys.executable, str(HERE / "_faulty_daemon.py"),
            "run", "-c", str(CONFIGS / "two-hosts.yaml"), "--node", "host1",
            *LOOPS[request.param][0], "--metrics", "127.0.0.1:0", "--ready-fd", "1",
        ]  # fmt: skip
        with open(log, "wb") as stderr:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        running = Running(namespace, process, log)
        assert running.ready["event_loop"] == LOOPS[request.param][1]
        subprocess.run(["ip", "-n", namespace, "link", "set", "blue1", "up"], check=True)
        yield running
    finally:
        try:
            stop_process(process)
        finally:
            netns.remove(namespace)


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


INTERNAL = key("nvgw_drops_total", reason="internal_error")
REPLIES = key("nvgw_arp_replies_total")
TO_BLUE1 = key("nvgw_port_to_vm_packets_total", port="blue1", vsid="5010")


def test_frames_the_data_plane_raises_on_are_dropped_and_the_rest_flow(daemon: Running) -> None:
    before = daemon.wait_for({INTERNAL: 0.0, REPLIES: 0.0, TO_BLUE1: 0.0})
    assert before == {INTERNAL: 0.0, REPLIES: 0.0, TO_BLUE1: 0.0}
    arp = raw(
        Ether(src=BLUE1, dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc=BLUE1, psrc="10.10.10.11", pdst="10.10.10.12")
    )
    pa0 = json.loads(
        subprocess.run(
            ["ip", "-n", daemon.namespace, "-j", "link", "show", "pa0"],
            capture_output=True, text=True, check=True,
        ).stdout
    )[0]["address"]  # fmt: skip
    nvgre = raw(
        Ether(dst=pa0, src="02:00:00:00:00:02")
        / IP(src="198.18.0.2", dst="198.18.0.1")
        / GRE(key_present=1, proto=0x6558, key=5010 << 8)
        / Ether(src=BLUE2, dst=BLUE1)
        / IP(src="10.10.10.12", dst="10.10.10.11")
        / ICMP()
        / SECRET
    )
    # Faulty first, then good ones behind them in the same batch.
    daemon.inject("blue1", [arp + MARK, arp, arp + MARK, arp, arp])
    daemon.inject("pa0peer", [nvgre + MARK, nvgre, nvgre + MARK, nvgre, nvgre])
    after = daemon.wait_for({INTERNAL: 4.0, REPLIES: 3.0, TO_BLUE1: 3.0})
    assert after == {INTERNAL: 4.0, REPLIES: 3.0, TO_BLUE1: 3.0}
    assert daemon.process.poll() is None, "the daemon died"
    # And it keeps forwarding afterwards.
    daemon.inject("pa0peer", [nvgre])
    assert daemon.wait_for({TO_BLUE1: 4.0}) == {TO_BLUE1: 4.0}
    events = [json.loads(line) for line in daemon.log.read_text().splitlines() if "raised" in line]
    assert events, daemon.log.read_text()[-3000:]
    assert {e["error"] for e in events} == {"RuntimeError"}
    assert {e["reader"] for e in events} <= {"port blue1", "provider ring pa0"}
    assert len(events) <= 2, "rate-limited: one event per interval"
    assert "Traceback" in events[0]["traceback"]
    assert not any(SECRET.hex() in str(e) or str(SECRET) in str(e) for e in events)
