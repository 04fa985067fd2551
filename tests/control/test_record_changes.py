"""Changes of lookup records on a database store take the incremental path
(``control/incremental.py``: indexes, the rows they touch) and end exactly where the
whole path ends (the document of every row, validated whole, every row compared):
random sequences of adds and removals, valid and invalid, applied to two stores
seeded alike, one with the incremental path turned off, give the same answers (the
policy and what the edit reports, or the same refusal) and the same rows, revision
and seal in the store (and log, on SQLite). On SQLite and etcd (``each_store``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.control.edits import Exists, NotFound, add, migrate, remove
from gateway.control.kinds import LOOKUP_RECORDS
from gateway.control.sqlite_store import SqliteBackend
from gateway.control.store import NotSaved, StoreUnavailable, open_backend
from gateway.dataplane import prepare_node
from gateway.errors import ConfigError
from gateway.policy import NodeRole, Policy, Snapshot, _load, compile_policy, load_policy
from gateway.policy import incremental as policy_incremental
from gateway.policy._load import parse_document

from ..policy._gateway_document import gateway_document
from ..policy.test_incremental import canonical, raw_records
from ..policy.test_incremental_kinds import Migration, migrations
from ._stores import contents, url

pytestmark = pytest.mark.usefixtures("each_store")
SEED = "gateway_document"

filters = st.fixed_dictionaries(
    {},
    optional={
        "vsid": st.sampled_from([5010, 5011, "5012", 5099]),
        "ca": st.sampled_from(["10.10.10.11", "10.10.10.254", "10.10.20.13", "0.0.0.0"]),
        "mac": st.sampled_from(["00:00:00:00:00:11", "00-00-00-00-00-12", "02-00-00-00-50-10"]),
        "pa": st.sampled_from(["198.18.0.1", "198.18.0.10"]),
        "vm": st.sampled_from(["blue1", "red2", "vm-a"]),
        "rule": st.sampled_from(["encap", "nat", "TranslationMethodEncap"]),
    },
).filter(bool)
edits = st.one_of(
    st.builds(lambda entry: ("add", entry), raw_records),
    st.builds(lambda found: ("remove", found), filters),
    migrations,
)


def opened(config: Path, prepare: Any = lambda policy: policy) -> Any:
    """The store of ``config`` (``_stores``: SQLite, or a prefix of etcd), seeded with
    the gateway document; a SqliteBackend or an EtcdBackend, whose index the tests
    reach into."""
    backend = open_backend(url(config), prepare)
    backend.read((load_policy(gateway_document()), SEED))
    return backend


def _outcome(backend: Any, step: Any, policy: Policy | None = None) -> Any:
    """The backend's answer to an edit, to ("add"|"remove", fields) of records, or
    to a migration (its PA's owner found in ``policy``, the stored one, as the API
    finds it in the policy in force)."""
    edit = step
    if isinstance(step, tuple):
        verb, argument = step
        edit = add(LOOKUP_RECORDS, argument) if verb == "add" else remove(LOOKUP_RECORDS, argument)
    try:
        if isinstance(step, Migration):
            assert policy is not None
            edit = migrate(step.vm, step.pa, policy)
        loaded = backend.change(edit, None)
    except ConfigError as error:
        return ("refused", list(error.issues))
    except (NotFound, Exists) as error:
        return ("refused", str(error))
    return (loaded.policy, loaded.result)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(edits, min_size=1, max_size=8))
def test_record_changes_on_a_database_end_as_whole_policy_changes_do(
    tmp_path_factory: Any, steps: list[tuple[str, Any]]
) -> None:
    end_alike(tmp_path_factory.mktemp("stores"), steps)


def end_alike(directory: Path, steps: list[Any]) -> None:
    """Two stores seeded alike, one with the incremental path turned off, answer
    every step alike, every step taking the incremental path on the other, and end
    with the same rows, revision, seal and policy."""
    fast, whole = opened(directory / "fast.yaml"), opened(directory / "whole.yaml")
    whole._records.change = lambda *args: None
    taken = []
    record_change = fast._records.change

    def spied(*args: Any) -> Any:
        taken.append(True)  # a refusal raises: taken too
        found = record_change(*args)
        taken[-1] = found is not None
        return found

    fast._records.change = spied
    try:
        for step in steps:
            before = len(taken)
            policy = whole.read().policy  # (the other's read would build its index again)
            assert _outcome(fast, step, policy) == _outcome(whole, step, policy)
            if isinstance(step, Migration):  # a port to a gateway: the whole path's
                owners = [
                    n for n in policy.nodes for a in n.provider_addresses if str(a.pa) == step.pa
                ]
                assert len(taken) - before == bool(owners)
                if owners and owners[0].role is not NodeRole.GATEWAY:
                    assert taken[-1]
            else:
                assert taken[before:] == [True]
        assert contents(directory / "fast.yaml") == contents(directory / "whole.yaml")
        assert fast.read().policy == whole.read().policy
    finally:
        fast.close()
        whole.close()


def test_a_change_of_records_parses_no_whole_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One whole validation when the store is read; none for a change of records
    (the whole path parses the edited document each time)."""
    backend = opened(tmp_path / "p.yaml")
    parsed = []

    def counted(document: Any) -> Any:
        parsed.append(1)
        return parse_document(document)

    monkeypatch.setattr(_load, "parse_document", counted)
    monkeypatch.setattr(policy_incremental, "parse_document", counted)
    entry = {"vsid": 5010, "ca": "10.10.10.40", "mac": "02-00-00-00-00-40", "pa": "198.18.0.1"}
    try:
        backend.change(add(LOOKUP_RECORDS, {**entry, "rule": "encap"}), None)
        backend.change(remove(LOOKUP_RECORDS, {"ca": "10.10.10.40"}), None)
    finally:
        backend.close()
    assert parsed == []


class _FailingCommit:
    """A connection whose next COMMIT fails as a full disk's would."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.armed = True

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and self.armed:
            self.armed = False
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def fail_next_commit(backend: Any) -> type[Exception]:
    """Make the backend's next commit fail once its index has taken the change:
    SQLite's COMMIT as a full disk's; etcd's transaction, never sent, as an etcd
    gone. What the change raises then."""
    if isinstance(backend, SqliteBackend):
        backend._db = _FailingCommit(backend._connection())
        return NotSaved
    call, armed = backend._call, [True]

    def unsent(path: str, body: dict[str, Any], *args: Any, **keywords: Any) -> dict[str, Any]:
        if path == "/v3/kv/txn" and armed:
            armed.clear()
            raise StoreUnavailable(f"cannot reach etcd at {backend.url}")
        return call(path, body, *args, **keywords)

    backend._call = unsent
    return StoreUnavailable


def test_a_change_of_records_that_fails_to_commit_leaves_the_index_as_the_rows(
    tmp_path: Path,
) -> None:
    """The index had taken the record when COMMIT failed, and another writer then
    committed the revision the lost change would have had: the same record added
    again must be judged against the rows (accepted), not against the lost change."""
    backend = opened(tmp_path / "p.yaml")
    entry = {"vsid": 5010, "ca": "10.10.10.40", "mac": "02-00-00-00-00-40", "pa": "198.18.0.1"}
    edit = add(LOOKUP_RECORDS, {**entry, "rule": "encap"})
    failure = fail_next_commit(backend)
    try:
        with pytest.raises(failure):
            backend.change(edit, None)
        other = open_backend(url(tmp_path / "p.yaml"), lambda policy: policy)
        theirs = {**entry, "ca": "10.10.10.41", "mac": "02-00-00-00-00-41", "rule": "encap"}
        other.change(add(LOOKUP_RECORDS, theirs), None)
        other.close()
        loaded = backend.change(edit, None)
    finally:
        backend.close()
    assert str(loaded.policy.lookup_records[-1].ca) == "10.10.10.40"


def test_a_change_of_records_updates_the_running_snapshot_by_its_delta(tmp_path: Path) -> None:
    """As the daemon prepares a change (``prepare_node`` with the snapshot in force):
    the store's change of records (a migration's too) reaches it as a delta, and the
    snapshot updated by it equals the one compiled from scratch, table by table."""
    running: list[Snapshot] = []

    def prepare(policy: Policy) -> Snapshot:
        snapshot, _ = prepare_node(policy, "host1", None, running[-1] if running else None)
        running.append(snapshot)
        return snapshot

    backend = opened(tmp_path / "p.yaml", prepare)
    entry = {"vsid": 5010, "ca": "10.10.10.40", "mac": "02-00-00-00-00-40", "pa": "198.18.0.1"}
    try:
        added = backend.change(add(LOOKUP_RECORDS, {**entry, "rule": "encap"}), None)
        removed = backend.change(remove(LOOKUP_RECORDS, {"ca": "10.10.10.40"}), None)
        moved = backend.change(migrate("blue1", "198.18.0.2", removed.policy), None)
    finally:
        backend.close()
    report = {"vm": "blue1", "pa": "198.18.0.2", "node": "host2", "from_node": "host1"}
    assert moved.result == report
    for loaded, before in ((added, running[0]), (removed, running[1]), (moved, running[2])):
        assert loaded.prepared._lpm is before._lpm  # updated, not compiled again
        assert canonical(loaded.prepared) == canonical(compile_policy(loaded.policy))


def test_a_new_row_takes_the_place_a_removed_last_row_gave_back(tmp_path: Path) -> None:
    """The whole path places a new row after the last place left; so does the
    incremental path, after the record added last was removed (it placed the next
    one a place further: the stores' rows differed, the documents alike)."""
    entry = {"vsid": 5010, "mac": "02-00-00-00-00-40", "pa": "198.18.0.1", "rule": "encap"}
    end_alike(
        tmp_path,
        [
            ("add", {**entry, "ca": "10.10.10.40"}),
            ("remove", {"ca": "10.10.10.40"}),
            ("add", {**entry, "ca": "10.10.10.41"}),
        ],
    )
