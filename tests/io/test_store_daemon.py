"""Daemons sharing one store: a change one daemon's API commits is in force on the
other without a signal, and a daemon whose --config disagrees with its store refuses
to start, naming both; on SQLite and on etcd. Real daemons, each in a namespace of
its own. And on an etcd of the test's own, in the daemon's namespace (its loopback):
a daemon and `nvgw apply` / `nvgw policy export` sharing a prefix, each seeing the
other's change, and etcd stopped under the daemon and back.

The latency is awaited, never asserted against a clock: the test polls the second
daemon's revision with a generous deadline and prints what it measured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from gateway.control import load_config
from gateway.control.client import ApiClient, ApiError
from gateway.control.entries import policy_json
from gateway.lab import netns
from tests.conftest import require_root
from tests.control import _stores
from tests.control._etcd import Etcd, bridged, running_etcd
from tests.control._stores import url

from ._host import host_namespace
from .test_api_daemon import CONFIGS, Daemon, daemon_in_namespace

pytestmark = pytest.mark.netns
FOLLOW_DEADLINE_S = 20.0  # only bounds a failure: the daemon polls every 20 ms


@pytest.fixture(
    params=[("asyncio", "sqlite"), ("trio", "sqlite"), ("asyncio", "etcd"), ("trio", "etcd")],
    ids="-".join,
)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Daemon, Daemon]]:
    """host1 seeding the store from the two-hosts config, and host2 on the same store
    without --config: one SQLite database, or one prefix of the session's etcd
    (bridged into each daemon's namespace)."""
    require_root()
    backend, store = request.param
    tag = f"{os.getpid() % 10000}{backend[0]}{store[0]}"
    etcd = request.getfixturevalue("etcd_server") if store == "etcd" else None
    _stores.use(etcd)
    try:
        with daemon_in_namespace(f"nvt-sa{tag}", tmp_path, backend, store=store, etcd=etcd) as one:
            namespace = f"nvt-sb{tag}"
            directory = tmp_path / "two"
            directory.mkdir()
            two = Daemon(namespace, one.config, directory / "api.sock", backend, node="host2")
            two.store_args = ["--store", url(one.config)]
            two.tcp_args = []
            try:
                host_namespace(namespace, "198.18.0.2/24")
                with ExitStack() as bridge:
                    if etcd is not None:
                        bridge.enter_context(bridged(etcd, namespace, directory))
                    try:
                        two.start()
                        yield one, two
                    finally:
                        two.stop()  # before its bridge to etcd goes
            finally:
                subprocess.run(["ip", "netns", "del", namespace], check=False)
    finally:
        _stores.use(None)


def revision(socket: Path) -> int:
    with ApiClient(socket) as api:
        return int(api.request("GET", "/v1/health")["revision"])


def test_a_change_on_one_daemon_is_in_force_on_the_other(pair: tuple[Daemon, Daemon]) -> None:
    one, two = pair
    assert two.ready["revision"] == 0
    record = {"vsid": 5010, "ca": "10.10.10.13", "mac": "00-00-00-00-00-13",
              "pa": "198.18.0.2", "rule": "encap", "vm": "blue3"}  # fmt: skip
    with ApiClient(one.socket) as api:
        changed = api.request("POST", "/v1/lookup-records", json=record)["revision"]
    answered = time.monotonic()
    while revision(two.socket) < changed:
        assert time.monotonic() - answered < FOLLOW_DEADLINE_S, two.log.read_text()[-3000:]
        time.sleep(0.001)
    print(f"host2 ran revision {changed} {1000 * (time.monotonic() - answered):.1f} ms after")
    with ApiClient(two.socket) as api:  # and it serves it: its trace uses the new record
        trace = api.request("POST", "/v1/trace", json={"from": "blue1", "to": "10.10.10.13"})
    assert trace["revision"] == changed


@pytest.mark.usefixtures("each_store")
def test_a_config_that_disagrees_with_the_database_stops_the_start(tmp_path: Path) -> None:
    """No namespace: the refusal comes before the daemon opens anything."""
    config = tmp_path / "two-hosts.yaml"
    shutil.copyfile(CONFIGS / "two-hosts.yaml", config)
    other = tmp_path / "routing.yaml"
    shutil.copyfile(CONFIGS / "routing.yaml", other)
    store = url(config)
    seeded = subprocess.run(
        [sys.executable, "-m", "gateway", "apply", "--store", store, str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    started = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--store", store, "-c", str(other),
         "--node", "host1", "--no-api", "--metrics", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 1, started.stdout + started.stderr
    said = " ".join(started.stderr.split())
    assert f"both {store} (revision 0) and {other} hold a policy" in said
    assert f"nvgw apply --store {store} {other}" in said and "without --config" in said


@pytest.fixture(params=["asyncio", "trio"])
def on_etcd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Daemon, str, Etcd]]:
    """host1 seeding a prefix of an etcd in its namespace from the two-hosts config;
    the store's URL, for other writers in that namespace, and the etcd."""
    require_root()
    namespace = f"nvt-se{os.getpid() % 10000}{request.param[0]}"
    config = tmp_path / "two-hosts.yaml"
    shutil.copyfile(CONFIGS / "two-hosts.yaml", config)
    try:
        host_namespace(namespace)
        with running_etcd(tmp_path, namespace=namespace) as etcd:
            store = etcd.url("nvgw")
            daemon = Daemon(namespace, config, tmp_path / "api.sock", request.param, "etcd")
            daemon.store_args += ["--store", store]
            try:
                daemon.start()
                yield daemon, store, etcd
            finally:
                try:
                    daemon.stop()
                finally:
                    daemon.notifications.close()
    finally:
        netns.remove(namespace)


def nvgw_in(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    """An nvgw verb run in the daemon's namespace (where etcd is)."""
    return subprocess.run(
        ["ip", "netns", "exec", daemon.namespace, sys.executable, "-m", "gateway", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def added(daemon: Daemon, tmp_path: Path, ca: str) -> Path:
    """The daemon's config with one more lookup record, as a file for nvgw apply."""
    document = policy_json(load_config(daemon.config))
    document["lookup_records"].append(
        {"vsid": 5010, "ca": ca, "mac": f"00-00-00-00-00-{int(ca.rsplit('.', 1)[1]):02x}",
         "pa": "198.18.0.2", "rule": "encap"}
    )  # fmt: skip
    wanted = tmp_path / f"{ca}.yaml"
    wanted.write_text(json.dumps(document))  # YAML is a superset of JSON
    return wanted


def until_revision(daemon: Daemon, wanted: int) -> float:
    """Seconds until the daemon runs ``wanted`` (polled; fails only past the deadline)."""
    start = time.monotonic()
    while revision(daemon.socket) < wanted:
        assert time.monotonic() - start < FOLLOW_DEADLINE_S, daemon.log.read_text()[-3000:]
        time.sleep(0.001)
    return time.monotonic() - start


def test_etcd_stopped_under_a_daemon_refuses_writes_with_503_and_its_return_is_followed(
    on_etcd: tuple[Daemon, str, Etcd], tmp_path: Path
) -> None:
    """It keeps serving its last policy (health, trace) meanwhile, says why it
    refuses, and runs what is written once etcd is back."""
    daemon, store, etcd = on_etcd
    etcd.kill()
    record = {"vsid": 5010, "ca": "10.10.10.15", "mac": "00-00-00-00-00-15",
              "pa": "198.18.0.2", "rule": "encap"}  # fmt: skip
    with ApiClient(daemon.socket) as api:
        with pytest.raises(ApiError) as refused:
            api.request("POST", "/v1/lookup-records", json=record)
        assert refused.value.status == 503
        assert f"cannot reach etcd at {store}" in str(refused.value)
        assert api.request("GET", "/v1/health")["revision"] == 0
        trace = api.request("POST", "/v1/trace", json={"from": "blue1", "to": "10.10.10.12"})
        assert trace["revision"] == 0
    etcd.start()
    wanted = added(daemon, tmp_path, "10.10.10.16")
    applied = nvgw_in(daemon, "apply", "--store", store, str(wanted))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    print(f"back: the daemon ran revision 1 {1000 * until_revision(daemon, 1):.1f} ms after apply")
    assert daemon.process is not None and daemon.process.poll() is None


def test_a_change_applied_to_etcd_is_in_force_on_the_daemon_and_its_own_in_etcd(
    on_etcd: tuple[Daemon, str, Etcd], tmp_path: Path
) -> None:
    daemon, store, _ = on_etcd
    assert daemon.ready["revision"] == 0
    applied = nvgw_in(
        daemon, "apply", "--store", store, str(added(daemon, tmp_path, "10.10.10.13"))
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    print(f"the daemon ran revision 1 {1000 * until_revision(daemon, 1):.1f} ms after apply")
    with ApiClient(daemon.socket) as api:  # and serves it: its trace uses the new record
        trace = api.request("POST", "/v1/trace", json={"from": "blue1", "to": "10.10.10.13"})
        assert trace["revision"] == 1
        record = {"vsid": 5010, "ca": "10.10.10.14", "mac": "00-00-00-00-00-14",
                  "pa": "198.18.0.2", "rule": "encap"}  # fmt: skip
        changed = api.request("POST", "/v1/lookup-records", json=record)["revision"]
    exported = nvgw_in(daemon, "policy", "export", "--store", store)
    assert exported.returncode == 0, exported.stderr
    assert f"exported from {store} at revision {changed}" in exported.stdout
    assert "10.10.10.14" in exported.stdout and "10.10.10.13" in exported.stdout
