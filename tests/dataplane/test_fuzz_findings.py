"""What the fuzzer (``make fuzz``) found in the host data plane, pinned.

Each test failed on the tree the fuzzer first ran on (38a4f0d) and states the
behaviour the fix gave, loosely enough to leave its shape open (which drop reason,
NVGRE or a drop): inner IPv4 lengths checked both ways, no ICMP error from a group
MAC, no IP-Rewrite from an NVGRE PA, no NVGRE across address families.
"""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.dataplane import Fabric, HostNode, from_port
from gateway.wire import encapsulate_ipv4, is_multicast
from tests.fuzz.oracle import Recorder
from tests.fuzz.policies import snapshot

from ._policies import NOW, fabric

MAC = {"blue1": "00:00:00:00:00:11", "blue2": "00:00:00:00:00:12"}
PA1, PA2 = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 2])


def ping(
    total_length: int | None = None,
    ihl: int | None = None,
    src: str = "10.10.10.11",
    dst: str = "10.10.10.12",
) -> bytes:
    """blue1's ping to blue2, with its IPv4 total length or IHL forced."""
    packet = Ether(src=MAC["blue1"], dst=MAC["blue2"]) / IP(src=src, dst=dst) / ICMP()
    if total_length is not None:
        packet[IP].len = total_length
    if ihl is not None:
        packet[IP].ihl = ihl
    return raw(packet)


def _one_drop(lab: Fabric, node: str, reasons: set[str]) -> None:
    drops = lab.drops(node)
    assert sum(drops.values()) == 1 and set(drops) <= reasons, drops


MALFORMED = {"INNER_MALFORMED", "INNER_TRUNCATED"}


def test_a_vm_frame_whose_ipv4_length_runs_past_it_is_dropped() -> None:
    """Was: encapsulated to host2 with a 1000-byte total length in a 42-byte frame."""
    lab = fabric("two-hosts")
    lab.send("blue1", ping(total_length=1000), NOW)
    assert lab.delivered() == [] and not lab.link_log
    _one_drop(lab, "host1", MALFORMED)


def test_a_vm_frame_whose_ipv4_length_is_under_its_header_is_dropped() -> None:
    """Was: switched to blue2 on the same host (single-host) with total length 10."""
    lab = fabric("single-host")
    lab.send("blue1", ping(total_length=10, src="10.10.10.10", dst="10.10.10.20"), NOW)
    assert lab.delivered() == []
    _one_drop(lab, "host1", MALFORMED)


def test_nvgre_whose_inner_ipv4_header_is_malformed_is_dropped() -> None:
    """Was: delivered to blue2 with an IHL of 4, by the fast path and the slow one alike."""
    lab = fabric("two-hosts")
    lab.to_pa(encapsulate_ipv4(PA1, PA2, 5010, 0, ping(ihl=4)), NOW)
    assert lab.delivered() == []
    _one_drop(lab, "host2", MALFORMED)


def test_nvgre_is_delivered_as_it_came_whatever_its_inner_total_length() -> None:
    """The decision, pinned: a switch delivers the frame and the VM's stack checks the
    packet's own lengths; the receive path reads only the header it decides by."""
    lab = fabric("two-hosts")
    inner = ping(total_length=1000)
    lab.to_pa(encapsulate_ipv4(PA1, PA2, 5010, 0, inner), NOW)
    assert lab.delivered() == [("blue2", inner)]


def test_no_icmp_error_comes_from_a_group_mac() -> None:
    """Was: fragmentation-needed for an oversized frame sent to ff:ff:ff:ff:ff:ff came
    back with ff:ff:ff:ff:ff:ff as its Ethernet source (RFC 1122 sec. 3.2.2: no ICMP
    error for a link-layer broadcast)."""
    lab = fabric("two-hosts")
    big = (
        Ether(src=MAC["blue1"], dst="ff:ff:ff:ff:ff:ff")
        / IP(src="10.10.10.11", dst="10.10.10.12", flags="DF")
        / UDP()
        / (b"x" * 1500)
    )
    lab.send("blue1", raw(big), NOW)
    for _, frame in lab.delivered():
        assert not is_multicast(frame[6:12]), Ether(frame).summary()
    _one_drop(lab, "host1", {"TOO_BIG"})


def test_an_encap_vm_never_sends_for_its_hosts_nvgre_pa_on_the_link() -> None:
    """mixed-rule: blue1 (encap, host1's PA 198.18.0.1) pings blue2 (rule nat, PA
    198.18.0.12). Was: IP-Rewritten from 198.18.0.1 (a kernel address), ARP sent for
    it on the link, and host2 dropped the packet as spoofed_pa. Either NVGRE to
    blue2's host or one counted drop; never a frame on the link from an NVGRE PA."""
    lab = fabric(snapshot("mixed-rule"))
    lab.send("blue1", ping(), NOW)
    for frame in lab.link_log:
        packet = Ether(frame)
        sender = packet[ARP].psrc if packet.haslayer(ARP) else packet[IP].src
        assert sender != "198.18.0.1", packet.summary()
    delivered = lab.delivered()
    assert delivered or sum(lab.drops("host1").values()) == 1


def test_a_port_on_an_ipv6_pa_never_encapsulates_toward_an_ipv4_pa() -> None:
    """dual-stack: red2's record has PA 2001:db8::3 (host3; the daemon refuses such a
    node, nvgw trace and replay build it). Its ping to red1 (PA 198.18.0.1) was handed
    to to_provider from an IPv6 PA to an IPv4 one; count provider_unreachable, as for
    an IPv6 destination."""
    out = Recorder()
    dataplane = HostNode(snapshot("dual-stack"), "host3", out)
    port = dataplane.tables.port_by_name["red2"]
    frame = raw(
        Ether(src="00:00:00:00:00:22", dst="00:00:00:00:00:21")
        / IP(src="10.10.10.12", dst="10.10.10.11")
        / ICMP()
    )
    from_port(dataplane, port, memoryview(bytearray(frame)))
    assert out.events == []
    assert sum(dataplane.counters.drops) == 1
