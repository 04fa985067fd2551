"""A database store's seal: the digest of the rows this nvgw validated together,
which lets a start skip the cross-entity checks, and only for those rows.

On SQLite and etcd (``each_store``): a start trusts a store written normally
(seeded, changed by record and whole), and the seal a sequence of changes leaves
equals the one computed from the rows from scratch (a property test); the seal is
SQLite's ``trust`` table, etcd's meta key, written in each change's transaction.
Rows changed behind the store's back are each backend's own (sqlite3 on the
database; keys put by hand and a meta written without a seal on etcd): validated
whole again, with the usual refusal, and a whole validation that passes seals the
rows for the next start.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.control import load_config, read_document, to_plain
from gateway.control.edits import add, remove, replace_all
from gateway.control.etcd_store import EtcdBackend
from gateway.control.kinds import LOOKUP_RECORDS
from gateway.control.policy_rows import document, placed
from gateway.control.store import open_backend
from gateway.errors import ConfigError
from gateway.policy import Policy, load_policy

from ._etcd import Etcd
from ._sqlite_writer import record
from ._stores import database, seals, url

ROOT = Path(__file__).resolve().parents[2]
TWO_HOSTS = ROOT / "configs" / "two-hosts.yaml"


def keep(policy: Policy) -> Policy:
    return policy


_opened: list[Any] = []  # closed after each test (an etcd backend's watch is a thread)


@pytest.fixture(autouse=True)
def _closed() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def opened(store: Path) -> Any:
    """A backend (SQLite's or etcd's: ``trusted`` says what its last read found) on
    the store ``_stores`` names after ``store``."""
    _opened.append(open_backend(url(store), keep))
    return _opened[-1]


def seeded(store: Path) -> Any:
    backend = opened(store)
    backend.read((load_config(TWO_HOSTS), "two-hosts.yaml"))
    return backend


def started(store: Path) -> Any:
    """A new backend on the store that has read it: a daemon's start."""
    backend = opened(store)
    backend.read()
    return backend


def sql(store: Path, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    """A statement on the SQLite database of ``store``, behind the store's back."""
    with closing(sqlite3.connect(database(store))) as db, db:
        return list(db.execute(statement, args))


@pytest.mark.usefixtures("each_store")
def test_a_store_written_normally_starts_trusted(tmp_path: Path) -> None:
    store = tmp_path / "p.yaml"
    backend = seeded(store)
    assert seals(store)[0] == seals(store)[1]  # the seed's, in its transaction
    backend.change(add(LOOKUP_RECORDS, record(13)), None)  # by the index
    backend.change(remove(LOOKUP_RECORDS, {"ca": "10.10.10.13"}), None)
    new = to_plain(read_document(TWO_HOSTS))
    new["customer_routes"][0]["metric"] = 100
    backend.change(replace_all(new), None)  # whole
    backend.change(add(LOOKUP_RECORDS, record(16)), None)  # and by the index after it
    stored, scratch = seals(store)
    assert stored == scratch
    restarted = started(store)
    assert restarted.trusted
    assert restarted.read().policy == load_policy(
        {**new, "lookup_records": [*new["lookup_records"], record(16)], "revision": 4}
    )


# ---------------------------------------------------------------- SQLite's rows edited with sqlite3


def test_rows_edited_behind_the_store_s_back_are_validated_whole_and_refused(
    tmp_path: Path,
) -> None:
    """A second record on blue1's CA, inserted with sqlite3: refused at start as
    whole-policy validation refuses the document, naming the store."""
    store = tmp_path / "p.yaml"
    seeded(store)
    twin = {**record(13), "ca": "10.10.10.11"}
    sql(
        store,
        "INSERT INTO entries (kind, key, seq, value) VALUES ('lookup-records', 'twin', 999, ?)",
        json.dumps(twin),
    )
    rows = placed(0, sql(store, "SELECT kind, key, seq, value FROM entries"))
    with pytest.raises(ConfigError) as whole:
        load_policy(document(((kind, value) for (kind, _), value in rows.entries.items()), 0))
    with pytest.raises(ConfigError) as refused:
        started(store)
    expected = [(issue.path, issue.message) for issue in whole.value.issues]
    assert [(issue.path, issue.message) for issue in refused.value.issues] == expected
    assert {issue.file for issue in refused.value.issues} == {url(store)}


def test_a_valid_hand_edit_is_validated_whole_once_then_sealed(tmp_path: Path) -> None:
    store = tmp_path / "p.yaml"
    seeded(store)
    sql(
        store,
        "INSERT INTO entries (kind, key, seq, value) VALUES ('lookup-records', ?, 999, ?)",
        "5010/10.10.10.13",
        json.dumps(record(13)),
    )
    first = started(store)
    assert not first.trusted
    assert seals(store)[0] == seals(store)[1]
    assert started(store).trusted


@pytest.mark.parametrize(
    "statement", ["DELETE FROM trust", "UPDATE trust SET seal = '1/0.0.1/' || substr(seal, -32)"]
)
def test_rows_sealed_by_no_nvgw_or_another_version_are_validated_whole(
    tmp_path: Path, statement: str
) -> None:
    """An older nvgw keeps no seal (and a change by it leaves ours stale); another
    version's checks may judge differently: either way, validated whole once."""
    store = tmp_path / "p.yaml"
    seeded(store)
    sql(store, statement)
    backend = started(store)
    assert not backend.trusted
    backend.change(add(LOOKUP_RECORDS, record(13)), None)  # no seal to move on: resealed
    assert seals(store)[0] == seals(store)[1]


def test_a_seal_left_stale_by_another_writer_stays_stale_through_our_changes(
    tmp_path: Path,
) -> None:
    """Rows changed by a writer that keeps no seal (an older nvgw) while a daemon
    runs: the daemon's next change moves the stale seal by its own delta, which
    leaves it stale, so the next start still validates whole."""
    store = tmp_path / "p.yaml"
    running = seeded(store)
    running.change(add(LOOKUP_RECORDS, record(13)), None)
    sql(store, "DELETE FROM entries WHERE key = '5010/10.10.10.13'")
    sql(store, "UPDATE meta SET revision = revision + 1")
    running.change(add(LOOKUP_RECORDS, record(14)), None)
    assert seals(store)[0] != seals(store)[1]
    assert not started(store).trusted


EDITS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(13, 60)),
        st.tuples(st.just("remove"), st.integers(13, 60)),
        st.tuples(st.just("metric"), st.integers(1, 255)),
    ),
    max_size=12,
)


@pytest.mark.usefixtures("each_store")
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(edits=EDITS)
def test_the_seal_after_any_changes_equals_the_seal_from_scratch(
    tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[str, int]]
) -> None:
    """Each change moves the seal by its delta (records by the index, a whole
    replacement by its rows): the sum over every row read back agrees."""
    store = tmp_path_factory.mktemp("trust") / "p.yaml"
    backend = seeded(store)
    base = to_plain(read_document(TWO_HOSTS))
    for op, n in edits:
        try:
            if op == "add":
                backend.change(add(LOOKUP_RECORDS, record(n)), None)
            elif op == "remove":
                backend.change(remove(LOOKUP_RECORDS, {"ca": f"10.10.10.{n}"}), None)
            else:
                new = json.loads(json.dumps(base))
                new["customer_routes"][0]["metric"] = n
                backend.change(replace_all(new), None)  # drops the records added
        except (ConfigError, LookupError):
            pass  # a refusal (a CA twice, none to remove) changes nothing
        assert seals(store)[0] == seals(store)[1]
    assert started(store).trusted
    while _opened:  # this example's backends, not every example's at the end
        _opened.pop().close()


# ---------------------------------------------------------------- etcd's keys put by hand


def etcd_started(url: str) -> EtcdBackend[Policy]:
    backend = EtcdBackend(url, keep)
    try:
        backend.read()
    finally:
        backend.close()
    return backend


def test_etcd_keys_put_by_hand_or_a_meta_without_a_seal_are_validated_whole(
    etcd_server: Etcd,
) -> None:
    url = etcd_server.url()
    under = f"/{url.split('/', 3)[3]}/"
    seeder = EtcdBackend(url, keep)
    seeder.read((load_config(TWO_HOSTS), "two-hosts.yaml"))
    seeder.close()
    twin = {**record(13), "ca": "10.10.10.11"}
    etcd_server.put(f"{under}entries/lookup-records/twin", f"999 {json.dumps(twin)}")
    with pytest.raises(ConfigError, match=r"10\.10\.10\.11") as refused:
        etcd_started(url)
    assert {issue.file for issue in refused.value.issues} == {url}
    etcd_server.put(f"{under}entries/lookup-records/twin", f"999 {json.dumps(record(13))}")
    assert not etcd_started(url).trusted  # a valid hand edit: validated whole, then sealed
    assert etcd_started(url).trusted
    meta = json.loads(etcd_server.keys(under)[f"{under}meta"][0])
    etcd_server.put(f"{under}meta", json.dumps({"schema": meta["schema"], "revision": 0}))
    assert not etcd_started(url).trusted  # an nvgw that keeps no seal wrote the meta
