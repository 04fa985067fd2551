"""IPv4 frames against a dual-stack policy: no IPv6 address of the policy may reach
code that builds or rewrites an IPv4 header.

Every policy here passes the validator (``snapshot_from`` loads it), as it would
pass ``nvgw check``: what the data plane meets is what an operator may write. Before
these fixes, each frame below raised ``ValueError`` out of the data plane (or, in a
daemon, out of the reader and its task group).
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import raw

from gateway.dataplane import PORT_MTU, router_mac
from gateway.wire import encapsulate_ipv4

from ._policies import NOW, fabric, snapshot_from
from .test_host import MAC, PA1, PA2, checksums_valid, oversized_from_blue1, ping

BLUE = "{11111111-2222-3333-4444-000000005010}"
ROUTER_5010 = ":".join(f"{b:02x}" for b in router_mac(5010))


def dual_stack(document: dict, gateway_v6: bool = True) -> None:
    """Every subnet gains an IPv6 prefix; with ``gateway_v6`` its gateway is IPv6."""
    for domain in document["routing_domains"]:
        for subnet in domain["virtual_subnets"]:
            subnet["prefixes"] = [*subnet["prefixes"], f"fd00:{subnet['vsid']}::/64"]
            if gateway_v6:
                subnet["gateway"] = f"fd00:{subnet['vsid']}::1"


def test_an_ipv6_gateway_never_sources_an_ipv4_error() -> None:
    """A dual-stack subnet may have an IPv6 gateway; fragmentation-needed for an IPv4
    frame then comes from the frame's own destination (there is no IPv4 gateway)."""
    lab = fabric(snapshot_from("two-hosts", dual_stack))
    lab.send("blue1", oversized_from_blue1(), NOW)
    [(vm, frame)] = lab.delivered()
    icmp = Ether(frame)
    assert vm == "blue1" and icmp[ICMP].type == 3 and icmp[ICMP].code == 4
    assert icmp[IP].src == "10.10.10.12" and icmp[ICMP].nexthopmtu == PORT_MTU
    assert checksums_valid(frame)
    assert lab.drops("host1") == {"TOO_BIG": 1}


def test_an_ipv6_gateway_is_not_answered_for_an_ipv4_arp() -> None:
    """The router MAC is answered for the subnet's IPv4 gateway only."""
    lab = fabric(snapshot_from("two-hosts", dual_stack))
    port = lab.tap("host1", "blue1")
    assert port.gateway_ca is None
    assert lab.node("host1").tables.answers_arp_for(port, bytes([10, 10, 10, 1])) is None


def _ipv6_gateway_record(document: dict) -> None:
    dual_stack(document, gateway_v6=False)
    document["lookup_records"].append(
        {"vsid": 5010, "ca": "fd00:5010::fe", "mac": "02-00-00-00-50-10",
         "pa": "2001:db8::10", "rule": "encap", "type": "gateway"}
    )  # fmt: skip


def test_an_ipv4_frame_never_goes_by_an_ipv6_record_of_its_mac() -> None:
    """A gateway record on an IPv6 CA (and PA) takes the MAC's IPv6 traffic, not its
    IPv4: an IPv4 frame to that MAC has no record (it used to be encapsulated toward
    the IPv6 PA, which no IPv4 header can carry)."""
    lab = fabric(snapshot_from("two-hosts", _ipv6_gateway_record))
    frame = ping("blue1", "02:00:00:00:50:10", "10.10.10.11", "198.51.100.7")
    [step] = lab.send("blue1", frame, NOW)
    assert lab.delivered() == [] and not step.nvgre
    assert lab.drops("host1") == {"NO_RECORD": 1}


def _next_hop_on_an_ipv6_underlay(document: dict) -> None:
    """A CA whose host sits on an IPv6 underlay (legitimate NVGRE, RFC 7637 sec. 4),
    as a record and as the next hop of a route."""
    document["lookup_records"].append(
        {"vsid": 5012, "ca": "10.10.20.99", "mac": "00-00-00-00-00-99",
         "pa": "2001:db8::99", "rule": "encap"}
    )  # fmt: skip
    document["customer_routes"].append(
        {"rdid": BLUE, "vsid": 5012, "destination": "10.10.99.0/24",
         "next_hop": "10.10.20.99", "metric": 10}
    )  # fmt: skip


def test_an_ipv6_pa_is_unreachable_from_an_ipv4_node_directly_or_by_route() -> None:
    lab = fabric(snapshot_from("routing", _next_hop_on_an_ipv6_underlay))
    direct = ping("blue1", ROUTER_5010, "10.10.10.11", "10.10.20.99")
    routed = ping("blue1", ROUTER_5010, "10.10.10.11", "10.10.99.5")
    steps = lab.send("blue1", direct, NOW) + lab.send("blue1", routed, NOW)
    assert lab.delivered() == [] and not any(step.nvgre for step in steps)
    assert lab.drops("host1") == {"PROVIDER_UNREACHABLE": 2}


def _blue2_on_an_ipv6_underlay(document: dict) -> None:
    """host2 on an IPv6 underlay: blue2's record keeps its IPv4 CA on host2's IPv6 PA.
    A daemon refuses to run such a node (plan_node), but nvgw trace and replay build
    its data plane all the same."""
    for record in document["lookup_records"]:
        if record["pa"] == "198.18.0.2":
            record["pa"] = "2001:db8::2"
    document["nodes"]["host2"]["provider_addresses"][0]["pa"] = "2001:db8::2"


def test_a_port_on_an_ipv6_pa_sends_no_ipv4_nvgre() -> None:
    lab = fabric(snapshot_from("two-hosts", _blue2_on_an_ipv6_underlay))
    [step] = lab.send("blue2", ping("blue2", MAC["blue1"], "10.10.10.12", "10.10.10.11"), NOW)
    assert lab.delivered() == [] and not step.nvgre
    assert lab.drops("host2") == {"PROVIDER_UNREACHABLE": 1}


def _an_ip_rewrite_vm_beside_encap_ones(document: dict) -> None:
    document["lookup_records"].append(
        {"vsid": 5010, "ca": "10.10.10.13", "mac": "00-00-00-00-00-13",
         "pa": "198.18.0.13", "rule": "nat"}
    )  # fmt: skip


@pytest.mark.parametrize("ipv6_underlay", [False, True])
def test_an_encap_vm_has_no_pa_to_ip_rewrite_from(ipv6_underlay: bool) -> None:
    """IP-Rewrite swaps the sender's CA for the sender's own PA (1 CA = 1 PA); an
    encap VM has none (its host's PA is shared, and the kernel's). Rewriting from that
    PA made the daemon ARP for a kernel address, and raised for an IPv6 one."""

    def edit(document: dict) -> None:
        _an_ip_rewrite_vm_beside_encap_ones(document)
        if ipv6_underlay:
            _blue2_on_an_ipv6_underlay(document)

    lab = fabric(snapshot_from("two-hosts", edit))
    lab.send("blue2", ping("blue2", "00:00:00:00:00:13", "10.10.10.12", "10.10.10.13"), NOW)
    assert lab.link_log == [] and lab.delivered() == []
    assert lab.drops("host2") == {"PROVIDER_UNREACHABLE": 1}


def _dual_stack_vms(document: dict) -> None:
    """blue1 and blue2 each hold an IPv4 and an IPv6 CA on one MAC (as Windows exports
    have them), and an L2-only record on 0.0.0.0 (as OpenStack writes one per port)."""
    dual_stack(document, gateway_v6=False)
    for n, pa in ((11, "198.18.0.1"), (12, "198.18.0.2")):
        mac = f"00-00-00-00-00-{n}"
        document["lookup_records"] += [
            {"vsid": 5010, "ca": f"fd00:5010::{n}", "mac": mac, "pa": pa, "rule": "encap"},
            {"vsid": 5010, "ca": "0.0.0.0", "mac": mac, "pa": pa, "rule": "encap",
             "type": "l2only"},
        ]  # fmt: skip


def test_a_dual_stack_vm_is_served_its_ipv4_and_its_ipv6_counted_unsupported() -> None:
    """decisions.md, "IPv6": the port is its IPv4 CA's; IPv4 goes both ways, ARP is
    answered, and IPv6 frames, sent or received, are dropped as unsupported."""
    lab = fabric(snapshot_from("two-hosts", _dual_stack_vms))
    port = lab.tap("host1", "blue1")
    assert port.ca == bytes([10, 10, 10, 11])
    there = ping("blue1", MAC["blue2"], "10.10.10.11", "10.10.10.12")
    back = ping("blue2", MAC["blue1"], "10.10.10.12", "10.10.10.11")
    lab.send("blue1", there, NOW)
    lab.send("blue2", back, NOW)
    assert lab.delivered() == [("blue2", there), ("blue1", back)]
    answer, _ = lab.resolve("host1", "blue1", bytes([10, 10, 10, 12]), NOW)
    assert answer == bytes.fromhex("000000000012")
    lab.delivered()  # the ARP reply
    lab.send("blue1", _ipv6_ping("blue1", "blue2"), NOW)
    blue2s = encapsulate_ipv4(PA2, PA1, 5010, 0, _ipv6_ping("blue2", "blue1"))
    lab.from_provider("host1", blue2s, NOW)
    assert lab.delivered() == []
    assert lab.drops("host1") == {"UNSUPPORTED": 2}


def _ipv6_ping(src: str, dst: str) -> bytes:
    return raw(
        Ether(src=MAC[src], dst=MAC[dst])
        / IPv6(src=f"fd00:5010::{MAC[src][-2:]}", dst=f"fd00:5010::{MAC[dst][-2:]}")
        / ICMPv6EchoRequest()
    )
