"""plan_lab: the namespaces, links and VMs a lab would build, checked without building.

Every expectation is worked out here from the policy again (records by VSID and
MAC, rules, subnets), not read back from the plan.
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from gateway.control import load_config
from gateway.lab.plan import FAR_LINK, LabError, LabPlan, plan_lab
from gateway.netnames import IFNAME_MAX_BYTES, ifname_problem
from gateway.policy import Policy, Rule

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = sorted(p.name for p in CONFIGS.glob("*.yaml"))
# The last: 2 bytes a character, so "its first 8 characters" would not fit 15 bytes.
PREFIXES = ["nvgw", "nvgwtest1234", "a-rather-long-lab-prefix-for-ci", "\u00e4" * 10]


def policy_of(name: str) -> Policy:
    return load_config(CONFIGS / name)


def test_every_seed_config_is_planned() -> None:
    seeds = {"single-host.yaml", "two-hosts.yaml", "ip-rewrite.yaml", "routing.yaml"}
    assert seeds | {"gateway.yaml"} <= set(SHIPPED)


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("config", SHIPPED)
def test_namespaces_are_prefixed_and_unique(config: str, prefix: str) -> None:
    policy = policy_of(config)
    plan = plan_lab(policy, prefix)
    assert plan.prefix == prefix
    assert plan.namespaces[0] == plan.provider_namespace == f"{prefix}-pnet"
    assert all(ns.startswith(f"{prefix}-") for ns in plan.namespaces)
    assert len(set(plan.namespaces)) == len(plan.namespaces)
    nodes = [node.name for node in policy.nodes]
    ports = [port.name for node in policy.nodes for port in node.ports]
    taps = [
        tap
        for node in policy.nodes
        for d in (node.routing_domains or {}).values()
        for tap in d.taps
    ]
    peers = [ns for p in plan.peers for ns in (p.namespace, *(v.vm.namespace for v in p.vms))]
    internets = 2 * sum(node.nat is not None for node in policy.nodes)  # and its far network
    sites = sum(
        t.endpoint is not None and t.endpoint.startswith("192.0.2.") for t in policy.tunnels
    )
    wan = 1 + sites if sites else 0  # the WAN's bridge, and a site per tunnel on it
    assert len(plan.namespaces) == (
        1 + len(nodes) + len(ports) + len(taps) + len(peers) + internets + wan
    )
    assert [h.namespace for h in plan.hosts] == [f"{prefix}-{n}" for n in nodes]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("config", SHIPPED)
def test_interface_names_fit_ifnamsiz(config: str, prefix: str) -> None:
    plan = plan_lab(policy_of(config), prefix)
    names = [plan.bridge]
    for host in plan.hosts:
        names += [host.interface, host.bridge_port]
    names += [vm.name for vm in plan.vms]
    names += [corp.tap for corp in plan.corps]
    names += [name for internet in plan.internets for name in (internet.tap, *FAR_LINK)]
    for peer in plan.peers:  # a host that is not ours: its veth and its VMs'
        names += [peer.interface, peer.bridge_port, *(vm.vm.name for vm in peer.vms)]
    names += [site.ifname for site in plan.sites]  # wireguard-go's: the machine's namespace
    for name in names:
        assert ifname_problem(name) is None, name
        assert 1 <= len(name.encode()) <= IFNAME_MAX_BYTES, name
    bridge_ports = [h.bridge_port for h in plan.hosts] + [p.bridge_port for p in plan.peers]
    assert len(set(bridge_ports)) == len(bridge_ports), "all sit on one bridge"
    assert plan.bridge not in bridge_ports


@pytest.mark.parametrize("config", SHIPPED)
def test_every_port_is_a_vm_with_its_records_ca_and_subnet_prefix(config: str) -> None:
    policy = policy_of(config)
    plan = plan_lab(policy, "nvgw")
    expected = {}
    for node in policy.nodes:
        for port in node.ports:
            [record] = [
                r for r in policy.lookup_records if r.vsid == port.vsid and r.mac == port.mac
            ]
            [prefix] = [p for p in policy.virtual_subnet(port.vsid).prefixes if p.version == 4]
            expected[port.name] = (
                f"nvgw-{port.name}",
                node.name,
                port.vsid,
                policy.rdid_of(port.vsid),
                IPv4Interface(f"{record.ca}/{prefix.prefixlen}"),
            )
    got = {vm.name: (vm.namespace, vm.node, vm.vsid, vm.rdid, vm.address) for vm in plan.vms}
    assert got == expected
    for name, want in expected.items():
        assert plan.vm(name).address == want[4]
        assert plan.vm(name).address.ip in plan.vm(name).address.network
    with pytest.raises(KeyError):
        plan.vm("nosuch")


@pytest.mark.parametrize("config", SHIPPED)
def test_only_nvgre_pas_become_kernel_addresses(config: str) -> None:
    policy = policy_of(config)
    plan = plan_lab(policy, "nvgw")
    rule_of_pa = {r.pa: r.rule for r in policy.lookup_records}
    for node in policy.nodes:
        want = tuple(
            f"{pa.pa}/{pa.prefix_length}"
            for pa in node.provider_addresses
            if rule_of_pa.get(pa.pa) is not Rule.IP_REWRITE
        )
        host = plan.host(node.name)
        assert host.addresses == want
        assert host.interface == node.provider_addresses[0].interface
    with pytest.raises(KeyError):
        plan.host("nosuch")


def test_two_hosts_pas_and_ip_rewrite_pas_concretely() -> None:
    nvgre = plan_lab(policy_of("two-hosts.yaml"), "t")
    assert nvgre.host("host1").addresses == ("198.18.0.1/24",)
    assert nvgre.host("host2").addresses == ("198.18.0.2/24",)
    rewrite = plan_lab(policy_of("ip-rewrite.yaml"), "t")
    assert [h.addresses for h in rewrite.hosts] == [(), ()], "the daemon's, not the kernel's"
    assert rewrite.vm("red1").address == IPv4Interface("10.10.10.11/24")
    assert rewrite.vm("blue2").address == IPv4Interface("10.10.10.12/24")


def test_routing_vms_get_their_subnets_gateway() -> None:
    plan: LabPlan = plan_lab(policy_of("routing.yaml"), "nvgwtest1234")
    blue3 = plan.vm("blue3")
    assert blue3.vsid == 5012 and blue3.node == "host2"
    assert blue3.address == IPv4Interface("10.10.20.13/24")
    assert blue3.gateway == IPv4Address("10.10.20.1")
    assert plan.vm("blue1").gateway == IPv4Address("10.10.10.1")
    assert plan.vm("blue1").rdid == blue3.rdid != plan.vm("red1").rdid
    assert plan.vm("red1").gateway is None and plan.vm("red2").gateway is None


def test_seed_configs_without_gateways_plan_none() -> None:
    for config in ("single-host.yaml", "two-hosts.yaml", "ip-rewrite.yaml"):
        assert {vm.gateway for vm in plan_lab(policy_of(config), "nvgw").vms} == {None}


def test_each_gateway_tap_is_a_corp_network_of_its_tenant() -> None:
    plan = plan_lab(policy_of("gateway.yaml"), "nvgw")
    assert plan.host("gw").addresses == ("198.18.0.10/24",), "the gateway is a node like any"
    blue, red = plan.corp("blue"), plan.corp("red")
    assert (blue.namespace, blue.node, blue.tap) == ("nvgw-corp-blue", "gw", "gw-blue")
    assert (red.namespace, red.node, red.tap) == ("nvgw-corp-red", "gw", "gw-red")
    assert blue.address == red.address == IPv4Interface("172.16.0.2/24"), "they overlap"
    assert blue.via == red.via == IPv4Address("172.16.0.1")  # the gateway's own, on each TAP
    assert blue.routes == red.routes == (IPv4Network("10.10.10.0/24"),)
    assert blue.rdid == plan.vm("blue1").rdid != red.rdid == plan.vm("red1").rdid
    assert {vm.gateway for vm in plan.vms} == {IPv4Address("10.10.10.1")}
    with pytest.raises(KeyError):
        plan.corp("green")
    assert plan_lab(policy_of("two-hosts.yaml"), "nvgw").corps == ()


def test_a_gateways_nat_gets_an_internet_with_a_far_network_behind_it() -> None:
    policy = policy_of("gateway.yaml")
    [internet] = plan_lab(policy, "nvgw").internets
    nat = policy.node("gw").nat
    assert nat is not None
    assert (internet.node, internet.tap) == ("gw", nat.tap) == ("gw", "gw-ext")
    assert (internet.namespace, internet.far_namespace) == ("nvgw-internet", "nvgw-far")
    # The kernel end of the external TAP is the NAT's next hop, on the NAT's subnet.
    assert internet.address == IPv4Interface("203.0.113.1/24")
    assert internet.address.ip == nat.next_hop
    assert internet.external == tuple(a.ip for a in nat.addresses)
    assert plan_lab(policy_of("two-hosts.yaml"), "nvgw").internets == ()


def test_each_tunnel_with_an_endpoint_on_the_wan_is_an_onprem_site_of_its_tenant() -> None:
    policy = policy_of("hybrid.yaml")
    plan = plan_lab(policy, "nvgw")
    blue, red = plan.site("blue"), plan.site("red")
    assert plan.wan_namespace == "nvgw-wan"
    assert (blue.namespace, blue.node, blue.tunnel) == ("nvgw-onprem-blue", "gw", "onprem-blue")
    assert (red.namespace, red.node, red.tunnel) == ("nvgw-onprem-red", "gw", "onprem-red")
    assert (blue.wan, red.wan) == (IPv4Interface("192.0.2.11/24"), IPv4Interface("192.0.2.12/24"))
    assert blue.listen_port == red.listen_port == blue.gateway_port == 51820
    assert (blue.ifname, red.ifname) == ("nvgw-w0", "nvgw-w1"), "the lab's prefix: a machine's name"
    assert (blue.preshared, red.preshared) == (True, False)
    services = [
        (name, protocol, str(address), port) for name, protocol, address, port in blue.services
    ]
    assert services == [
        ("directory", "tcp", "172.16.50.10/24", 389),
        ("dns", "udp", "172.16.50.11/24", 53),
        ("sql", "tcp", "172.16.50.12/24", 1433),
    ]
    assert red.services == blue.services, "the sites overlap"
    assert blue.routes == red.routes == (IPv4Network("10.10.10.0/24"),)
    assert blue.rdid == plan.vm("blue1").rdid != red.rdid == plan.vm("red1").rdid
    assert plan.namespaces[-3:] == ["nvgw-wan", "nvgw-onprem-blue", "nvgw-onprem-red"]
    assert plan.corps == plan.internets == ()
    assert plan_lab(policy_of("gateway.yaml"), "nvgw").sites == ()


def test_sites_on_the_wan_of_two_gateways_are_refused() -> None:
    """The WAN has one gateway address: the planner alone is asked (a policy with a
    second gateway would need its own records and routes; only the tunnel's node
    matters here)."""
    policy = policy_of("hybrid.yaml")
    blue, red = policy.tunnels
    moved = dataclasses.replace(policy, tunnels=(blue, red.model_copy(update={"node": "gw2"})))
    with pytest.raises(LabError, match="one gateway"):
        plan_lab(moved, "nvgw")


def test_the_plan_is_deterministic() -> None:
    policy = policy_of("routing.yaml")
    assert plan_lab(policy, "x") == plan_lab(policy, "x")


# Port names are unique per node only (a TAP lives in its host's namespace), and node
# and port names are separate name spaces, so a valid policy can give two VMs, or a VM
# and a host, the same "<prefix>-<name>".
COLLIDING = {
    "port-on-two-nodes": "{name: blue1, vsid: 5010",
    "port-named-like-a-node": "{name: host1, vsid: 5010",
    "port-named-pnet": "{name: pnet, vsid: 5010",
}


@pytest.mark.parametrize("rename", COLLIDING.values(), ids=COLLIDING.keys())
def test_a_plan_that_would_share_a_namespace_is_refused(tmp_path: Path, rename: str) -> None:
    text = (CONFIGS / "two-hosts.yaml").read_text()
    original = "{name: blue2, vsid: 5010"
    assert text.count(original) == 1
    config = tmp_path / "two-hosts.yaml"
    config.write_text(text.replace(original, rename))
    policy = load_config(config)  # valid: the policy accepts it
    with pytest.raises(LabError, match="would share one") as caught:
        plan_lab(policy, "nvgw")
    assert "nvgw-" + rename.split(",")[0].removeprefix("{name: ") in str(caught.value)
