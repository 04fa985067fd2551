"""Import of HNV's records that are no VM: default gateways, gateways' interfaces,
GatewayWildcard and L2Only records on 0.0.0.0; on the exports shipped as fixtures
(``hnv_exports/``, Windows' own layout) and on records written here; and the proof
that matters: ``nvgw trace`` from an imported VM to an off-subnet address goes to the
gateway."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gateway.control import load_config, to_plain
from gateway.control.hnv_import import Export, import_hnv, parse_nodes, read_export
from gateway.control.trace import trace
from gateway.dataplane import plan_node
from gateway.errors import ConfigError
from gateway.policy import Policy, RecordType, Rule, load_policy

from .test_hnv_import import BLUE, cli, record, refusals, route, run_import

FIXTURES = Path(__file__).resolve().parent / "hnv_exports"
CASES = json.loads((FIXTURES / "cases.json").read_text())
GATEWAY, STATIC, L2ONLY = RecordType.GATEWAY, RecordType.STATIC, RecordType.L2ONLY


def fixture_files(name: str) -> dict[str, list[Path]]:
    """A fixture set's exports by option: every file whose name ends as the option's."""
    folder = FIXTURES / name
    return {
        option: sorted(folder.glob(f"*{option}.json"))
        for option in ("lookup-records", "customer-routes", "provider-addresses")
    }


def import_fixture(name: str) -> tuple[Policy, list[str]]:
    """A fixture set imported with its cases.json options, as the CLI would."""
    files = {
        option: [Export(str(path), read_export(path)) for path in paths]
        for option, paths in fixture_files(name).items()
    }
    document, warnings = import_hnv(
        files["lookup-records"],
        files["customer-routes"],
        parse_nodes(CASES[name]["args"][1::2]),
        provider_addresses=files["provider-addresses"],
    )
    return load_policy(to_plain(document)), warnings


def records_of(policy: Policy) -> list[tuple[int, str, str, RecordType]]:
    return [(r.vsid, str(r.ca), str(r.mac), r.type) for r in policy.lookup_records]


def ports_of(policy: Policy) -> dict[str, list[tuple[str, int, str]]]:
    return {
        node.name: [(port.name, port.vsid, str(port.mac)) for port in node.ports]
        for node in policy.nodes
    }


def encapsulations(policy: Policy, vm: str, destination: str) -> list[tuple[str, int, str]]:
    """(node, VSID, "PA -> PA") of each NVGRE hop ``nvgw trace`` shows for the packet
    (its FlowID, a hash of the packet, left out)."""
    found = []
    for hop in trace(policy, vm, destination).hops:
        if hop.what == "encapsulate":
            vsid, pas = re.fullmatch(r"NVGRE VSID (\d+) FlowID \d+: PA (.*)", hop.detail).groups()
            found.append((hop.node, int(vsid), pas))
    return found


# --- The shipped exports ---------------------------------------------------------------


def test_every_fixture_set_is_in_cases_json() -> None:
    sets = sorted(path.name for path in FIXTURES.iterdir() if path.is_dir())
    assert sets == sorted(CASES)
    for name in sets:
        assert all(fixture_files(name).values()), name


def test_c03_default_gateway_records_become_the_subnets_gateway() -> None:
    """WS2012 R2's gateway lab: the `.1` records (a made-up MAC on the host's PA) are
    the subnets' default gateways, and 10.0.2.2, the default route's next hop, is the
    gateway's interface in both tenants: a gateway record, never a port."""
    policy, warnings = import_fixture("c03_mtgw_tlg_ws2012r2")
    gateways = {s.vsid: s.gateway and str(s.gateway) for s in policy.virtual_subnets}
    assert gateways == {6000: "10.0.1.1", 6001: None, 7000: "10.0.1.1", 7001: None}
    assert records_of(policy) == [
        (6000, "10.0.1.101", "00-15-5d-e2-ab-00", STATIC),
        (6000, "10.0.1.111", "00-15-5d-e2-ab-01", STATIC),
        (6001, "10.0.2.2", "00-15-5d-e2-0a-00", GATEWAY),
        (7000, "10.0.1.101", "00-15-5d-e2-ab-02", STATIC),
        (7000, "10.0.1.111", "00-15-5d-e2-ab-03", STATIC),
        (7001, "10.0.2.2", "00-15-5d-e2-0a-00", GATEWAY),
    ]
    assert ports_of(policy) == {
        "hnvhost": [
            ("vnic0", 6000, "00-15-5d-e2-ab-00"),
            ("vnic1", 6000, "00-15-5d-e2-ab-01"),
            ("vnic2", 7000, "00-15-5d-e2-ab-02"),
            ("vnic3", 7000, "00-15-5d-e2-ab-03"),
        ],
        "gwhost": [],
    }
    assert warnings == [
        "node gwhost gets no port: its PAs carry only gateway records (10.0.2.2 in VSID "
        "6001, 10.0.2.2 in VSID 7001), and a gateway's interface is no VM port"
    ]


def test_c05_ip_rewrite_imports_as_it_is() -> None:
    policy, warnings = import_fixture("c05_iprewrite_nat")
    assert [(str(r.ca), str(r.pa), r.rule, r.vm) for r in policy.lookup_records] == [
        ("192.168.10.21", "172.30.0.21", Rule.IP_REWRITE, "VMPXE"),
        ("192.168.10.22", "172.30.0.22", Rule.IP_REWRITE, "VMDC"),
        ("192.168.10.31", "172.30.0.31", Rule.IP_REWRITE, "VMWEB"),
    ]
    assert {node: [port[0] for port in ports] for node, ports in ports_of(policy).items()} == {
        "hv1": ["VMPXE", "VMDC"],
        "hv2": ["VMWEB"],
    }
    assert policy.virtual_subnet(5001).gateway is None  # no record on .1
    assert warnings == []


def test_c06b_ipv6_passes_check_and_its_node_is_refused_naming_the_entries() -> None:
    policy, warnings = import_fixture("c06b_ipv6_no_dualstack")
    assert [(str(r.ca), str(r.pa)) for r in policy.lookup_records] == [
        ("fd00:6006::10", "2001:db8:11:22:33:44:55:6"),
        ("fd00:6006::20", "192.168.2.3"),
    ]
    assert warnings == []
    with pytest.raises(ConfigError) as caught:
        plan_node(policy, "hv6")
    assert [(issue.path, issue.value) for issue in caught.value.issues] == [
        ("nodes.hv6.provider_addresses[0].pa", "2001:db8:11:22:33:44:55:6"),
        ("lookup_records[0].ca", "fd00:6006::10"),
    ]


def test_m01_two_hosts_gateway_wildcard_l2only_and_a_dual_stack_vm() -> None:
    """Microsoft's shapes together, exported from two hosts: each entry once, every
    record keeping its type and CA, the gateway's interface no port."""
    policy, warnings = import_fixture("m01_hnv_gateway_two_hosts")
    (subnet,) = policy.virtual_subnets
    assert [str(prefix) for prefix in subnet.prefixes] == ["10.0.0.0/24", "fd00:6000::/64"]
    assert str(subnet.gateway) == "10.0.0.1"
    assert len(policy.customer_routes) == 2  # each host's two routes, once
    assert records_of(policy) == [
        (6000, "10.0.0.5", "10-10-10-10-11-05", STATIC),
        (6000, "fd00:6000::5", "10-10-10-10-11-05", STATIC),  # the same VM, dual-stack
        (6000, "0.0.0.0", "10-10-10-10-11-05", L2ONLY),
        (6000, "10.0.0.6", "10-10-10-10-11-06", STATIC),
        (6000, "0.0.0.0", "10-10-10-10-11-06", L2ONLY),
        (6000, "10.0.0.254", "10-10-10-10-11-fe", GATEWAY),  # its wildcard's MAC
        (6000, "0.0.0.0", "10-10-10-10-11-fe", GATEWAY),  # the GatewayWildcard
    ]
    assert ports_of(policy) == {
        "hv1": [("BlueS1-VM1", 6000, "10-10-10-10-11-05")],
        "hv2": [("BlueS1-VM2", 6000, "10-10-10-10-11-06")],
    }
    assert warnings == [
        "lookup-records.json[1]: fd00:6000::1 is VSID 6000's IPv6 default gateway, and nvgw "
        "gives a subnet one gateway address (10.0.0.1, lookup-records.json[0]): it is left out"
    ]


def test_m01_through_the_cli_with_an_export_per_host(tmp_path: Path) -> None:
    files = fixture_files("m01_hnv_gateway_two_hosts")
    arguments = ["import-hnv", *CASES["m01_hnv_gateway_two_hosts"]["args"]]
    for option, paths in files.items():
        arguments += [argument for path in paths for argument in (f"--{option}", str(path))]
    assert len(files["customer-routes"]) == 2
    output = tmp_path / "imported.yaml"
    result = CliRunner().invoke(cli(), [*arguments, "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert load_config(output) == import_fixture("m01_hnv_gateway_two_hosts")[0]


# --- The end-to-end proof: a VM's off-subnet traffic goes to the gateway -------------


def test_m01_trace_off_subnet_goes_to_the_gateway_wildcards_pa() -> None:
    """No customer route leads off the subnet: the GatewayWildcard does, to the
    gateway's PA (no node of the import owns it: the gateway is not a host)."""
    policy, _ = import_fixture("m01_hnv_gateway_two_hosts")
    assert encapsulations(policy, "BlueS1-VM1", "203.0.113.7") == [
        ("hv1", 6000, "192.168.1.101 -> 192.168.1.200")
    ]
    # On-subnet traffic still goes to the other VM's host.
    assert encapsulations(policy, "BlueS1-VM1", "10.0.0.6") == [
        ("hv1", 6000, "192.168.1.101 -> 192.168.1.102")
    ]


def test_c03_trace_off_subnet_goes_to_the_default_routes_gateway() -> None:
    """Contoso's default route leads to 10.0.2.2 in VSID 6001: the packet is sent to
    that record's PA in its VSID, and Fabrikam's identical VM gets there in its own."""
    policy, _ = import_fixture("c03_mtgw_tlg_ws2012r2")
    assert encapsulations(policy, "vnic0", "203.0.113.7") == [
        ("hnvhost", 6001, "192.168.0.22 -> 192.168.0.11")
    ]
    assert encapsulations(policy, "vnic2", "203.0.113.7") == [
        ("hnvhost", 7001, "192.168.0.22 -> 192.168.0.11")
    ]


# --- Records on 0.0.0.0 ------------------------------------------------------------------

GW = record(5010, "10.10.10.2", "00155d05df03", "192.0.2.101", "ContosoCloudGW-v4")
SERVER = record(5010, "10.10.10.6", "00155d059701", "192.0.2.111", "ContosoCloudDAServer")
BLUE_ROUTES = [route(BLUE, 5010, "10.10.10.0/24")]
GW_NODES = ["gw=192.0.2.101/24", "r1=192.0.2.111/24"]


@pytest.mark.parametrize("kind", [2, "GatewayWildcard", 0, None])
def test_wildcard_is_a_gateway_record_and_marks_its_adapter(tmp_path: Path, kind: Any) -> None:
    """GatewayWildcard keeps its CA 0.0.0.0 as a gateway record. Windows Server 2012
    had no Type: its wildcard, written without one (or as Static), means the same."""
    wildcard = record(5010, "0.0.0.0", "00155d05df03", "192.0.2.101", "wildcard v4", Type=kind)
    policy, warnings = run_import(tmp_path, [GW, wildcard, SERVER], BLUE_ROUTES, GW_NODES)
    assert [(str(r.ca), r.type, r.vm) for r in policy.lookup_records] == [
        ("10.10.10.2", GATEWAY, "ContosoCloudGW-v4"),
        ("0.0.0.0", GATEWAY, "wildcard v4"),
        ("10.10.10.6", STATIC, "ContosoCloudDAServer"),
    ]
    assert ports_of(policy) == {"gw": [], "r1": [("vnic0", 5010, "00-15-5d-05-97-01")]}
    assert warnings == [
        "node gw gets no port: its PAs carry only gateway records (10.10.10.2 in VSID 5010, "
        "0.0.0.0 in VSID 5010), and a gateway's interface is no VM port",
        "lookup-records.json[2]: VM 'ContosoCloudDAServer' (not a Linux interface name): "
        "its port on node r1 is named vnic0",
    ]


def test_wildcard_alone_and_l2only_alone_are_imported(tmp_path: Path) -> None:
    """A gateway known only by its wildcard, and a MAC known only by its L2Only record
    (Windows learns its CA from DHCP): both kept, neither a port."""
    records = [
        record(5010, "0.0.0.0", "00155d05df04", "192.0.2.101", "wildcard v4", Type=2),
        record(5010, "0.0.0.0", "00155d05df05", "192.0.2.111", None, Type=3),
        SERVER,
    ]
    policy, warnings = run_import(tmp_path, records, BLUE_ROUTES, GW_NODES)
    assert [(str(r.ca), str(r.mac), r.type) for r in policy.lookup_records] == [
        ("0.0.0.0", "00-15-5d-05-df-04", GATEWAY),
        ("0.0.0.0", "00-15-5d-05-df-05", L2ONLY),
        ("10.10.10.6", "00-15-5d-05-97-01", STATIC),
    ]
    assert ports_of(policy) == {"gw": [], "r1": [("vnic0", 5010, "00-15-5d-05-97-01")]}
    assert warnings == [
        "node gw gets no port: its PAs carry only gateway records (0.0.0.0 in VSID 5010), "
        "and a gateway's interface is no VM port",
        "lookup-records.json[2]: VM 'ContosoCloudDAServer' (not a Linux interface name): "
        "its port on node r1 is named vnic0",
        "lookup-records.json[1]: MAC 00-15-5d-05-df-05 in VSID 5010 has an L2Only record "
        "and no CA: nvgw learns no addresses, so it gets no port",
    ]


def test_a_customer_routes_next_hop_is_a_gateway(tmp_path: Path) -> None:
    routes = [*BLUE_ROUTES, route(BLUE, 5010, "0.0.0.0/0", next_hop="10.10.10.2")]
    policy, _ = run_import(tmp_path, [GW, SERVER], routes, GW_NODES)
    assert [(str(r.ca), r.type) for r in policy.lookup_records] == [
        ("10.10.10.2", GATEWAY),
        ("10.10.10.6", STATIC),
    ]
    assert ports_of(policy)["gw"] == []


# --- Default-gateway records ---------------------------------------------------------------


def test_a_record_on_the_placeholder_pa_is_the_default_gateway(tmp_path: Path) -> None:
    records = [
        record(5010, "10.10.10.254", "000000000001", "169.254.254.254", None),
        record(5010, "10.10.10.1", "000000000011", "198.18.0.1", "blue1"),  # .1, but not DG
    ]
    with pytest.raises(ConfigError) as caught:
        run_import(tmp_path, records, BLUE_ROUTES, ["host1=198.18.0.1/24"])
    # The placeholder record wins as the gateway; the .1 one is a second: a conflict.
    assert [(i.path, i.value) for i in caught.value.issues] == [
        ("lookup-records.json[1].CustomerAddress", "10.10.10.1")
    ]
    assert caught.value.issues[0].message == (
        "VSID 5010 already has the default gateway 10.10.10.254 (lookup-records.json[0]): "
        "a virtual subnet has one"
    )
    policy, warnings = run_import(tmp_path, records[:1], BLUE_ROUTES, ["host1=198.18.0.1/24"])
    assert str(policy.virtual_subnet(5010).gateway) == "10.10.10.254"
    assert policy.lookup_records == () and ports_of(policy) == {"host1": []}
    assert warnings == []


def test_a_default_gateway_outside_its_subnet_is_reported_at_the_record(tmp_path: Path) -> None:
    records = [record(5010, "10.10.99.1", "000000000001", "169.254.254.254", None)]
    assert refusals(tmp_path, records, BLUE_ROUTES, []) == [
        (str(tmp_path / "lookup-records.json"), "lookup-records.json[0].CustomerAddress")
    ]
