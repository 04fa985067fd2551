"""A daemon following another's writes takes them by their delta (``store.followed``:
the rows they touched, applied to the rows it holds and to its index; its snapshot
updated from the running one) and ends exactly where a whole read ends: random
changes of every kind by one store, a second store on the same database following
each, its policy and snapshot equal to a fresh whole read's. A log that no longer
reaches back, a seal the delta does not move, a change refused on the writer: the
whole read, or nothing. On SQLite and etcd (``each_store``) but where a test says."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.control import sqlite_store
from gateway.control.batches import AddAll
from gateway.control.edits import NotFound, add, migrate, remove, replace_all
from gateway.control.incremental import RecordChanges
from gateway.control.kinds import LOOKUP_RECORDS, NODES, VIRTUAL_SUBNETS
from gateway.control.policy_rows import Delta, Placed, rows
from gateway.control.store import open_backend
from gateway.dataplane import prepare_node
from gateway.errors import ConfigError
from gateway.policy import Policy, Snapshot, compile_policy, load_policy

from ..policy._documents import BLUE
from ..policy._gateway_document import gateway_document
from ..policy.test_incremental import canonical, raw_records
from ..policy.test_incremental_kinds import Migration, migrations, other_edits
from ..policy.test_incremental_kinds import _top as top
from . import _stores
from ._stores import database, url
from ._stores import held as whole
from .test_record_changes import _outcome, filters, opened

each_store = pytest.mark.usefixtures("each_store")
FOLLOW_DEADLINE_S = 30.0  # only bounds a failure: etcd's watch brings a change in ms
ENTRY = {"vsid": 5010, "pa": "198.18.0.1", "rule": "encap"}


def entry(last: int, subnet: str = "10.10.10") -> dict[str, Any]:
    """A blue record (outside blue's subnet: ``subnet`` 10.10.11)."""
    return {**ENTRY, "ca": f"{subnet}.{last}", "mac": f"02-00-00-00-00-{last}"}


class Follower:
    """A second store on the writer's database, prepared as the daemon prepares (the
    snapshot in force as ``previous``), counting the reads its index took."""

    def __init__(self, config: Path) -> None:
        self.running: list[Snapshot] = []
        self.backend = open_backend(url(config), self._prepare)
        self.loaded = self.backend.read()
        self.taken: list[bool] = []
        follow = self.backend._records.follow

        def spied(*args: Any) -> Any:
            found = follow(*args)
            self.taken.append(found is not None)
            return found

        self.backend._records.follow = spied
        # etcd: the watch live before the first change, so that the change is taken
        # by what it brings (a watch not live yet is its own test, below); one that
        # starts later than a read waits for it (CATCH_UP_S) makes that read whole.
        watch = getattr(self.backend, "_watch", None)
        deadline = time.monotonic() + FOLLOW_DEADLINE_S
        while watch is not None and watch.meta_written() is None:
            assert time.monotonic() < deadline, "the follower's watch never started"
            time.sleep(0.005)

    def _prepare(self, policy: Policy) -> Snapshot:
        snapshot, _ = prepare_node(
            policy, "host1", None, self.running[-1] if self.running else None
        )
        self.running.append(snapshot)
        return snapshot

    def follow(self, revision: int) -> Any:
        """Read once the store shows ``revision`` (etcd's: when the watch brings it)."""
        deadline = time.monotonic() + FOLLOW_DEADLINE_S
        while self.backend.revision() != revision:
            assert time.monotonic() < deadline, "the follower never saw the revision"
            time.sleep(0.005)
        self.loaded = self.backend.read()
        return self.loaded


@contextmanager
def pair(config: Path) -> Iterator[tuple[Any, Follower]]:
    """A writer seeding ``config``'s store, and a follower of it; both closed after."""
    writer = opened(config)
    try:
        follower = Follower(config)
        try:
            yield writer, follower
        finally:
            follower.backend.close()
    finally:
        writer.close()


record_edits = st.one_of(
    st.builds(lambda fields: add(LOOKUP_RECORDS, fields), raw_records),
    st.builds(lambda found: remove(LOOKUP_RECORDS, found), filters),
)

# Migrations between the two hosts of VMs with a port (few of ``migrations`` move one).
moving = st.builds(
    Migration,
    st.sampled_from(["blue1", "red1", "blue2", "red2", "blue3"]),
    st.sampled_from(["198.18.0.1", "198.18.0.2"]),
)


def answer(writer: Any, step: Any) -> Any:
    """The writer's answer to an edit or a migration (its PA's owner found in the
    policy it holds, as the API finds it)."""
    if isinstance(step, Migration):
        try:
            step = migrate(step.vm, step.pa, writer.read().policy)
        except NotFound as error:
            return ("refused", str(error))
    return _outcome(writer, step)


@each_store
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(st.one_of(other_edits, record_edits, migrations, moving), min_size=1, max_size=8)
)
def test_a_follower_ends_each_change_where_a_whole_read_does(
    tmp_path_factory: Any, steps: list[Any]
) -> None:
    config = tmp_path_factory.mktemp("stores") / "p.yaml"
    with pair(config) as (writer, follower):
        for step in steps:
            answered = answer(writer, step)
            if answered[0] == "refused":
                continue
            policy = answered[0]
            taken = len(follower.taken)
            loaded = follower.follow(policy.revision)
            # By the index, a migration too (its port paired); a change of what
            # sits in nodes (gateways' parts, provider addresses): the whole read.
            by_index = isinstance(step, Migration) or top(step.kind) is not NODES
            assert follower.taken[taken:] == [by_index]
            assert loaded.policy == policy == whole(config)
            assert canonical(loaded.prepared) == canonical(compile_policy(policy))


@each_store
def test_a_change_of_records_is_followed_by_its_delta(tmp_path: Path) -> None:
    """Records added and removed by another writer reach the follower through its
    index, and its snapshot is the running one updated, not compiled again."""
    config = tmp_path / "p.yaml"
    with pair(config) as (writer, follower):
        writer.change(add(LOOKUP_RECORDS, entry(40)), None)
        last = writer.change(add(LOOKUP_RECORDS, entry(41)), None)
        loaded = follower.follow(last.policy.revision)
    assert follower.taken == [True]
    assert loaded.policy == whole(config)
    assert loaded.prepared._lpm is follower.running[0]._lpm  # updated, not compiled again
    assert canonical(loaded.prepared) == canonical(compile_policy(loaded.policy))


def test_a_follower_whose_watch_is_not_live_still_takes_the_change_by_its_delta(
    tmp_path: Path, etcd_server: Any
) -> None:
    """A watch just started or reconnecting has seen no write of the meta key: the
    follower asks etcd where it is and waits for the watch's events, as a change of
    its own does, rather than reading the whole prefix again (it did, now and then,
    in the differential test above: a follower opened just before the change)."""
    _stores.use(etcd_server)
    try:
        config = tmp_path / "p.yaml"
        with pair(config) as (writer, follower):
            follower.backend._watch.meta_written = lambda: None  # not watching (yet)
            last = writer.change(add(LOOKUP_RECORDS, entry(42)), None)
            loaded = follower.follow(last.policy.revision)
    finally:
        _stores.use(None)
        _stores.close_opened()
    assert follower.taken == [True]
    assert loaded.policy == last.policy


@each_store
def test_a_change_refused_on_the_writer_moves_nothing_on_the_follower(tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    with pair(config) as (writer, follower):
        outside = add(LOOKUP_RECORDS, entry(40, "10.10.11"))  # outside its subnet
        with pytest.raises(ConfigError):
            writer.change(outside, None)
        assert follower.backend.revision() == follower.loaded.policy.revision
        accepted = writer.change(add(LOOKUP_RECORDS, entry(40)), None)
        loaded = follower.follow(accepted.policy.revision)
    assert follower.taken == [True] and loaded.policy == whole(config)
    assert not any(str(r.ca) == "10.10.11.40" for r in loaded.policy.lookup_records)


def test_a_log_trimmed_past_the_follower_s_revision_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's log kept to one row: the follower, two revisions behind, reads the
    whole store (SQLite's alone: etcd's counterpart, a watch compacted past the rows
    held, resyncs, test_etcd_store's)."""
    monkeypatch.setattr(sqlite_store, "CHANGES_KEPT", 1)
    config = tmp_path / "p.yaml"
    with pair(config) as (writer, follower):
        writer.change(add(LOOKUP_RECORDS, entry(40)), None)
        last = writer.change(add(LOOKUP_RECORDS, entry(41)), None)
        loaded = follower.follow(last.policy.revision)
    assert follower.taken == [] and loaded.policy == last.policy == whole(config)


def test_a_row_edited_behind_the_store_s_back_is_read_whole(tmp_path: Path) -> None:
    """A row a change touched, edited by hand after it: the seal no longer follows
    the delta, so the follower reads (and validates) the whole store (SQLite's
    alone: etcd's keys are written by etcd's clients, under the meta's revision)."""
    config = tmp_path / "p.yaml"
    with pair(config) as (writer, follower):
        accepted = writer.change(add(LOOKUP_RECORDS, entry(40)), None)
        with closing(sqlite3.connect(database(config))) as db, db:
            edited = "replace(value, '02-00-00-00-00-40', '02-00-00-00-00-77')"
            db.execute(f"UPDATE entries SET value = {edited} WHERE key = '5010/10.10.10.40'")
        loaded = follower.follow(accepted.policy.revision)
    assert follower.taken == [] and loaded.policy == whole(config)
    assert str(loaded.policy.lookup_records[-1].mac) == "02-00-00-00-00-77"


@each_store
def test_a_follower_s_own_change_places_its_rows_as_the_writer_would(tmp_path: Path) -> None:
    """The index and the places a follower took by delta serve its own next change:
    after another writer added two records and removed the last, the follower's
    record takes the place the removal gave back, and its rows, places and policy
    are a fresh whole read's."""
    config = tmp_path / "p.yaml"
    with pair(config) as (writer, follower):
        writer.change(add(LOOKUP_RECORDS, entry(40)), None)
        writer.change(add(LOOKUP_RECORDS, entry(41)), None)
        last = writer.change(remove(LOOKUP_RECORDS, {"ca": "10.10.10.41"}), None)
        follower.follow(last.policy.revision)
        mine = follower.backend.change(add(LOOKUP_RECORDS, entry(42)), None)
        fresh = open_backend(url(config), lambda policy: policy)
        try:
            assert fresh.read().policy == mine.policy
            assert fresh._state.seqs == follower.backend._state.seqs
        finally:
            fresh.close()
    assert follower.taken == [True]


@each_store
def test_a_change_of_another_kind_keeps_the_snapshot_s_record_tables(tmp_path: Path) -> None:
    """A subnet added by another writer reaches the follower through its section
    (``change_others``), and its snapshot keeps every record table of the running
    one (``compile_policy``'s path for other kinds), not compiled again."""
    config = tmp_path / "p.yaml"
    subnet = {"rdid": BLUE, "vsid": 5099, "prefixes": ["10.10.99.0/24"]}
    with pair(config) as (writer, follower):
        accepted = writer.change(add(VIRTUAL_SUBNETS, subnet), None)
        loaded = follower.follow(accepted.policy.revision)
    assert follower.taken == [True] and loaded.policy == whole(config)
    assert loaded.prepared.record_by_ca is follower.running[0].record_by_ca
    assert canonical(loaded.prepared) == canonical(compile_policy(loaded.policy))


@each_store
def test_a_migration_is_followed_by_its_delta(tmp_path: Path) -> None:
    """A live migration by another writer (blue1's record to host2's PA, its port
    from host1 to the end of host2's) reaches the follower through its index, the
    port paired by its name: its snapshot is the running one updated, and its rows,
    places and policy are a fresh whole read's, also after its own migration back."""
    config = tmp_path / "p.yaml"
    with pair(config) as (writer, follower):
        there = writer.change(migrate("blue1", "198.18.0.2", writer.read().policy), None)
        loaded = follower.follow(there.policy.revision)
        host2 = next(node for node in loaded.policy.nodes if node.name == "host2")
        assert host2.ports[-1].name == "blue1"
        assert loaded.prepared._lpm is follower.running[0]._lpm  # updated, not compiled again
        assert canonical(loaded.prepared) == canonical(compile_policy(loaded.policy))
        back = follower.backend.change(migrate("blue1", "198.18.0.1", loaded.policy), None)
        fresh = open_backend(url(config), lambda policy: policy)
        try:
            assert fresh.read().policy == back.policy
            assert fresh._state.entries == follower.backend._state.entries
            assert fresh._state.seqs == follower.backend._state.seqs
        finally:
            fresh.close()
    assert follower.taken == [True]
    assert loaded.policy == there.policy


def _pa_changed() -> dict[str, Any]:
    """blue1 migrated to host2, and host2's provider address given another prefix."""
    document = _blue1_on_host2()
    document["nodes"]["host2"]["provider_addresses"][0]["prefix_length"] = 25
    return document


def _blue1_on_host2() -> dict[str, Any]:
    """The seed's document once blue1 migrated to host2, as ``nvgw apply`` takes it."""
    document = gateway_document()
    document["lookup_records"][0]["pa"] = "198.18.0.2"
    hosts = document["nodes"]
    hosts["host2"]["ports"].append(hosts["host1"]["ports"].pop(0))
    return document


def _port_edited() -> dict[str, Any]:
    """blue1 migrated to host2 with another MAC (its record's and its port's)."""
    document = _blue1_on_host2()
    document["lookup_records"][0]["mac"] = document["nodes"]["host2"]["ports"][-1]["mac"] = (
        "00-00-00-00-00-77"
    )
    return document


@each_store
@pytest.mark.parametrize("case", ["provider address", "port edited", "two ports"])
def test_what_a_migration_does_not_explain_is_read_whole(tmp_path: Path, case: str) -> None:
    """The rows of nodes a follower cannot pair as one migrated port, its fields
    the same (a provider address changed by ``nvgw apply`` beside a migration, a
    port edited on its way, two migrations followed at once), are read whole."""
    config = tmp_path / "p.yaml"
    with pair(config) as (writer, follower):
        if case == "two ports":
            writer.change(migrate("blue1", "198.18.0.2", writer.read().policy), None)
            last = writer.change(migrate("red1", "198.18.0.2", writer.read().policy), None)
        else:
            changed = _pa_changed() if case == "provider address" else _port_edited()
            last = writer.change(replace_all(changed), None)  # nvgw apply
        loaded = follower.follow(last.policy.revision)
    assert follower.taken == [False]
    assert loaded.policy == last.policy == whole(config)
    assert canonical(loaded.prepared) == canonical(compile_policy(loaded.policy))


class _Row(tuple):  # type: ignore[type-arg]
    """A row of a change followed, found by its hash and its identity alone: a
    comparison with another row is a pass over the change's rows."""

    __hash__ = tuple.__hash__

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        raise AssertionError("a row compared with another: a pass over the change's rows")


def test_a_batch_followed_compares_no_row_with_another() -> None:
    """A batch of records another writer added is taken without a pass over its
    rows for each of them (quadratic: minutes for a batch of 10^5 records, where the
    whole read takes 15 s), and ends where the writer's change did."""
    policy = load_policy(gateway_document())
    entries = rows(policy)
    seqs = {row: n for n, row in enumerate(entries)}
    writer, follower = RecordChanges(), RecordChanges()
    mine, theirs = (Placed(policy.revision, dict(entries), dict(seqs)) for _ in range(2))
    writer.policy(mine, "writer")
    follower.policy(theirs, "follower")
    batch = AddAll(LOOKUP_RECORDS, [entry(last) for last in range(40, 44)])
    taken = writer.change(mine, batch, lambda policy: policy)
    assert taken is not None
    wrapped = {row: _Row(row) for row in taken.delta.put}
    delta = Delta({wrapped[row]: value for row, value in taken.delta.put.items()}, [])
    places = {wrapped[row]: taken.seqs[row] for row in taken.delta.put}
    assert follower.follow(theirs, delta, places, taken.policy.revision) == taken.policy
