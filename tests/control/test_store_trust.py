"""A database store's seal: the digest of the rows this nvgw validated together,
which lets a start skip the cross-entity checks, and only for those rows.

A start trusts a store written normally (seeded, changed by record and whole),
and validates whole again, with the usual refusal, rows edited behind the store's
back (sqlite3 directly) or sealed by another nvgw; a whole validation that passes
seals the rows for the next start. The seal a sequence of changes leaves equals the
one computed from the rows from scratch (a property test). On etcd, the seal is in
the meta key, written in each change's transaction: the same, with keys put by hand
and a meta written without a seal.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.control import load_config, read_document, to_plain
from gateway.control.edits import add, remove, replace_all
from gateway.control.etcd_store import SCHEMA_VERSION as ETCD_SCHEMA
from gateway.control.etcd_store import EtcdBackend
from gateway.control.kinds import LOOKUP_RECORDS
from gateway.control.policy_rows import digest, document, placed
from gateway.control.sqlite_store import SCHEMA_VERSION, SqliteBackend
from gateway.control.store import seal
from gateway.errors import ConfigError
from gateway.policy import Policy, load_policy

from ._etcd import Etcd
from ._sqlite_writer import record

ROOT = Path(__file__).resolve().parents[2]
TWO_HOSTS = ROOT / "configs" / "two-hosts.yaml"


def keep(policy: Policy) -> Policy:
    return policy


def seeded(database: Path) -> SqliteBackend[Policy]:
    backend = SqliteBackend(database, keep)
    backend.read((load_config(TWO_HOSTS), "two-hosts.yaml"))
    return backend


def started(database: Path) -> SqliteBackend[Policy]:
    """A new backend on the database that has read it: a daemon's start."""
    backend = SqliteBackend(database, keep)
    backend.read()
    return backend


def sql(database: Path, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(database)) as db, db:
        return list(db.execute(statement, args))


def stored_seal(database: Path) -> str | None:
    found = sql(database, "SELECT seal FROM trust")
    return found[0][0] if found else None


def seal_from_scratch(database: Path) -> str:
    revision = sql(database, "SELECT revision FROM meta")[0][0]
    rows = placed(revision, sql(database, "SELECT kind, key, seq, value FROM entries"))
    return seal(SCHEMA_VERSION, digest(rows.entries))


def test_a_store_written_normally_starts_trusted(tmp_path: Path) -> None:
    database = tmp_path / "p.db"
    backend = seeded(database)
    backend.change(add(LOOKUP_RECORDS, record(13)), None)  # by the index
    backend.change(remove(LOOKUP_RECORDS, {"ca": "10.10.10.13"}), None)
    new = to_plain(read_document(TWO_HOSTS))
    new["customer_routes"][0]["metric"] = 100
    backend.change(replace_all(new), None)  # whole
    backend.close()
    restarted = SqliteBackend(database, keep)
    policy = restarted.read().policy
    assert restarted.trusted
    assert policy == load_policy({**new, "revision": 3})


def test_rows_edited_behind_the_store_s_back_are_validated_whole_and_refused(
    tmp_path: Path,
) -> None:
    """A second record on blue1's CA, inserted with sqlite3: refused at start as
    whole-policy validation refuses the document, naming the store."""
    database = tmp_path / "p.db"
    seeded(database).close()
    twin = {**record(13), "ca": "10.10.10.11"}
    sql(
        database,
        "INSERT INTO entries (kind, key, seq, value) VALUES ('lookup-records', 'twin', 999, ?)",
        json.dumps(twin),
    )
    rows = placed(0, sql(database, "SELECT kind, key, seq, value FROM entries"))
    with pytest.raises(ConfigError) as whole:
        load_policy(document(((kind, value) for (kind, _), value in rows.entries.items()), 0))
    with pytest.raises(ConfigError) as refused:
        SqliteBackend(database, keep).read()
    expected = [(issue.path, issue.message) for issue in whole.value.issues]
    assert [(issue.path, issue.message) for issue in refused.value.issues] == expected
    assert {issue.file for issue in refused.value.issues} == {f"sqlite:{database}"}


def test_a_valid_hand_edit_is_validated_whole_once_then_sealed(tmp_path: Path) -> None:
    database = tmp_path / "p.db"
    seeded(database).close()
    sql(
        database,
        "INSERT INTO entries (kind, key, seq, value) VALUES ('lookup-records', ?, 999, ?)",
        "5010/10.10.10.13",
        json.dumps(record(13)),
    )
    first = started(database)
    assert not first.trusted
    assert stored_seal(database) == seal_from_scratch(database)
    assert started(database).trusted


@pytest.mark.parametrize(
    "statement", ["DELETE FROM trust", "UPDATE trust SET seal = '1/0.0.1/' || substr(seal, -32)"]
)
def test_rows_sealed_by_no_nvgw_or_another_version_are_validated_whole(
    tmp_path: Path, statement: str
) -> None:
    """An older nvgw keeps no seal (and a change by it leaves ours stale); another
    version's checks may judge differently: either way, validated whole once."""
    database = tmp_path / "p.db"
    seeded(database).close()
    sql(database, statement)
    backend = started(database)
    assert not backend.trusted
    backend.change(add(LOOKUP_RECORDS, record(13)), None)  # no seal to move on: resealed
    assert stored_seal(database) == seal_from_scratch(database)


def test_a_seal_left_stale_by_another_writer_stays_stale_through_our_changes(
    tmp_path: Path,
) -> None:
    """Rows changed by a writer that keeps no seal (an older nvgw) while a daemon
    runs: the daemon's next change moves the stale seal by its own delta, which
    leaves it stale, so the next start still validates whole."""
    database = tmp_path / "p.db"
    running = seeded(database)
    running.change(add(LOOKUP_RECORDS, record(13)), None)
    sql(database, "DELETE FROM entries WHERE key = '5010/10.10.10.13'")
    sql(database, "UPDATE meta SET revision = revision + 1")
    running.change(add(LOOKUP_RECORDS, record(14)), None)
    assert stored_seal(database) != seal_from_scratch(database)
    assert not started(database).trusted


EDITS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(13, 60)),
        st.tuples(st.just("remove"), st.integers(13, 60)),
        st.tuples(st.just("metric"), st.integers(1, 255)),
    ),
    max_size=12,
)


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
    database = tmp_path_factory.mktemp("trust") / "p.db"
    backend = seeded(database)
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
        assert stored_seal(database) == seal_from_scratch(database)
    backend.close()
    assert started(database).trusted


# ---------------------------------------------------------------- etcd: the seal in the meta key


def etcd_seals(etcd: Etcd, url: str) -> tuple[str | None, str]:
    """The seal the meta key holds, and the one computed from the entries' keys."""
    under = f"/{url.split('/', 3)[3]}/"
    found: list[tuple[str, str, int, str]] = []
    stored = None
    for key, (value, _) in etcd.keys(under).items():
        if key == f"{under}meta":
            stored = json.loads(value).get("seal")
        else:
            kind, name = key.removeprefix(f"{under}entries/").split("/", 1)
            seq, _, text = value.partition(" ")
            found.append((kind, name, int(seq), text))
    return stored, seal(ETCD_SCHEMA, digest(placed(0, found).entries))


def etcd_started(url: str) -> EtcdBackend[Policy]:
    backend = EtcdBackend(url, keep)
    try:
        backend.read()
    finally:
        backend.close()
    return backend


def test_an_etcd_store_written_normally_starts_trusted_and_its_seal_follows_changes(
    etcd_server: Etcd,
) -> None:
    url = etcd_server.url()
    backend = EtcdBackend(url, keep)
    try:
        backend.read((load_config(TWO_HOSTS), "two-hosts.yaml"))
        assert etcd_seals(etcd_server, url)[0] == etcd_seals(etcd_server, url)[1]
        for n in (13, 14, 15):
            backend.change(add(LOOKUP_RECORDS, record(n)), None)
        backend.change(remove(LOOKUP_RECORDS, {"ca": "10.10.10.14"}), None)
        new = to_plain(read_document(TWO_HOSTS))
        new["customer_routes"][0]["metric"] = 100
        backend.change(replace_all(new), None)
        backend.change(add(LOOKUP_RECORDS, record(16)), None)
        stored, scratch = etcd_seals(etcd_server, url)
        assert stored == scratch
    finally:
        backend.close()
    assert etcd_started(url).trusted


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
