"""The policy store: a change is a new revision in the store, or nothing at all.

Runs on both anyio backends against copies of the shipped configs; ``prepare`` and
``commit`` are recorders standing in for the daemon's compile and swap. Changes and
reads run against the database stores, SQLite and a real etcd (``each_store``);
the file store's tests are its own (it takes no change: it says so, and what it
reads, on SIGHUP, it reads as before).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from gateway.control import load_config
from gateway.control.edits import NotFound, add, migrate, remove
from gateway.control.kinds import CUSTOMER_ROUTES, LOOKUP_RECORDS, VIRTUAL_SUBNETS
from gateway.control.store import (
    BACKSTOP_S,
    SETTLE_S,
    PolicyStore,
    ReadOnly,
    RevisionMismatch,
)
from gateway.errors import ConfigError, ConfigIssue
from gateway.io.privileges import lookup_user
from gateway.policy import Policy

from . import _stores

pytestmark = pytest.mark.anyio
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BLUE = "{11111111-2222-3333-4444-000000005010}"
RED = "{11111111-2222-3333-4444-000000005011}"
FOLLOW_DEADLINE_S = 30.0  # only bounds a failure: etcd's watch brings a change in ms
QUIET_S = 0.3  # a follower's wait watched not returning (the backstop is BACKSTOP_S)
EVENT_S = BACKSTOP_S / 2  # a commit's events wake it well before the backstop


class Daemon:
    """Records what the store hands over, like the Daemon's prepare/commit."""

    def __init__(self, refuse: str | None = None) -> None:
        self.committed: list[int] = []
        self.refuse = refuse

    def prepare(self, policy: Policy) -> Policy:
        if self.refuse and any(r.vm == self.refuse for r in policy.lookup_records):
            raise ConfigError([ConfigIssue("lookup_records", self.refuse, "not on this node")])
        return policy

    async def commit(self, policy: Policy) -> None:
        self.committed.append(policy.revision)


@pytest.fixture
def at(each_store: str, config: Path) -> Where:
    """A database store (SQLite, then etcd) seeded from the config: a store that
    takes changes."""
    return Where(config)


class Where:
    """A database store holding the two-hosts config (``_stores`` names it after the
    config), the stores started on it, and how a test looks at what it holds without
    going through the store under test."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.seeded = False  # a database is seeded by the first store started

    async def started(self, daemon: Daemon | None = None) -> PolicyStore[Any]:
        daemon = daemon or Daemon()
        store = await _stores.loaded(self.config, daemon.prepare, daemon.commit, not self.seeded)
        self.seeded = True
        return store

    def held(self) -> Policy:
        """The policy the store holds now, read afresh."""
        return _stores.held(self.config)

    def state(self) -> object:
        """What a refused change must leave as it was: the database's revision, rows
        and log, or etcd's keys under the prefix."""
        return _stores.state(self.config)


async def started(config: Path, daemon: Daemon | None = None) -> PolicyStore[Any]:
    daemon = daemon or Daemon()
    store = PolicyStore(config, daemon.prepare, daemon.commit)
    await store.load()
    return store


def record(ca: str, mac: str, vm: str | None = None, vsid: int = 5010) -> dict[str, Any]:
    entry = {"vsid": vsid, "ca": ca, "mac": mac, "pa": "198.18.0.2", "rule": "encap"}
    return {**entry, "vm": vm} if vm else entry


async def test_the_file_store_refuses_every_change_naming_the_alternative(config: Path) -> None:
    daemon = Daemon()
    store = await started(config, daemon)
    before = config.read_bytes()
    with pytest.raises(ReadOnly, match=rf"--store sqlite:PATH --config {config}"):
        await store.change(add(LOOKUP_RECORDS, record("10.10.10.13", "00-00-00-00-00-13")))
    assert config.read_bytes() == before and daemon.committed == [0]
    assert store.changes == {"applied": 0, "refused": 1}


async def test_a_load_reads_what_the_file_holds_now(config: Path) -> None:
    """SIGHUP after a hand edit, or a GitOps tool's: the file as it is now (the file
    store's own: it is re-read on SIGHUP, and takes no change of its own)."""
    daemon = Daemon()
    store = await started(config, daemon)
    config.write_text(config.read_text().replace("revision: 0", "revision: 1", 1))
    assert (await store.load()).revision == 1 == load_config(config).revision
    assert daemon.committed == [0, 1]


async def test_a_load_reads_what_the_store_holds_now(at: Where) -> None:
    """A daemon following another's write: the store as committed now."""
    daemon = Daemon()
    store = await at.started(daemon)
    other = await at.started()
    await other.change(add(LOOKUP_RECORDS, record("10.10.10.13", "00-00-00-00-00-13")))
    assert (await store.load()).revision == 1 == at.held().revision
    assert daemon.committed == [0, 1]


async def test_an_accepted_change_is_a_new_revision_in_the_store(at: Where) -> None:
    daemon = Daemon()
    store = await at.started(daemon)
    accepted = await store.change(add(LOOKUP_RECORDS, record("10.10.10.13", "00-00-00-00-00-13")))
    assert accepted.policy.revision == 1 and daemon.committed == [0, 1]
    held = at.held()
    assert held.revision == 1 and held == store.policy == accepted.policy
    assert any(str(r.ca) == "10.10.10.13" for r in held.lookup_records)


INVALID_CHANGES = {
    "CA outside its subnet": (
        add(LOOKUP_RECORDS, record("10.10.11.13", "00-00-00-00-00-13")),
        "lookup_records[4].ca",
        "not inside",
    ),
    "VSID in two RDIDs": (
        add(VIRTUAL_SUBNETS, {"rdid": RED, "vsid": 5010, "prefixes": ["10.10.30.0/24"]}),
        "routing_domains[1].virtual_subnets[1].vsid",
        "5010",
    ),
    "overlapping prefix": (
        add(VIRTUAL_SUBNETS, {"rdid": BLUE, "vsid": 5012, "prefixes": ["10.10.10.128/25"]}),
        "routing_domains[0].virtual_subnets[1].prefixes",
        "overlap",
    ),
    "duplicate CA": (
        add(LOOKUP_RECORDS, record("10.10.10.12", "00-00-00-00-00-13")),
        "lookup_records[4]",
        "10.10.10.12",
    ),
    "route to a VSID of another RDID": (
        add(
            CUSTOMER_ROUTES,
            {"rdid": RED, "vsid": 5010, "destination": "10.10.10.0/24", "next_hop": "0.0.0.0"},
        ),
        "customer_routes[2]",
        "",
    ),
}


@pytest.mark.parametrize("case", INVALID_CHANGES, ids=list(INVALID_CHANGES))
async def test_an_invalid_change_is_refused_with_the_reason_and_changes_nothing(
    at: Where, case: str
) -> None:
    edit, path, words = INVALID_CHANGES[case]
    daemon = Daemon()
    store = await at.started(daemon)
    before = at.state()
    with pytest.raises(ConfigError) as refused:
        await store.change(edit)
    issues = refused.value.issues
    assert any(i.path.startswith(path) and words in f"{i.value} {i.message}" for i in issues), [
        str(i) for i in issues
    ]
    assert at.state() == before
    assert store.policy is not None and store.policy.revision == 0
    assert daemon.committed == [0]
    # Nothing of the refused change lingers to ride along with the next one.
    await store.change(add(LOOKUP_RECORDS, record("10.10.10.50", "00-00-00-00-00-50")))
    assert at.held() == (await at.started()).policy
    assert len(at.held().lookup_records) == 5


async def test_what_the_node_refuses_is_not_written(at: Where) -> None:
    store = await at.started(Daemon(refuse="blue3"))
    before = at.state()
    with pytest.raises(ConfigError, match="not on this node"):
        await store.change(add(LOOKUP_RECORDS, record("10.10.10.13", "00-00-00-00-00-13", "blue3")))
    assert at.state() == before


async def test_a_change_conditional_on_a_stale_revision_is_refused(at: Where) -> None:
    store = await at.started()
    await store.change(add(LOOKUP_RECORDS, record("10.10.10.13", "00-00-00-00-00-13")), 0)
    before = at.state()
    with pytest.raises(RevisionMismatch) as stale:
        await store.change(add(LOOKUP_RECORDS, record("10.10.10.14", "00-00-00-00-00-14")), 0)
    assert (stale.value.expected, stale.value.actual) == (0, 1)
    assert at.state() == before
    accepted = await store.change(remove(LOOKUP_RECORDS, {"ca": "10.10.10.13"}), 1)
    assert accepted.policy.revision == 2


async def test_concurrent_writers_are_serialized_and_none_is_lost(at: Where) -> None:
    daemon = Daemon()
    store = await at.started(daemon)
    revisions: list[int] = []

    async def writer(n: int) -> None:
        entry = record(f"10.10.10.{100 + n}", f"00-00-00-00-01-{n:02x}")
        revisions.append((await store.change(add(LOOKUP_RECORDS, entry))).policy.revision)

    async with anyio.create_task_group() as tg:
        for n in range(12):
            tg.start_soon(writer, n)
    assert sorted(revisions) == list(range(1, 13))
    assert daemon.committed == [0, *range(1, 13)]  # swapped in the order they were written
    held = at.held()
    assert held.revision == 12
    assert {str(r.ca) for r in held.lookup_records} >= {f"10.10.10.{100 + n}" for n in range(12)}


async def test_two_daemons_sharing_a_store_build_on_each_other(at: Where) -> None:
    one, two = await at.started(), await at.started()
    await one.change(add(LOOKUP_RECORDS, record("10.10.10.13", "00-00-00-00-00-13")))
    accepted = await two.change(add(LOOKUP_RECORDS, record("10.10.10.14", "00-00-00-00-00-14")))
    assert accepted.policy.revision == 2
    cas = {str(r.ca) for r in at.held().lookup_records}
    assert {"10.10.10.13", "10.10.10.14"} <= cas


async def test_a_follower_reads_only_a_revision_it_does_not_run(at: Where) -> None:
    """What a daemon's follow task asks: nothing is read or swapped in again for the
    revision this store committed itself, and another writer's revision is (once the
    store sees it: SQLite's at once, etcd's when its watch brings it)."""
    daemon = Daemon()
    store = await at.started(daemon)
    await store.change(add(LOOKUP_RECORDS, record("10.10.10.13", "00-00-00-00-00-13")))
    assert await store.load(moved_only=True) is None and daemon.committed == [0, 1]
    other = await at.started()
    await other.change(add(LOOKUP_RECORDS, record("10.10.10.14", "00-00-00-00-00-14")))
    with anyio.fail_after(FOLLOW_DEADLINE_S):
        while await store.committed_revision() != 2:  # what the daemon polls
            await anyio.sleep(0.005)
    moved = await store.load(moved_only=True)
    assert moved is not None and moved.revision == 2 and daemon.committed == [0, 1, 2]


async def test_a_followers_wait_returns_when_another_writer_commits(at: Where) -> None:
    """``moves``, what a daemon's follow task waits on: it returns soon after another
    writer commits, well before the backstop (SQLite: on its files' events; etcd: on
    its watch's signal), and, once the feed's opening has settled, not while nothing
    is committed."""
    store, other = await at.started(), await at.started()
    async with store.moves() as moved:
        settled = anyio.current_time() + SETTLE_S
        while anyio.current_time() < settled:  # it asks every POLL_S meanwhile
            await moved()
        with anyio.move_on_after(QUIET_S) as quiet:
            await moved()
        assert quiet.cancelled_caught, "a wait returned with nothing committed"
        await other.change(add(LOOKUP_RECORDS, record("10.10.10.13", "00-00-00-00-00-13")))
        with anyio.fail_after(EVENT_S):
            while True:
                await moved()
                if await store.committed_revision() == 1:
                    break


async def test_a_commit_before_the_followers_feed_opened_is_seen_as_soon(at: Where) -> None:
    """A commit between a follower's read and its first wait (the daemon's start: the
    store loaded, then its follow task started) raised its events before anything
    watched them: the waits ask again soon after the feed opens all the same."""
    store, other = await at.started(), await at.started()
    await other.change(add(LOOKUP_RECORDS, record("10.10.10.13", "00-00-00-00-00-13")))
    async with store.moves() as moved:
        with anyio.fail_after(EVENT_S):
            while True:  # the daemon's order: wait, then ask
                await moved()
                if await store.committed_revision() == 1:
                    break


async def test_removing_what_does_not_exist_is_not_found(at: Where) -> None:
    store = await at.started()
    before = at.state()
    with pytest.raises(NotFound, match=r"no lookup record matches ca=10\.10\.10\.99"):
        await store.change(remove(LOOKUP_RECORDS, {"ca": "10.10.10.99"}))
    assert at.state() == before


async def test_filters_match_in_canonical_form(at: Where) -> None:
    store = await at.started()
    await store.change(add(LOOKUP_RECORDS, record("10.10.10.13", "00-00-00-00-00-13", "blue3")))
    accepted = await store.change(
        remove(LOOKUP_RECORDS, {"vsid": "5010", "mac": "00:00:00:00:00:13"})
    )
    assert [entry["vm"] for entry in accepted.result] == ["blue3"]


async def test_migrate_moves_the_records_and_the_port_in_one_revision(at: Where) -> None:
    store = await at.started()
    assert store.policy is not None
    accepted = await store.change(migrate("blue2", "198.18.0.1", store.policy))
    assert accepted.result == {
        "vm": "blue2",
        "pa": "198.18.0.1",
        "node": "host1",
        "from_node": "host2",
    }
    policy = at.held()
    assert policy.revision == 1
    [blue2] = [r for r in policy.lookup_records if r.vm == "blue2"]
    assert str(blue2.pa) == "198.18.0.1"
    assert "blue2" in {p.name for p in policy.node("host1").ports}
    assert "blue2" not in {p.name for p in policy.node("host2").ports}
    with pytest.raises(NotFound, match=r"no node owns PA 198\.18\.9\.9"):
        migrate("blue2", "198.18.9.9", policy)


# ---------------------------------------------------------------- a file gone or unreadable


def _delete(config: Path) -> None:
    config.unlink()


def _rename_away(config: Path) -> None:
    config.rename(config.with_name(".two-hosts.yaml.swp"))  # an editor's save, caught midway


def _dangling_symlink(config: Path) -> None:
    config.unlink()
    config.symlink_to(config.with_name("gone.yaml"))


def _replaced_by_a_symlink(config: Path) -> None:
    elsewhere = config.with_name("elsewhere.yaml")
    config.rename(elsewhere)
    config.symlink_to(elsewhere)  # valid, but not the file the store resolved at start


def _a_directory(config: Path) -> None:
    config.unlink()
    config.mkdir()


FILE_GONE = {
    "deleted": (_delete, "No such file or directory"),
    "renamed away": (_rename_away, "No such file or directory"),
    "dangling symlink": (_dangling_symlink, "now a symbolic link"),
    "replaced by a symlink": (_replaced_by_a_symlink, "now a symbolic link"),
    "a directory": (_a_directory, "Is a directory"),
}


@pytest.mark.parametrize("case", FILE_GONE, ids=list(FILE_GONE))
async def test_a_file_gone_or_unusable_is_a_refusal_naming_it(config: Path, case: str) -> None:
    """What SIGHUP (``load``) meets when the file is gone: a ConfigError naming the
    file and the reason, never an OSError, nothing changed."""
    damage, reason = FILE_GONE[case]
    daemon = Daemon()
    store = await started(config, daemon)
    damage(config)
    with pytest.raises(ConfigError) as refused:
        await store.load()
    [issue] = refused.value.issues
    assert issue.file == str(config) and "cannot read the file" in issue.message
    assert reason in issue.message
    assert store.policy is not None and store.policy.revision == 0
    assert daemon.committed == [0]


async def test_a_file_the_reader_may_not_open_is_a_refusal_naming_it(config: Path) -> None:
    """EACCES, which root never meets: a child process as ``nobody`` reads a config in
    a directory only root may enter, and reports what the store raised."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become nobody")  # not a namespace need: no CI failure
    uid, gid = lookup_user("nobody")
    config.parent.chmod(0o700)
    store = PolicyStore(config, Daemon().prepare, Daemon().commit)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            try:
                store.read()
                message = "read it"
            except ConfigError as error:
                message = f"ConfigError: {error}"
            except BaseException as error:
                message = f"{type(error).__name__}: {error}"
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode()
    os.waitpid(pid, 0)
    assert said == f"ConfigError: {config}: cannot read the file: Permission denied"
