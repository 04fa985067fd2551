"""A change of lookup records at scale (issue 14's 20 ms at 10^5 records, slice V1):
the snapshot's record tables are persistent maps updated in place of copies, the old
snapshot a running batch reads stays exactly as it was, and the new policy shares
what a change of records cannot touch (its nodes' index, ``counts``' tallies) rather
than a pass over every node and record. The differential tests
(``test_incremental.py``) prove the updated tables equal a compile from scratch;
these prove what they cost and what they leave alone."""

from __future__ import annotations

import copy
import importlib.util
import tracemalloc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.policy import IndexedPolicy, compile_policy, load_policy

from .test_incremental import canonical

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 20_000  # enough that a copy of each record table dwarfs a change's own work


def _generate(records: int) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location(
        "snapshot_build", ROOT / "bench/snapshot_build.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.generate(records)  # type: ignore[no-any-return]


def _new_record(policy: Any, n: int) -> dict[str, Any]:
    """A record beside the first IPv4 encap one, at a CA the generator never uses."""
    first = next(r for r in policy.lookup_records if r.rule.value == "encap" and r.ca.version == 4)
    ca = ".".join([*str(first.ca).split(".")[:2], "200", str(n)])
    mac = f"02-aa-00-00-00-{n:02x}"
    return {"vsid": first.vsid, "ca": ca, "mac": mac, "pa": str(first.pa), "rule": "encap"}


def test_a_change_of_records_leaves_the_old_snapshot_as_it_was() -> None:
    """Two records added one by one, then both removed at once: each snapshot
    before the change, table by table, is what it was before, while the new one
    differs (a batch still running on the old one sees it whole)."""
    indexed = IndexedPolicy(_generate(1_000))
    snapshots = [compile_policy(indexed.policy)]
    seen = [_tables(snapshots[0])]
    policy = indexed.policy
    for edit in ("add", "add", "remove"):
        if edit == "add":
            added = [_new_record(policy, len(snapshots))]
            policy = indexed.change_records(policy.revision + 1, added=added)
        else:
            count = len(policy.lookup_records)
            policy = indexed.change_records(policy.revision + 1, removed=[count - 2, count - 1])
        snapshots.append(compile_policy(policy, snapshots[-1]))
        seen.append(_tables(snapshots[-1]))
        for before, tables in zip(snapshots, seen, strict=True):
            assert _tables(before) == tables
        assert seen[-1] != seen[-2]
    assert canonical(snapshots[-1]) == canonical(compile_policy(policy))


def _tables(snapshot: Any) -> dict[str, Any]:
    """Every table of a snapshot as a copy of its contents (a table changed in place
    afterwards would no longer equal it)."""
    return {
        name: dict(table) if isinstance(table, Mapping) else table
        for name, table in canonical(snapshot).items()
    }


def test_a_change_of_records_copies_no_record_table() -> None:
    """At 20,000 records, updating the snapshot for one record added allocates what
    the change needs and the records' tuple (8 bytes a record), not a copy of the
    seven record tables (a dict of 20,000 entries is about a megabyte)."""
    indexed = IndexedPolicy(_generate(RECORDS))
    snapshot = compile_policy(indexed.policy)
    policy = indexed.change_records(
        indexed.policy.revision + 1, added=[_new_record(indexed.policy, 1)]
    )
    tracemalloc.start()
    try:
        updated = compile_policy(policy, snapshot)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(updated.record_by_ca) == len(snapshot.record_by_ca) + 1
    assert peak < 2 * 8 * RECORDS + 64_000


def test_a_change_of_records_shares_the_rest_of_the_policy() -> None:
    """The policy of a change of records shares its nodes' and subnets' index with
    the one before (no pass over every node), and its counts, moved by the change
    rather than counted again, equal those of the same policy loaded whole."""
    document = _generate(2_000)
    indexed = IndexedPolicy(document)
    policy = indexed.policy
    policy.counts()  # what a daemon's first change computes, once
    rewrite = {**_new_record(policy, 2), "rule": "nat", "pa": "198.19.250.1"}
    edited = copy.deepcopy(document)
    for added, removed in (([_new_record(policy, 1), rewrite], []), ([], [-1])):
        old = policy
        at = [len(old.lookup_records) + n for n in removed]
        policy = indexed.change_records(old.revision + 1, added=added, removed=at)
        assert policy._nodes is old._nodes and policy._subnets is old._subnets
        assert policy._tallies is not None  # moved by the change, not counted again
        for position in at:
            del edited["lookup_records"][position]
        edited["lookup_records"] += added
        edited["revision"] = policy.revision
        whole = load_policy(edited)
        assert policy == whole
        assert policy.counts() == whole.counts()
    assert policy.counts()["ip_rewrite_records"] == 100
