"""The differential test of incremental validation (issue 14): random sequences of
changes of lookup records (adds, removals, replacements, several at once; valid and
invalid: duplicate CAs and MACs, CAs outside their subnet or on its gateway, unknown
VSIDs, wildcards, IP-Rewrite records sharing a PA, records failing the schema, the
last gateway record of a served routing domain removed, a port's record removed),
each judged by ``IndexedPolicy.change_records`` and by ``load_policy`` of the whole
edited document: both accept, with equal policies, or both refuse, with the same
issues (path, value, message) in the same order. And after each accepted change,
the snapshot updated by the change (``compile_policy(policy, previous)``, its record
tables copied and changed) equals the snapshot compiled from scratch, table by
table."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.policy import IndexedPolicy, Snapshot, compile_policy, incremental, load_policy

from ._documents import base_document, record
from ._gateway_document import gateway_document

VSIDS = [5010, 5011, 5012, 5099]
CAS = [
    *["10.10.10.11", "10.10.10.12", "10.10.10.13", "10.10.10.0", "10.10.10.255"],
    *["10.10.10.1", "10.10.10.254", "10.10.20.13", "10.10.20.14", "10.99.0.1"],
    *["0.0.0.0", "::", "fd00:20::5", "fd00:20::", "not-an-ip"],
]
MACS = [
    *["00-00-00-00-00-11", "00-00-00-00-00-12", "00-00-00-00-00-13", "00-00-00-00-00-21"],
    *["00-00-00-00-00-22", "02-00-00-00-50-10", "02-00-00-00-50-11", "00-00-00-00-00-99"],
    "zz",
]
PAS = ["198.18.0.1", "198.18.0.2", "198.18.0.10", "198.18.0.77", "fd00::1"]


def _fresh(vsid: int, n: int, pa: str, kind: str) -> dict[str, Any]:
    """A record no port needs, usually valid: so that sequences also remove what they
    added (a port's own record is refused going), wildcards included."""
    mac = f"02-00-00-00-01-{n:02x}"
    if kind == "ipv6":
        return record(5012, f"fd00:20::{50 + n:x}", mac, pa)
    if kind in ("gateway", "l2only"):
        return record(vsid, "0.0.0.0", mac, pa, type=kind)
    prefix = "10.10.10" if vsid == 5010 else "10.10.20"
    return record(vsid, f"{prefix}.{50 + n}", mac, pa)


fresh_records = st.builds(
    _fresh,
    st.sampled_from([5010, 5012]),
    st.integers(0, 4),
    st.sampled_from(["198.18.0.1", "198.18.0.2"]),
    st.sampled_from(["static", "static", "ipv6", "gateway", "l2only"]),
)
random_records = st.builds(
    lambda vsid, ca, mac, pa, rule, extra: record(vsid, ca, mac, pa, rule, **extra),
    st.sampled_from(VSIDS),
    st.sampled_from(CAS),
    st.sampled_from(MACS),
    st.sampled_from(PAS),
    st.sampled_from(["encap", "encap", "nat"]),
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["static", "gateway", "l2only"]),
            "vm": st.sampled_from(["vm-a", "vm-b"]),
        },
    ),
)
raw_records = st.one_of(fresh_records, random_records)
# One change: (positions removed, {position: new fields}, records appended); the
# positions are fractions of the current count or places from its end (_position).
# (-1, -2, -3: the last records, often ones the sequence added itself.)
fractions = st.one_of(
    st.floats(min_value=0, max_value=1, exclude_max=True), st.sampled_from([-1.0, -2.0, -3.0])
)
changes = st.tuples(
    st.lists(fractions, max_size=2),
    st.dictionaries(fractions, raw_records, max_size=2),
    st.lists(raw_records, max_size=2),
)


def _position(fraction: float, count: int) -> int:
    """A place among ``count`` records: a fraction of them, or from the end."""
    return int(fraction * count) if fraction >= 0 else max(count + int(fraction), 0)


def _edited(document: dict[str, Any], removed: set[int], replaced: dict[int, Any], added: list):
    edited = copy.deepcopy(document)
    records = edited["lookup_records"]
    for position, fields in replaced.items():
        records[position] = copy.deepcopy(fields)
    edited["lookup_records"] = [r for i, r in enumerate(records) if i not in removed]
    edited["lookup_records"] += copy.deepcopy(added)
    edited["revision"] += 1
    return edited


def _whole(document: dict[str, Any]) -> Any:
    try:
        return load_policy(document)
    except ConfigError as error:
        return list(error.issues)


def canonical(snapshot: Snapshot) -> dict[str, Any]:
    """Every table of a snapshot, as plain values (mappings compared as dicts)."""
    return {
        "revision": snapshot.revision,
        "policy": snapshot.policy,
        "records": snapshot.records,
        "routes": snapshot.routes,
        "record_by_ca": dict(snapshot.record_by_ca),
        "record_by_mac": dict(snapshot.record_by_mac),
        "records_by_mac": dict(snapshot.records_by_mac),
        "gateway_wildcard": dict(snapshot.gateway_wildcard),
        "rdid_by_vsid": dict(snapshot.rdid_by_vsid),
        "records_by_pa": dict(snapshot.records_by_pa),
        "lpm": dict(snapshot._lpm),
        "sender_by_mac": snapshot.sender_by_mac,
        "sender_by_rdid_ca": snapshot.sender_by_rdid_ca,
        "gateway_by_rdid_pa": snapshot.gateway_by_rdid_pa,
    }


def record_change(document: dict[str, Any], indexed: IndexedPolicy, change: Any) -> Any:
    """One change of records (of ``changes``) judged both ways: the edited document,
    whole-policy validation's answer, the index's, and whether records were replaced
    in place; None when there is no record to remove or replace."""
    removed_at, replaced_at, added = change
    count = len(document["lookup_records"])
    if count == 0 and (removed_at or replaced_at):
        return None
    removed = {_position(f, count) for f in removed_at}
    replaced = {_position(f, count): fields for f, fields in replaced_at.items()}
    edited = _edited(document, removed, replaced, added)
    incremental = _incremental(indexed, edited["revision"], removed, replaced, added)
    return edited, _whole(edited), incremental, bool(set(replaced) - removed)


def _incremental(indexed: IndexedPolicy, revision: int, removed, replaced, added) -> Any:
    try:
        return indexed.change_records(revision, replaced=replaced, removed=removed, added=added)
    except ConfigError as error:
        return list(error.issues)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.sampled_from([base_document, gateway_document]),
    sequence=st.lists(changes, min_size=1, max_size=8),
)
def test_incremental_validation_judges_as_whole_policy_validation(start, sequence) -> None:
    document = start()
    indexed = IndexedPolicy(document)
    snapshot = compile_policy(indexed.policy)
    for change in sequence:
        judged = record_change(document, indexed, change)
        if judged is None:
            continue
        edited, whole, incremental, _ = judged
        assert incremental == whole
        if not isinstance(whole, list):
            document = edited
            assert indexed.policy == whole
            updated = compile_policy(indexed.policy, snapshot)
            assert updated._lpm is snapshot._lpm  # the delta's (in place too), not a build
            assert canonical(updated) == canonical(compile_policy(whole))
            snapshot = updated


def test_a_routing_domain_s_first_gateway_record_removed_gives_way_to_the_next() -> None:
    """Two gateway records of one routing domain on one PA (VSIDs 5010 and 5012 of
    Blue): removing the first leaves the second as the domain's sender at that PA,
    in the updated snapshot as in a compiled one."""
    indexed = IndexedPolicy(base_document())
    snapshot = compile_policy(indexed.policy)
    for vsid, n in ((5010, 0), (5012, 1)):
        policy = indexed.change_records(
            indexed.policy.revision + 1, added=[_fresh(vsid, n, "198.18.0.1", "gateway")]
        )
        snapshot = compile_policy(policy, snapshot)
    first = len(indexed.policy.lookup_records) - 2
    policy = indexed.change_records(indexed.policy.revision + 1, removed=[first])
    updated = compile_policy(policy, snapshot)
    assert updated._lpm is snapshot._lpm
    assert canonical(updated) == canonical(compile_policy(policy))
    (sender,) = (
        r for key, r in updated.gateway_by_rdid_pa.items() if key[1] == bytes([198, 18, 0, 1])
    )
    assert sender.vsid == 5012


def test_a_change_in_a_large_vsid_is_judged_with_what_it_can_clash_with(monkeypatch) -> None:
    """A VSID of 200 records more: a record added there is judged with the records of
    its CA and MAC and its PA's first users, not with all of them (judged whole:
    204); a duplicate CA or a MAC's second IPv4 CA deep in the VSID is still refused,
    with whole validation's issues."""
    document = base_document()
    document["lookup_records"] += [
        record(5010, f"10.10.10.{20 + n}", f"02-00-00-00-02-{n:02x}", "198.18.0.2")
        for n in range(200)
    ]
    indexed = IndexedPolicy(document)
    scopes: list[int] = []
    judge = incremental.judge

    def spy(scope: Any, parts: Any) -> Any:
        scopes.append(len(scope.records))
        return judge(scope, parts)

    monkeypatch.setattr(incremental, "judge", spy)
    added = record(5010, "10.10.10.250", "02-00-00-00-03-01", "198.18.0.1")
    indexed.change_records(document["revision"] + 1, added=[added])
    assert scopes == [3]  # the added record and its PA's first two users; failed before: 204
    document = _edited(document, set(), {}, [added])
    for clash in (
        record(5010, "10.10.10.120", "02-00-00-00-03-02", "198.18.0.1"),  # 100th's CA
        record(5010, "10.10.10.251", "02-00-00-00-02-64", "198.18.0.1"),  # 100th's MAC
    ):
        whole = _whole(_edited(document, set(), {}, [clash]))
        assert isinstance(whole, list) and len(whole) == 1
        assert _incremental(indexed, document["revision"] + 1, set(), {}, [clash]) == whole
