"""The host role's decisions, end to end between sans-IO nodes on the one fabric
(``gateway.dataplane.fabric``, no sockets).

Frames are built and read with scapy, an independent codec, so these tests also
check that what the data plane emits is well-formed (checksums included).
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.dataplane import PORT_MTU, Fabric, router_mac
from gateway.wire import encapsulate_ipv4

from ._policies import NOW, blue2_migrated_to_host1, fabric

MAC = {
    vm: f"00:00:00:00:00:{n}"
    for vm, n in [("blue1", 11), ("blue2", 12), ("blue3", 13), ("red1", 21), ("red2", 22)]
}
PA1, PA2 = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])


def ping(src_vm: str, dst_mac: str, src_ip: str, dst_ip: str, **ip) -> bytes:
    return raw(Ether(src=MAC[src_vm], dst=dst_mac) / IP(src=src_ip, dst=dst_ip, **ip) / ICMP())


def arp_request(vm: str, src_ip: str, target: str) -> bytes:
    return raw(
        Ether(src=MAC[vm], dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc=MAC[vm], psrc=src_ip, pdst=target)
    )


def checksums_valid(frame: bytes) -> bool:
    """scapy recomputes what we sent: equal bytes mean every checksum was right."""
    packet = Ether(frame)
    fresh = packet.copy()
    del fresh[IP].chksum
    for layer in (ICMP, TCP, UDP):
        if fresh.haslayer(layer):
            del fresh[layer].chksum
    return raw(Ether(raw(fresh))) == raw(packet)


def test_arp_is_answered_locally_from_the_lookup_records() -> None:
    lab = fabric("two-hosts")
    [step] = lab.send("blue1", arp_request("blue1", "10.10.10.11", "10.10.10.12"), NOW)
    [(port, frame)] = lab.delivered()
    reply = Ether(frame)
    assert port == "blue1"
    assert (
        reply[ARP].op == 2 and reply[ARP].hwsrc == MAC["blue2"] and reply[ARP].psrc == "10.10.10.12"
    )
    assert reply.dst == MAC["blue1"] and reply[ARP].pdst == "10.10.10.11"
    assert not step.nvgre and not step.link, "ARP never leaves the host"
    assert lab.node("host1").counters.arp_replies == 1


def test_arp_for_a_ca_of_another_tenant_is_not_answered() -> None:
    lab = fabric("single-host")
    # Blue and Red share 10.10.10.0/24 on one host; blue1 asks for an address only Red has.
    snapshot_cas = {r.ca_bytes for r in lab.snapshot.records if r.vsid == 5020}
    assert snapshot_cas, "the config must have Red VMs"
    lab.send("blue1", arp_request("blue1", "10.10.10.10", "10.10.10.30"), NOW)
    assert lab.delivered() == []
    assert lab.drops("host1") == {"ARP_UNANSWERED": 1}


def test_blue_reaches_blue_across_hosts_in_nvgre_with_its_vsid() -> None:
    lab = fabric("two-hosts")
    frame = ping("blue1", MAC["blue2"], "10.10.10.11", "10.10.10.12")
    step = lab.from_tap("host1", "blue1", frame, NOW)
    [(src, dst, datagram)] = step.nvgre
    assert (src, dst) == (PA1, PA2)
    outer = IP(datagram)
    assert outer.proto == 47 and outer.payload.key >> 8 == 5010
    assert lab.delivered() == [], "in flight until the network carries it"
    [arrived] = lab.carry(NOW)
    assert arrived.node == "host2" and arrived.hops == 1
    assert lab.delivered() == [("blue2", frame)]
    assert lab.tap("host2", "blue2").counters.to_vm_packets == 1


def test_red_reaches_red_and_overlapping_addresses_never_mix() -> None:
    lab = fabric("two-hosts")
    frame = ping("red1", MAC["red2"], "10.10.10.11", "10.10.10.12")
    lab.send("red1", frame, NOW)
    assert lab.delivered() == [("red2", frame)]
    # Blue1 aims at Red2's MAC with the very same addresses: no record in Blue's VSID.
    lab.send("blue1", ping("blue1", MAC["red2"], "10.10.10.11", "10.10.10.12"), NOW)
    assert lab.delivered() == []
    assert lab.drops("host1") == {"NO_RECORD": 1}


def test_single_host_switches_locally_per_vsid() -> None:
    lab = fabric("single-host")
    blue = ping("blue1", MAC["blue2"], "10.10.10.10", "10.10.10.20")
    red = ping("red1", MAC["red2"], "10.10.10.10", "10.10.10.20")
    steps = lab.send("blue1", blue, NOW) + lab.send("red1", red, NOW)
    assert lab.delivered() == [("blue2", blue), ("red2", red)]
    assert lab.node("host1").counters.switched_locally == 2
    assert [step.node for step in steps] == ["host1", "host1"] and not lab.link_log


@pytest.mark.parametrize(
    ("frame_args", "reason"),
    [
        ({"src_mac": MAC["blue2"]}, "SPOOFED_SOURCE"),  # another VM's MAC
        ({"src_ip": "10.10.10.99"}, "SPOOFED_SOURCE"),  # another CA
        ({"dst_mac": "ff:ff:ff:ff:ff:ff"}, "BROADCAST"),
        ({"dst_mac": "01:00:5e:00:00:01"}, "BROADCAST"),
        ({"dst_ip": "10.10.10.99"}, "NO_RECORD"),  # blue2's MAC, somebody else's CA
    ],
)
def test_what_a_vm_may_not_send(frame_args: dict[str, str], reason: str) -> None:
    lab = fabric("two-hosts")
    args = {
        "src_mac": MAC["blue1"],
        "dst_mac": MAC["blue2"],
        "src_ip": "10.10.10.11",
        "dst_ip": "10.10.10.12",
    } | frame_args
    frame = raw(
        Ether(src=args["src_mac"], dst=args["dst_mac"])
        / IP(src=args["src_ip"], dst=args["dst_ip"])
        / ICMP()
    )
    lab.send("blue1", frame, NOW)
    assert lab.delivered() == []
    assert lab.drops("host1") == {reason: 1}


def inject(
    lab: Fabric, node: str, *, vsid: int, src_pa: bytes, inner: bytes, dst_pa: bytes = PA2
) -> None:
    """NVGRE at ``node``'s provider side, whatever PA it is addressed to."""
    lab.from_provider(node, encapsulate_ipv4(src_pa, dst_pa, vsid, 0, inner), NOW)


def test_provider_frames_with_the_wrong_vsid_or_pa_are_dropped_and_counted() -> None:
    lab = fabric("two-hosts")
    blue = ping("blue1", MAC["blue2"], "10.10.10.11", "10.10.10.12")
    inject(lab, "host2", vsid=5011, src_pa=PA1, inner=blue)  # Blue's frame in Red's VSID
    inject(lab, "host2", vsid=5010, src_pa=bytes([198, 18, 0, 99]), inner=blue)  # spoofed PA
    inject(lab, "host2", vsid=7777, src_pa=PA1, inner=blue)  # a VSID nobody has
    inject(lab, "host2", vsid=5010, src_pa=PA1, inner=blue, dst_pa=PA1)  # not host2's PA
    arp = arp_request("blue1", "10.10.10.11", "10.10.10.12")
    inject(lab, "host2", vsid=5010, src_pa=PA1, inner=arp)
    assert lab.delivered() == []
    assert lab.drops("host2") == {
        "VSID_MISMATCH": 1,
        "SPOOFED_PA": 1,
        "VSID_UNKNOWN": 1,
        "FOREIGN_PA": 1,
        "BROADCAST": 1,
    }
    inject(lab, "host2", vsid=5010, src_pa=PA1, inner=blue)
    assert lab.delivered() == [("blue2", blue)]


def test_malformed_gre_from_the_provider_is_counted_by_reason() -> None:
    lab = fabric("two-hosts")
    blue = ping("blue1", MAC["blue2"], "10.10.10.11", "10.10.10.12")
    good = bytearray(encapsulate_ipv4(PA1, PA2, 5010, 0, blue))
    reserved = bytearray(good)
    reserved[24:28] = (100 << 8).to_bytes(4, "big")  # VSID 100
    checksum_bit = bytearray(good)
    checksum_bit[20] |= 0x80
    for datagram in (reserved, checksum_bit, good[:30]):
        lab.to_pa(bytes(datagram), NOW)  # to host2's PA
    assert lab.delivered() == []
    assert lab.drops("host2") == {"VSID_RESERVED": 1, "GRE_CHECKSUM": 1, "TRUNCATED": 1}
    assert lab.node("host2").counters.provider_rx_packets == 3


def test_routing_between_vsids_of_one_domain_rewrites_the_vsid() -> None:
    lab = fabric("routing")
    gateway = router_mac(5010)
    lab.send("blue1", arp_request("blue1", "10.10.10.11", "10.10.10.1"), NOW)
    [(_, reply)] = lab.delivered()
    assert Ether(reply)[ARP].hwsrc == ":".join(f"{b:02x}" for b in gateway)
    frame = ping("blue1", Ether(reply)[ARP].hwsrc, "10.10.10.11", "10.10.20.13", ttl=9)
    sent, arrived = lab.send("blue1", frame, NOW)
    [(_, _, datagram)] = sent.nvgre
    assert IP(datagram).payload.key >> 8 == 5012, "the VSID is rewritten to the destination's"
    assert arrived.node == "host2"
    [(vm, delivered)] = lab.delivered()
    routed = Ether(delivered)
    assert vm == "blue3"
    assert (
        routed.src == ":".join(f"{b:02x}" for b in router_mac(5012)) and routed.dst == MAC["blue3"]
    )
    assert routed[IP].ttl == 8 and checksums_valid(delivered)


def test_routing_never_crosses_routing_domains() -> None:
    lab = fabric("routing")
    frame = ping(
        "blue1", ":".join(f"{b:02x}" for b in router_mac(5010)), "10.10.10.11", "10.10.30.5"
    )
    lab.send("blue1", frame, NOW)
    assert lab.delivered() == []
    assert lab.drops("host1") == {"NO_ROUTE": 1}


def oversized_from_blue1() -> bytes:
    """blue1 to blue2, DF set, over the port MTU."""
    return raw(
        Ether(src=MAC["blue1"], dst=MAC["blue2"])
        / IP(src="10.10.10.11", dst="10.10.10.12", flags="DF")
        / UDP()
        / (b"x" * 1500)
    )


def test_an_oversized_frame_gets_fragmentation_needed_not_silence() -> None:
    lab = fabric("two-hosts")
    lab.send("blue1", oversized_from_blue1(), NOW)
    [(vm, frame)] = lab.delivered()
    icmp = Ether(frame)
    assert vm == "blue1" and icmp[ICMP].type == 3 and icmp[ICMP].code == 4
    assert icmp[ICMP].nexthopmtu == PORT_MTU and checksums_valid(frame)
    assert lab.drops("host1") == {"TOO_BIG": 1}


def test_ip_rewrite_resolves_the_pa_then_swaps_cas_for_pas_and_back() -> None:
    lab = fabric("ip-rewrite")
    frame = raw(
        Ether(src=MAC["blue1"], dst=MAC["blue2"])
        / IP(src="10.10.10.11", dst="10.10.10.12")
        / TCP(sport=1234, dport=80)
        / b"hello"
    )
    blue1 = lab.snapshot.record_by_mac[5010, bytes.fromhex("000000000011")]
    blue2 = lab.snapshot.record_by_mac[5010, bytes.fromhex("000000000012")]
    step = lab.from_tap("host1", "blue1", frame, NOW)
    # The PA is not resolved yet: an ARP request from blue1's own PA, the frame parked.
    [request] = step.link
    assert Ether(request).dst == "ff:ff:ff:ff:ff:ff"
    assert Ether(request)[ARP].psrc == str(blue1.record.pa)
    assert Ether(request)[ARP].pdst == str(blue2.record.pa)
    # The other host answers for its rewrite PA; the parked frame leaves rewritten.
    assert [step.node for step in lab.carry(NOW)] == ["host2", "host1", "host2"]
    [rewritten] = [frame for frame in lab.link_log if Ether(frame).haslayer(IP)]
    packet = Ether(rewritten)
    assert packet.dst == "02:00:00:00:00:02" and packet.src == "02:00:00:00:00:01"
    assert (packet[IP].src, packet[IP].dst) == (str(blue1.record.pa), str(blue2.record.pa))
    assert checksums_valid(rewritten)
    [(vm, delivered)] = lab.delivered()
    assert vm == "blue2" and delivered == frame  # addresses and checksums restored exactly
    # Resolved now: the next frame goes straight out, no second request.
    [out_frame] = lab.from_tap("host1", "blue1", frame, NOW + 1).link
    assert Ether(out_frame)[IP].dst == str(blue2.record.pa)
    assert lab.node("host1").counters.ip_rewritten_out == 2


def test_ip_rewrite_pas_answer_arp_on_the_provider_link() -> None:
    lab = fabric("ip-rewrite")
    blue2 = lab.snapshot.record_by_mac[5010, bytes.fromhex("000000000012")]
    request = raw(
        Ether(src="02:00:00:00:00:09", dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc="02:00:00:00:00:09", psrc="198.18.0.200", pdst=str(blue2.record.pa))
    )
    steps = lab.on_link(request, NOW)  # from someone else on the link: every node hears it
    assert [step.node for step in steps] == ["host1", "host2"]
    [reply] = [frame for step in steps for frame in step.link]
    node = lab.owner(blue2.pa_bytes)
    assert [step.node for step in steps if step.link] == [node]
    assert Ether(reply)[ARP].op == 2 and Ether(reply)[ARP].psrc == str(blue2.record.pa)
    assert Ether(reply)[ARP].hwsrc == ":".join(f"{b:02x}" for b in lab.link_mac_of(node))


def test_swap_keeps_counters_and_changes_decisions() -> None:
    lab = fabric("two-hosts")
    blue = ping("blue1", MAC["blue2"], "10.10.10.11", "10.10.10.12")
    lab.send("blue1", blue, NOW)
    assert lab.delivered() == [("blue2", blue)]
    lab.swap(blue2_migrated_to_host1())  # only the policy changes
    [step] = lab.send("blue1", blue, NOW)
    assert lab.delivered() == [("blue2", blue)] and step.taps[0][0].name == "blue2"
    assert lab.node("host1").counters.switched_locally == 1
    assert lab.node("host1").counters.encapsulated == 1, "counted before the swap, kept after"
