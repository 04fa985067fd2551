"""Import of Windows HNV exports: the files PowerShell really writes, the seed's lab 3
round trip, every refusal at the export entry it came from, and the CLI."""

from __future__ import annotations

import codecs
import dataclasses
import json
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from gateway.cli.import_hnv import import_hnv_command
from gateway.control import load_config, new_yaml, to_plain
from gateway.control.hnv_import import (
    CIM_NOISE,
    Export,
    NodeAddress,
    import_hnv,
    parse_nodes,
    read_export,
)
from gateway.errors import ConfigError
from gateway.policy import Policy, RecordType, Rule, load_policy

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BLUE = "{11111111-2222-3333-4444-000000005010}"
RED = "{11111111-2222-3333-4444-000000005011}"
CLASS = "MSFT_NetVirtualization{}SettingData"


def _cim(kind: str, host: str, **properties: Any) -> dict[str, Any]:
    """One object as Windows PowerShell 5.1's ConvertTo-Json (depth 2) writes a CIM
    instance: MSFT_NetSettingData's properties, the class's, and the CIM noise."""
    names = ["Caption", "Description", "ElementName", "InstanceID", *properties]
    return {
        "Caption": None,
        "Description": None,
        "ElementName": None,
        "InstanceID": None,
        **properties,
        "PSComputerName": host,
        "CimClass": {
            "CimSuperClassName": "MSFT_NetSettingData",
            "CimSuperClass": "ROOT/StandardCimv2:MSFT_NetSettingData",
            "CimClassProperties": " ".join(names),
            "CimClassQualifiers": 'dynamic = True provider = "NetWNV" locale = 1033',
            "CimClassMethods": "",
            "CimSystemProperties": "Microsoft.Management.Infrastructure.CimSystemProperties",
        },
        "CimInstanceProperties": [
            {"Name": name, "Value": properties.get(name), "CimType": 14, "IsValueModified": False}
            for name in names
        ],
        "CimSystemProperties": {
            "Namespace": "ROOT/StandardCimv2",
            "ServerName": host,
            "ClassName": CLASS.format(kind),
            "Path": None,
        },
    }


def record(vsid: int, ca: str, mac: str, pa: str, vm: str | None, **more: Any) -> dict[str, Any]:
    """A Get-NetVirtualizationLookupRecord result: enums as integers, as PS 5.1 writes them."""
    fields = dict(
        CustomerAddress=ca,
        VirtualSubnetID=vsid,
        MACAddress=mac,
        ProviderAddress=pa,
        CustomerID=None,
        Context=None,
        Rule=1,  # TranslationMethodEncap
        VMName=vm,
        UseVmMACAddress=False,
        Type=0,  # Static
        Unusable=False,
        Unsynchronized=False,
    )
    return _cim("LookupRecord", "HOST1", **{**fields, **more})


def route(rdid: str, vsid: int, prefix: str, next_hop: str = "0.0.0.0") -> dict[str, Any]:
    return _cim(
        "CustomerRoute",
        "HOST1",
        RoutingDomainID=rdid,
        VirtualSubnetID=vsid,
        DestinationPrefix=prefix,
        NextHop=next_hop,
        Metric=255,
        CustomerID=None,
    )


def provider_address(pa: str, host: str, prefix_length: int = 24, vlan: int = 0) -> dict[str, Any]:
    return _cim(
        "ProviderAddress",
        host,
        ProviderAddress=pa,
        InterfaceIndex=12,
        PrefixLength=prefix_length,
        VlanID=vlan,
        AddressState=4,
        MACAddress="00155d010203",
        ManagedByCluster=False,
    )


# The seed's lab 3 (configs/two-hosts.yaml) as the two hosts would export it.
LAB3_RECORDS = [
    record(5010, "10.10.10.11", "000000000011", "198.18.0.1", "blue1"),
    record(5011, "10.10.10.11", "000000000021", "198.18.0.1", "red1"),
    record(5010, "10.10.10.12", "000000000012", "198.18.0.2", "blue2"),
    record(5011, "10.10.10.12", "000000000022", "198.18.0.2", "red2"),
]
LAB3_ROUTES = [route(BLUE, 5010, "10.10.10.0/24"), route(RED, 5011, "10.10.10.0/24")]
# Invoke-Command -ComputerName host1, host2 { Get-NetVirtualizationProviderAddress }
LAB3_ADDRESSES = [provider_address("198.18.0.1", "HOST1"), provider_address("198.18.0.2", "HOST2")]
LAB3_NODES = ["host1=198.18.0.1", "host2=198.18.0.2"]

# `Get-NetVirtualizationLookupRecord -CustomerAddress 10.10.10.11 -VirtualSubnetID 5010 |
# ConvertTo-Json` in Windows PowerShell 5.1, verbatim layout: one result is one object.
SINGLE_OBJECT = """\
{
    "CustomerAddress":  "10.10.10.11",
    "VirtualSubnetID":  5010,
    "MACAddress":  "000000000011",
    "ProviderAddress":  "198.18.0.1",
    "CustomerID":  null,
    "Context":  null,
    "Rule":  1,
    "VMName":  "blue1",
    "UseVmMACAddress":  false,
    "Type":  0,
    "Unusable":  false,
    "Unsynchronized":  false,
    "Caption":  null,
    "Description":  null,
    "ElementName":  null,
    "InstanceID":  null,
    "PSComputerName":  null,
    "CimClass":  {
                     "CimSuperClassName":  "MSFT_NetSettingData",
                     "CimSuperClass":  "ROOT/StandardCimv2:MSFT_NetSettingData",
                     "CimClassProperties":  "Caption Description ElementName InstanceID",
                     "CimClassQualifiers":  "dynamic = True provider = \\"NetWNV\\"",
                     "CimClassMethods":  ""
                 },
    "CimInstanceProperties":  [
                                  "Caption",
                                  "Description",
                                  "ElementName",
                                  "InstanceID"
                              ],
    "CimSystemProperties":  {
                                "Namespace":  "ROOT/StandardCimv2",
                                "ServerName":  "HOST1",
                                "ClassName":  "MSFT_NetVirtualizationLookupRecordSettingData",
                                "Path":  null
                            }
}
"""

ENCODINGS = {
    # Windows PowerShell 5.1's `>` and Out-File
    "utf-16-le-bom": lambda text: codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
    "utf-16-be-bom": lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
    # Windows PowerShell 5.1's Out-File -Encoding UTF8
    "utf-8-bom": lambda text: codecs.BOM_UTF8 + text.encode("utf-8"),
    # PowerShell 7
    "utf-8": lambda text: text.encode("utf-8"),
}


def write_export(path: Path, objects: list[dict[str, Any]], encoding: str = "utf-8") -> Path:
    """ConvertTo-Json's layout: CRLF, four-space indent, two spaces after the colon."""
    text = json.dumps(objects, indent=4, separators=(",", ":  ")).replace("\n", "\r\n")
    path.write_bytes(ENCODINGS[encoding](text))
    return path


def exports(
    tmp_path: Path,
    records: list[dict[str, Any]],
    routes: list[dict[str, Any]],
    addresses: list[dict[str, Any]] | None = None,
) -> tuple[Export, Export, Export | None]:
    """The exports written to files and read back, as the CLI does."""
    files = [
        write_export(tmp_path / "lookup-records.json", records),
        write_export(tmp_path / "customer-routes.json", routes),
    ]
    if addresses is not None:
        files.append(write_export(tmp_path / "provider-addresses.json", addresses))
    read = [Export(str(path), read_export(path)) for path in files]
    return read[0], read[1], read[2] if addresses is not None else None


def run_import(
    tmp_path: Path,
    records: list[dict[str, Any]],
    routes: list[dict[str, Any]],
    nodes: list[str],
    addresses: list[dict[str, Any]] | None = None,
    **options: Any,
) -> tuple[Policy, list[str]]:
    records_export, routes_export, addresses_export = exports(tmp_path, records, routes, addresses)
    document, warnings = import_hnv(
        [records_export],
        [routes_export],
        parse_nodes(nodes),
        provider_addresses=[addresses_export] if addresses_export else [],
        **options,
    )
    return load_policy(to_plain(document)), warnings


def refusals(tmp_path: Path, *args: Any, **options: Any) -> list[tuple[str | None, str]]:
    """(file, path) of every issue of an import that must fail."""
    with pytest.raises(ConfigError) as caught:
        run_import(tmp_path, *args, **options)
    return [(issue.file, issue.path) for issue in caught.value.issues]


def unnamed(policy: Policy) -> Policy:
    """The policy without routing domain names: a Windows export has none."""
    domains = tuple(domain.model_copy(update={"name": None}) for domain in policy.routing_domains)
    return dataclasses.replace(policy, routing_domains=domains)


# --- The seed's lab 3 -----------------------------------------------------------------


def test_lab3_export_imports_as_the_shipped_config(tmp_path: Path) -> None:
    records = write_export(tmp_path / "lookup-records.json", LAB3_RECORDS, "utf-16-le-bom")
    routes = write_export(tmp_path / "customer-routes.json", LAB3_ROUTES, "utf-8-bom")
    addresses = write_export(tmp_path / "provider-addresses.json", LAB3_ADDRESSES)
    document, warnings = import_hnv(
        [Export(str(records), read_export(records))],
        [Export(str(routes), read_export(routes))],
        parse_nodes(LAB3_NODES),
        provider_addresses=[Export(str(addresses), read_export(addresses))],
    )
    imported = load_policy(to_plain(document))
    shipped = load_config(CONFIGS / "two-hosts.yaml")
    assert imported == unnamed(shipped)
    assert imported.revision == shipped.revision == 0
    assert warnings == []


def test_lab3_prefix_lengths_from_the_node_option(tmp_path: Path) -> None:
    nodes = ["host1=198.18.0.1/24", "host2=198.18.0.2/24"]
    policy, _ = run_import(tmp_path, LAB3_RECORDS, LAB3_ROUTES, nodes)
    assert policy == unnamed(load_config(CONFIGS / "two-hosts.yaml"))


def test_document_is_written_in_the_shipped_style(tmp_path: Path) -> None:
    records, routes, addresses = exports(tmp_path, LAB3_RECORDS, LAB3_ROUTES, LAB3_ADDRESSES)
    assert addresses is not None
    document, _ = import_hnv(
        [records], [routes], parse_nodes(LAB3_NODES), provider_addresses=[addresses]
    )
    path = tmp_path / "out.yaml"
    with path.open("w") as f:
        new_yaml().dump(document, f)
    text = path.read_text()
    assert text.startswith(
        "# Imported by nvgw import-hnv from lookup-records.json, customer-routes.json, "
        "provider-addresses.json.\n"
    )
    shipped = (CONFIGS / "two-hosts.yaml").read_text()
    for line in (
        f'  - rdid: "{BLUE}"',
        "        prefixes: [10.10.10.0/24]",
        "  - {vsid: 5010, ca: 10.10.10.11, mac: 00-00-00-00-00-11, pa: 198.18.0.1, "
        "rule: encap, vm: blue1}",
        f'  - rdid: "{RED}"',
        "      - {interface: pa0, pa: 198.18.0.2, prefix_length: 24}",
        "      - {name: red2, vsid: 5011, mac: 00-00-00-00-00-22}",
    ):
        assert line in text.splitlines()
        assert line in shipped.splitlines()


# --- Reading what PowerShell writes ------------------------------------------------------


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_every_powershell_encoding_reads_the_same(tmp_path: Path, encoding: str) -> None:
    objects = read_export(write_export(tmp_path / "x.json", LAB3_RECORDS, encoding))
    assert [obj["CustomerAddress"] for obj in objects] == [
        r["CustomerAddress"] for r in LAB3_RECORDS
    ]
    assert [obj["VMName"] for obj in objects] == ["blue1", "red1", "blue2", "red2"]
    assert all(not CIM_NOISE & obj.keys() for obj in objects)
    assert objects[0]["Rule"] == 1 and objects[0]["MACAddress"] == "000000000011"


def test_single_object_file(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_bytes(ENCODINGS["utf-16-le-bom"](SINGLE_OBJECT.replace("\n", "\r\n")))
    (only,) = read_export(path)
    assert only["CustomerAddress"] == "10.10.10.11" and only["VirtualSubnetID"] == 5010
    assert not CIM_NOISE & only.keys()
    policy, _ = run_import(tmp_path, [only], [route(BLUE, 5010, "10.10.10.0/24")], [])
    assert [(str(r.ca), str(r.mac), r.vm) for r in policy.lookup_records] == [
        ("10.10.10.11", "00-00-00-00-00-11", "blue1")
    ]


@pytest.mark.parametrize("content", [b"", codecs.BOM_UTF16_LE + "\r\n".encode("utf-16-le")])
def test_no_results_is_no_objects(tmp_path: Path, content: bytes) -> None:
    """ConvertTo-Json writes nothing when the cmdlet returned nothing."""
    path = tmp_path / "none.json"
    path.write_bytes(content)
    assert read_export(path) == []


def test_value_count_wrapper_is_unwrapped(tmp_path: Path) -> None:
    """Windows PowerShell 5.1 sometimes wraps an array as {"value": [...], "Count": n}."""
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"value": LAB3_ROUTES, "Count": 2}))
    assert [obj["VirtualSubnetID"] for obj in read_export(path)] == [5010, 5011]


@pytest.mark.parametrize(
    ("content", "path", "message", "line"),
    [
        (b'[{"VirtualSubnetID": 5010,}]', "", "not JSON: Expecting property name", 1),
        (b"[\r\n{}\r\n,]", "", "not JSON: Expecting value", 3),
        (b"5010", "", "expected a JSON object or a list of objects", None),
        (b'[{"Rule": 1}, "5010", [1]]', "bad.json[1]", "not an object", None),
        (b"\xff\xfe\x00", "", "cannot decode the file as utf-16", None),
        (b'["caf\xe9"]', "", "expected UTF-8, or UTF-16 with a byte-order mark", None),
    ],
)
def test_unusable_files_are_named(
    tmp_path: Path, content: bytes, path: str, message: str, line: int | None
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        read_export(bad)
    first = caught.value.issues[0]
    assert (first.file, first.path, first.line) == (str(bad), path, line)
    assert message in first.message


def test_every_non_object_entry_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"Rule": 1}, "5010", [1], null]')
    with pytest.raises(ConfigError) as caught:
        read_export(bad)
    assert [(i.path, i.value) for i in caught.value.issues] == [
        ("bad.json[1]", "5010"),
        ("bad.json[2]", "[...]"),
        ("bad.json[3]", None),
    ]


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        read_export(tmp_path / "nope.json")
    (issue,) = caught.value.issues
    assert issue.file == str(tmp_path / "nope.json")
    assert issue.message.startswith("cannot read the file: No such file")


# --- Field mapping -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "kind", "expected_rule", "expected_type"),
    [
        (1, 0, Rule.ENCAP, RecordType.STATIC),  # PS 5.1 and PS 7: integers
        ("TranslationMethodEncap", "Static", Rule.ENCAP, RecordType.STATIC),  # -EnumsAsStrings
        (0, 3, Rule.IP_REWRITE, RecordType.L2ONLY),
        ("TranslationMethodNat", "L2Only", Rule.IP_REWRITE, RecordType.L2ONLY),
        ("translationmethodencap", "L2ONLY", Rule.ENCAP, RecordType.L2ONLY),
        (1, 2, Rule.ENCAP, RecordType.GATEWAY),  # GatewayWildcard with the gateway's own CA
        (1, "GatewayWildcard", Rule.ENCAP, RecordType.GATEWAY),
        (1, None, Rule.ENCAP, RecordType.STATIC),  # Windows Server 2012: no Type yet
    ],
)
def test_enums_as_integers_or_names(
    tmp_path: Path, rule: Any, kind: Any, expected_rule: Rule, expected_type: RecordType
) -> None:
    exported = record(5010, "10.10.10.11", "000000000011", "198.18.0.1", "blue1", Rule=rule)
    exported["Type"] = kind
    policy, _ = run_import(tmp_path, [exported], [route(BLUE, 5010, "10.10.10.0/24")], [])
    (imported,) = policy.lookup_records
    assert (imported.rule, imported.type) == (expected_rule, expected_type)


def test_record_problems_are_all_reported_at_their_entries(tmp_path: Path) -> None:
    records = [
        record(5010, "10.10.10.11", "000000000011", "198.18.0.1", "blue1"),  # fine
        record(5010, "10.10.10.12", "00000000001G", "198.18.0.1", "blue2"),
        record(5010, "10.10.10.13", "000000000013", "198.18.0.1", "blue3", Rule=2),
        record(5010, "10.10.10.14", "000000000014", "198.18.0.1", "blue4", Type=1),
        record(5010, "10.10.10.15", "000000000015", "198.18.0.1", "blue5", Rule=7, Type="Big"),
        record(5010, "10.10.20.16", "000000000016", "198.18.0.1", "blue6"),
        record(5010, "10.10.10.17", "000000000017", None, "blue7"),
        record(5010, "10.10.10.18", "000000000011", "198.18.0.1", "blue8"),
    ]
    with pytest.raises(ConfigError) as caught:
        run_import(tmp_path, records, [route(BLUE, 5010, "10.10.10.0/24")], ["host1=198.18.0.1/24"])
    issues = caught.value.issues
    assert {issue.file for issue in issues} == {str(tmp_path / "lookup-records.json")}
    found = {issue.path: (issue.value, issue.message) for issue in issues}
    assert len(found) == len(issues)  # one problem, one issue
    assert {path: (value, message.split(":")[0]) for path, (value, message) in found.items()} == {
        "lookup-records.json[1].MACAddress": ("00000000001G", "not a MAC address"),
        "lookup-records.json[2].Rule": (2, "TranslationMethodNone is not supported"),
        "lookup-records.json[3].Type": (1, "Dynamic is not supported"),
        "lookup-records.json[4].Rule": (7, "not a Rule"),
        "lookup-records.json[4].Type": ("Big", "not a Type"),
        "lookup-records.json[5].CustomerAddress": (
            "10.10.20.16",
            "not inside VSID 5010's prefix 10.10.10.0/24",
        ),
        "lookup-records.json[6].ProviderAddress": (None, "required key is missing"),
        "lookup-records.json[7].MACAddress": (
            "00-00-00-00-00-11",
            "VSID 5010 already gives this MAC an IPv4 CA",
        ),
    }
    assert "learns no addresses" in found["lookup-records.json[3].Type"][1]
    assert "expected one of 0 (TranslationMethodNat)" in found["lookup-records.json[4].Rule"][1]
    assert found["lookup-records.json[7].MACAddress"][1] == (
        "VSID 5010 already gives this MAC an IPv4 CA: lookup-records.json[0] (a MAC holds "
        "one IPv4 and one IPv6 CA at most)"
    )


def test_route_problems_are_reported_once_at_the_route(tmp_path: Path) -> None:
    routes = [
        route(BLUE, 5010, "10.10.10.1/24"),  # makes the subnet and the route: one issue
        route("blue", 5011, "10.10.11.0/24"),
        route(BLUE, 5012, "10.10.12.0/24"),
        route(BLUE, 5012, "10.10.13.0/24"),  # a second IPv4 prefix for VSID 5012
        route(BLUE, 5012, "0.0.0.0/0", next_hop="10.10.99.1"),
    ]
    issues = refusals(tmp_path, [], routes, [])
    file = str(tmp_path / "customer-routes.json")
    assert issues == [
        (file, "customer-routes.json[3].DestinationPrefix"),
        (file, "customer-routes.json[0].DestinationPrefix"),
        (file, "customer-routes.json[1].RoutingDomainID"),
        (file, "customer-routes.json[4].NextHop"),
    ]


def test_other_entries_are_named_by_their_export_entry(tmp_path: Path) -> None:
    routes = [route(BLUE, 5010, "10.10.10.0/24"), route(BLUE, 5012, "10.10.10.0/25")]
    with pytest.raises(ConfigError) as caught:
        run_import(tmp_path, [], routes, [])
    assert [str(issue) for issue in caught.value.issues] == [
        f"{tmp_path / 'customer-routes.json'}: customer-routes.json[1].DestinationPrefix = "
        "'10.10.10.0/25': overlaps 10.10.10.0/24 (customer-routes.json[0].DestinationPrefix): "
        "virtual subnets of one routing domain must not overlap"
    ]


def test_vsid_without_on_link_route_is_left_out_with_a_warning(tmp_path: Path) -> None:
    records = [
        *LAB3_RECORDS,
        record(5012, "10.10.20.11", "000000000031", "198.18.0.1", "green1"),
        record(5012, "10.10.20.12", "000000000032", "198.18.0.2", "green2"),
    ]
    policy, warnings = run_import(tmp_path, records, LAB3_ROUTES, LAB3_NODES, LAB3_ADDRESSES)
    assert warnings == [
        "lookup-records.json: VSID 5012 has 2 lookup record(s) but no on-link customer "
        "route (NextHop 0.0.0.0) to give its prefix: they and their ports are left out"
    ]
    assert policy == unnamed(load_config(CONFIGS / "two-hosts.yaml"))


def test_customer_id_is_the_routing_domain(tmp_path: Path) -> None:
    green = "{11111111-2222-3333-4444-000000005012}"
    records = [
        record(5010, "10.10.10.11", "000000000011", "198.18.0.1", "blue1", CustomerID=BLUE),
        record(5011, "10.10.10.11", "000000000021", "198.18.0.1", "red1", CustomerID=BLUE),
        record(5012, "10.10.20.11", "000000000031", "198.18.0.1", "green1", CustomerID=green),
    ]
    policy, warnings = run_import(tmp_path, records, LAB3_ROUTES, ["host1=198.18.0.1/24"])
    assert [domain.rdid for domain in policy.routing_domains] == [BLUE, RED, green]
    assert policy.routing_domain(green).virtual_subnets == ()
    assert policy.rdid_of(5011) == RED  # the routes decide, the mismatch is a warning
    assert warnings == [
        "lookup-records.json: VSID 5012 has 1 lookup record(s) but no on-link customer route "
        "(NextHop 0.0.0.0) to give its prefix: they and their ports are left out",
        f"lookup-records.json: 1 record(s) of VSID 5011 have CustomerID {BLUE}, but the "
        f"customer routes put VSID 5011 in routing domain {RED}: the routes' is used",
    ]


# --- Nodes -------------------------------------------------------------------------------


def test_node_specs() -> None:
    specs = parse_nodes(["host1=198.18.0.1/24,198.18.0.11", "host2=198.18.0.2"])
    assert [(spec.name, spec.addresses) for spec in specs] == [
        (
            "host1",
            (NodeAddress(ip_address("198.18.0.1"), 24), NodeAddress(ip_address("198.18.0.11"))),
        ),
        ("host2", (NodeAddress(ip_address("198.18.0.2")),)),
    ]


def test_bad_node_specs_are_all_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_nodes(["host1", "host2=198.18.0.300,198.18.0.2/x", "=198.18.0.3"])
    assert [str(issue) for issue in caught.value.issues] == [
        "--node: 'host1': expected NAME=PA[,PA...], each PA optionally with /PREFIX_LENGTH",
        "--node: host2 = '198.18.0.300': not an IP address",
        "--node: host2 = '198.18.0.2/x': the prefix length is not a number",
        "--node: '=198.18.0.3': expected NAME=PA[,PA...], each PA optionally with /PREFIX_LENGTH",
    ]


def test_prefix_length_must_come_from_somewhere_and_agree(tmp_path: Path) -> None:
    nodes = ["host1=198.18.0.1/16", "host2=198.18.0.2", "host3=198.18.0.3"]
    addresses = LAB3_ADDRESSES  # 198.18.0.1/24 and 198.18.0.2/24: host3's is nowhere
    with pytest.raises(ConfigError) as caught:
        run_import(tmp_path, LAB3_RECORDS, LAB3_ROUTES, nodes, addresses)
    assert [str(issue) for issue in caught.value.issues] == [
        "--node: host1 = '198.18.0.1/16': the provider-address export gives this PA prefix "
        "length 24",
        "--node: host3 = '198.18.0.3': no prefix length: write it as PA/LENGTH, or give the "
        "PA's Get-NetVirtualizationProviderAddress export with --provider-addresses",
    ]


def test_vlan_comes_from_the_provider_address_export(tmp_path: Path) -> None:
    addresses = [provider_address("198.18.0.1", "HOST1", 24, vlan=42), LAB3_ADDRESSES[1]]
    policy, _ = run_import(tmp_path, LAB3_RECORDS, LAB3_ROUTES, LAB3_NODES, addresses)
    assert [entry.vlan for node in policy.nodes for entry in node.provider_addresses] == [42, None]


def test_option_problems_are_reported_at_the_option(tmp_path: Path) -> None:
    nodes = ["Host1=198.18.0.1/24", "host2=198.18.0.2/99", "host3=198.18.0.3/24,198.18.0.2/24"]
    with pytest.raises(ConfigError) as caught:
        run_import(tmp_path, LAB3_RECORDS, LAB3_ROUTES, nodes)
    assert [str(issue) for issue in caught.value.issues] == [
        "--node: Host1 = 'Host1': a node name is 1 to 32 of a-z, 0-9 and '-', not starting "
        "with '-'",
        "--node: host2.provider_addresses[0].prefix_length = 99: out of range: an IPv4 "
        "prefix length is 1..32",
        "--node: host3.provider_addresses[1].pa = '198.18.0.2': already a provider address "
        "of node host2 (--node host2.provider_addresses[0]): a PA belongs to one node",
    ]


def test_bad_interface_is_one_problem_however_many_pas(tmp_path: Path) -> None:
    nodes = ["host1=198.18.0.1/24,198.18.0.11/24", "host2=198.18.0.2/24"]
    with pytest.raises(ConfigError) as caught:
        run_import(tmp_path, LAB3_RECORDS, LAB3_ROUTES, nodes, interface="pa 0")
    assert [str(issue) for issue in caught.value.issues] == [
        "--interface: interface = 'pa 0': an interface name is not . or .. and has no /, : "
        "or space",
    ]


def test_pas_on_no_node_are_warned_about(tmp_path: Path) -> None:
    policy, warnings = run_import(
        tmp_path, LAB3_RECORDS, LAB3_ROUTES, ["host1=198.18.0.1"], LAB3_ADDRESSES
    )
    assert [node.name for node in policy.nodes] == ["host1"]
    assert [port.name for port in policy.node("host1").ports] == ["blue1", "red1"]
    assert len(policy.lookup_records) == 4  # host2's VMs stay reachable through its PA
    assert warnings == [
        "PA 198.18.0.2 (2 lookup record(s)) is on no --node: its VMs get no port in the output",
        "provider-addresses.json[1]: PA 198.18.0.2 is on no --node",
    ]


def test_port_names_stay_unique_and_clear_of_the_interface(tmp_path: Path) -> None:
    records = [
        record(5010, "10.10.10.11", "000000000011", "198.18.0.1", "web"),
        record(5011, "10.10.10.11", "000000000021", "198.18.0.1", "web"),  # a second NIC
        record(5010, "10.10.10.12", "000000000012", "198.18.0.1", "eth1"),  # the PA link's name
        record(5011, "10.10.10.12", "000000000022", "198.18.0.1", None),
    ]
    policy, warnings = run_import(
        tmp_path, records, LAB3_ROUTES, ["host1=198.18.0.1/24"], interface="eth1"
    )
    (node,) = policy.nodes
    assert [entry.interface for entry in node.provider_addresses] == ["eth1"]
    assert [(port.name, port.vsid, str(port.mac)) for port in node.ports] == [
        ("web", 5010, "00-00-00-00-00-11"),
        ("vnic0", 5011, "00-00-00-00-00-21"),
        ("vnic1", 5010, "00-00-00-00-00-12"),
        ("vnic2", 5011, "00-00-00-00-00-22"),
    ]
    assert warnings == [
        "lookup-records.json[1]: VM 'web' (another port's name): its port on node host1 "
        "is named vnic0",
        "lookup-records.json[2]: VM 'eth1' (the provider interface's name): its port on "
        "node host1 is named vnic1",
    ]


# --- The command ---------------------------------------------------------------------------


def cli() -> typer.Typer:
    """The command registered as the real CLI will register it."""
    app = typer.Typer(add_completion=False)
    app.callback()(lambda: None)
    app.command("import-hnv")(import_hnv_command)
    return app


def lab3_arguments(tmp_path: Path) -> list[str]:
    records = write_export(tmp_path / "lookup-records.json", LAB3_RECORDS, "utf-16-le-bom")
    routes = write_export(tmp_path / "customer-routes.json", LAB3_ROUTES, "utf-8-bom")
    addresses = write_export(tmp_path / "provider-addresses.json", LAB3_ADDRESSES)
    return [
        "import-hnv",
        "--lookup-records",
        str(records),
        "--customer-routes",
        str(routes),
        "--provider-addresses",
        str(addresses),
        *(argument for node in LAB3_NODES for argument in ("--node", node)),
    ]


def test_cli_writes_a_file_load_config_accepts(tmp_path: Path) -> None:
    output = tmp_path / "imported.yaml"
    result = CliRunner().invoke(cli(), [*lab3_arguments(tmp_path), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and result.stderr == ""
    assert load_config(output) == unnamed(load_config(CONFIGS / "two-hosts.yaml"))


def test_cli_writes_to_stdout_and_warns_on_stderr(tmp_path: Path) -> None:
    arguments = lab3_arguments(tmp_path)[:-2]  # host1's --node, not host2's
    result = CliRunner().invoke(cli(), arguments)
    assert result.exit_code == 0, result.output
    policy = load_policy(to_plain(new_yaml().load(result.stdout)))
    assert [node.name for node in policy.nodes] == ["host1"]
    assert result.stderr.splitlines() == [
        "warning: PA 198.18.0.2 (2 lookup record(s)) is on no --node: its VMs get no port "
        "in the output",
        "warning: provider-addresses.json[1]: PA 198.18.0.2 is on no --node",
    ]


def test_cli_reports_every_problem_and_writes_nothing(tmp_path: Path) -> None:
    records = [
        *LAB3_RECORDS,
        record(5010, "10.10.10.13", "000000000013", "198.18.0.1", "x", Type=1),
    ]
    records_file = write_export(tmp_path / "lookup-records.json", records)
    output = tmp_path / "imported.yaml"
    arguments = ["import-hnv", "--lookup-records", str(records_file), "-o", str(output)]
    result = CliRunner().invoke(
        cli(), [*arguments, "--customer-routes", str(tmp_path / "nope.json"), "--node", "host1"]
    )
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'nope.json'}: cannot read the file")
    assert lines[1].startswith("--node: 'host1': expected NAME=PA")
    assert len(lines) == 2  # the files and options first: the import needs them all
    assert not output.exists()

    routes_file = write_export(tmp_path / "customer-routes.json", LAB3_ROUTES)
    result = CliRunner().invoke(
        cli(), [*arguments, "--customer-routes", str(routes_file), "--node", "host1=198.18.0.1/24"]
    )
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{records_file}: lookup-records.json[4].Type = 1: Dynamic is not supported: a "
        "dynamic record is one the Windows host learned (guest DHCP or IP address "
        "learning); nvgw learns no addresses, so it has no equivalent"
    ]
    assert not output.exists()


def test_cli_unwritable_output_fails(tmp_path: Path) -> None:
    output = tmp_path / "no-such-directory" / "imported.yaml"
    result = CliRunner().invoke(cli(), [*lab3_arguments(tmp_path), "-o", str(output)])
    assert result.exit_code == 1
    assert result.stderr == f"nvgw import-hnv: cannot write {output}: No such file or directory\n"
