"""A gateway node's tables are built again on each change of records (the daemon's
prepare), so they read the node's own records by its PAs (``records_by_pa``), never
passing over every record of the snapshot: with several PAs too, the file's order
restored (a pass) only where it decides something, a routing domain on two PAs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NoReturn

from gateway.control import read_document, to_plain
from gateway.dataplane import Counters, GatewayTables
from gateway.policy import IndexedPolicy, Snapshot, compile_policy

from ._gateway_lab import GW_MAC, GW_PA, VSID, gateway_document, gateway_snapshot
from ._policies import CONFIGS

GW_PA2 = bytes([198, 18, 0, 11])


class Untouchable(tuple):  # type: ignore[type-arg]
    """The snapshot's records, refusing to be gone through: a pass over them fails."""

    def __iter__(self) -> NoReturn:
        raise AssertionError("a pass over every record")

    def __getitem__(self, key: Any) -> NoReturn:
        raise AssertionError("a pass over every record")


def two_pas(document: dict) -> None:
    """``gw`` gains PA 198.18.0.11, which Red's gateway record moves to."""
    document["nodes"]["gw"]["provider_addresses"].append(
        {"interface": "pa1", "pa": "198.18.0.11", "prefix_length": 24}
    )
    red = next(
        r
        for r in document["lookup_records"]
        if r["vsid"] == VSID["red"] and r.get("type") == "gateway"
    )
    red["pa"] = "198.18.0.11"


def seen(tables: GatewayTables) -> dict[str, Any]:
    """What the tables' owned records decide: each domain's PA, each interface."""
    return {
        "pa": {rdid: domain.pa for rdid, domain in tables.domains.items()},
        "ports": {
            key: (port.vsid, port.mac, port.own_ip, port.rdid)
            for key, port in tables.port_by_key.items()
        },
        "routes": {rdid: tables.table.route(rdid, bytes([0, 0, 0, 1])) for rdid in tables.domains},
    }


def untouchable(snapshot: Snapshot) -> Snapshot:
    return replace(snapshot, records=Untouchable(snapshot.records))


def test_a_gateway_on_one_pa_reads_its_records_by_pa() -> None:
    snapshot = gateway_snapshot()
    tables = GatewayTables(untouchable(snapshot), "gw", Counters())
    assert seen(tables) == seen(GatewayTables(snapshot, "gw", Counters()))
    assert set(seen(tables)["pa"].values()) == {GW_PA}


def test_a_gateway_on_two_pas_reads_its_records_by_pa() -> None:
    snapshot = gateway_snapshot(two_pas)
    tables = GatewayTables(untouchable(snapshot), "gw", Counters())
    assert seen(tables) == seen(GatewayTables(snapshot, "gw", Counters()))
    assert sorted(seen(tables)["pa"].values()) == [GW_PA, GW_PA2]


def test_a_domain_on_two_pas_takes_the_pa_of_its_first_record_in_the_file() -> None:
    def both(document: dict) -> None:
        """Blue's gateway record on the second PA too, before its first one's."""
        two_pas(document)
        records = document["lookup_records"]
        blue = next(r for r in records if r["vsid"] == VSID["blue"] and r.get("type") == "gateway")
        records.insert(
            0, {**blue, "ca": "10.10.10.253", "mac": "02-00-00-00-50-12", "pa": "198.18.0.11"}
        )

    tables = GatewayTables(gateway_snapshot(both), "gw", Counters())
    pas = {tables.domains[rdid].name: pa for rdid, pa in seen(tables)["pa"].items()}
    assert set(pas.values()) == {GW_PA2}


def test_changes_of_a_gateway_s_records_give_the_tables_of_a_whole_compile() -> None:
    """On two PAs: Blue's gateway record added on the second PA (a domain on two
    PAs), its first one removed, then one of Red's added on the first PA; after each
    change the tables of the snapshot the change updated are those of the policy
    compiled whole, and each domain's PA is that of its first record in the file."""
    document = to_plain(read_document(CONFIGS / "two-hosts.yaml"))
    gateway_document(document)
    two_pas(document)
    indexed = IndexedPolicy(document)
    snapshot = compile_policy(indexed.policy)
    blue_mac = GW_MAC["blue"].replace(":", "-")
    changes: list[dict[str, Any]] = [
        {"added": [gateway_record("blue", "10.10.10.253", "02-00-00-00-50-12", "198.18.0.11")]},
        {
            "removed": [
                i for i, r in enumerate(indexed.policy.lookup_records) if str(r.mac) == blue_mac
            ]
        },
        {"added": [gateway_record("red", "10.10.10.253", "02-00-00-00-50-13", "198.18.0.10")]},
    ]
    for change in changes:
        policy = indexed.change_records(indexed.policy.revision + 1, **change)
        updated = compile_policy(policy, snapshot)
        assert updated.records_by_pa is not snapshot.records_by_pa  # by the delta
        tables = GatewayTables(updated, "gw", Counters())
        assert seen(tables) == seen(GatewayTables(compile_policy(policy), "gw", Counters()))
        snapshot = updated
    assert set(seen(tables)["pa"].values()) == {GW_PA2}


def gateway_record(tenant: str, ca: str, mac: str, pa: str) -> dict[str, Any]:
    return {
        "vsid": VSID[tenant],
        "ca": ca,
        "mac": mac,
        "pa": pa,
        "rule": "encap",
        "type": "gateway",
    }
