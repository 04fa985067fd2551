"""Import of several hosts' exports of one policy: what they list alike is imported
once; what they disagree on is a conflict naming both files and entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.control import load_config, to_plain
from gateway.control.hnv_import import Export, import_hnv, parse_nodes, read_export
from gateway.errors import ConfigError
from gateway.policy import Policy, load_policy

from .test_hnv_import import (
    BLUE,
    CONFIGS,
    LAB3_ADDRESSES,
    LAB3_NODES,
    LAB3_RECORDS,
    LAB3_ROUTES,
    cli,
    provider_address,
    record,
    route,
    unnamed,
    write_export,
)

Objects = list[dict[str, Any]]


def host_exports(tmp_path: Path, kind: str, *hosts: Objects) -> list[Path]:
    """One export file per host, each named as Windows names it, in the host's folder."""
    paths = []
    for number, objects in enumerate(hosts, 1):
        folder = tmp_path / f"host{number}"
        folder.mkdir(exist_ok=True)
        paths.append(write_export(folder / f"{kind}.json", objects, "utf-16-le-bom"))
    return paths


def merged(
    records: list[Path], routes: list[Path], addresses: list[Path] | None = None
) -> tuple[Policy, list[str]]:
    """The import of these files (lab 3's nodes, each PA a /24), as the CLI reads them."""

    def read(paths: list[Path]) -> list[Export]:
        return [Export(str(path), read_export(path)) for path in paths]

    document, warnings = import_hnv(
        read(records),
        read(routes),
        parse_nodes(["host1=198.18.0.1/24", "host2=198.18.0.2/24"]),
        provider_addresses=read(addresses or []),
    )
    return load_policy(to_plain(document)), warnings


def conflicts(*args: list[Path]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        merged(*args)
    return [str(issue) for issue in caught.value.issues]


def as_powershell_7(obj: dict[str, Any]) -> dict[str, Any]:
    """The same record from a host whose admin used PowerShell 7 (enums as names), and
    another spelling of the MAC and GUIDs: still the same record."""
    return {
        **obj,
        "Rule": "TranslationMethodEncap",
        "Type": "Static",
        "MACAddress": "-".join(obj["MACAddress"][i : i + 2] for i in range(0, 12, 2)),
        "PSComputerName": "HOST2",
    }


def test_hosts_listing_the_same_entries_import_them_once(tmp_path: Path) -> None:
    records = host_exports(
        tmp_path, "lookup-records", LAB3_RECORDS, [as_powershell_7(r) for r in LAB3_RECORDS]
    )
    upper = [{**r, "RoutingDomainID": r["RoutingDomainID"].upper()} for r in LAB3_ROUTES]
    routes = host_exports(tmp_path, "customer-routes", LAB3_ROUTES, upper)
    addresses = host_exports(
        tmp_path,
        "provider-addresses",
        LAB3_ADDRESSES[:1],
        LAB3_ADDRESSES,  # HOST1's twice
    )
    policy, warnings = merged(records, routes, addresses)
    assert policy == unnamed(load_config(CONFIGS / "two-hosts.yaml"))
    assert warnings == []


def test_one_file_from_invoke_command_lists_each_host_in_turn(tmp_path: Path) -> None:
    """``Invoke-Command -ComputerName host1, host2 { Get-NetVirtualizationLookupRecord }
    | ConvertTo-Json``: one file, every record once per host."""
    both = [*LAB3_RECORDS, *({**r, "PSComputerName": "HOST2"} for r in LAB3_RECORDS)]
    records = write_export(tmp_path / "lookup-records.json", both)
    routes = write_export(tmp_path / "customer-routes.json", LAB3_ROUTES + LAB3_ROUTES)
    policy, _ = merged([records], [routes])
    assert policy == unnamed(load_config(CONFIGS / "two-hosts.yaml"))


def test_a_record_two_hosts_disagree_on_is_a_conflict_naming_both(tmp_path: Path) -> None:
    """blue2 caught in a live migration: host1 already has its new PA, host2 not yet."""
    moved = [*LAB3_RECORDS]
    moved[2] = record(5010, "10.10.10.12", "000000000012", "198.18.0.1", "blue2")
    records = host_exports(tmp_path, "lookup-records", moved, LAB3_RECORDS)
    routes = host_exports(tmp_path, "customer-routes", LAB3_ROUTES)
    first, second = records
    assert conflicts(records, routes) == [
        f"{second}: lookup-records.json[2].ProviderAddress = '198.18.0.2': the same lookup "
        f"record as {first}[2], which has ProviderAddress '198.18.0.1': the exports "
        "disagree; export them again once the hosts agree, or leave one out"
    ]


def test_every_property_that_differs_is_named(tmp_path: Path) -> None:
    other = record(5010, "10.10.10.11", "000000000099", "198.18.0.2", "blue9", Rule=0)
    records = host_exports(tmp_path, "lookup-records", LAB3_RECORDS[:1], [other])
    routes = host_exports(tmp_path, "customer-routes", LAB3_ROUTES)
    (message,) = conflicts(records, routes)
    assert message.startswith(f"{records[1]}: lookup-records.json[0].MACAddress = '000000000099'")
    assert (
        "which has MACAddress '00-00-00-00-00-11', ProviderAddress '198.18.0.1', "
        "Rule 'encap', VMName 'blue1': the exports disagree"
    ) in message


def test_conflicting_routes_and_provider_addresses(tmp_path: Path) -> None:
    records = host_exports(tmp_path, "lookup-records", LAB3_RECORDS)
    cheaper = [{**LAB3_ROUTES[0], "Metric": 10}, LAB3_ROUTES[1]]
    routes = host_exports(tmp_path, "customer-routes", LAB3_ROUTES, cheaper)
    longer = [provider_address("198.18.0.1", "HOST1", prefix_length=16)]
    addresses = host_exports(tmp_path, "provider-addresses", LAB3_ADDRESSES, longer)
    assert conflicts(records, routes, addresses) == [
        f"{routes[1]}: customer-routes.json[0].Metric = 10: the same customer route as "
        f"{routes[0]}[0], which has Metric '255': the exports disagree; export them again "
        "once the hosts agree, or leave one out",
        f"{addresses[1]}: provider-addresses.json[0].PrefixLength = 16: the same provider "
        f"address as {addresses[0]}[0], which has PrefixLength '24': the exports disagree; "
        "export them again once the hosts agree, or leave one out",
    ]


def test_wildcards_are_one_per_mac(tmp_path: Path) -> None:
    """Every L2-only MAC of a VSID has its own record on 0.0.0.0: those are different
    records, not one listed twice; the same one from two hosts is one."""
    l2only = [
        record(5010, "0.0.0.0", "000000000011", "198.18.0.1", None, Type=3),
        record(5010, "0.0.0.0", "000000000012", "198.18.0.2", None, Type=3),
    ]
    blue = [*LAB3_RECORDS[::2], *l2only]
    records = host_exports(tmp_path, "lookup-records", blue, blue)
    routes = host_exports(tmp_path, "customer-routes", [route(BLUE, 5010, "10.10.10.0/24")])
    policy, _ = merged(records, routes)
    assert [(str(r.ca), str(r.mac)) for r in policy.lookup_records] == [
        ("10.10.10.11", "00-00-00-00-00-11"),
        ("10.10.10.12", "00-00-00-00-00-12"),
        ("0.0.0.0", "00-00-00-00-00-11"),
        ("0.0.0.0", "00-00-00-00-00-12"),
    ]


def test_cli_takes_an_export_per_host(tmp_path: Path) -> None:
    records = host_exports(tmp_path, "lookup-records", LAB3_RECORDS, LAB3_RECORDS)
    routes = host_exports(tmp_path, "customer-routes", LAB3_ROUTES, LAB3_ROUTES)
    addresses = host_exports(tmp_path, "provider-addresses", LAB3_ADDRESSES[:1], LAB3_ADDRESSES[1:])
    arguments = ["import-hnv", *(a for node in LAB3_NODES for a in ("--node", node))]
    for option, paths in (
        ("--lookup-records", records),
        ("--customer-routes", routes),
        ("--provider-addresses", addresses),
    ):
        arguments += [argument for path in paths for argument in (option, str(path))]
    output = tmp_path / "imported.yaml"
    result = CliRunner().invoke(cli(), [*arguments, "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert load_config(output) == unnamed(load_config(CONFIGS / "two-hosts.yaml"))
    text = output.read_text()
    assert text.startswith(f"# Imported by nvgw import-hnv from {records[0]}, {records[1]}, ")
