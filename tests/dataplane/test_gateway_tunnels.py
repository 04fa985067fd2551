"""Site-to-site tunnels through the gateway on the one fabric: a Blue VM reaches an
on-prem server over a WireGuard tunnel and back; the on-prem site is a device of our
own core played by the test (``_tunnel_lab.Site``). Frames are built and read with
scapy."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from gateway.dataplane import (
    TUNNEL_MTU,
    GatewayNode,
    gateway_from_provider,
    gateway_provider,
    gateway_routing,
)
from gateway.dataplane.gateway_provider import TunnelFlow
from gateway.errors import Drop
from gateway.policy import TUNNEL_LOAD_THRESHOLD
from gateway.wire import parse_nvgre

from ._gateway_lab import GW_CA, GW_MAC, GW_PA, VSID, gateway_snapshot
from ._policies import NOW
from ._tunnel_lab import (
    PORT,
    SERVER,
    SITE,
    Site,
    b64,
    tunnel_document,
    tunnel_entry,
    tunnel_lab,
)
from .test_gateway_fabric import VM, VM_IP, from_vm, vm_frames
from .test_gateway_node import Collect, _routed_case, _what_it_did
from .test_host import PA1, checksums_valid

INITIATION, RESPONSE, COOKIE_REPLY, TRANSPORT = 1, 2, 3, 4


def ping(tenant: str, dst: str = SERVER, size: int = 4, **ip: object) -> bytes:
    return from_vm(tenant, IP(src=VM_IP, dst=dst, **ip) / ICMP(id=7, seq=1) / (b"p" * size))


def establish(network, tenant: str, now: float = NOW) -> tuple[Site, bytes]:  # type: ignore[no-untyped-def]
    """The tenant's VM pings the on-prem server: the gateway starts a handshake with
    the site, the site answers, and the packet that waited arrives; gives the site
    and that packet."""
    site = Site(network, tenant)
    steps = network.send(VM[tenant], ping(tenant), now)
    assert [step.node for step in steps] == ["host1", "gw"]
    [(port, endpoint, initiation)] = steps[-1].udp
    assert (port, endpoint, initiation[0]) == (PORT, SITE[tenant], INITIATION)
    assert site.take(steps[-1], now) == []  # the initiation: answered with a response
    [answered] = site.answer(now)
    assert {datagram[0] for _, _, datagram in answered.udp} == {TRANSPORT}
    [packet] = site.take(answered, now)
    return site, packet


def test_a_blue_vm_reaches_the_onprem_server_over_its_tunnel_and_back() -> None:
    network = tunnel_lab()
    site, packet = establish(network, "blue")
    request = IP(packet)
    assert (request.src, request.dst, request.ttl) == (VM_IP, SERVER, 62)
    assert checksums_valid(raw(Ether() / request))
    # The server's echo reply comes back through the tunnel to the VM in NVGRE.
    reply = IP(src=SERVER, dst=VM_IP) / ICMP(type=0, id=7, seq=1) / b"pppp"
    steps = site.send(raw(reply))
    assert [step.node for step in steps] == ["gw", "host1"]
    [(src_pa, dst_pa, datagram)] = steps[0].nvgre
    assert (src_pa, dst_pa) == (GW_PA, PA1)
    assert parse_nvgre(memoryview(datagram)).vsid == VSID["blue"]
    [arrived] = vm_frames(network, VM["blue"])
    assert (arrived[IP].src, arrived[IP].dst, arrived[IP].ttl) == (SERVER, VM_IP, 63)
    assert arrived[ICMP].type == 0 and checksums_valid(raw(arrived))
    assert network.drops("gw") == {}
    assert site.peer.rx_packets == 1 and site.peer.handshakes == 1


def test_the_site_may_start_the_handshake() -> None:
    """Red's site calls first (the gateway has its endpoint but has sent nothing):
    the gateway answers, and the site's packet reaches Red's VM."""
    network = tunnel_lab()
    site = Site(network, "red")
    site.device.initiate(site.peer, NOW)
    [answered] = site.answer()
    [(port, endpoint, response)] = answered.udp
    assert (port, endpoint, response[0]) == (PORT, SITE["red"], RESPONSE)
    assert site.take(answered) == []
    packet = IP(src=SERVER, dst=VM_IP) / ICMP(type=8, id=9, seq=1)
    steps = site.send(raw(packet))
    assert [step.node for step in steps][-2:] == ["gw", "host1"]
    [arrived] = vm_frames(network, VM["red"])
    assert (arrived[IP].src, arrived[ICMP].id) == (SERVER, 9)
    assert vm_frames(network, VM["blue"]) == []


def test_reds_identical_prefix_goes_to_reds_site_only() -> None:
    network = tunnel_lab()
    blue, _ = establish(network, "blue")
    red, packet = establish(network, "red")
    assert IP(packet).dst == SERVER
    steps = network.send(VM["red"], ping("red"), NOW)
    [(_, endpoint, _)] = steps[-1].udp
    assert endpoint == SITE["red"]
    assert blue.take(steps[-1]) == [] and len(red.take(steps[-1])) == 1


def test_a_source_outside_the_peers_allowed_ips_is_dropped_and_counted() -> None:
    network = tunnel_lab()
    site, _ = establish(network, "blue")
    forged = IP(src="192.168.7.7", dst=VM_IP) / ICMP(type=8)
    steps = site.send(raw(forged))
    assert [step.node for step in steps] == ["gw"] and steps[0].nvgre == []
    assert network.drops("gw") == {"TUNNEL_SOURCE": 1}
    assert vm_frames(network, VM["blue"]) == []


def test_a_peer_with_several_allowed_prefixes_may_send_from_each_and_no_other() -> None:
    """Allowed IPs of several lengths (a set per length): each prefix's sources pass,
    a neighbour of each is dropped."""
    network = tunnel_lab()
    site, _ = establish(network, "blue")
    more = ["172.16.50.0/24", "172.16.80.0/24", "172.16.81.0/24", "10.77.0.0/16", "172.16.90.7/32"]

    def several(document: dict) -> None:
        tunnel_document(document)
        document["tunnels"][0]["allowed_ips"] = more

    network.swap(gateway_snapshot(several))
    for source in ("172.16.50.9", "172.16.81.200", "10.77.3.4", "172.16.90.7"):
        site.send(raw(IP(src=source, dst=VM_IP) / ICMP(type=8)))
    assert network.drops("gw") == {}
    assert len(vm_frames(network, VM["blue"])) == 4
    for source in ("172.16.82.1", "10.78.0.1", "172.16.90.6", "172.16.51.1"):
        site.send(raw(IP(src=source, dst=VM_IP) / ICMP(type=8)))
    assert network.drops("gw") == {"TUNNEL_SOURCE": 4}


def test_a_too_big_df_packet_gets_fragmentation_needed_with_the_tunnels_mtu() -> None:
    network = tunnel_lab()
    establish(network, "blue")
    size = TUNNEL_MTU + 1 - 28  # IP + ICMP headers: one byte over the tunnel's MTU
    steps = network.send(VM["blue"], ping("blue", size=size, flags="DF"), NOW)
    assert [step.node for step in steps] == ["host1", "gw", "host1"]
    assert steps[1].udp == []
    [error] = vm_frames(network, VM["blue"])
    assert (error[IP].src, error[IP].dst) == (GW_CA, VM_IP)
    assert (error[ICMP].type, error[ICMP].code, error[ICMP].nexthopmtu) == (3, 4, TUNNEL_MTU)
    assert TUNNEL_MTU == 1500 - 20 - 8 - 32
    assert network.drops("gw") == {"TOO_BIG": 1}


def test_what_does_not_authenticate_gets_no_answer_and_is_counted() -> None:
    network = tunnel_lab()
    site = Site(network, "blue")
    site.device.initiate(site.peer, NOW)
    [(initiation, _)] = site.device.outbox
    forged = bytearray(initiation)
    forged[-40] ^= 1  # within mac1
    for datagram in (bytes(forged), initiation[:100], b"\x04" + bytes(40), b"junk"):
        step = network.from_tunnel("gw", PORT, datagram, SITE["blue"], NOW)
        assert step.udp == []
    assert network.drops("gw") == {"TUNNEL_MALFORMED": 2, "TUNNEL_UNAUTHENTICATED": 2}


def test_a_reload_that_adds_a_tunnel_keeps_the_others_session() -> None:
    network = tunnel_lab()
    site, _ = establish(network, "blue")
    node = network.node("gw")
    assert isinstance(node, GatewayNode)
    device = node.tunnel_ports[PORT].device

    def more(document: dict) -> None:
        tunnel_document(document)
        third = tunnel_entry("blue", name="branch", allowed_ips=["172.16.70.0/24"])
        third["public_key"] = b64(bytes(range(128, 160)))
        del third["endpoint"]
        document["tunnels"].append(third)

    network.swap(gateway_snapshot(more))
    assert node.tunnel_ports[PORT].device is device and len(device.peers) == 3
    steps = network.send(VM["blue"], ping("blue"), NOW + 1)
    [(_, endpoint, datagram)] = steps[-1].udp
    assert (endpoint, datagram[0]) == (SITE["blue"], TRANSPORT), "no new handshake"
    assert len(site.take(steps[-1], NOW + 1)) == 1
    # Removing Red's tunnel takes only Red's peer.
    network.swap(gateway_snapshot(lambda d: (tunnel_document(d), d["tunnels"].pop())))
    assert node.tunnel_ports[PORT].device is device and len(device.peers) == 1


def test_the_timers_retry_the_handshake_when_the_site_is_silent() -> None:
    network = tunnel_lab()
    network.send(VM["blue"], ping("blue"), NOW)
    assert network.tick("gw", NOW + 1).udp == []
    [(_, endpoint, retry)] = network.tick("gw", NOW + 6).udp  # rekey-timeout 5 s + jitter
    assert (endpoint, retry[0]) == (SITE["blue"], INITIATION)


def test_under_load_a_handshake_without_a_cookie_gets_a_cookie_reply_then_passes() -> None:
    """Many handshakes in one batch put the port under load (here: any, the node's
    ``tunnel_load_threshold`` 0): the site's initiation is answered with a cookie
    reply and counted; the site's retry carries the cookie (mac2) and is answered."""
    network = tunnel_lab(tunnel_load_threshold=0)
    site = Site(network, "blue")
    site.device.initiate(site.peer, NOW)
    [refused] = site.answer()
    [(_, endpoint, cookie_reply)] = refused.udp
    assert (endpoint, cookie_reply[0]) == (SITE["blue"], COOKIE_REPLY)
    assert refused.drops == {Drop.TUNNEL_UNDER_LOAD: 1}
    assert site.take(refused) == []  # the site takes the cookie
    site.device.tick(NOW + 6)  # its handshake retry, now with mac2
    [answered] = site.answer(NOW + 6)
    [(_, _, response)] = answered.udp
    assert response[0] == RESPONSE and answered.drops == {}
    assert site.take(answered, NOW + 6) == [] and site.peer.handshakes == 1
    # Transport data is never asked for a cookie.
    steps = site.send(raw(IP(src=SERVER, dst=VM_IP) / ICMP(type=0, id=7)), NOW + 6)
    assert [step.node for step in steps] == ["gw", "gw", "host1"]  # a keepalive, then data
    assert network.drops("gw") == {"TUNNEL_UNDER_LOAD": 1}


def test_into_a_tunnel_the_ttl_is_counted_and_a_df_clear_packet_is_split() -> None:
    network = tunnel_lab()
    site, _ = establish(network, "blue")
    # TTL 2 leaves the host with 1: the gateway answers time-exceeded from its CA.
    steps = network.send(VM["blue"], ping("blue", ttl=2), NOW)
    assert steps[1].udp == [] and network.drops("gw") == {"TTL_EXPIRED": 1}
    [error] = vm_frames(network, VM["blue"])
    assert (error[IP].src, error[ICMP].type) == (GW_CA, 11)
    # DF clear and over the tunnel's MTU: two fragments, each through the tunnel.
    steps = network.send(VM["blue"], ping("blue", size=TUNNEL_MTU - 28 + 10), NOW)
    pieces = [IP(packet) for packet in site.take(steps[-1])]
    assert len(pieces) == 2 and all(len(raw(piece)) <= TUNNEL_MTU for piece in pieces)
    assert (pieces[0].frag, pieces[1].frag > 0) == (0, True) and pieces[0].flags.MF
    assert all(piece.ttl == 62 and piece.dst == SERVER for piece in pieces)


def test_the_site_pings_the_gateways_ca_and_the_answer_goes_back_into_the_tunnel() -> None:
    network = tunnel_lab()
    site, _ = establish(network, "blue")
    steps = site.send(raw(IP(src=SERVER, dst=GW_CA) / ICMP(type=8, id=3, seq=1) / b"hi"))
    [answer] = site.take(steps[0])
    reply = IP(answer)
    assert (reply.src, reply.dst, reply[ICMP].type, reply[ICMP].id) == (GW_CA, SERVER, 0, 3)
    # IPv6 out of a tunnel is not forwarded (IPv4 only so far), and counted.
    ipv6 = bytes.fromhex("6000000000003b40") + bytes(32)  # no next header, 40 bytes
    assert [step.node for step in site.send(ipv6)] == ["gw"]
    assert network.drops("gw") == {"UNSUPPORTED": 1}


@given(
    kind=st.sampled_from([None, 1, 2, 3, 4, 0, 5, 255]),
    body=st.binary(max_size=200),
    size=st.sampled_from([None, 148, 92, 64, 32]),
)
@settings(max_examples=300, deadline=None)
def test_hostile_datagrams_are_counted_once_and_never_answered(
    kind: int | None, body: bytes, size: int | None
) -> None:
    """Any datagram that is no genuine message of a peer (here: forged ones of every
    type and of the handshakes' own sizes) costs exactly one drop, and gets nothing
    back: no answer, no packet routed, nothing raised."""
    network = _HOSTILE_LAB
    header = b"" if kind is None else bytes([kind, 0, 0, 0])  # None: bytes alone, even none
    datagram = (header + body)[: size or None]
    before = sum(network.node("gw").counters.drops)
    step = network.from_tunnel("gw", PORT, datagram, SITE["blue"], NOW)
    assert step.udp == [] and step.nvgre == [] and step.taps == []
    assert sum(network.node("gw").counters.drops) == before + 1


_HOSTILE_LAB = tunnel_lab()


def test_a_reload_that_turns_the_keepalive_on_keeps_the_session_and_sends_one() -> None:
    network = tunnel_lab()
    site, _ = establish(network, "blue")

    def keepalive(document: dict) -> None:
        tunnel_document(document)
        document["tunnels"][0]["persistent_keepalive"] = 5

    network.swap(gateway_snapshot(keepalive))
    [(_, endpoint, datagram)] = network.tick("gw", NOW + 1).udp
    assert (endpoint, datagram[0], len(datagram)) == (SITE["blue"], TRANSPORT, 32)
    assert site.device.receive(datagram, ("192.0.2.1", PORT), NOW + 1) is None  # it decrypts
    assert site.peer.handshakes == 1 and site.device.refused == [0] * len(site.device.refused)


def test_the_load_threshold_is_the_nodes_and_follows_a_reload() -> None:
    network = tunnel_lab()
    node = network.node("gw")
    assert isinstance(node, GatewayNode)
    assert node.tunnel_ports[PORT].load_threshold == TUNNEL_LOAD_THRESHOLD
    device = node.tunnel_ports[PORT].device

    def lowered(d: dict) -> None:
        tunnel_document(d)
        d["nodes"]["gw"]["tunnel_load_threshold"] = 3

    network.swap(gateway_snapshot(lowered))
    assert node.tunnel_ports[PORT].load_threshold == 3
    assert node.tunnel_ports[PORT].device is device  # the port kept: only its load changed


def test_a_flow_into_the_tunnel_is_routed_once_then_sealed_from_its_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The VM's pings to the on-prem server: the first routed and its flow cached as a
    ``TunnelFlow`` (the TTL it leaves with, no MSS clamp for ICMP), the next one sealed
    from it without ``route_ipv4``, its TTL counted down and its checksum right."""
    network = tunnel_lab()
    site, _ = establish(network, "blue")
    gw = network.node("gw")
    [flow] = [f for f in gw.tables.flows.values() if isinstance(f, TunnelFlow)]  # type: ignore[attr-defined]
    assert (flow.tunnel.name, flow.ttl, flow.mss, flow.mtu) == ("onprem-blue", 62, 0, TUNNEL_MTU)
    routed: list[object] = []
    monkeypatch.setattr(gateway_provider, "route_ipv4", lambda *args: routed.append(args))
    steps = network.send(VM["blue"], ping("blue"), NOW)
    [packet] = site.take(steps[-1])
    assert not routed
    request = IP(packet)
    assert (request.src, request.dst, request.ttl) == (VM_IP, SERVER, 62)
    assert checksums_valid(raw(Ether() / request))
    assert gw.counters.routed == 2 and network.drops("gw") == {}  # type: ignore[attr-defined]


class _Sealed(Collect):
    """``Collect``, and what was handed to ``send_to_tunnel`` (the tunnel's name and
    the packet, as it was when handed over)."""

    def __init__(self) -> None:
        super().__init__()
        self.sealed: list[tuple[str, bytes]] = []


def _tunnel_flow_as_route_ipv4(  # type: ignore[no-untyped-def]
    dst=SERVER, ttl=64, tcp=False, length=0, df=False, pad=0, claim=0, options=False
) -> None:
    """Twice the same datagram (the second from the cached verdict, a ``TunnelFlow``
    when its flow goes into a tunnel) to one gateway, and its inner frame straight to
    ``route_ipv4`` on another: the same packets into the tunnel, the same frames out,
    the same counts."""
    data = _routed_case(dst, ttl, tcp, length, df, pad, claim, options)
    snapshot = gateway_snapshot(tunnel_document)
    cached, general = (GatewayNode(snapshot, "gw", _Sealed()) for _ in range(2))
    interface = general.tables.port_by_key[
        (VSID["blue"], bytes.fromhex(GW_MAC["blue"].replace(":", "")))
    ]

    def sealed(node: GatewayNode, tunnel, packet: memoryview) -> None:  # type: ignore[no-untyped-def]
        node.out.sealed.append((tunnel.name, bytes(packet)))  # type: ignore[attr-defined]

    with (
        patch.object(gateway_provider, "send_to_tunnel", sealed),
        patch.object(gateway_routing, "send_to_tunnel", sealed),
    ):
        for node in (cached, general):
            node.now = NOW
        for _ in range(2):
            gateway_from_provider(cached, memoryview(bytearray(data)))
            gateway_routing.route_ipv4(general, interface, memoryview(bytearray(data))[28:])
    assert cached.out.sealed == general.out.sealed  # type: ignore[attr-defined]
    assert _what_it_did(cached) == _what_it_did(general)


@pytest.mark.parametrize(
    "case",
    [
        {},
        {"length": TUNNEL_MTU - 28 + 1},  # one byte over the tunnel's MTU: fragmented
        {"length": TUNNEL_MTU - 28 + 1, "df": True},  # fragmentation-needed
        {"ttl": 1},
        {"pad": 3, "claim": 2},  # the padding taken as the packet's
        {"pad": 3, "claim": 4},  # longer than its frame
        {"tcp": True},  # the SYN's MSS clamped
        {"options": True},
    ],
    ids=repr,
)
def test_each_corner_of_a_tunnel_flow_is_sealed_as_route_ipv4_seals_it(case: dict) -> None:
    _tunnel_flow_as_route_ipv4(**case)


@settings(max_examples=200, deadline=None)
@given(
    dst=st.sampled_from([SERVER, "172.16.50.99", "172.16.0.2", "10.10.10.254"]),
    ttl=st.sampled_from([64, 2, 1]),
    tcp=st.booleans(),
    length=st.sampled_from([0, TUNNEL_MTU - 28, TUNNEL_MTU - 28 + 1]),
    df=st.booleans(),
    pad=st.sampled_from([0, 3]),
    claim=st.sampled_from([0, 2, 4]),
    options=st.booleans(),
)
def test_a_cached_tunnel_flow_is_sealed_as_route_ipv4_seals_it(  # type: ignore[no-untyped-def]
    dst, ttl, tcp, length, df, pad, claim, options
) -> None:
    """Whatever the packet's length against the tunnel's MTU and its frame, its TTL,
    options, padding and a TCP SYN's MSS, and whether its flow goes into a tunnel,
    out of a TAP or to the gateway itself (``_tunnel_flow_as_route_ipv4``)."""
    _tunnel_flow_as_route_ipv4(dst, ttl, tcp, length, df, pad, claim, options)
