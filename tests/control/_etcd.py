"""A real etcd on loopback for the store's tests: never a mock.

``Etcd`` runs one ``etcd`` process on two free ports of 127.0.0.1 (never 2379/2380:
no collision with a system etcd) with a data directory of its own, waits until it
answers, and is killed by its PID and its directory removed however the test ends.
It may be killed and started again on the same ports and data (an outage),
compacted (``compact``) as an operator's ``etcdctl compact`` would, and, started with
a space quota, filled until it refuses writes and given room again (``fill``,
``make_room``); ``Partition`` cuts one store off it while the others go on, and
``bridged`` lets a daemon in a network namespace reach it at its own address.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from gateway.control.etcd_watch import plain_client
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[2]
READY_S = 30.0  # only bounds a failure: etcd answers within a second here
# A seed is one transaction of one operation per row (210,901 for bench/snapshot_build's
# 100,000 records, whose nodes have a port per VM) and one request of their JSON (31 MB
# on a short prefix): limits that fit 10^5 records, as the README's etcd section says.
# etcd's defaults allow 128 operations and 1.5 MiB.
MAX_TXN_OPS = 1_000_000
MAX_REQUEST_BYTES = 128 << 20
FILLER_BYTES = 100_000  # a key that fills an etcd of a small quota in a few puts
_prefixes = itertools.count()
# The tests' own requests to etcd, plain HTTP: one client, with no CA bundle loaded
# (httpx.post would build a verifying client for each request: 50 ms apiece here).
_HTTP = plain_client("http://127.0.0.1", 30.0)
_PROBE = (  # a read, from inside a namespace: exit 0 when etcd answered
    "import httpx, sys; "
    "httpx.post(sys.argv[1] + '/v3/kv/range', json={'key': 'AA=='}).raise_for_status()"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Etcd:
    """One etcd process; ``url(prefix)`` names a store in it."""

    def __init__(
        self,
        directory: Path,
        max_txn_ops: int = MAX_TXN_OPS,
        namespace: str | None = None,
        quota_bytes: int | None = None,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self.max_txn_ops = max_txn_ops
        self.max_request_bytes = max_request_bytes
        self.quota = [] if quota_bytes is None else ["--quota-backend-bytes", str(quota_bytes)]
        # In a network namespace (a daemon's, in the daemon tests): on its loopback.
        self.inside = [] if namespace is None else ["ip", "netns", "exec", namespace]
        self.binary = require_tool("etcd")
        self.data = directory / "etcd-data"
        self.client, self.peer = free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{self.client}"
        self.log = directory / "etcd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, prefix: str | None = None) -> str:
        """A store URL on a prefix no other test of this etcd uses."""
        return f"etcd://127.0.0.1:{self.client}/{prefix or f'nvgw-test-{next(_prefixes)}'}"

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer}"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.inside, self.binary, "--name", "t", "--data-dir", str(self.data),
                 "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"t={peer}", "--max-txn-ops", str(self.max_txn_ops),
                 "--max-request-bytes", str(self.max_request_bytes), *self.quota],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + READY_S
        while not self.answers():
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.05)

    def answers(self) -> bool:
        """Whether etcd answers a read (from inside its namespace, if it has one)."""
        if self.inside:
            probe = [*self.inside, sys.executable, "-c", _PROBE, self.endpoint]
            return subprocess.run(probe, capture_output=True, timeout=READY_S).returncode == 0
        try:
            return _HTTP.post(f"{self.endpoint}/v3/kv/range", json={"key": "AA=="}).is_success
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        """SIGKILL, by PID: an outage, or the end of the test."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request to etcd's JSON gateway, as a tool of the operator's would."""
        answer = _HTTP.post(f"{self.endpoint}{path}", json=body)
        answer.raise_for_status()
        return dict(answer.json())

    def compact(self) -> int:
        """Compact away every revision before the current one; the revision."""
        revision = int(self.call("/v3/kv/range", {"key": "AA=="})["header"]["revision"])
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        return revision

    def put(self, key: str, value: str) -> None:
        self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def fill(self, prefix: str) -> None:
        """Put keys under ``prefix`` until etcd is out of its space quota: it refuses
        every write then (its NOSPACE alarm), as a full disk would."""
        for n in itertools.count():
            answer = _HTTP.post(
                f"{self.endpoint}/v3/kv/put",
                json={"key": _b64(f"{prefix}{n}"), "value": _b64("x" * FILLER_BYTES)},
            )
            if "database space exceeded" in answer.text:
                return
            answer.raise_for_status()

    def make_room(self, prefix: str) -> None:
        """What an operator does for an etcd out of space: delete (``prefix``'s keys),
        compact, defragment, and disarm the alarm."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        self.call("/v3/kv/deleterange", {"key": _b64(prefix), "range_end": _b64(end)})
        self.compact()
        self.call("/v3/maintenance/defragment", {})
        for alarm in self.call("/v3/maintenance/alarm", {"action": "GET"}).get("alarms", []):
            self.call("/v3/maintenance/alarm", {"action": "DEACTIVATE", **alarm})

    def keys(self, prefix: str) -> dict[str, tuple[str, int]]:
        """Every key under ``prefix`` with its value and mod revision: what a refused
        change must leave as it was."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        kvs = self.call("/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(end)})
        return {
            _text(kv["key"]): (_text(kv.get("value", "")), int(kv["mod_revision"]))
            for kv in kvs.get("kvs", [])
        }


@contextmanager
def running_etcd(
    directory: Path,
    max_txn_ops: int = MAX_TXN_OPS,
    namespace: str | None = None,
    quota_bytes: int | None = None,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> Iterator[Etcd]:
    """An etcd started in ``directory``, killed and its data removed after."""
    etcd = Etcd(directory, max_txn_ops, namespace, quota_bytes, max_request_bytes)
    try:
        etcd.start()
        yield etcd
    finally:
        etcd.kill()
        shutil.rmtree(etcd.data, ignore_errors=True)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _text(b64: str) -> str:
    return base64.b64decode(b64).decode()


class Partition:
    """A TCP relay on loopback between a store and etcd, which a test can cut (every
    connection through it closed, new ones refused) and mend: a daemon that lost
    etcd while the others went on, without stopping etcd for them."""

    def __init__(self, etcd: Etcd) -> None:
        self.target = ("127.0.0.1", etcd.client)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.open = threading.Event()
        self.open.set()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        """``url`` (an etcd store's) through the relay."""
        return url.replace(f":{self.target[1]}/", f":{self.port}/", 1)

    def cut(self) -> None:
        with self.lock:
            self.open.clear()
            for each in self.sockets:
                with contextlib.suppress(OSError):
                    each.shutdown(socket.SHUT_RDWR)
            self.sockets.clear()

    def mend(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if not self.open.is_set():
                client.close()
                continue
            server = socket.create_connection(self.target)
            with self.lock:
                if not self.open.is_set():  # cut while it connected: never relayed
                    client.close()
                    server.close()
                    continue
                self.sockets += [client, server]
            _pipe(client, server)


@contextmanager
def bridged(etcd: Etcd, namespace: str, directory: Path) -> Iterator[None]:
    """``etcd`` (of this namespace) reachable from inside ``namespace`` (a daemon's) at
    its own address, 127.0.0.1 and its client port, so one store URL names the store
    in both: a relay in the namespace listens there and pipes each connection through
    a Unix socket in ``directory`` (a file: it crosses namespaces) to a relay here,
    which connects to etcd. The inner relay is killed by its PID after."""
    path = directory / "etcd-bridge.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    to_etcd = functools.partial(socket.create_connection, ("127.0.0.1", etcd.client))
    threading.Thread(target=_serve, args=(listener, to_etcd), daemon=True).start()
    inside = subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, "-m", "tests.control._etcd",
         str(path), str(etcd.client)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert inside.stdout is not None and inside.stdout.readline() == "listening\n"
        yield
    finally:
        inside.kill()
        inside.wait(timeout=30)
        listener.close()


def _serve(listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
    """Pipe each connection ``listener`` accepts to a new one of ``connect``'s, until
    the listener is closed."""
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # closed
        _pipe(client, connect())


def _pipe(one: socket.socket, other: socket.socket) -> None:
    """Relay between two connected sockets, each way in a thread of its own."""
    for source, sink in ((one, other), (other, one)):
        threading.Thread(target=_relay, args=(source, sink), daemon=True).start()


def _relay(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for each in (source, sink):
        with contextlib.suppress(OSError):
            each.shutdown(socket.SHUT_RDWR)
        each.close()


def _unix(path: str) -> socket.socket:
    connected = socket.socket(socket.AF_UNIX)
    connected.connect(path)
    return connected


if __name__ == "__main__":  # the relay ``bridged`` runs inside the namespace
    inner = socket.create_server(("127.0.0.1", int(sys.argv[2])))
    print("listening", flush=True)
    _serve(inner, lambda: _unix(sys.argv[1]))
