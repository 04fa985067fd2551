"""The gateway's state and handlers called directly, as the io layer calls them: what
the tables hold (interfaces, TAPs and their MACs, the domains' PAs, the MSS), that a
swap keeps the neighbours and drops the caches, that the receive side's fast
path decides as ``parse_nvgre`` does (style.md, testing habit 4), and that a flow
forwarded from its cached route (``TapFlow``) leaves as ``route_ipv4`` sends it."""

from __future__ import annotations

import struct
import zlib
from functools import cache, partial
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.dataplane import (
    Counters,
    GatewayNode,
    GatewayTables,
    GatewayTap,
    gateway_from_provider,
    gateway_from_tap,
    gateway_provider,
    gateway_routing,
    gateway_tap,
    router_mac,
    tap_mac,
)
from gateway.dataplane.gateway_provider import TapFlow
from gateway.dataplane.neighbors import REFRESH_AFTER_S
from gateway.wire import (
    build_ipv4,
    decrement_ttl,
    flow_id_of_frame,
    internet_checksum,
    ipv4_checksum_ok,
)

from ._gateway_lab import BLUE, CORP_IP, CORP_MAC, GW_MAC, GW_PA, RED, gateway_snapshot
from ._policies import NOW
from .test_host import MAC, PA1


class Collect:
    """An Output that keeps what it is given."""

    def __init__(self) -> None:
        self.taps: list[tuple[str, bytes]] = []
        self.nvgre: list[tuple[bytes, bytes, bytes, bytes]] = []

    def to_tap(self, tap: GatewayTap, frame: bytes | memoryview) -> None:
        self.taps.append((tap.name, bytes(frame)))

    def to_provider(self, src: bytes, dst: bytes, gre: bytes, frame: memoryview) -> None:
        self.nvgre.append((bytes(src), bytes(dst), bytes(gre), bytes(frame)))

    def to_provider_link(self, frame: bytes | memoryview) -> None:
        raise AssertionError("a gateway is never on the provider link")


# One compiled snapshot for the tests that build many nodes (each node builds its own
# tables, caches included, from it).
_SNAPSHOT = cache(gateway_snapshot)


def gateway(snapshot=None) -> GatewayNode:  # type: ignore[no-untyped-def]
    node = GatewayNode(snapshot or gateway_snapshot(), "gw", Collect())
    node.now = NOW
    return node


def test_the_tables_hold_the_gateways_interfaces_taps_and_domains() -> None:
    tables = gateway().tables
    blue = tables.port_by_key[(5010, bytes.fromhex(GW_MAC["blue"].replace(":", "")))]
    assert (blue.vsid, blue.rdid, blue.own_ip) == (5010, BLUE, bytes([10, 10, 10, 254]))
    assert blue.router_mac == router_mac(5010)
    assert [tap.name for tap in tables.taps] == ["gw-blue", "gw-red"]
    tap = tables.tap_by_name["gw-red"]
    assert type(tap) is GatewayTap and tap.rdid == RED
    assert tap.own_ip == bytes([172, 16, 0, 1]) and tap.broadcast == bytes([172, 16, 0, 255])
    crc = zlib.crc32(b"gw-red") & 0xFFFFFF
    assert tap.mac == tap_mac("gw-red") == b"\x02\x4e\x47" + crc.to_bytes(3, "big")
    assert tap_mac("gw-blue") != tap_mac("gw-red")
    assert {rdid: domain.pa for rdid, domain in tables.domains.items()} == {
        BLUE: GW_PA,
        RED: GW_PA,
    }
    assert tables.mss == 1418


def test_a_swap_keeps_each_taps_neighbours_and_empties_the_caches() -> None:
    node = gateway()
    before = node.tables
    neighbours = before.tap_by_name["gw-blue"].neighbors
    before.domains[BLUE].routes[b"\x01\x02\x03\x04"] = object()  # type: ignore[assignment]
    after = node.swap(gateway_snapshot())
    assert after is not before and after.tap_by_name["gw-blue"].neighbors is neighbours
    assert after.domains[BLUE].routes == {} and after.flows == {}
    assert node.neighbors == {
        "gw-blue": neighbours,
        "gw-red": after.tap_by_name["gw-red"].neighbors,
    }

    def without_red_tap(document: dict) -> None:
        del document["nodes"]["gw"]["routing_domains"]["red"]["taps"][0]
        document["nodes"]["gw"]["routing_domains"]["red"]["routes"] = []

    node.swap(gateway_snapshot(without_red_tap))
    assert list(node.neighbors) == ["gw-blue"], "a TAP the policy dropped loses its table"


def test_counters_live_outside_the_tables() -> None:
    counters = Counters()
    tables = GatewayTables(gateway_snapshot(), "gw", counters)
    node = GatewayNode(tables.snapshot, "gw", Collect(), counters, tables)
    assert node.tables is tables and counters.domain(BLUE) is tables.domains[BLUE].counters


def test_the_corp_side_is_answered_by_the_handler_itself() -> None:
    node = gateway()
    tap = node.tables.tap_by_name["gw-blue"]
    asks = raw(
        Ether(src="02:c0:00:00:00:02", dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc="02:c0:00:00:00:02", psrc="172.16.0.2", pdst="172.16.0.1")
    )
    gateway_from_tap(node, tap, memoryview(bytearray(asks)))
    [(name, frame)] = node.out.taps  # type: ignore[attr-defined]
    assert name == "gw-blue" and Ether(frame)[ARP].hwsrc == tap.mac.hex(":")


PAS = [PA1, bytes([198, 18, 0, 2]), GW_PA, bytes([198, 18, 0, 99])]
MACS = [MAC["blue1"], MAC["red1"], GW_MAC["blue"], GW_MAC["red"], "ff:ff:ff:ff:ff:ff"]
MACS.append(router_mac(5010).hex(":"))
CAS = ["10.10.10.11", "10.10.10.12", "172.16.0.2", "10.10.10.254", "224.0.0.1"]
NOP_OPTION = b"\x01\x01\x01\x00"


def decided(node: GatewayNode, data: bytes) -> tuple:
    """What one datagram came to: the drops it counted, what it sent."""
    node.out = Collect()
    before = list(node.counters.drops)
    node.tables.flows.clear()
    gateway_from_provider(node, memoryview(bytearray(data)))
    drops = tuple(n - b for n, b in zip(node.counters.drops, before, strict=True))
    return drops, node.out.taps, node.out.nvgre  # type: ignore[attr-defined]


NODE = gateway()


@settings(max_examples=300, deadline=None)
@given(
    src_pa=st.sampled_from(PAS),
    dst_pa=st.sampled_from(PAS),
    vsid=st.sampled_from([5010, 5011, 4095, 7777]),
    flags=st.sampled_from([0x2000, 0x2000, 0x2000, 0xA000, 0x3000, 0x2001]),
    dst=st.sampled_from(MACS),
    src=st.sampled_from(MACS),
    src_ip=st.sampled_from(CAS),
    dst_ip=st.sampled_from(CAS),
    ttl=st.sampled_from([64, 1]),
    arp=st.booleans(),
    cut=st.integers(0, 12),
)
def test_the_fast_path_decides_as_parse_nvgre_does(
    src_pa, dst_pa, vsid, flags, dst, src, src_ip, dst_ip, ttl, arp, cut
) -> None:
    gre = struct.pack("!HHI", flags, 0x6558, vsid << 8 | 7)
    if arp:
        inner = raw(Ether(dst=dst, src=src) / ARP(op=1, hwsrc=src, psrc=src_ip, pdst=dst_ip))
    else:
        inner = raw(Ether(dst=dst, src=src) / IP(src=src_ip, dst=dst_ip, ttl=ttl) / ICMP())
    inner = inner[: len(inner) - cut] if cut else inner
    payload = gre + inner
    plain = build_ipv4(src_pa, dst_pa, 47, len(payload)) + payload
    optioned = build_ipv4(src_pa, dst_pa, 47, len(payload), options=NOP_OPTION) + payload
    assert decided(NODE, plain) == decided(NODE, optioned)


def test_a_genuine_datagram_is_routed_by_both_paths() -> None:
    gre = struct.pack("!HHI", 0x2000, 0x6558, 5010 << 8 | 7)
    inner = raw(
        Ether(dst=GW_MAC["blue"], src=MAC["blue1"])
        / IP(src="10.10.10.11", dst="10.10.10.254")
        / ICMP(id=5)
    )
    payload = gre + inner
    for options in (b"", NOP_OPTION):
        drops, taps, nvgre = decided(
            NODE, build_ipv4(PA1, GW_PA, 47, len(payload), options=options) + payload
        )
        assert not any(drops) and not taps
        [(src, dst, _, frame)] = nvgre
        assert (src, dst) == (GW_PA, PA1) and Ether(frame)[ICMP].type == 0


class Last:
    """An Output that keeps only the last frame it was given (NVGRE's inner frame, or a
    TAP's)."""

    frame = b""

    def to_provider(self, src: bytes, dst: bytes, gre: bytes, frame: memoryview) -> None:
        self.frame = bytes(frame)

    def to_tap(self, tap: GatewayTap, frame: bytes | memoryview) -> None:
        self.frame = bytes(frame)


@pytest.mark.parametrize("way", ["route_ipv4", "VsidFlow", "TapFlow"])
def test_the_inline_ttl_countdown_is_decrement_ttl_for_every_checksum(way: str) -> None:
    """The routed path patches the header checksum inline (Linux's ip_decrease_ttl),
    in ``route_ipv4`` and in the two cached flows' paths; for each of the 65,536
    checksums a header can carry (the gateway checks none, as a host does not), the
    result is what ``decrement_ttl`` (RFC 1624 eqn. 3) gives, each way."""
    node = _knowing_corp(NOW)
    node.out = Last()
    tap = node.tables.tap_by_name["gw-blue"]
    if way == "TapFlow":  # NVGRE from the Blue VM to the corp server
        data = bytearray(_from_blue_vm(CORP_IP, ICMP(), ttl=9))
        header = 28 + 14  # the inner IPv4 header, after the outer one, GRE and Ethernet
        call = partial(gateway_from_provider, node)
    else:  # the corp server to the Blue VM
        ip = IP(src=CORP_IP, dst="10.10.10.11", ttl=9)
        data = bytearray(raw(Ether(src=CORP_MAC["blue"], dst=tap.mac.hex(":")) / ip / ICMP()))
        header = 14
        routed = gateway_from_tap if way == "VsidFlow" else gateway_routing.route_ipv4
        call = partial(routed, node, tap)
    for checksum in range(0x10000):
        data[header + 10 : header + 12] = checksum.to_bytes(2, "big")
        expected = bytearray(data[header : header + 20])
        decrement_ttl(expected)
        call(memoryview(bytearray(data)))
        assert node.out.frame[14:34] == expected, hex(checksum)  # type: ignore[attr-defined]
    cached = {"route_ipv4": None, "VsidFlow": tap.flows, "TapFlow": node.tables.flows}[way]
    if cached is not None:  # the way it names is the way every frame but the first took
        assert [type(flow).__name__ for flow in cached.values()] == [way]


def _to_blue_vm(**fields) -> bytearray:  # type: ignore[no-untyped-def]
    """A frame from Blue's corp side to the Blue VM 10.10.10.11, into VSID 5010."""
    tap = tap_mac("gw-blue").hex(":")
    layer = fields.pop("layer")
    ip = IP(src=fields.pop("src", "172.16.0.2"), dst="10.10.10.11", **fields)
    return bytearray(raw(Ether(src="02:c0:00:00:00:02", dst=tap) / ip / layer))


FLOWS = [
    _to_blue_vm(layer=UDP(sport=40001, dport=9)),
    _to_blue_vm(layer=UDP(sport=40002, dport=9)),
    _to_blue_vm(layer=TCP(sport=40001, dport=9, flags="A")),  # the ports of UDP's first
    _to_blue_vm(layer=UDP(sport=40001, dport=9), src="172.16.0.3"),
    _to_blue_vm(layer=UDP(sport=40001, dport=9), flags="MF"),  # a first fragment: no ports
    _to_blue_vm(layer=UDP(sport=40001, dport=9), frag=3),
    _to_blue_vm(layer=UDP(sport=40001, dport=9), options=IPOption(NOP_OPTION)),
    _to_blue_vm(layer=ICMP(id=1)),
    _to_blue_vm(layer=ICMP(id=2)),
    _to_blue_vm(layer=b"\x9c\x41"),  # UDP cut short of its ports
]


def test_the_encapsulating_flow_cache_gives_each_packet_its_own_flow_id() -> None:
    """What the TAP side sends into a VSID carries the GRE header ``flow_id_of_frame``
    gives the routed frame, whatever was cached before it: fragments, options, a
    protocol or address that differs, twice over in an order that reuses the cache."""
    node = gateway()
    tap = node.tables.tap_by_name["gw-blue"]
    for frame in [*FLOWS, *reversed(FLOWS), *FLOWS]:
        gateway_from_tap(node, tap, memoryview(bytearray(frame)))
        *_, gre, sent = node.out.nvgre[-1]  # type: ignore[attr-defined]
        assert gre == struct.pack("!HHI", 0x2000, 0x6558, 5010 << 8 | flow_id_of_frame(sent))
    assert not any(node.counters.drops)


def test_a_flow_is_hashed_once_per_domain_and_swap(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The FlowID and GRE header of a flow are computed on its first packet and then
    read from the routing domain's cache, which is bounded and dies with the tables."""
    hashed = []

    def counted(frame: memoryview) -> int:
        hashed.append(bytes(frame))
        return flow_id_of_frame(frame)

    monkeypatch.setattr(gateway_routing, "flow_id_of_frame", counted)
    node = gateway()
    tap = node.tables.tap_by_name["gw-blue"]
    for _ in range(3):
        gateway_from_tap(node, tap, memoryview(bytearray(FLOWS[0])))
    assert len(hashed) == 1 and len(node.out.nvgre) == 3  # type: ignore[attr-defined]
    assert len(node.tables.domains[BLUE].flows) == 1 and not node.tables.domains[RED].flows
    node.swap(gateway_snapshot())
    tap = node.tables.tap_by_name["gw-blue"]
    gateway_from_tap(node, tap, memoryview(bytearray(FLOWS[0])))
    assert len(hashed) == 2, "a swap empties the cache"
    monkeypatch.setattr(gateway_routing, "MAX_FLOWS", 2)
    for frame in FLOWS[1:4]:
        gateway_from_tap(node, tap, memoryview(bytearray(frame)))
    assert len(node.tables.domains[BLUE].flows) <= 2


def _from_blue_vm(  # type: ignore[no-untyped-def]
    dst: str, layer, ttl: int = 64, flags: str = "", pad: int = 0, options=None, claim: int = 0
) -> bytes:
    """NVGRE from the Blue VM 10.10.10.11 (on PA1) to the gateway's MAC in VSID 5010,
    the inner frame followed by ``pad`` bytes of Ethernet padding, its IPv4 total
    length ``claim`` bytes more than it holds."""
    ip = IP(src="10.10.10.11", dst=dst, ttl=ttl, flags=flags, options=options or [])
    inner = bytearray(raw(Ether(dst=GW_MAC["blue"], src=MAC["blue1"]) / ip / layer) + bytes(pad))
    inner[16:18] = (int.from_bytes(inner[16:18], "big") + claim).to_bytes(2, "big")
    payload = struct.pack("!HHI", 0x2000, 0x6558, 5010 << 8 | 7) + inner
    return build_ipv4(PA1, GW_PA, 47, len(payload)) + payload


def _knowing_corp(learned_at: float | None) -> GatewayNode:
    """A gateway of the shared snapshot that learned Blue's corp server's MAC at
    ``learned_at`` (None: not)."""
    node = gateway(_SNAPSHOT())
    if learned_at is not None:
        neighbours = node.tables.tap_by_name["gw-blue"].neighbors
        corp = bytes(map(int, CORP_IP.split(".")))
        neighbours.resolve(corp, learned_at)  # asked, so that the answer is taken
        assert (
            neighbours.learn(corp, bytes.fromhex(CORP_MAC["blue"].replace(":", "")), learned_at)
            == []
        )
    return node


def _what_it_did(node: GatewayNode) -> tuple:
    counters = node.counters
    blue = counters.domains[BLUE]
    return (
        node.out.taps,  # type: ignore[attr-defined]
        node.out.nvgre,  # type: ignore[attr-defined]
        list(counters.drops),
        [
            getattr(counters, name)
            for name, _ in counters.TOTALS
            if not name.startswith("provider_rx")
        ],
        [getattr(blue, name) for name, _ in blue.TOTALS],
    )


def _layer(tcp: bool, length: int):  # type: ignore[no-untyped-def]
    """A TCP SYN with an MSS to clamp, or UDP, with ``length`` bytes after the header."""
    return TCP(flags="S", options=[("MSS", 1460)]) / bytes(length) if tcp else UDP() / bytes(length)


_OUTER_CHECKSUM = slice(10, 12)  # in the NVGRE datagram
_OUTER_CHECKSUM_AT = range(_OUTER_CHECKSUM.start, _OUTER_CHECKSUM.stop)


def _routed_case(  # type: ignore[no-untyped-def]
    dst, ttl, tcp, length, df, pad, claim, options
) -> bytes:
    """A cached-flow-against-``route_ipv4`` case's datagram from the Blue VM: TCP (a SYN
    with an MSS) or UDP with ``length`` bytes, DF, a NOP option, padding and a total
    length that claims more (``_from_blue_vm``)."""
    return _from_blue_vm(
        dst,
        _layer(tcp, length),
        ttl,
        "DF" if df else "",
        pad,
        [IPOption(NOP_OPTION)] if options else None,
        claim,
    )


def _tap_flow_as_route_ipv4(  # type: ignore[no-untyped-def]
    dst=CORP_IP,
    ttl=64,
    tcp=False,
    length=0,
    df=False,
    pad=0,
    claim=0,
    options=False,
    neighbour="fresh",
) -> None:
    """Twice the same datagram (the second from the cached verdict, a ``TapFlow`` when
    its flow goes out of a TAP) to one gateway, and its inner frame straight to
    ``route_ipv4`` on another: the same frames out, the same counts."""
    data = _routed_case(dst, ttl, tcp, length, df, pad, claim, options)
    learned_at = {"fresh": NOW, "stale": NOW - REFRESH_AFTER_S - 1, "unknown": None}[neighbour]
    cached, general = _knowing_corp(learned_at), _knowing_corp(learned_at)
    interface = general.tables.port_by_key[(5010, bytes.fromhex(GW_MAC["blue"].replace(":", "")))]
    for _ in range(2):
        gateway_from_provider(cached, memoryview(bytearray(data)))
        gateway_routing.route_ipv4(general, interface, memoryview(bytearray(data))[28:])
    assert _what_it_did(cached) == _what_it_did(general)


@settings(max_examples=200, deadline=None)
@given(
    offset=st.integers(0, 61).filter(lambda at: at not in _OUTER_CHECKSUM_AT),
    value=st.integers(0, 255),
    tcp=st.booleans(),
)
def test_a_datagram_unlike_its_flows_in_any_header_byte_is_routed_as_without_the_cache(
    offset: int, value: int, tcp: bool
) -> None:
    """The receive side's flow key holds every byte a decision reads: a flow cached
    from its datagram, then that datagram with one of its first 62 bytes changed (the
    outer IPv4 and GRE headers, the inner Ethernet and IPv4 headers) goes as a node
    without the cache (every datagram parsed by ``parse_nvgre``) takes it. The outer
    header checksum stays right, as the ring's filter or the kernel leaves it."""
    data = _from_blue_vm(CORP_IP, _layer(tcp, 0))
    changed = bytearray(data)
    changed[offset] = value
    changed[_OUTER_CHECKSUM] = b"\0\0"
    changed[_OUTER_CHECKSUM] = internet_checksum(changed[:20]).to_bytes(2, "big")
    cached, general = _knowing_corp(NOW), _knowing_corp(NOW)
    with patch.object(gateway_provider, "_FLOW_SIZE", 1 << 20):
        for sent in (data, changed):
            gateway_from_provider(general, memoryview(bytearray(sent)))
    for sent in (data, changed):
        gateway_from_provider(cached, memoryview(bytearray(sent)))
    assert _what_it_did(cached) == _what_it_did(general)


@pytest.mark.parametrize(
    "case",
    [
        {},
        {"length": 1473},  # over the TAP's MTU: fragmented
        {"length": 1473, "df": True},  # fragmentation-needed
        {"ttl": 1},
        {"pad": 3, "claim": 2},  # the padding taken as the packet's
        {"pad": 3, "claim": 4},  # longer than its frame
        {"tcp": True},
        {"options": True},
        {"neighbour": "stale"},
        {"neighbour": "unknown"},
    ],
    ids=repr,
)
def test_each_corner_of_a_tap_flow_is_forwarded_as_route_ipv4_forwards_it(case: dict) -> None:
    _tap_flow_as_route_ipv4(**case)


@settings(max_examples=300, deadline=None)
@given(
    dst=st.sampled_from(["172.16.0.2", "172.16.0.9", "172.16.0.1", "10.10.10.12", "10.10.10.254"]),
    ttl=st.sampled_from([64, 2, 1]),
    tcp=st.booleans(),
    length=st.sampled_from([0, 1444, 1472, 1473]),  # UDP: 28 .. 1501 B, TCP: 44 .. 1517 B
    df=st.booleans(),
    pad=st.sampled_from([0, 3]),
    claim=st.sampled_from([0, 2, 4]),
    options=st.booleans(),
    neighbour=st.sampled_from(["fresh", "stale", "unknown"]),
)
def test_a_cached_tap_flow_is_forwarded_as_route_ipv4_forwards_it(
    dst, ttl, tcp, length, df, pad, claim, options, neighbour
) -> None:
    """Whatever the packet's length against the TAP's MTU and its frame, its TTL,
    options, padding, a TCP SYN's MSS, and whether the corp side's MAC is known,
    stale or not yet (``_tap_flow_as_route_ipv4``; the corners above, always)."""
    _tap_flow_as_route_ipv4(dst, ttl, tcp, length, df, pad, claim, options, neighbour)


def test_a_flow_to_the_corp_side_is_routed_once_then_forwarded_from_its_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A TCP flow to Blue's corp server: its first datagram routed and cached as a
    ``TapFlow`` (the TTL it leaves with, the MSS clamp), the next ones forwarded from it
    without ``route_ipv4``: each with its TTL counted down, the SYN's MSS clamped; and a
    swap empties the cache with the tables."""
    node = _knowing_corp(NOW)
    data = _from_blue_vm(CORP_IP, TCP(flags="S", options=[("MSS", 1460)]), ttl=9)
    gateway_from_provider(node, memoryview(bytearray(data)))
    [flow] = node.tables.flows.values()
    assert isinstance(flow, TapFlow) and (flow.ttl, flow.mss) == (8, node.tables.mss)
    routed = []
    monkeypatch.setattr(gateway_provider, "route_ipv4", lambda *args: routed.append(args))
    gateway_from_provider(node, memoryview(bytearray(data)))
    assert not routed and len(node.out.taps) == 2  # type: ignore[attr-defined]
    for name, frame in node.out.taps:  # type: ignore[attr-defined]
        sent = Ether(frame)
        assert name == "gw-blue" and sent.dst == CORP_MAC["blue"] and sent[IP].ttl == 8
        assert dict(sent[TCP].options)["MSS"] == node.tables.mss
        assert ipv4_checksum_ok(memoryview(frame)[14:])
        tcp_checksum = sent[TCP].chksum
        del sent[TCP].chksum
        assert IP(raw(sent[IP]))[TCP].chksum == tcp_checksum
    assert node.counters.routed == 2 and node.counters.domains[BLUE].out_packets == 2
    node.swap(gateway_snapshot())
    assert not node.tables.flows


def _from_blue_corp(  # type: ignore[no-untyped-def]
    dst: str, layer, ttl: int = 64, flags: str = "", frag: int = 0, pad: int = 0, **more
) -> bytes:
    """A frame from Blue's corp server into ``gw-blue``, to the TAP's MAC unless
    ``to`` says otherwise, followed by ``pad`` bytes of Ethernet padding, its IPv4
    total length ``claim`` bytes more than it holds."""
    options = [IPOption(NOP_OPTION)] if more.get("options") else []
    ip = IP(src=CORP_IP, dst=dst, ttl=ttl, flags=flags, frag=frag, options=options)
    to = more.get("to") or tap_mac("gw-blue").hex(":")
    frame = bytearray(raw(Ether(src=CORP_MAC["blue"], dst=to) / ip / layer) + bytes(pad))
    frame[16:18] = (int.from_bytes(frame[16:18], "big") + more.get("claim", 0)).to_bytes(2, "big")
    return bytes(frame)


def _vsid_flow_as_without_the_cache(  # type: ignore[no-untyped-def]
    dst="10.10.10.11",
    ttl=64,
    tcp=False,
    length=0,
    flags="",
    frag=0,
    pad=0,
    claim=0,
    options=False,
    to=None,
) -> None:
    """Twice the same corp frame to one gateway (the second from the cached verdict,
    a ``VsidFlow`` when its flow goes into a VSID), and to another whose TAP side
    has no flow cache (frames shorter than any key), then the flow's plain frame: the
    same NVGRE and frames out, the same counts."""
    layer = _layer(tcp, length)
    frame = _from_blue_corp(dst, layer, ttl, flags, frag, pad, options=options, claim=claim, to=to)
    whole = _from_blue_corp(dst, layer, ttl)  # then the same flow, plain: no cache misleads it
    cached, general = _knowing_corp(NOW), _knowing_corp(NOW)
    with patch.object(gateway_tap, "_ROUTED_FLOW_SIZE", 1 << 20):
        tap = general.tables.tap_by_name["gw-blue"]
        for sent in (frame, frame, whole):
            gateway_tap.gateway_from_tap(general, tap, memoryview(bytearray(sent)))
    tap = cached.tables.tap_by_name["gw-blue"]
    for sent in (frame, frame, whole):
        gateway_tap.gateway_from_tap(cached, tap, memoryview(bytearray(sent)))
    assert _what_it_did(cached) == _what_it_did(general)


@pytest.mark.parametrize(
    "case",
    [
        {},
        {"length": 1431},  # over the VSID's MTU: fragmented
        {"length": 1431, "flags": "DF"},  # fragmentation-needed
        {"flags": "MF"},  # a first fragment: its FlowID has no ports
        {"frag": 7},
        {"ttl": 1},
        {"pad": 3, "claim": 2},
        {"pad": 3, "claim": 4},
        {"tcp": True},
        {"options": True},
        {"to": "ff:ff:ff:ff:ff:ff"},
        {"dst": "10.10.10.254"},
    ],
    ids=repr,
)
def test_each_corner_of_a_vsid_flow_is_sent_as_without_the_cache(case: dict) -> None:
    _vsid_flow_as_without_the_cache(**case)


@settings(max_examples=300, deadline=None)
@given(
    dst=st.sampled_from(
        ["10.10.10.11", "10.10.10.12", "10.10.10.254", "172.16.0.9", "10.10.10.99"]
    ),
    ttl=st.sampled_from([64, 2, 1]),
    tcp=st.booleans(),
    length=st.sampled_from([0, 1414, 1430, 1431]),  # UDP: 28 .. 1459 B, TCP: 44 .. 1475 B
    flags=st.sampled_from(["", "DF", "MF"]),
    frag=st.sampled_from([0, 0, 7]),
    pad=st.sampled_from([0, 3]),
    claim=st.sampled_from([0, 2, 4]),
    options=st.booleans(),
    to=st.sampled_from([None, None, "ff:ff:ff:ff:ff:ff", "02:c0:00:00:00:99"]),
)
def test_a_cached_vsid_flow_is_sent_as_without_the_cache(
    dst, ttl, tcp, length, flags, frag, pad, claim, options, to
) -> None:
    """Whatever the packet's length against the VSID's MTU and its frame, its TTL,
    fragment, options, padding, a TCP SYN's MSS, and its MAC
    (``_vsid_flow_as_without_the_cache``; the corners above, always)."""
    _vsid_flow_as_without_the_cache(dst, ttl, tcp, length, flags, frag, pad, claim, options, to)


@settings(max_examples=200, deadline=None)
@given(offset=st.integers(0, 37), value=st.integers(0, 255), tcp=st.booleans())
def test_a_frame_unlike_its_flows_in_any_header_byte_is_sent_as_without_the_cache(
    offset: int, value: int, tcp: bool
) -> None:
    """The corp side's flow key holds every byte a decision reads: a flow cached from
    its frame, then that frame with one of its first 38 bytes changed (the Ethernet
    header, the IPv4 header, the ports) goes as a node without the cache sends it,
    whether the change makes another flow or one the key ignores."""
    frame = _from_blue_corp("10.10.10.11", _layer(tcp, 0))
    changed = bytearray(frame)
    changed[offset] = value
    cached, general = _knowing_corp(NOW), _knowing_corp(NOW)
    with patch.object(gateway_tap, "_ROUTED_FLOW_SIZE", 1 << 20):
        tap = general.tables.tap_by_name["gw-blue"]
        for sent in (frame, changed):
            gateway_tap.gateway_from_tap(general, tap, memoryview(bytearray(sent)))
    tap = cached.tables.tap_by_name["gw-blue"]
    for sent in (frame, changed):
        gateway_tap.gateway_from_tap(cached, tap, memoryview(bytearray(sent)))
    assert _what_it_did(cached) == _what_it_did(general)


def test_a_corp_flow_into_a_vsid_is_routed_once_then_sent_from_its_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A TCP flow from Blue's corp server to the Blue VM: its first frame routed and
    cached as a ``VsidFlow`` (the TTL it leaves with, its GRE header with the flow's
    FlowID), the next ones sent from it without ``route_ipv4``, each with its TTL
    counted down and the SYN's MSS clamped; a swap empties the cache with the TAP."""
    node = gateway()
    tap = node.tables.tap_by_name["gw-blue"]
    frame = _from_blue_corp("10.10.10.11", TCP(flags="S", options=[("MSS", 1460)]), ttl=9)
    gateway_from_tap(node, tap, memoryview(bytearray(frame)))
    [flow] = tap.flows.values()
    assert isinstance(flow, gateway_tap.VsidFlow) and (flow.ttl, flow.mss) == (8, node.tables.mss)
    routed = []
    monkeypatch.setattr(gateway_tap, "route_ipv4", lambda *args: routed.append(args))
    gateway_from_tap(node, tap, memoryview(bytearray(frame)))
    assert not routed and len(node.out.nvgre) == 2  # type: ignore[attr-defined]
    for src, dst, gre, sent in node.out.nvgre:  # type: ignore[attr-defined]
        assert (src, dst) == (GW_PA, PA1)
        assert gre == struct.pack("!HHI", 0x2000, 0x6558, 5010 << 8 | flow_id_of_frame(sent))
        inner = Ether(sent)
        assert (inner.dst, inner.src) == (MAC["blue1"], router_mac(5010).hex(":"))
        assert inner[IP].ttl == 8 and dict(inner[TCP].options)["MSS"] == node.tables.mss
        assert ipv4_checksum_ok(memoryview(sent)[14:])
    assert node.counters.encapsulated == 2 and node.counters.domains[BLUE].in_packets == 2
    node.swap(gateway_snapshot())
    assert not node.tables.tap_by_name["gw-blue"].flows
