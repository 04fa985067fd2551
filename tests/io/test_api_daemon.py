"""Every control verb end to end: the `nvgw` command, a real daemon in a namespace the
test makes, its Unix socket, its config file, and its data plane.

The daemon runs host1 of the two-hosts config with its PA on a veth of its own and
its VMs' TAPs left in its own namespace: enough to see a change reach the data plane
(ARP for a CA is answered once its record exists, a migrated VM's TAP appears) with
no lab around it. On SQLite once per anyio backend, and on a prefix of the session's
etcd, which the daemon reaches from its namespace through a bridge
(``tests/control/_etcd.py``), as the test does from its own, on asyncio (the default:
the in-process API tests run each store on both backends, and trio on etcd here
passed as well, for 1.5-3 more minutes of the suite).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.control import load_config
from gateway.control.client import ApiClient, ApiError
from gateway.io.privileges import lookup_user
from gateway.lab import netns
from tests._tls import write_token
from tests.conftest import require_root
from tests.control import _stores
from tests.control._etcd import Etcd, bridged
from tests.control._stores import held, state, url

from ._host import connects_as, host_namespace, stop_process

pytestmark = pytest.mark.netns
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
INJECT = Path(__file__).resolve().parents[1] / "lab" / "_inject.py"
GREEN = "{11111111-2222-3333-4444-000000005099}"
BLUE1_MAC = "00:00:00:00:00:11"


class Daemon:
    """One `nvgw run` in a namespace; started, killed and restarted by PID."""

    def __init__(
        self,
        namespace: str,
        config: Path,
        socket_path: Path,
        backend: str,
        store: str = "sqlite",
        node: str = "host1",
    ) -> None:
        self.namespace = namespace
        self.config = config
        self.node = node
        # A database seeded from the config (tests/control/_stores.py reads it), or
        # the config itself (``file:``, read-only, re-read on SIGHUP).
        self.store_args = ["-c", str(config)]
        if store == "sqlite":
            self.store_args += ["--store", url(config)]
        self.socket = socket_path
        self.backend = backend
        self.process: subprocess.Popen[str] | None = None
        self.log = socket_path.with_name(f"{node}.log")
        self.token_file = write_token(config.with_name("token"))  # mode 0600, as required
        # How the API listens on TCP besides its socket: loopback, with the token.
        self.tcp_args = ["--api-tcp", "127.0.0.1:0", "--api-token-file", str(self.token_file)]
        self.ready: dict[str, Any] = {}
        # Where the daemon's sd_notify messages land, as systemd's socket would get them.
        self.notify_path = socket_path.with_name("notify")
        self.notifications = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notifications.bind(str(self.notify_path))

    def start(self) -> dict[str, Any]:
        command = [
            "ip", "netns", "exec", self.namespace,
            sys.executable, "-m", "gateway", "run",
            *self.store_args, "--node", self.node, "--backend", self.backend,
            "--metrics", "127.0.0.1:0", "--api", str(self.socket), "--ready-fd", "1",
            *self.tcp_args,
        ]  # fmt: skip
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path), "WATCHDOG_USEC": "400000"}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, text=True, env=env
            )
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        assert line, f"the daemon did not get ready: {self.log.read_text()[-2000:]}"
        self.ready = json.loads(line)
        # Seeded: a restart runs what the database holds (with the config again it
        # would refuse to start once the two differ).
        self.store_args = [a for a in self.store_args if a not in ("-c", str(self.config))]
        return self.ready

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        stop_process(process, sig)

    def notices(self, seconds: float) -> list[str]:
        """The sd_notify datagrams that arrive within ``seconds``."""
        received: list[str] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if select.select([self.notifications], [], [], left)[0]:
                received.append(self.notifications.recv(4096).decode())
        return received

    def nvgw(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "gateway", *args, "--api", str(self.socket)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    def ok(self, *args: str) -> str:
        result = self.nvgw(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def api(self) -> ApiClient:
        return ApiClient(self.socket)

    def counters(self) -> dict[str, Any]:
        with self.api() as api:
            return api.request("GET", "/v1/counters")["counters"]

    def has_link(self, name: str) -> bool:
        return netns.has_link(self.namespace, name)


@contextmanager
def daemon_in_namespace(
    namespace: str,
    directory: Path,
    backend: str,
    source: Path = CONFIGS / "two-hosts.yaml",
    tcp_args: list[str] | None = None,
    store: str = "sqlite",
    etcd: Etcd | None = None,
) -> Iterator[Daemon]:
    """host1 of a copy of ``source`` (the two-hosts config) in ``directory``, run in a
    namespace of its own (``tcp_args`` for how its API listens on TCP), and always
    torn down with it. ``etcd``: its store is ``_stores``' prefix of that etcd (which
    ``_stores.use`` names), bridged into the namespace."""
    config = directory / "two-hosts.yaml"
    shutil.copyfile(source, config)
    running = Daemon(namespace, config, directory / "api.sock", backend, store)
    if etcd is not None:
        running.store_args += ["--store", url(config)]
    if tcp_args is not None:
        running.tcp_args = tcp_args
    try:
        host_namespace(namespace)
        with ExitStack() as bridge:
            if etcd is not None:
                bridge.enter_context(bridged(etcd, namespace, directory))
            try:
                running.start()
                yield running
            finally:
                running.stop()  # before its bridge to etcd goes
    finally:
        running.notifications.close()
        netns.remove(namespace)


@pytest.fixture(
    scope="module",
    params=[("asyncio", "sqlite"), ("trio", "sqlite"), ("asyncio", "etcd")],
    ids="-".join,
)
def daemon(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    require_root()
    backend, store = request.param
    namespace = f"nvt-api{os.getpid() % 10000}{backend[0]}{store[0]}"
    directory = tmp_path_factory.mktemp(f"api-{backend}-{store}")
    etcd = request.getfixturevalue("etcd_server") if store == "etcd" else None
    _stores.use(etcd)  # what held() and state() read: this daemon's store
    try:
        with daemon_in_namespace(namespace, directory, backend, store=store, etcd=etcd) as running:
            yield running
    finally:
        _stores.use(None)


def arp_for(daemon: Daemon, ca: str) -> dict[str, int]:
    """blue1 asks who has CA (written into its TAP, as the VM would); returns how the
    daemon's ARP counters moved."""
    subprocess.run(["ip", "-n", daemon.namespace, "link", "set", "blue1", "up"], check=True)
    before = daemon.counters()
    frame = Ether(src=BLUE1_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=BLUE1_MAC, psrc="10.10.10.11", pdst=ca
    )
    subprocess.run(
        ["ip", "netns", "exec", daemon.namespace, sys.executable, str(INJECT), "blue1"],
        input=raw(frame).hex().encode(),
        check=True,
        timeout=20,
    )
    deadline = time.monotonic() + 5
    while True:
        after = daemon.counters()
        moved = {
            "replies": after["arp_replies"] - before["arp_replies"],
            "unanswered": after["drops"].get("arp_unanswered", 0)
            - before["drops"].get("arp_unanswered", 0),
        }
        if any(moved.values()) or time.monotonic() > deadline:
            return moved
        time.sleep(0.02)


def wait_link(daemon: Daemon, name: str, present: bool) -> bool:
    deadline = time.monotonic() + 5
    while daemon.has_link(name) != present:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_the_socket_is_0600_and_admits_root_only(daemon: Daemon) -> None:
    assert (daemon.socket.stat().st_mode & 0o777) == 0o600
    with daemon.api() as api:
        assert api.request("GET", "/v1/health")["status"] == "ok"
    uid, gid = lookup_user("nobody")
    assert connects_as(0, 0, daemon.socket)
    assert not connects_as(uid, gid, daemon.socket), "a non-root user got in"


def test_over_tcp_the_api_wants_the_bearer_token(daemon: Daemon) -> None:
    url = f"http://{daemon.ready['api_tcp']}"
    in_namespace = ["ip", "netns", "exec", daemon.namespace, sys.executable, "-m", "gateway"]
    get = [*in_namespace, "lookup-record", "get", "--vm", "blue1", "--json", "--url", url]
    with_token = subprocess.run(
        [*get, "--token-file", str(daemon.token_file)], capture_output=True, text=True, timeout=60
    )
    assert with_token.returncode == 0, with_token.stderr
    assert [r["ca"] for r in json.loads(with_token.stdout)] == ["10.10.10.11"]
    without = subprocess.run(get, capture_output=True, text=True, timeout=60)
    assert without.returncode == 1 and "bearer token is required" in without.stderr


def test_lookup_record_verbs_reach_the_data_plane(daemon: Daemon) -> None:
    records = daemon.json("lookup-record", "get", "--vsid", "5010")
    assert {r["vm"] for r in records} == {"blue1", "blue2"}
    assert arp_for(daemon, "10.10.10.13") == {"replies": 0, "unanswered": 1}
    out = daemon.ok(
        "lookup-record", "add", "--vsid", "5010", "--ca", "10.10.10.13",
        "--mac", "00-00-00-00-00-13", "--pa", "198.18.0.2", "--vm", "blue3",
    )  # fmt: skip
    assert "added lookup-record" in out
    assert arp_for(daemon, "10.10.10.13") == {"replies": 1, "unanswered": 0}
    [found] = daemon.json("lookup-record", "get", "--mac", "00:00:00:00:00:13")
    assert found["vm"] == "blue3" and found["pa"] == "198.18.0.2"
    table = daemon.ok("lookup-record", "get", "--ca", "10.10.10.13")
    assert "blue3" in table and "198.18.0.2" in table
    removed = daemon.json("lookup-record", "remove", "--vm", "blue3")
    assert [r["ca"] for r in removed] == ["10.10.10.13"]
    assert arp_for(daemon, "10.10.10.13") == {"replies": 0, "unanswered": 1}


def test_routing_domain_subnet_and_route_verbs(daemon: Daemon) -> None:
    daemon.ok("routing-domain", "add", "--rdid", GREEN, "--name", "green")
    daemon.ok("virtual-subnet", "add", "--rdid", GREEN, "--vsid", "5099",
              "--prefix", "10.99.0.0/24", "--prefix", "fd00:99::/64")  # fmt: skip
    daemon.ok("customer-route", "add", "--rdid", GREEN, "--vsid", "5099",
              "--destination", "10.99.0.0/24", "--metric", "255")  # fmt: skip
    [domain] = daemon.json("routing-domain", "get", "--name", "green")
    assert domain["virtual_subnets"] == [5099]
    [subnet] = daemon.json("virtual-subnet", "get", "--vsid", "5099")
    assert subnet["prefixes"] == ["10.99.0.0/24", "fd00:99::/64"] and subnet["rdid"] == GREEN
    [route] = daemon.json("customer-route", "get", "--vsid", "5099")
    assert route["next_hop"] == "0.0.0.0" and route["metric"] == 255
    policy = held(daemon.config)
    assert policy.rdid_of(5099) == GREEN
    # A domain still holding a subnet, a subnet still routed: the loader refuses.
    refused = daemon.nvgw("virtual-subnet", "remove", "--vsid", "5099")
    assert refused.returncode == 1 and "customer_routes" in refused.stderr
    daemon.ok("customer-route", "remove", "--vsid", "5099")
    daemon.ok("virtual-subnet", "remove", "--vsid", "5099")
    daemon.ok("routing-domain", "remove", "--rdid", GREEN.upper())
    assert daemon.json("routing-domain", "get", "--rdid", GREEN) == []


def test_provider_address_verbs_and_what_a_running_node_refuses(daemon: Daemon) -> None:
    daemon.ok("provider-address", "add", "--node", "host2", "--interface", "pa0",
              "--pa", "198.18.0.22", "--prefix-length", "24")  # fmt: skip
    pas = daemon.json("provider-address", "get", "--node", "host2")
    assert {p["pa"] for p in pas} == {"198.18.0.2", "198.18.0.22"}
    daemon.ok("provider-address", "remove", "--pa", "198.18.0.22")
    before = state(daemon.config)
    refused = daemon.nvgw("provider-address", "add", "--node", "host1", "--interface", "pa0",
                          "--pa", "198.18.0.11", "--prefix-length", "24")  # fmt: skip
    assert refused.returncode == 1 and "restart the daemon" in refused.stderr
    assert state(daemon.config) == before


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["lookup-record", "add", "--vsid", "5010", "--ca", "10.10.11.13",
          "--mac", "00-00-00-00-00-13", "--pa", "198.18.0.2"], "not inside"),
        (["virtual-subnet", "add", "--rdid", "{11111111-2222-3333-4444-000000005011}",
          "--vsid", "5010", "--prefix", "10.10.30.0/24"], "5010"),
        (["virtual-subnet", "add", "--rdid", "{11111111-2222-3333-4444-000000005010}",
          "--vsid", "5012", "--prefix", "10.10.10.128/25"], "overlap"),
    ],
    ids=["CA outside its subnet", "VSID in two RDIDs", "overlapping prefix"],
)  # fmt: skip
def test_an_invalid_change_leaves_the_file_and_policy_as_they_were(
    daemon: Daemon, args: list[str], reason: str
) -> None:
    before_file = state(daemon.config)
    with daemon.api() as api:
        before = api.request("GET", "/v1/policy")
    refused = daemon.nvgw(*args)
    assert refused.returncode == 1
    assert "refused: the policy would be invalid" in refused.stderr and reason in refused.stderr
    assert state(daemon.config) == before_file
    with daemon.api() as api:
        assert api.request("GET", "/v1/policy") == before


def test_migrate_moves_the_port_here_and_back(daemon: Daemon) -> None:
    assert not daemon.has_link("blue2")
    out = daemon.ok("migrate", "--vm", "blue2", "--pa", "198.18.0.1")
    assert "blue2 now at PA 198.18.0.1 on node host1" in out
    assert wait_link(daemon, "blue2", present=True)
    trace = daemon.json("trace", "--from", "blue1", "--to", "10.10.10.12")
    assert trace["delivered_to"] == "blue2"
    assert "encapsulate" not in [hop["step"] for hop in trace["hops"]]
    stale = daemon.nvgw("migrate", "--vm", "blue2", "--pa", "198.18.0.2", "--if-revision", "0")
    assert stale.returncode == 1 and "not 0" in stale.stderr
    daemon.ok("migrate", "--vm", "blue2", "--pa", "198.18.0.2")
    assert wait_link(daemon, "blue2", present=False)
    trace = daemon.json("trace", "--from", "blue1", "--to", "10.10.10.12")
    [encap] = [hop["detail"] for hop in trace["hops"] if hop["step"] == "encapsulate"]
    assert "PA 198.18.0.1 -> 198.18.0.2" in encap and trace["delivered_to"] == "blue2"


def test_apply_dry_run_then_apply(daemon: Daemon) -> None:
    before = state(daemon.config)
    dry = daemon.nvgw("apply", "--dry-run", str(CONFIGS / "routing.yaml"))
    assert dry.returncode == 1, dry.stderr
    assert "+ virtual subnet 5012" in dry.stdout and "would change" in dry.stdout
    assert state(daemon.config) == before
    same = daemon.nvgw("apply", "--dry-run", str(daemon.config))
    assert same.returncode == 0 and "no difference" in same.stdout
    applied = daemon.ok("apply", str(CONFIGS / "routing.yaml"))
    assert "applied: policy revision" in applied
    trace = daemon.json("trace", "--from", "blue1", "--to", "10.10.20.13")
    assert trace["delivered_to"] == "blue3"
    assert any("5012" in hop["detail"] for hop in trace["hops"])
    routing = load_config(CONFIGS / "routing.yaml")
    assert held(daemon.config).virtual_subnets == routing.virtual_subnets
    daemon.ok("apply", str(CONFIGS / "two-hosts.yaml"))


def test_concurrent_writers_each_get_their_own_revision(daemon: Daemon) -> None:
    start = held(daemon.config).revision
    command = [sys.executable, "-m", "gateway", "lookup-record", "add", "--vsid", "5010",
               "--pa", "198.18.0.2", "--api", str(daemon.socket), "--json"]  # fmt: skip
    writers = [
        subprocess.Popen(
            [*command, "--ca", f"10.10.10.{200 + n}", "--mac", f"00-00-00-00-02-{n:02x}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(6)
    ]
    revisions = [json.loads(w.communicate(timeout=60)[0])["revision"] for w in writers]
    assert sorted(revisions) == list(range(start + 1, start + 7))
    cas = {str(r.ca) for r in held(daemon.config).lookup_records}
    assert {f"10.10.10.{200 + n}" for n in range(6)} <= cas
    with daemon.api() as api:
        for n in range(6):
            api.request("DELETE", "/v1/lookup-records", params={"ca": f"10.10.10.{200 + n}"})


def test_sigkill_right_after_an_accepted_change_comes_back_with_it(daemon: Daemon) -> None:
    record = {"vsid": 5010, "ca": "10.10.10.77", "mac": "00-00-00-00-00-77",
              "pa": "198.18.0.2", "rule": "encap", "vm": "blue7"}  # fmt: skip
    with daemon.api() as api:
        revision = api.request("POST", "/v1/lookup-records", json=record)["revision"]
    daemon.stop(signal.SIGKILL)  # no chance to flush anything after answering
    assert daemon.socket.exists()  # left behind by the kill: the restart must cope
    ready = daemon.start()
    assert ready["revision"] == revision
    [back] = daemon.json("lookup-record", "get", "--vm", "blue7")
    assert back["ca"] == "10.10.10.77"
    daemon.ok("lookup-record", "remove", "--vm", "blue7")


def test_an_unreachable_api_is_a_clear_error(daemon: Daemon, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "lookup-record", "get", "--api", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot reach the nvgw API" in result.stderr and "nvgw run" in result.stderr


def iter_lines(path: Path) -> Iterator[dict[str, Any]]:
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            yield json.loads(line)


def test_every_change_and_refusal_leaves_an_audit_line(daemon: Daemon) -> None:
    events = list(iter_lines(daemon.log))
    changed = [e for e in events if e.get("event") == "policy changed"]
    assert {(e["method"], e["path"]) for e in changed} >= {
        ("POST", "/v1/lookup-records"),
        ("DELETE", "/v1/lookup-records"),
        ("POST", "/v1/migrate"),
        ("PUT", "/v1/policy"),
    }
    assert all(isinstance(e["revision"], int) for e in changed)
    refused = [e for e in events if e.get("event") == "policy change refused"]
    assert any("not inside" in " ".join(e.get("issues", [])) for e in refused)
    assert any("not 0" in e.get("reason", "") for e in refused)  # the stale --if-revision


def test_a_windows_export_imports_and_applies_to_the_live_daemon(
    daemon: Daemon, tmp_path: Path
) -> None:
    """Moving over from Windows: the lab-3 export, imported, then diffed against and
    applied to the running daemon: the only difference is what Windows never knew."""
    from tests.control.test_hnv_import import LAB3_RECORDS, LAB3_ROUTES, write_export

    records = write_export(tmp_path / "lr.json", LAB3_RECORDS, "utf-16-le-bom")
    routes = write_export(tmp_path / "cr.json", LAB3_ROUTES)
    imported = tmp_path / "imported.yaml"
    subprocess.run(
        [sys.executable, "-m", "gateway", "import-hnv", "--lookup-records", str(records),
         "--customer-routes", str(routes), "--node", "host1=198.18.0.1/24",
         "--node", "host2=198.18.0.2/24", "-o", str(imported)],
        check=True, timeout=60,
    )  # fmt: skip
    dry = daemon.nvgw("apply", "--dry-run", str(imported))
    assert dry.returncode == 1, dry.stderr
    changes = [line for line in dry.stdout.splitlines() if line[:2] in ("+ ", "- ", "~ ")]
    assert len(changes) == 2 and all(c.startswith("~ routing domain") for c in changes), changes
    assert all("name" in c for c in changes)  # blue and red: Windows exports no names
    daemon.ok("apply", str(imported))
    assert held(daemon.config).routing_domains[0].name is None
    daemon.ok("apply", str(CONFIGS / "two-hosts.yaml"))


def test_a_port_the_node_cannot_create_is_reported_not_hidden(daemon: Daemon) -> None:
    """A VM port named like an interface that already exists (not a TAP): the change
    is valid and saved, the other ports keep working, and the answer says what failed."""
    text = (CONFIGS / "two-hosts.yaml").read_text()
    text = text.replace(
        "  - {vsid: 5010, ca: 10.10.10.12,",
        "  - {vsid: 5010, ca: 10.10.10.13, mac: 00-00-00-00-00-13, pa: 198.18.0.1, rule: encap,"
        " vm: pa0peer}\n  - {vsid: 5010, ca: 10.10.10.12,",
    ).replace(
        "      - {name: red1, vsid: 5011, mac: 00-00-00-00-00-21}",
        "      - {name: red1, vsid: 5011, mac: 00-00-00-00-00-21}\n"
        "      - {name: pa0peer, vsid: 5010, mac: 00-00-00-00-00-13}",
    )
    with daemon.api() as api:
        before = api.request("GET", "/v1/health")["revision"]
        with pytest.raises(ApiError) as failed:
            api.request("PUT", "/v1/policy", content=text.encode())
        assert failed.value.status == 500
        assert "saved and in force" in str(failed.value) and "cannot create TAP pa0peer" in str(
            failed.value
        )
        assert api.request("GET", "/v1/health")["revision"] == before + 1
        assert api.request("GET", "/v1/lookup-records", params={"vm": "pa0peer"})["items"]
    assert daemon.has_link("blue1") and daemon.has_link("red1")
    daemon.ok("apply", str(CONFIGS / "two-hosts.yaml"))


def test_systemd_hears_ready_reloading_and_the_watchdog(daemon: Daemon) -> None:
    daemon.notices(0.5)  # what was said before this test
    beats = [n for n in daemon.notices(1.0) if n == "WATCHDOG=1"]
    assert len(beats) >= 3, beats  # every 0.2 s for WATCHDOG_USEC=400000
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    said = [n for n in daemon.notices(1.5) if n != "WATCHDOG=1"]
    assert said[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert said[1].startswith("READY=1\nSTATUS=node host1: policy revision")
