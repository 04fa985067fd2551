"""A host that is not ours reaches the corp network through nvgw: issue 11's second
"Done when" line, on both backends.

The gateway scenario's blue3 (10.10.10.13, VSID 5010) lives on an Open vSwitch
userspace host at PA 198.18.0.3 that no nvgw node owns; its lookup record is all the
policy knows of it. Its VM reaches Blue's corp server over TCP, UDP and ping through
the gateway, the corp server reaches it back, and the gateway counts what crossed
it. The lab is the gateway tests' own bring-up (``gateway_lab``), Open vSwitch and all.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from gateway.control import load_config
from gateway.lab.commands import CONFIGS
from gateway.lab.corp_probe import ask, corp_expectations
from gateway.lab.ovs_peer import OvsHost, flows, missing_tools
from gateway.lab.plan import LabError, PeerVmPlan, plan_lab
from gateway.lab.topology import Lab
from gateway.policy import compile_policy
from tests.conftest import require_root, require_tool

from .conftest import capture_fields, lab_prefix, ping, provider_capture, value
from .test_teardown import leftovers

CORP, PEER_PA, GW_PA = "172.16.0.2", "198.18.0.3", "198.18.0.10"
BLUE = {"rdid": "{11111111-2222-3333-4444-000000005010}", "routing_domain": "blue"}
RED = {"rdid": "{11111111-2222-3333-4444-000000005011}", "routing_domain": "red"}


def test_a_pa_no_node_owns_is_a_host_that_is_not_ours() -> None:
    plan = plan_lab(load_config(Path(str(CONFIGS / "gateway.yaml"))), "nvgw")
    (peer,) = plan.peers
    assert (peer.name, peer.namespace, peer.address) == (
        "ovs1",
        "nvgw-ovs1",
        IPv4Interface(f"{PEER_PA}/24"),
    )
    blue3 = plan.peer_vm("blue3")
    assert blue3 == PeerVmPlan(
        blue3.vm, "00:00:00:00:00:13", "02:00:00:00:50:10", IPv4Address(GW_PA)
    ), "its off-subnet traffic goes to Blue's gateway record"
    assert (blue3.vm.namespace, blue3.vm.node, blue3.vm.vsid) == ("nvgw-blue3", "ovs1", 5010)
    assert blue3.vm.address == IPv4Interface("10.10.10.13/24")
    assert blue3.vm.gateway == IPv4Address("10.10.10.254")
    assert "blue3" not in {vm.name for vm in plan.vms}, "no nvgw host serves it"
    assert "nvgw-ovs1" in plan.namespaces and "nvgw-blue3" in plan.namespaces
    for config in ("two-hosts.yaml", "ip-rewrite.yaml", "routing.yaml"):
        assert plan_lab(load_config(Path(str(CONFIGS / config))), "nvgw").peers == ()


def test_the_peers_flows_send_to_the_gateway_as_nvgre_of_the_vms_vsid() -> None:
    plan = plan_lab(load_config(Path(str(CONFIGS / "gateway.yaml"))), "nvgw")
    table = flows(plan.peers[0])
    key = f"{5010 << 8:#x}"
    out = "in_port=blue3,dl_src=00:00:00:00:00:13,dl_dst=02:00:00:00:50:10,"
    assert f"priority=100,{out}actions=set_field:{key}->tun_id,output:gre-0-10" in table
    back = f"in_port=gre-0-10,tun_id={key}/0xffffff00,dl_dst=00:00:00:00:00:13,"
    assert f"priority=100,{back}actions=output:blue3" in table  # any FlowID
    (arp,) = [flow for flow in table if ",arp," in flow]
    assert "arp_tpa=10.10.10.254" in arp and "load:0x020000005010->NXM_NX_ARP_SHA[]" in arp
    assert "load:0x0a0a0afe->NXM_OF_ARP_SPA[]" in arp and arp.endswith(",in_port")
    assert table[-1] == "priority=0,actions=drop"


@pytest.mark.parametrize(("vsid", "reaches"), [(5010, "blue"), (5011, "red")])
def test_the_data_plane_says_which_corp_the_peers_vm_reaches(
    tmp_path: Path, vsid: int, reaches: str
) -> None:
    """What the lab's corp matrix checks blue3's answers against: its echo request as
    NVGRE from 198.18.0.3 through the gateway and the reply back there as NVGRE of
    its VSID. Its record moved into Red's VSID, it reaches Red's corp instead."""
    text = (CONFIGS / "gateway.yaml").read_text()
    record = "{vsid: 5010, ca: 10.10.10.13,"
    assert text.count(record) == 1
    config = tmp_path / "gateway.yaml"
    config.write_text(text.replace(record, f"{{vsid: {vsid}, ca: 10.10.10.13,"))
    policy = load_config(config)
    expected = corp_expectations(compile_policy(policy), plan_lab(policy, "nvgw"))
    # Both corps are 172.16.0.2: whichever is asked for, one server answers.
    assert expected["blue3", "blue"] == expected["blue3", "red"] == reaches
    assert expected["blue1", "blue"] == "blue" and expected["red1", "red"] == "red"


@pytest.fixture(scope="module")
def lab(gateway_lab: Lab) -> Lab:
    for tool in missing_tools():
        require_tool(tool)  # skips, or fails under CI=true, naming what is missing
    return gateway_lab


def crossed(lab: Lab) -> dict[tuple[str, str], float]:
    """IP packets the gateway moved per tenant and way: ``in`` from the corp TAP into
    the tenant's VSIDs, ``out`` to the corp TAP."""
    samples = lab.metrics("gw")
    return {
        (tenant["routing_domain"], way): value(
            samples, f"nvgw_domain_{way}_packets_total", **tenant
        )
        for tenant in (BLUE, RED)
        for way in ("in", "out")
    }


def rose(before: dict, after: dict) -> dict[tuple[str, str], float]:
    return {key: after[key] - before[key] for key in before}


@pytest.mark.netns
def test_the_ovs_vm_reaches_blues_corp_server_and_back(lab: Lab, tmp_path: Path) -> None:
    _, plan = lab.plan()
    blue3 = plan.peer_vm("blue3").vm
    # Its first packet may wait for Open vSwitch to resolve the gateway's PA: TCP
    # retransmits, so it goes first.
    assert ask(blue3, CORP, "tcp") == "blue"
    wire = tmp_path / "provider.pcap"
    with provider_capture(lab, wire, f"ip proto 47 and host {PEER_PA}", count=2):
        assert ask(blue3, CORP, "udp") == "blue"
    rows = capture_fields(wire, "ip.src", "ip.dst", "gre.key")  # outer,inner addresses
    keys = {(src.split(",")[0], dst.split(",")[0], int(key, 16) >> 8) for src, dst, key in rows}
    assert keys == {(PEER_PA, GW_PA, 5010), (GW_PA, PEER_PA, 5010)}, rows

    before = crossed(lab)
    assert ping(lab, "blue3", CORP, count=3)
    moved = rose(before, crossed(lab))
    assert moved["blue", "out"] >= 3 and moved["blue", "in"] >= 3, moved
    assert moved["red", "out"] == moved["red", "in"] == 0, moved

    # And back: Blue's corp network reaches the VM on the host that is not ours,
    # Red's does not (10.10.10.13 is no VM of Red's VSID).
    before = crossed(lab)
    assert ping(lab, "corp-blue", "10.10.10.13", count=3)
    assert not ping(lab, "corp-red", "10.10.10.13")
    moved = rose(before, crossed(lab))
    assert moved["blue", "in"] >= 3 and moved["blue", "out"] >= 3, moved
    assert moved["red", "in"] == 0, "nothing of Red's went into a VSID"


@pytest.mark.netns
def test_a_peer_that_fails_to_come_up_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its daemons are running when its switch cannot be configured: the bring-up
    stops them, removes its namespaces and its run directory."""
    require_root()
    for tool in missing_tools():
        require_tool(tool)

    def refuse(ovs: OvsHost) -> None:
        assert leftovers(prefix), "the daemons run: the test needs them"
        raise LabError("no flows today")

    monkeypatch.setattr(OvsHost, "configure", refuse)
    prefix = lab_prefix("o")
    lab = Lab(prefix)
    try:
        with pytest.raises(LabError, match="no flows today"):
            lab.up(Path(str(CONFIGS / "gateway.yaml")), "gateway")
        assert leftovers(prefix) == []
    finally:
        lab.down()
