"""The event loop serves packets, not control work: while the API traces a packet
through a large policy, a VM's frames keep being answered. A real daemon in a
namespace of its own, once per backend.

The daemon runs host1 of the two-hosts deployment grown to ``BULK_RECORDS`` lookup
records on ``BULK_NODES`` more nodes. blue1 asks for blue2's MAC over and over
(``_arp_pinger.py``: one ARP request at a time, the next once the daemon answered),
and the test counts the answers that come back between the moment the trace's
request is complete and the moment its answer starts. When the trace ran on the
event loop (building a data plane for every node), none came back in that window
but the odd one at its edges; now it runs in a worker thread and the answers keep
coming.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_root

from .test_api_daemon import CONFIGS, Daemon, daemon_in_namespace

pytestmark = pytest.mark.netns
PINGER = Path(__file__).with_name("_arp_pinger.py")
BULK_RECORDS = 10_000  # the daemon reads them at start-up (ruamel: about 1 ms each)
BULK_NODES = 200  # a trace used to build every node's data plane over every record
RECORDS_PER_VSID = 250
# Answers needed within the trace's window. When the trace held the loop (1 s), 2 to 4
# came back, at the window's edges; now it takes ~0.15 s in a worker thread, and the
# loop, which gets the GIL back within 0.5 ms (the CLI's GIL_SWITCH_INTERVAL_S), answers
# 40 to 70 meanwhile (8 runs each).
ANSWERED_DURING_TRACE = 20


def bulk_config(path: Path) -> Path:
    """two-hosts.yaml plus a tenant of BULK_RECORDS VMs spread over BULK_NODES hosts
    (PAs in 198.19.0.0/16), one flow mapping per line as the shipped files have them."""
    rdid = "{11111111-2222-3333-4444-00000000b01c}"
    vsids = range(6000, 6000 + BULK_RECORDS // RECORDS_PER_VSID)
    domain = {"rdid": rdid, "name": "bulk", "virtual_subnets": [
        {"vsid": vsid, "prefixes": [f"10.{vsid - 5900}.0.0/16"]} for vsid in vsids
    ]}  # fmt: skip
    records, nodes = [], {}
    for n in range(BULK_RECORDS):
        vsid, host = vsids[n // RECORDS_PER_VSID], n % BULK_NODES
        pa = f"198.19.{host >> 8}.{host & 255}"
        mac = f"02-b0-00-00-{n >> 8:02x}-{n & 255:02x}"
        ca = f"10.{vsid - 5900}.0.{n % RECORDS_PER_VSID + 2}"  # .2 to .251 of its /16
        records.append({"vsid": vsid, "ca": ca, "mac": mac, "pa": pa, "rule": "encap"})
        node = nodes.setdefault(f"bulk{host}", {"role": "host", "provider_addresses": [
            {"interface": "pa0", "pa": pa, "prefix_length": 16}], "ports": []})  # fmt: skip
        node["ports"].append({"name": f"b{n}", "vsid": vsid, "mac": mac})
    text = (CONFIGS / "two-hosts.yaml").read_text()
    text = text.replace("routing_domains:\n", f"routing_domains:\n  - {json.dumps(domain)}\n", 1)
    text = text.replace(
        "lookup_records:\n",
        "lookup_records:\n" + "".join(f"  - {json.dumps(r)}\n" for r in records),
        1,
    )
    text = text.replace("nodes:\n", "nodes:\n" + "".join(
        f"  {name}: {json.dumps(node)}\n" for name, node in nodes.items()), 1)  # fmt: skip
    path.write_text(text)
    return path


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    require_root()
    namespace = f"nvt-loop{os.getpid() % 10000}{request.param[0]}"
    directory = tmp_path_factory.mktemp(f"loop-{request.param}")
    config = bulk_config(directory / "bulk.yaml")
    with daemon_in_namespace(namespace, directory, request.param, source=config) as running:
        yield running


class Pinger:
    """blue1 asking for blue2's MAC without pause (``_arp_pinger.py``, in the daemon's
    namespace), each answer's time written to a file: the test process runs no thread
    meanwhile, so nothing delays the times it takes."""

    def __init__(self, daemon: Daemon, log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", daemon.namespace, sys.executable, str(PINGER),
             "blue1", "00:00:00:00:00:11", "10.10.10.11", "10.10.10.12", str(log)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def ready(self) -> None:
        """Once the daemon has answered a few: it is serving that VM."""
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "ready\n", "the pinger got no answers"

    def stop(self) -> list[float]:
        """The times of every answer (the pinger stopped: the file is whole)."""
        self.process.kill()
        self.process.wait(timeout=20)
        return [float(line) for line in self.log.read_text().split()]


@pytest.fixture
def pinger(daemon: Daemon, tmp_path: Path) -> Iterator[Pinger]:
    subprocess.run(["ip", "-n", daemon.namespace, "link", "set", "blue1", "up"], check=True)
    running = Pinger(daemon, tmp_path / "answers")
    try:
        yield running
    finally:
        running.stop()


def read_response(sock: socket.socket, first: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length (``first``, its start if read
    already): its status and its body, read to its last byte (and no further)."""
    received = first
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    length = int({k.lower(): v for k, v in fields.items()}["content-length"])
    while len(body) < length:
        body += sock.recv(65536)
    return int(lines[0].split()[1]), body


def test_frames_are_answered_while_a_large_trace_runs(daemon: Daemon, pinger: Pinger) -> None:
    body = json.dumps({"from": "blue1", "to": "10.10.10.12"}).encode()
    head = (
        f"POST /v1/trace HTTP/1.1\r\nHost: nvgw\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as api:
        api.connect(str(daemon.socket))
        api.sendall(head + body[:-1])  # all but the last byte: the trace waits for it
        pinger.ready()
        start = time.monotonic()
        api.sendall(body[-1:])  # the request is whole: the trace starts now
        first = api.recv(65536)  # the trace is done: its answer starts
        end = time.monotonic()
        status, answer = read_response(api, first)
    during = sum(1 for t in pinger.stop() if start <= t <= end)
    assert status == 200, answer
    assert json.loads(answer)["delivered_to"] == "blue2"
    assert during >= ANSWERED_DURING_TRACE, f"{during} ARP answers while the trace ran"
