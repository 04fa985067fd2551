"""The etcd store against a real etcd on loopback: rows that round-trip every shipped
config, seeding, a change that writes only the keys that differ, racing writers, a
watch that brings another writer's change, a follower cut off past a compaction
that resyncs, etcd killed and restarted, and each error naming the store.

The behaviours every backend shares (a change is a new revision or nothing,
If-Match, concurrent writers, migrate, a follower's reads) are test_store.py's, run
against SQLite and etcd; the tests here are etcd's by nature (its keys and
transactions, its watch, compaction, outages, authentication and limits), each the
counterpart of test_sqlite_store's where SQLite has one.
Latencies are awaited and printed, never asserted against a clock.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.control import etcd_store as etcd_module
from gateway.control import load_config, read_document, to_plain
from gateway.control.edits import add, replace_all
from gateway.control.entries import policy_json
from gateway.control.kinds import LOOKUP_RECORDS
from gateway.control.store import (
    Backend,
    NotSaved,
    RevisionMismatch,
    StoreConflict,
    StoreUnavailable,
    open_backend,
)
from gateway.errors import ConfigError
from gateway.policy import Policy, load_policy

from ._etcd import Etcd, Partition, running_etcd
from ._sqlite_writer import record

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
DEADLINE_S = 30.0  # only bounds a failure


def keep(policy: Policy) -> Policy:
    return policy


def two_hosts() -> Policy:
    return load_config(CONFIGS / "two-hosts.yaml")


@pytest.fixture
def opened() -> Iterator[Callable[..., Backend[Policy]]]:
    """Backends on a store URL, each closed after the test (its watch stopped)."""
    backends: list[Backend[Policy]] = []

    def open_(url: str, prepare: Callable[[Policy], Policy] = keep) -> Backend[Policy]:
        backends.append(open_backend(url, prepare))
        return backends[-1]

    yield open_
    for backend in backends:
        backend.close()


def prefix(url: str) -> str:
    """Where a store's keys are: ``etcd://H:P/p`` -> ``/p/``."""
    return f"/{url.split('/', 3)[3]}/"


def awaited(what: Callable[[], bool]) -> float:
    """Seconds until ``what`` holds (polled); fails only past DEADLINE_S."""
    start = time.monotonic()
    while not what():
        assert time.monotonic() - start < DEADLINE_S
        time.sleep(0.0005)
    return time.monotonic() - start


def seeded(etcd: Etcd, opened: Callable[..., Backend[Policy]]) -> tuple[str, Backend[Policy]]:
    """A new prefix of ``etcd`` seeded with the two-hosts config, and its backend."""
    url = etcd.url()
    backend = opened(url)
    backend.read((two_hosts(), "two-hosts.yaml"))
    return url, backend


def unavailable(call: Callable[[], object], said: list[str]) -> bool:
    """Whether ``call`` raised StoreUnavailable (its message added to ``said``)."""
    try:
        call()
    except StoreUnavailable as error:
        said.append(str(error))
        return True
    return False


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_comes_back_from_etcd_as_it_went(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]], name: str
) -> None:
    policy, url = load_config(CONFIGS / name), etcd_server.url()
    assert opened(url).read((policy, name)).policy == policy
    assert opened(url).read().policy == policy  # another daemon, reading it afresh


def test_an_empty_prefix_says_how_to_seed_it(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]]
) -> None:
    with pytest.raises(ConfigError, match=r"holds no policy yet.*--config FILE.*nvgw apply"):
        opened(etcd_server.url()).read()


def test_a_seed_fills_an_empty_prefix_and_never_overwrites_another_policy(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]]
) -> None:
    url, backend = seeded(etcd_server, opened)
    before = etcd_server.keys(prefix(url))
    opened(url).read((two_hosts(), "two-hosts.yaml"))  # a restart with the same --config
    assert etcd_server.keys(prefix(url)) == before
    backend.change(add(LOOKUP_RECORDS, record(13)), None)
    before = etcd_server.keys(prefix(url))
    with pytest.raises(StoreConflict) as conflict:
        opened(url).read((two_hosts(), "two-hosts.yaml"))
    message = str(conflict.value)
    assert f"both {url} (revision 1) and two-hosts.yaml" in message
    assert f"nvgw apply --store {url} two-hosts.yaml" in message and "without --config" in message
    assert etcd_server.keys(prefix(url)) == before


def test_a_change_writes_only_the_keys_that_differ_in_one_transaction(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]]
) -> None:
    url, backend = seeded(etcd_server, opened)
    before = etcd_server.keys(prefix(url))
    backend.change(add(LOOKUP_RECORDS, record(13)), 0)
    after = etcd_server.keys(prefix(url))
    changed = {key for key, value in after.items() if before.get(key) != value}
    assert changed == {
        f"{prefix(url)}meta",
        f"{prefix(url)}entries/lookup-records/5010/10.10.10.13",
    }
    assert len({after[key][1] for key in changed}) == 1  # one etcd revision: one transaction
    meta = json.loads(after[f"{prefix(url)}meta"][0])
    assert (meta["schema"], meta["revision"]) == (1, 1)  # and the rows' seal (test_store_trust)


def test_applying_a_whole_file_writes_only_the_keys_that_differ(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]], tmp_path: Path
) -> None:
    """``nvgw apply``: the prefix becomes equal to the file, removals included, in one
    transaction that writes exactly the keys of the entries that differ."""
    url, backend = seeded(etcd_server, opened)
    backend.change(add(LOOKUP_RECORDS, record(13)), None)  # which the file lacks
    before = etcd_server.keys(prefix(url))
    edited = tmp_path / "edited.yaml"
    text = (CONFIGS / "two-hosts.yaml").read_text()
    edited.write_text(text.replace("metric: 255", "metric: 100", 1))
    new = to_plain(read_document(edited))
    accepted = backend.change(replace_all(new), None)
    assert accepted.policy == load_policy({**new, "revision": 2})
    after = etcd_server.keys(prefix(url))
    assert set(before) - set(after) == {f"{prefix(url)}entries/lookup-records/5010/10.10.10.13"}
    changed = {key for key, value in after.items() if before.get(key) != value}
    touched = {tuple(key.removeprefix(prefix(url)).split("/", 2)[:2]) for key in changed}
    assert touched == {("meta",), ("entries", "customer-routes")}  # the route's metric
    assert len({after[key][1] for key in changed}) == 1  # one etcd revision: one transaction
    assert opened(url).read().policy == accepted.policy


def racing(url: str, opened: Callable[..., Backend[Policy]], if_revision: int | None) -> list[Any]:
    """Two backends that both read revision 0 and validated their change before
    either sent it (a barrier in ``prepare``); what each change returned or raised."""
    seeder = opened(url)
    seeder.read((two_hosts(), "two-hosts.yaml"))
    both = threading.Barrier(2, timeout=DEADLINE_S)
    first = [False, False]  # not while they read

    def held_once(n: int) -> Callable[[Policy], Policy]:
        def prepare(policy: Policy) -> Policy:
            if first[n]:  # the first try only: a retry after losing goes straight on
                first[n] = False
                both.wait()
            return policy

        return prepare

    outcome: list[Any] = [None, None]
    writers = [opened(url, held_once(n)) for n in range(2)]
    for writer in writers:
        writer.read()
    first[:] = [True, True]

    def write(n: int) -> None:
        try:
            outcome[n] = writers[n].change(add(LOOKUP_RECORDS, record(20 + n)), if_revision)
        except Exception as error:  # what the test looks at
            outcome[n] = error

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    return outcome


def test_two_writers_racing_on_one_revision_one_wins_the_other_is_refused(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]]
) -> None:
    url = etcd_server.url()
    outcome = racing(url, opened, if_revision=0)
    [lost] = [o for o in outcome if isinstance(o, Exception)]
    [won] = [o for o in outcome if not isinstance(o, Exception)]
    assert isinstance(lost, RevisionMismatch) and (lost.expected, lost.actual) == (0, 1)
    held = opened(url).read().policy
    assert held == won.policy and held.revision == 1
    added = {str(r.ca) for r in held.lookup_records} & {"10.10.10.20", "10.10.10.21"}
    assert len(added) == 1  # the winner's, and nothing of the loser's


def test_two_writers_racing_without_a_revision_both_land_one_after_the_other(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]]
) -> None:
    url = etcd_server.url()
    outcome = racing(url, opened, if_revision=None)
    assert sorted(o.policy.revision for o in outcome) == [1, 2]  # the loser read again
    held = opened(url).read().policy
    assert {"10.10.10.20", "10.10.10.21"} <= {str(r.ca) for r in held.lookup_records}


@pytest.fixture
def resyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URL of each backend that read its whole prefix, from now on."""
    read: list[str] = []
    resync = etcd_module.EtcdBackend._resync

    def counted(self: etcd_module.EtcdBackend[Any]) -> Any:
        read.append(self.url)
        return resync(self)

    monkeypatch.setattr(etcd_module.EtcdBackend, "_resync", counted)
    return read


def test_a_watch_brings_another_writers_change_without_reading_everything(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]], resyncs: list[str]
) -> None:
    url, follower = seeded(etcd_server, opened)
    writer = opened(url)
    writer.read()
    resyncs.clear()
    latencies = []
    for n in range(5):
        changed = writer.change(add(LOOKUP_RECORDS, record(30 + n)), None).policy
        latencies.append(awaited(lambda at=changed.revision: follower.revision() == at))
        assert follower.read().policy == changed
    assert resyncs == []  # each brought by the watch's events, not the whole prefix
    print(f"watch: follower's revision() moved {[f'{1e6 * s:.0f} us' for s in latencies]} after")


def test_a_follower_takes_a_change_by_its_events_without_asking_etcd(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]]
) -> None:
    """What the watch brought is all a follower's read needs: the meta key's write
    it saw, and the events up to it (a read of the meta key from etcd cost 11 ms of
    a 20 ms follow at 10^5 records on a busy etcd)."""
    url, follower = seeded(etcd_server, opened)
    writer = opened(url)
    writer.read()
    changed = writer.change(add(LOOKUP_RECORDS, record(30)), None).policy
    awaited(lambda: follower.revision() == changed.revision)
    asked: list[str] = []
    call = follower._call  # type: ignore[attr-defined]

    def counted(path: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(path)
        return call(path, *args, **kwargs)

    follower._call = counted  # type: ignore[attr-defined]
    assert follower.read().policy == changed
    assert asked == []


def test_a_connection_the_partition_takes_as_it_is_cut_is_never_relayed(
    etcd: Etcd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay's own race (``Partition``): a connection accepted just before a cut
    and registered after it was relayed through the cut, so a watch that connected
    then followed every change the partition was meant to hide (and so never saw the
    compaction the test below waits for). Here the cut lands while the relay connects
    to etcd for it: the client must see the connection closed, not etcd's answer."""
    partition = Partition(etcd)
    connect = socket.create_connection

    def cut_meanwhile(*args: Any, **kwargs: Any) -> socket.socket:
        partition.cut()
        return connect(*args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", cut_meanwhile)
    try:
        with connect(("127.0.0.1", partition.port), timeout=10) as client:
            client.sendall(b"GET /version HTTP/1.1\r\nHost: etcd\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                assert client.recv(4096) == b""
    finally:
        partition.close()


def test_a_follower_cut_off_past_a_compaction_resyncs(
    etcd: Etcd, opened: Callable[..., Backend[Policy]], resyncs: list[str]
) -> None:
    """It fell behind (a partition), and etcd compacted what it missed: its watch is
    cancelled on return, so it reads the whole prefix once, and its watch follows
    on from there (the next change comes as events, not another full read)."""
    partition = Partition(etcd)
    try:
        url = etcd.url()
        writer = opened(url)
        writer.read((two_hosts(), "two-hosts.yaml"))
        follower = opened(partition.url(url))
        follower.read()
        resyncs.clear()
        partition.cut()
        said: list[str] = []
        awaited(lambda: unavailable(follower.revision, said))  # once its watch saw the cut
        assert "cannot reach etcd" in said[0]
        for n in range(3):
            writer.change(add(LOOKUP_RECORDS, record(40 + n)), None)
        etcd.compact()
        partition.mend()
        watch = follower._watch  # type: ignore[attr-defined]
        awaited(lambda: watch._gap)  # back, and told that what it asks for is compacted
        awaited(lambda: follower.revision() == 3)
        assert follower.read().policy == writer.read().policy
        changed = writer.change(add(LOOKUP_RECORDS, record(50)), None).policy
        awaited(lambda: follower.revision() == 4)
        assert follower.read().policy == changed
        assert resyncs == [partition.url(url)]
    finally:
        partition.close()


def test_etcd_killed_is_a_clear_error_and_its_return_is_followed(
    etcd: Etcd, opened: Callable[..., Backend[Policy]]
) -> None:
    url, follower = seeded(etcd, opened)
    writer = opened(url)
    writer.read()
    etcd.kill()
    said: list[str] = []
    assert unavailable(follower.read, said)
    assert unavailable(lambda: writer.change(add(LOOKUP_RECORDS, record(60)), None), said)
    awaited(lambda: unavailable(follower.revision, said))  # once its watch saw the break
    for message in said:
        assert f"cannot reach etcd at {url}" in message and "is it running" in message
    etcd.start()
    changed = writer.change(add(LOOKUP_RECORDS, record(61)), 0).policy
    assert changed.revision == 1  # nothing of the change refused while it was down
    awaited(lambda: follower.revision() == 1)
    assert follower.read().policy == changed


def test_an_etcd_store_loads_no_certificate_authorities(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """nvgw speaks plain HTTP to etcd: neither a store's client nor its watch's loads
    the CA bundle an https client would (60 ms each on this VM: every store opened,
    by a daemon, a verb or a test, paid twice)."""
    loaded: list[object] = []
    monkeypatch.setattr(
        ssl.SSLContext, "load_verify_locations", lambda *args, **_: loaded.append(args)
    )
    seeded(etcd_server, opened)
    assert loaded == []


def test_a_key_under_the_prefix_that_is_not_ours_is_refused_naming_it(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]]
) -> None:
    url = etcd_server.url()
    opened(url).read((two_hosts(), "two-hosts.yaml"))
    etcd_server.put(f"{prefix(url)}someone-elses/key", "x")
    with pytest.raises(ConfigError) as refused:
        opened(url).read()
    message = str(refused.value)
    assert f"{prefix(url)}someone-elses/key is under" in message and "prefix of its own" in message


def test_an_etcd_that_does_not_answer_is_a_timeout_naming_it(
    etcd: Etcd, opened: Callable[..., Backend[Policy]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(etcd_module, "TIMEOUT_S", 0.5)
    url, backend = seeded(etcd, opened)
    assert etcd.process is not None
    etcd.process.send_signal(signal.SIGSTOP)
    try:
        with pytest.raises(StoreUnavailable, match=rf"etcd at {url} did not answer within"):
            backend.change(add(LOOKUP_RECORDS, record(70)), None)
    finally:
        etcd.process.send_signal(signal.SIGCONT)
    assert backend.change(add(LOOKUP_RECORDS, record(70)), None).policy.revision == 1


def test_an_etcd_that_refuses_nvgw_says_so(
    etcd: Etcd, opened: Callable[..., Backend[Policy]]
) -> None:
    etcd.call("/v3/auth/user/add", {"name": "root", "password": "not-a-secret"})
    etcd.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
    etcd.call("/v3/auth/enable", {})
    url = etcd.url()
    with pytest.raises(StoreUnavailable) as refused:
        opened(url).read((two_hosts(), "two-hosts.yaml"))
    assert f"etcd at {url} refused nvgw" in str(refused.value)
    assert "refused nvgw" in str(refused.value) and "without authentication" in str(refused.value)


def test_a_change_beyond_etcds_transaction_limit_is_not_saved_naming_the_flag(
    tmp_path: Path, opened: Callable[..., Backend[Policy]]
) -> None:
    with running_etcd(tmp_path, max_txn_ops=128) as etcd:  # etcd's default
        url, backend = seeded(etcd, opened)
        before = etcd.keys(prefix(url))
        document = backend.read().policy
        many = [record(n) for n in range(100, 250)]
        bigger = policy_json(document)
        bigger["lookup_records"] = [*bigger["lookup_records"], *many]
        with pytest.raises(NotSaved, match=r"transaction of \d+ operations.*--max-txn-ops"):
            backend.change(replace_all(bigger), None)
        assert etcd.keys(prefix(url)) == before


def generated(records: int) -> dict[str, Any]:
    """bench/snapshot_build.py's policy document of ``records`` records (and a port
    each): a store of many rows."""
    spec = importlib.util.spec_from_file_location(
        "snapshot_build", ROOT / "bench/snapshot_build.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return dict(bench.generate(records))


@pytest.mark.parametrize("records", [300, 3000])
def test_a_change_beyond_etcds_request_size_is_not_saved_naming_the_flag(
    tmp_path: Path, opened: Callable[..., Backend[Policy]], records: int
) -> None:
    """Over ``--max-request-bytes`` etcd says "request is too large"; over it and gRPC's
    512 KiB of slack, "received message larger than max" (as 429): both name the flag
    to raise, not --max-txn-ops, and write nothing."""
    with running_etcd(tmp_path, max_request_bytes=64 << 10) as etcd:
        url, backend = seeded(etcd, opened)
        before = etcd.keys(prefix(url))
        with pytest.raises(NotSaved) as refused:
            backend.change(replace_all(generated(records)), None)
        message = str(refused.value)
        assert re.search(r"transaction of \d+ bytes of JSON.*--max-request-bytes", message)
        assert "--max-txn-ops" not in message
        assert etcd.keys(prefix(url)) == before


def test_a_seed_and_its_read_longer_than_a_small_requests_time_out_complete(
    etcd: Etcd, opened: Callable[..., Backend[Policy]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction that must stay one (a seed of 20,000 records and their ports) and
    a read of the whole prefix get time for each row beyond a small request's
    time-out: with that cut to 0.2 s, which a fixed time-out failed (etcd commits
    ~0.1-0.2 ms per operation here), the seed commits and another daemon's first
    read reads it."""
    monkeypatch.setattr(etcd_module, "TIMEOUT_S", 0.2)
    policy = load_policy(generated(20_000))
    url = etcd.url()
    assert opened(url).read((policy, "generated")).policy == policy
    assert opened(url).read().policy == policy


def test_a_meta_key_rewritten_by_someone_else_is_refused_and_the_watch_goes_on(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]]
) -> None:
    url, follower = seeded(etcd_server, opened)
    etcd_server.put(f"{prefix(url)}meta", "not nvgw's")

    def refused() -> bool:
        try:
            follower.revision()
        except ConfigError as error:
            return f"{prefix(url)}meta is not nvgw's" in str(error)
        return False

    awaited(refused)  # the daemon logs this, once, and keeps forwarding
    assert follower._watch._thread.is_alive()  # type: ignore[attr-defined]
    etcd_server.put(f"{prefix(url)}meta", '{"schema": 1, "revision": 7}')
    awaited(lambda: follower.revision() == 7)


def writer(url: str, *args: str) -> subprocess.Popen[str]:
    """The store writer process (tests/control/_sqlite_writer.py) on ``url``."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.control._sqlite_writer", url, *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


KILLED_AT = {  # where the writer dies, and whether its change must be in the store
    "validated": False,
    "sent": True,  # etcd took the transaction whole; the writer never read the answer
    "committed": True,
}


@pytest.mark.parametrize("point", KILLED_AT)
def test_a_writer_killed_at_any_point_leaves_the_old_or_the_new_revision(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]], point: str
) -> None:
    url, backend = seeded(etcd_server, opened)
    old, before = backend.read().policy, etcd_server.keys(prefix(url))
    died = writer(url, "crash", point)
    _, err = died.communicate(timeout=DEADLINE_S)
    assert died.returncode == -signal.SIGKILL, err
    restarted = opened(url).read().policy  # what a restarted daemon runs
    if KILLED_AT[point]:
        assert restarted.revision == 1
        assert "10.10.10.200" in {str(r.ca) for r in restarted.lookup_records}
    else:
        assert restarted == old and etcd_server.keys(prefix(url)) == before
    taken = opened(url).change(add(LOOKUP_RECORDS, record(13)), None).policy  # and it goes on
    assert taken.revision == restarted.revision + 1


def test_writers_in_several_processes_lose_nothing(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]]
) -> None:
    url, _ = seeded(etcd_server, opened)
    count, each = 4, 5
    processes = [writer(url, "add", str(100 + n * each), str(each)) for n in range(count)]
    revisions = []
    for process in processes:
        out, err = process.communicate(timeout=DEADLINE_S * 2)
        assert process.returncode == 0, err
        revisions += [int(line) for line in out.split()]
    assert sorted(revisions) == list(range(1, count * each + 1))  # each one a revision
    held = opened(url).read().policy
    assert held.revision == count * each
    wanted = {f"10.10.10.{n}" for n in range(100, 100 + count * each)}
    assert wanted <= {str(r.ca) for r in held.lookup_records}


@pytest.mark.parametrize("other", ["two-hosts.yaml", "routing.yaml"])
def test_two_daemons_seeding_at_once_never_overwrite_each_other(
    etcd_server: Etcd, opened: Callable[..., Backend[Policy]], other: str
) -> None:
    """The second finds the prefix empty, but the first commits before it: its seed's
    transaction (meta still absent) fails, and it checks what the first wrote."""
    url = etcd_server.url()
    first, second = opened(url), opened(url)
    theirs = load_config(CONFIGS / other)
    commit = second._commit  # type: ignore[attr-defined]

    def first_wins(*args: Any) -> bool:
        first.read((theirs, other))
        return bool(commit(*args))

    second._commit = first_wins  # type: ignore[attr-defined]
    if other == "two-hosts.yaml":  # the same policy: nothing to refuse
        assert second.read((two_hosts(), "two-hosts.yaml")).policy == two_hosts()
    else:
        with pytest.raises(StoreConflict, match=f"both {url} .* and two-hosts.yaml"):
            second.read((two_hosts(), "two-hosts.yaml"))
    assert opened(url).read().policy == theirs
