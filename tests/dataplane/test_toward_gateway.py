"""The host role routes toward a gateway as HNV does (decisions.md, "Routes and where
they lead", "The gateway forwards as the RDID's router"), on the one fabric: a
customer route via the gateway's CA and a VSID's GatewayWildcard both send a VM's
off-subnet packet to the gateway record's PA, VSID and MAC; the gateway's routed
replies are accepted from its PA only; a routed packet whose TTL runs out gets
time-exceeded from the subnet's gateway CA, so that traceroute's first hop is the host.

Frames are built and read with scapy, an independent codec.
"""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, UDP, IPerror
from scapy.layers.l2 import Ether
from scapy.packet import raw

from gateway.dataplane import Fabric, router_mac
from gateway.wire import ICMP_TIME_EXCEEDED, encapsulate_ipv4, parse_nvgre

from ._policies import (
    BLUE_GW_MAC,
    BLUE_GW_PA,
    NOW,
    RED_GW_MAC,
    RED_GW_PA,
    fabric,
    snapshot_from,
    toward_gateways,
)
from .test_host import MAC, PA1, PA2, checksums_valid

CORP = "172.16.0.2"  # a server behind the gateway, off every subnet


def _mac(packed: bytes) -> str:
    return packed.hex(":")


def _dashed(mac: str) -> bytes:
    return bytes.fromhex(mac.replace("-", ""))


def lab(edit=None) -> Fabric:  # type: ignore[no-untyped-def]
    def both(document: dict) -> None:
        toward_gateways(document)
        if edit is not None:
            edit(document)

    return fabric(snapshot_from("two-hosts", both))


def off_subnet(vm: str, vsid: int, src: str, dst: str = CORP, **ip) -> bytes:  # type: ignore[no-untyped-def]
    """What ``vm``'s stack sends off its subnet: to the router MAC its gateway CA
    (10.10.10.1) resolves to."""
    return raw(
        Ether(src=MAC[vm], dst=_mac(router_mac(vsid)))
        / IP(src=src, dst=dst, **ip)
        / UDP(sport=33434, dport=33435)
        / b"probe"
    )


def left_for(step, pa: bytes) -> tuple[int, Ether]:  # type: ignore[no-untyped-def]
    """The one datagram ``step`` sent, checked to be from host1 to ``pa``: its VSID
    and frame."""
    [(src, dst, datagram)] = step.nvgre
    assert (src, dst) == (PA1, pa)
    packet = parse_nvgre(memoryview(datagram))
    return packet.vsid, Ether(bytes(packet.inner))


def test_a_route_via_the_gateways_ca_leaves_for_its_pa_vsid_and_mac() -> None:
    """Blue's 0.0.0.0/0 via 10.10.10.254 resolves through that CA's gateway record."""
    network = lab()
    step = network.from_tap("host1", "blue1", off_subnet("blue1", 5010, "10.10.10.11"), NOW)
    vsid, inner = left_for(step, BLUE_GW_PA)
    assert vsid == 5010
    assert inner.dst == _mac(_dashed(BLUE_GW_MAC)) and inner.src == _mac(router_mac(5010))
    assert (inner[IP].src, inner[IP].dst) == ("10.10.10.11", CORP), "the final destination"
    assert inner[IP].ttl == 63 and checksums_valid(raw(inner))
    assert network.carry(NOW) == [], "no node of this file owns the gateway's PA"
    counters = network.node("host1").counters
    assert (counters.routed, counters.encapsulated) == (1, 1)


def test_without_a_route_the_vsids_gateway_wildcard_takes_it() -> None:
    """Red has no customer route out: its GatewayWildcard (CA 0.0.0.0) takes it."""
    network = lab()
    step = network.from_tap("host1", "red1", off_subnet("red1", 5011, "10.10.10.11"), NOW)
    vsid, inner = left_for(step, RED_GW_PA)
    assert vsid == 5011
    assert inner.dst == _mac(_dashed(RED_GW_MAC)) and inner.src == _mac(router_mac(5011))
    assert inner[IP].dst == CORP and inner[IP].ttl == 63
    # On-link destinations still go to their VM, never to the gateway.
    to_red2 = raw(
        Ether(src=MAC["red1"], dst=_mac(router_mac(5011)))
        / IP(src="10.10.10.11", dst="10.10.10.12")
        / ICMP()
    )
    step = network.from_tap("host1", "red1", to_red2, NOW)
    assert [dst for _, dst, _ in step.nvgre] == [PA2]


def test_a_customer_route_wins_over_the_wildcard() -> None:
    """Red routes 203.0.113.0/24 via red2 (a VM that routes): that, not the wildcard."""

    def red_route(document: dict) -> None:
        red = document["routing_domains"][1]["rdid"]
        document["customer_routes"].append(
            {"rdid": red, "vsid": 5011, "destination": "203.0.113.0/24", "next_hop": "10.10.10.12"}
        )

    network = lab(red_route)
    sent = network.from_tap(
        "host1", "red1", off_subnet("red1", 5011, "10.10.10.11", "203.0.113.5"), NOW
    )
    vsid, inner = left_for(sent, PA2)
    assert vsid == 5011 and inner.dst == MAC["red2"]
    [arrived] = network.carry(NOW)
    assert [tap for tap, _ in network.delivered()] == ["red2"] and not arrived.drops
    elsewhere = network.from_tap("host1", "red1", off_subnet("red1", 5011, "10.10.10.11"), NOW)
    assert left_for(elsewhere, RED_GW_PA)[0] == 5011


def test_no_route_and_no_wildcard_is_no_route() -> None:
    def no_wildcard(document: dict) -> None:
        document["lookup_records"].pop()  # Red's wildcard

    network = lab(no_wildcard)
    step = network.from_tap("host1", "red1", off_subnet("red1", 5011, "10.10.10.11"), NOW)
    assert not step.nvgre and network.drops("host1") == {"NO_ROUTE": 1}


def test_a_routed_group_destination_goes_nowhere() -> None:
    """Multicast and broadcast are never routed: not to a gateway, not by a route."""
    network = lab()
    for dst in ("224.0.0.251", "255.255.255.255", "239.1.2.3"):
        network.from_tap("host1", "blue1", off_subnet("blue1", 5010, "10.10.10.11", dst), NOW)
    assert network.drops("host1") == {"BROADCAST": 3}
    assert network.node("host1").counters.encapsulated == 0


def from_gateway(src_pa: bytes, vsid: int, src_mac: bytes, src_ip: str = CORP) -> bytes:
    """A gateway's reply to blue1 (or red1) as NVGRE to host1's PA."""
    vm = "blue1" if vsid == 5010 else "red1"
    inner = raw(
        Ether(src=_mac(src_mac), dst=MAC[vm]) / IP(src=src_ip, dst="10.10.10.11") / ICMP(type=0)
    )
    return encapsulate_ipv4(src_pa, PA1, vsid, 7, inner)


def test_the_gateways_routed_reply_is_delivered_whatever_its_source() -> None:
    """From the PA of a gateway record of the RDID, with the VSID's router MAC as
    source: any inner source IP (the CA record's PA, the wildcard's PA), and as
    before from the gateway record's own MAC."""
    network = lab()
    replies = [
        from_gateway(BLUE_GW_PA, 5010, router_mac(5010)),
        from_gateway(BLUE_GW_PA, 5010, router_mac(5010), "198.51.100.2"),
        from_gateway(BLUE_GW_PA, 5010, _dashed(BLUE_GW_MAC)),
        from_gateway(RED_GW_PA, 5011, router_mac(5011)),
        from_gateway(RED_GW_PA, 5011, _dashed(RED_GW_MAC)),
    ]
    for datagram in replies * 2:  # the second time, from the flow cache
        network.to_pa(datagram, NOW)
    assert [tap for tap, _ in network.delivered()] == ["blue1"] * 3 + ["red1"] * 2 + [
        "blue1"
    ] * 3 + ["red1"] * 2
    assert network.drops("host1") == {}


def test_a_spoofed_routed_reply_is_dropped_and_counted() -> None:
    """Not from a gateway's PA, or from another routing domain's gateway."""
    network = lab()
    spoofed = [
        from_gateway(PA2, 5010, router_mac(5010)),  # host2 is no gateway
        from_gateway(RED_GW_PA, 5010, router_mac(5010)),  # Red's gateway into Blue
        from_gateway(BLUE_GW_PA, 5011, router_mac(5011)),  # Blue's gateway into Red
        from_gateway(RED_GW_PA, 5010, _dashed(BLUE_GW_MAC)),  # Blue's gateway MAC, Red's PA
    ]
    for datagram in spoofed * 2:
        network.to_pa(datagram, NOW)
    assert network.delivered() == []
    assert network.drops("host1") == {"SPOOFED_PA": 8}


def test_ttl_1_routed_gets_time_exceeded_from_the_subnets_gateway() -> None:
    """traceroute's first hop is the host: 10.10.10.1, from the router MAC."""
    network = lab()
    probe = off_subnet("blue1", 5010, "10.10.10.11", ttl=1)
    step = network.from_tap("host1", "blue1", probe, NOW)
    assert not step.nvgre
    [(vm, frame)] = network.delivered()
    answer = Ether(frame)
    assert vm == "blue1" and checksums_valid(frame)
    assert (answer.src, answer.dst) == (_mac(router_mac(5010)), MAC["blue1"])
    assert (answer[IP].src, answer[IP].dst) == ("10.10.10.1", "10.10.10.11")
    assert (answer[ICMP].type, answer[ICMP].code) == (ICMP_TIME_EXCEEDED, 0)
    quoted = answer[IPerror]
    assert (quoted.src, quoted.dst, quoted.ttl) == ("10.10.10.11", CORP, 1), "as it arrived"
    assert raw(quoted)[20:28] == raw(Ether(probe)[UDP])[:8], "header and 8 bytes (RFC 792)"
    assert network.drops("host1") == {"TTL_EXPIRED": 1}
    assert network.node("host1").counters.icmp_errors_sent == 1
    # The wildcard's way and routing between two VSIDs count down the same way.
    network.from_tap("host1", "red1", off_subnet("red1", 5011, "10.10.10.11", ttl=1), NOW)
    [(vm, frame)] = network.delivered()
    assert vm == "red1" and Ether(frame)[IP].src == "10.10.10.1"


def test_no_time_exceeded_where_none_may_be_sent() -> None:
    """RFC 1812 sec. 4.3.2.7: not about an ICMP error, not about a fragment but the
    first; and not from an address made up when the subnet has no IPv4 gateway."""
    network = lab()
    error = raw(
        Ether(src=MAC["blue1"], dst=_mac(router_mac(5010)))
        / IP(src="10.10.10.11", dst=CORP, ttl=1)
        / ICMP(type=3, code=3)
        / IPerror(src=CORP, dst="10.10.10.11")
        / UDP()
    )
    fragment = off_subnet("blue1", 5010, "10.10.10.11", ttl=1, frag=100)
    for frame in (error, fragment):
        network.from_tap("host1", "blue1", frame, NOW)
    assert network.delivered() == [] and network.drops("host1") == {"TTL_EXPIRED": 2}
    # An ICMP query (echo) is answered as any other packet is.
    echo = raw(
        Ether(src=MAC["blue1"], dst=_mac(router_mac(5010)))
        / IP(src="10.10.10.11", dst=CORP, ttl=1)
        / ICMP(type=8)
    )
    network.from_tap("host1", "blue1", echo, NOW)
    assert Ether(network.delivered()[0][1])[ICMP].type == ICMP_TIME_EXCEEDED

    def no_gateway(document: dict) -> None:
        del document["routing_domains"][1]["virtual_subnets"][0]["gateway"]

    network = lab(no_gateway)
    network.from_tap("host1", "red1", off_subnet("red1", 5011, "10.10.10.11", ttl=1), NOW)
    assert network.delivered() == [] and network.drops("host1") == {"TTL_EXPIRED": 1}
    assert network.node("host1").counters.icmp_errors_sent == 0
