"""The fabric itself: where it carries what, when it stops, what it builds, and
that tracing is in the tables it builds for a trace only."""

from __future__ import annotations

from immutables import Map
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.dataplane import MAX_HOPS, Counters, Fabric, HostTables, link_mac
from gateway.wire import encapsulate_ipv4

from ._policies import NOW, fabric, snapshot_of
from .test_host import MAC, ping

PA1, PA2 = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])


def blue_datagram(dst_pa: bytes) -> bytes:
    return encapsulate_ipv4(
        PA1, dst_pa, 5010, 0, ping("blue1", MAC["blue2"], "10.10.10.11", "10.10.10.12")
    )


def test_nvgre_reaches_the_owner_of_its_pa_and_no_other_node_is_built() -> None:
    lab = fabric("two-hosts")
    steps = lab.send("blue1", ping("blue1", MAC["blue2"], "10.10.10.11", "10.10.10.12"), NOW)
    assert [(step.node, step.hops) for step in steps] == [("host1", 0), ("host2", 1)]
    assert sorted(lab.nodes) == ["host1", "host2"]
    assert [(d.node, d.tap) for d in lab.deliveries] == [("host2", "blue2")]


def test_nvgre_to_a_pa_nobody_owns_is_lost() -> None:
    lab = fabric("two-hosts")
    assert lab.to_pa(blue_datagram(bytes([198, 18, 0, 99])), NOW) is None
    lab.in_flight.append(("host1", False, blue_datagram(bytes([198, 18, 0, 99])), 1))
    assert lab.carry(NOW) == [] and lab.deliveries == [] and not lab.nodes


def test_a_packet_still_crossing_after_max_hops_is_stopped_and_counted() -> None:
    lab = fabric("two-hosts")
    lab.in_flight.append(("host1", False, blue_datagram(PA2), MAX_HOPS + 1))
    lab.in_flight.append(("host1", False, blue_datagram(PA2), MAX_HOPS))
    [step] = lab.carry(NOW)
    assert step.hops == MAX_HOPS and lab.looped == 1
    assert lab.delivered() == [("blue2", ping("blue1", MAC["blue2"], "10.10.10.11", "10.10.10.12"))]


def test_the_link_is_switched_by_mac_among_the_nodes_that_are_on_it() -> None:
    lab = fabric("ip-rewrite")  # both hosts hold IP-Rewrite PAs: both are on the link
    assert (lab.link_mac_of("host1"), lab.link_mac_of("host2")) == (link_mac(0), link_mac(1))
    request = Ether(src="02:00:00:00:00:09") / ARP(op=1, psrc="198.18.0.200", pdst="198.18.0.12")
    to_host2 = raw(Ether(dst=link_mac(1).hex(":")) / request.payload)
    assert [step.node for step in lab.on_link(to_host2, NOW)] == ["host2"]
    broadcast = raw(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:09") / request.payload)
    assert [step.node for step in lab.on_link(broadcast, NOW)] == ["host1", "host2"]
    assert [step.node for step in lab.on_link(broadcast, NOW, sender="host1")] == ["host2"]
    nobody = raw(Ether(dst="02:00:00:00:77:77") / request.payload)
    assert lab.on_link(nobody, NOW) == []


def test_a_node_without_ip_rewrite_pas_is_not_on_the_link() -> None:
    """Its daemon opens no link socket (the kernel takes the link's frames)."""
    lab = fabric("two-hosts")
    assert lab.link_mac_of("host1") is None
    broadcast = raw(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:09") / ARP(op=1))
    assert lab.on_link(broadcast, NOW) == [] and not lab.nodes


def test_each_step_records_its_drops_by_reason() -> None:
    lab = fabric("two-hosts")
    spoofed = ping("blue1", MAC["blue2"], "10.10.10.99", "10.10.10.12")
    [step] = lab.send("blue1", spoofed, NOW)
    assert {reason.name: n for reason, n in step.drops.items()} == {"SPOOFED_SOURCE": 1}
    assert lab.drops("host1") == {"SPOOFED_SOURCE": 1}


def test_a_vms_arp_is_resolved_as_its_stack_would_see_it() -> None:
    lab = fabric("two-hosts")
    answer, step = lab.resolve("host1", "blue1", bytes([10, 10, 10, 12]), NOW)
    assert answer == bytes.fromhex("000000000012") and step.drops == {}
    unknown, step = lab.resolve("host1", "blue1", bytes([10, 10, 10, 99]), NOW)
    assert unknown is None and [r.name for r in step.drops] == ["ARP_UNANSWERED"]


def test_tables_are_wrapped_for_a_trace_only() -> None:
    """The daemon's tables (built with no tracer, as HostNode builds them) are the
    plain dicts or the snapshot's persistent maps and the snapshot itself: nothing
    the hot path reads goes through a wrapper. A tracing fabric's tables note each
    lookup into the step."""
    snapshot = snapshot_of("routing")
    for plain in (HostTables(snapshot, "host1", Counters()), Fabric(snapshot).node("host1").tables):
        assert plain.snapshot is snapshot
        for table in (
            plain.record_by_mac,
            plain.record_by_rdid_ca,
            plain.gateway_by_rdid_pa,
            plain.wildcard_by_vsid,
            plain.port_by_key,
        ):
            assert type(table) in (dict, Map)  # a snapshot's record tables are Maps
    traced = Fabric(snapshot, trace=True)
    routed = ping("blue1", "02:4e:56:00:13:92", "10.10.10.11", "10.10.20.13")
    sent, arrived = traced.send("blue1", routed, NOW)
    assert [table for table, _, _ in sent.lookups] == ["customer route", "record by (VSID, CA)"]
    assert [table for table, _, _ in arrived.lookups] == [
        "local port by (VSID, MAC)",
        "gateway record by (RDID, PA)",  # routed, but not by a gateway of Blue's
        "record by (RDID, CA)",
    ]
    assert traced.node("host1").tables.snapshot is not snapshot


def test_time_is_given_to_the_node_with_each_call() -> None:
    lab = fabric("two-hosts")
    lab.send(
        "blue1",
        raw(
            Ether(src=MAC["blue1"], dst=MAC["blue2"])
            / IP(src="10.10.10.11", dst="10.10.10.12")
            / ICMP()
        ),
        7.5,
    )
    assert lab.node("host1").now == 7.5 and lab.node("host2").now == 7.5
