"""The gateway role between sans-IO nodes on the one fabric: hosts, the gateway and the
corp side of its TAPs (played by the tests, ``_gateway_lab.Corp``), as design.md's
gateway lab lays them out. Frames are built and read with scapy, an independent
codec, so what the gateway emits is also checked to be well-formed."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.dataplane import PORT_MTU, TAP_MTU, DomainCounters, router_mac
from gateway.wire import encapsulate_ipv4, flow_id_of_frame, parse_nvgre

from ._gateway_lab import (
    BLUE,
    CORP_IP,
    GW_CA,
    GW_MAC,
    GW_PA,
    RED,
    TAP_ADDRESS,
    VSID,
    Corp,
    gateway_lab,
    gw_tap_mac,
)
from ._policies import NOW
from .test_host import MAC, PA1, checksums_valid

VM = {"blue": "blue1", "red": "red1"}  # each tenant's VM on host1, 10.10.10.11
VM_IP = "10.10.10.11"


def from_vm(tenant: str, packet) -> bytes:  # type: ignore[no-untyped-def]
    """``packet`` as the tenant's VM sends it off its subnet: to the router MAC."""
    return raw(Ether(src=MAC[VM[tenant]], dst=router_mac(VSID[tenant]).hex(":")) / packet)


def echo(tenant: str, dst: str = CORP_IP, ident: int = 7, **ip) -> bytes:  # type: ignore[no-untyped-def]
    return from_vm(tenant, IP(src=VM_IP, dst=dst, **ip) / ICMP(id=ident, seq=1) / b"ping")


def vm_frames(network, vm: str) -> list[Ether]:  # type: ignore[no-untyped-def]
    return [Ether(frame) for tap, frame in network.delivered() if tap == vm]


def test_a_vm_pings_a_corp_server_behind_its_tap_and_gets_the_reply() -> None:
    network = gateway_lab()
    corp = Corp(network, "blue")
    steps = network.send("blue1", echo("blue"), NOW)
    assert [step.node for step in steps] == ["host1", "gw"]
    arrived = steps[-1]
    [(tap, request)] = [(t.name, f) for t, f in arrived.taps]
    assert tap == "gw-blue"
    who_has = Ether(request)
    assert who_has.dst == "ff:ff:ff:ff:ff:ff" and who_has.src == gw_tap_mac("blue")
    assert (who_has.psrc, who_has.pdst) == (TAP_ADDRESS, CORP_IP), "from the gateway's address"
    [received] = corp.answer()
    assert (received[IP].src, received[IP].dst, received[IP].ttl) == (VM_IP, CORP_IP, 62)
    assert (received.src, received.dst) == (gw_tap_mac("blue"), corp.mac)
    assert checksums_valid(raw(received))
    [reply] = vm_frames(network, "blue1")
    assert (reply[IP].src, reply[IP].dst, reply[ICMP].type, reply[ICMP].id) == (
        CORP_IP,
        VM_IP,
        0,
        7,
    )
    assert reply.src == router_mac(5010).hex(":"), "from the VSID's router, as the VM expects"
    assert reply[IP].ttl == 63 and checksums_valid(raw(reply))
    for node in ("host1", "gw"):
        assert network.drops(node) == {}
    gw = network.node("gw").counters
    domain = gw.domains[BLUE]
    assert (domain.out_packets, domain.in_packets) == (1, 1)
    assert (gw.routed, gw.encapsulated, gw.arp_requests_sent) == (2, 1, 1)
    assert RED not in gw.domains or gw.domains[RED].out_packets == 0


def test_the_reply_goes_to_the_vms_host_in_nvgre_from_the_gateways_pa() -> None:
    network = gateway_lab()
    corp = Corp(network, "blue")
    network.send("blue1", echo("blue"), NOW)
    corp.answer()
    step = network.send("gw-blue", corp.frame(IP(src=CORP_IP, dst=VM_IP) / UDP()), NOW)[0]
    [(src, dst, datagram)] = step.nvgre
    assert (src, dst) == (GW_PA, PA1)
    packet = parse_nvgre(memoryview(datagram))
    inner = Ether(bytes(packet.inner))
    assert packet.vsid == 5010 and inner.dst == MAC["blue1"]
    assert inner.src == router_mac(5010).hex(":")
    assert packet.flow_id == flow_id_of_frame(bytes(packet.inner)), "FlowID from the inner flow"


def test_blue_and_red_each_reach_their_own_tap_and_never_the_others() -> None:
    """The same VM address, the same corp address, the same TAP address: each tenant's
    packet leaves by its own TAP and its answer comes back to its own VM."""
    network = gateway_lab()
    corps = {tenant: Corp(network, tenant) for tenant in ("blue", "red")}
    for tenant in ("blue", "red"):
        network.send(VM[tenant], echo(tenant, ident=VSID[tenant]), NOW)
        [received] = corps[tenant].answer()
        assert received[ICMP].id == VSID[tenant]
        other = "red" if tenant == "blue" else "blue"
        assert corps[other].answer() == []
        [reply] = vm_frames(network, VM[tenant])
        assert reply[ICMP].type == 0 and reply[ICMP].id == VSID[tenant]
    gw = network.node("gw").counters
    assert gw.domains[BLUE].out_packets == gw.domains[RED].out_packets == 1
    assert gw.domains[BLUE].in_packets == gw.domains[RED].in_packets == 1
    assert network.drops("gw") == {}


def test_nothing_crosses_routing_domains_at_the_gateway() -> None:
    """Blue's VM sends to Red's gateway MAC, or into Red's VSID: never forwarded. Red's
    corp side reaches only Red's VMs, whatever address it sends to."""
    network = gateway_lab()
    into_red_vsid = encapsulate_ipv4(
        PA1, GW_PA, 5011, 0, raw(Ether(src=MAC["blue1"], dst=GW_MAC["red"]) / IP(src=VM_IP))
    )
    wrong_mac = encapsulate_ipv4(
        PA1, GW_PA, 5010, 0, raw(Ether(src=MAC["blue1"], dst=GW_MAC["red"]) / IP(src=VM_IP))
    )
    network.to_pa(into_red_vsid, NOW)
    network.to_pa(wrong_mac, NOW)
    assert network.delivered() == []
    assert network.drops("gw") == {"SPOOFED_PA": 1, "VSID_MISMATCH": 1}


def test_traceroute_sees_the_host_then_the_gateway() -> None:
    """TTL 1 expires at host1 (10.10.10.1), TTL 2 at the gateway, which answers from its
    CA in the VM's VSID (10.10.10.254), routed back to the VM's host."""
    network = gateway_lab()
    hops = []
    for ttl in (1, 2):
        probe = from_vm("blue", IP(src=VM_IP, dst=CORP_IP, ttl=ttl) / UDP(dport=33434 + ttl))
        network.send("blue1", probe, NOW)
        [answer] = vm_frames(network, "blue1")
        assert answer[ICMP].type == 11 and answer[ICMP].code == 0
        assert answer[IPerror].dst == CORP_IP and answer[UDPerror].dport == 33434 + ttl
        assert answer.src == router_mac(5010).hex(":") and checksums_valid(raw(answer))
        hops.append(answer[IP].src)
    assert hops == ["10.10.10.1", GW_CA]
    assert network.drops("gw") == {"TTL_EXPIRED": 1}
    assert network.node("gw").counters.icmp_errors_sent == 1


def test_ttl_expiry_toward_the_corp_side_is_answered_from_the_taps_address() -> None:
    network = gateway_lab()
    corp = Corp(network, "blue")
    step = corp.send(IP(src=CORP_IP, dst=VM_IP, ttl=1) / UDP())[0]
    assert not step.nvgre
    [answer] = corp.answer()
    assert (answer[IP].src, answer[IP].dst) == (TAP_ADDRESS, CORP_IP)
    assert (answer.src, answer.dst) == (gw_tap_mac("blue"), corp.mac), "back to its last hop"
    assert answer[ICMP].type == 11 and checksums_valid(raw(answer))
    assert network.drops("gw") == {"TTL_EXPIRED": 1}


def test_a_1500_byte_df_packet_from_the_corp_side_gets_fragmentation_needed_1458() -> None:
    network = gateway_lab()
    corp = Corp(network, "blue")
    big = IP(src=CORP_IP, dst=VM_IP, flags="DF") / UDP() / (b"x" * (1500 - 28))
    assert len(raw(big)) == 1500
    step = corp.send(big)[0]
    assert not step.nvgre, "never an outer fragment, never the packet itself"
    [answer] = corp.answer()
    assert (answer[ICMP].type, answer[ICMP].code, answer[ICMP].nexthopmtu) == (3, 4, 1458)
    assert (answer[IP].src, answer[IP].dst) == (TAP_ADDRESS, CORP_IP)
    assert answer[IPerror].len == 1500 and checksums_valid(raw(answer))
    assert network.drops("gw") == {"TOO_BIG": 1}
    fits = IP(src=CORP_IP, dst=VM_IP, flags="DF") / UDP() / (b"x" * (1458 - 28))
    assert len(corp.send(fits)[0].nvgre) == 1


def test_a_1500_byte_packet_with_df_clear_is_split_into_inner_fragments() -> None:
    network = gateway_lab()
    corp = Corp(network, "blue")
    payload = bytes(range(256)) * 6
    big = IP(src=CORP_IP, dst=VM_IP, id=4242) / UDP(sport=5353, dport=5353) / payload[:1472]
    steps = corp.send(big)
    pieces = vm_frames(network, "blue1")
    assert len(pieces) == 2 and network.drops("gw") == {} and network.drops("host1") == {}
    for piece in pieces:
        assert len(raw(piece[IP])) <= 1458 and piece[IP].id == 4242 and piece[IP].ttl == 63
        header = IP(raw(piece[IP])[:20])
        del header.chksum
        assert raw(IP(raw(header)))[:20] == raw(piece[IP])[:20], "each header's own checksum"
    assert [(p[IP].flags.MF, p[IP].frag) for p in pieces] == [(1, 0), (0, (1458 - 20) // 8)]
    whole = b"".join(bytes(p[IP].payload) for p in pieces)
    assert whole == raw(big)[20:], "the fragments carry the datagram"
    assert all(len(d) <= 1500 for step in steps for *_, d in step.nvgre), "no outer fragment"
    assert network.node("gw").counters.fragmented == 1


def syn(src: str, dst: str, mss: int) -> IP:
    return IP(src=src, dst=dst) / TCP(sport=40000, dport=443, flags="S", options=[("MSS", mss)])


def mss(frame: Ether) -> int:
    return dict(frame[TCP].options)["MSS"]


def test_tcp_syns_are_mss_clamped_both_ways() -> None:
    network = gateway_lab()
    corp = Corp(network, "blue")
    network.send("blue1", from_vm("blue", syn(VM_IP, CORP_IP, 1460)), NOW)
    [out] = corp.answer()
    assert mss(out) == min(PORT_MTU, TAP_MTU) - 40 == 1418 and checksums_valid(raw(out))
    corp.send(syn(CORP_IP, VM_IP, 1460))
    [back] = vm_frames(network, "blue1")
    assert mss(back) == 1418 and checksums_valid(raw(back))
    corp.send(syn(CORP_IP, VM_IP, 1200))
    [kept] = vm_frames(network, "blue1")
    assert mss(kept) == 1200, "a lower MSS is left as it is"


def test_mss_clamp_follows_the_nodes_setting() -> None:
    def fixed(document: dict) -> None:
        document["nodes"]["gw"]["mss_clamp"] = 1300

    def off(document: dict) -> None:
        document["nodes"]["gw"]["mss_clamp"] = "off"

    for edit, expected in ((fixed, 1300), (off, 1460)):
        network = gateway_lab(edit)
        Corp(network, "blue").send(syn(CORP_IP, VM_IP, 1460))
        [back] = vm_frames(network, "blue1")
        assert mss(back) == expected


def forged(src_pa: bytes, vsid: int, src_mac: str, dst_mac: str, src_ip: str = VM_IP) -> bytes:
    inner = raw(Ether(src=src_mac, dst=dst_mac) / IP(src=src_ip, dst=CORP_IP) / ICMP())
    return encapsulate_ipv4(src_pa, GW_PA, vsid, 0, inner)


def test_forged_nvgre_to_the_gateway_is_dropped_and_counted() -> None:
    network = gateway_lab()
    reserved = bytearray(forged(PA1, 5010, MAC["blue1"], GW_MAC["blue"]))
    reserved[24:27] = (4095).to_bytes(3, "big")  # the VSID field of the GRE key
    cases = {
        # Red's VSID with Blue's VM as source: its record is in 5010, not 5011.
        "SPOOFED_PA": [
            forged(PA1, 5011, MAC["blue1"], GW_MAC["red"]),
            forged(bytes([198, 18, 0, 2]), 5010, MAC["blue1"], GW_MAC["blue"]),  # host2's PA
            forged(PA1, 5010, MAC["blue1"], GW_MAC["blue"], "10.10.10.12"),  # blue2's CA
            forged(PA1, 5010, router_mac(5010).hex(":"), GW_MAC["blue"], "10.10.10.99"),
        ],
        "VSID_RESERVED": [bytes(reserved)],
        "NO_PORT": [forged(PA1, 5010, MAC["blue1"], "02:00:00:00:99:99")],
        "VSID_MISMATCH": [forged(PA1, 5010, MAC["blue1"], GW_MAC["red"])],
        "BROADCAST": [forged(PA1, 5010, MAC["blue1"], "ff:ff:ff:ff:ff:ff")],
    }
    for datagrams in cases.values():
        for datagram in datagrams * 2:  # the second time from the flow cache
            assert network.to_pa(datagram, NOW) is not None
    assert network.delivered() == []
    assert network.drops("gw") == {reason: 2 * len(d) for reason, d in cases.items()}
    assert network.node("gw").counters.domains[BLUE].out_packets == 0


CORP_ASKS = (bytes.fromhex("02c000000002"), bytes([172, 16, 0, 2]))  # its MAC and address


def test_the_gateway_answers_arp_for_its_tap_address_only() -> None:
    network = gateway_lab()
    answer, step = network.resolve("gw", "gw-blue", bytes([172, 16, 0, 1]), NOW, CORP_ASKS)
    assert answer is not None and answer.hex(":") == gw_tap_mac("blue") and not step.drops
    nobody, step = network.resolve("gw", "gw-blue", bytes([172, 16, 0, 9]), NOW, CORP_ASKS)
    assert nobody is None and {r.name for r in step.drops} == {"ARP_UNANSWERED"}
    counters = network.node("gw").counters
    assert (counters.arp_requests, counters.arp_replies) == (2, 1)


def test_an_arp_reply_nobody_asked_for_teaches_nothing() -> None:
    network = gateway_lab()
    corp = Corp(network, "blue")
    unasked = raw(
        Ether(src=corp.mac, dst=gw_tap_mac("blue"))
        / ARP(op=2, hwsrc=corp.mac, psrc=CORP_IP, hwdst=gw_tap_mac("blue"), pdst=TAP_ADDRESS)
    )
    network.send("gw-blue", unasked, NOW)
    lying = raw(Ether(src="02:66:66:66:66:66", dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=corp.mac))
    network.send("gw-blue", lying, NOW)
    assert network.drops("gw") == {"ARP_REFUSED": 2}
    network.send("blue1", echo("blue"), NOW)
    [(tap, request)] = network.delivered()
    assert tap == "gw-blue" and Ether(request)[ARP].op == 1, "still asks: it learned nothing"


def test_what_the_corp_side_sends_that_is_not_for_routing() -> None:
    network = gateway_lab()
    corp = Corp(network, "blue")
    to_vm = IP(src=CORP_IP, dst=VM_IP) / UDP()
    network.send("gw-blue", raw(Ether(src=corp.mac, dst="02:00:00:00:77:77") / to_vm), NOW)
    network.send("gw-blue", raw(Ether(src=corp.mac, dst="ff:ff:ff:ff:ff:ff") / to_vm), NOW)
    network.send("gw-blue", raw(Ether(src=corp.mac, dst=gw_tap_mac("blue")) / IPv6()), NOW)
    network.send("gw-blue", b"\x00" * 10, NOW)
    corp.send(IP(src=CORP_IP, dst="192.0.2.9") / UDP())  # Blue's default is the hosts' way
    corp.send(IP(src=CORP_IP, dst="224.0.0.251") / UDP())
    corp.send(IP(src=CORP_IP, dst="172.16.0.255") / UDP())  # the TAP subnet's broadcast
    corp.send(IP(src=CORP_IP, dst="10.10.10.99") / UDP())  # no record in the VSID
    assert network.delivered() == []
    assert network.drops("gw") == {
        "FOREIGN_MAC": 1,
        "BROADCAST": 3,
        "UNSUPPORTED": 1,
        "INNER_TRUNCATED": 1,
        "NO_ROUTE": 1,
        "NO_RECORD": 1,
    }


def test_the_gateway_answers_echo_on_its_own_addresses_and_nothing_else() -> None:
    network = gateway_lab()
    corp = Corp(network, "blue")
    network.send("blue1", echo("blue", dst=GW_CA, ident=1), NOW)
    [answer] = vm_frames(network, "blue1")
    assert (answer[IP].src, answer[ICMP].type, answer[ICMP].id) == (GW_CA, 0, 1)
    assert bytes(answer[ICMP].payload) == b"ping" and checksums_valid(raw(answer))
    corp.send(IP(src=CORP_IP, dst=TAP_ADDRESS) / ICMP(id=2) / b"hi")
    [answer] = corp.answer()
    assert (answer[IP].src, answer[ICMP].type, answer[ICMP].id) == (TAP_ADDRESS, 0, 2)
    corp.send(IP(src=CORP_IP, dst=GW_CA) / ICMP(id=3))  # its CA, from the corp side
    [answer] = corp.answer()
    assert (answer[IP].src, answer[ICMP].id) == (GW_CA, 3)
    network.send("blue1", from_vm("blue", IP(src=VM_IP, dst=GW_CA) / UDP(dport=53)), NOW)
    corp.send(IP(src=CORP_IP, dst=TAP_ADDRESS) / TCP(dport=22, flags="S"))
    assert network.delivered() == []
    assert network.drops("gw") == {"TO_GATEWAY": 2}
    assert network.node("gw").counters.echo_replies == 3


def test_into_another_vsid_of_the_routing_domain() -> None:
    """Blue's second VSID 5012 (10.10.20.0/24, blue3 on host2): the corp side reaches it
    through the gateway, which encapsulates into 5012 toward blue3's host."""

    def second_vsid(document: dict) -> None:
        document["routing_domains"][0]["virtual_subnets"].append(
            {"vsid": 5012, "prefixes": ["10.10.20.0/24"], "gateway": "10.10.20.1"}
        )
        document["lookup_records"].append(
            {
                "vsid": 5012,
                "ca": "10.10.20.13",
                "mac": "00-00-00-00-00-13",
                "pa": "198.18.0.2",
                "rule": "encap",
                "vm": "blue3",
            }
        )
        document["customer_routes"].append(
            {"rdid": BLUE, "vsid": 5012, "destination": "10.10.20.0/24", "next_hop": "0.0.0.0"}
        )
        document["nodes"]["host2"]["ports"].append(
            {"name": "blue3", "vsid": 5012, "mac": "00-00-00-00-00-13"}
        )

    network = gateway_lab(second_vsid)
    step = Corp(network, "blue").send(IP(src=CORP_IP, dst="10.10.20.13") / ICMP())[0]
    [(src, dst, datagram)] = step.nvgre
    assert (src, dst, parse_nvgre(memoryview(datagram)).vsid) == (
        GW_PA,
        bytes([198, 18, 0, 2]),
        5012,
    )
    [frame] = vm_frames(network, "blue3")
    assert frame.src == router_mac(5012).hex(":") and frame[IP].ttl == 63


def test_waiting_for_a_neighbour_is_bounded() -> None:
    """At most 16 packets wait per neighbour, and at most as many neighbours as may be
    asked for at once (a scan of the TAP's subnet parks nothing more: ``tx_full``)."""
    network = gateway_lab()
    gw = network.node("gw")
    tap = gw.tables.tap_by_name["gw-blue"]
    for ident in range(20):
        network.send("blue1", echo("blue", ident=ident), NOW)
    assert network.drops("gw") == {"TX_FULL": 4}
    tap.neighbors.max_asked = 2
    for host in (3, 4, 5):
        network.send("blue1", echo("blue", dst=f"172.16.0.{host}"), NOW)
    assert network.drops("gw") == {"TX_FULL": 4 + 2}, "172.16.0.4 asked, .5 not parked"
    requests = [Ether(f)[ARP].pdst for tap_name, f in network.delivered() if Ether(f).haslayer(ARP)]
    assert requests == [CORP_IP, "172.16.0.3"]
    network.send("blue1", echo("blue", dst="172.16.0.5"), NOW + 4)
    assert network.drops("gw") == {"TX_FULL": 6}, "older asks forgotten, and their packets"


def test_neighbours_outlive_a_policy_swap_and_domains_count_each_way() -> None:
    network = gateway_lab()
    corp = Corp(network, "blue")
    network.send("blue1", echo("blue"), NOW)
    corp.answer()
    network.swap(network.snapshot)
    assert [vm for vm, _ in network.delivered()] == ["blue1"], "the reply"
    network.send("blue1", echo("blue"), NOW + 1)
    [(tap, frame)] = network.delivered()
    assert tap == "gw-blue" and Ether(frame)[IP].dst == CORP_IP, "no ARP needed again"
    crossed = network.node("gw").counters.domains[BLUE]
    assert type(crossed) is DomainCounters
    size = len(echo("blue"))  # the same frame size each way: Ethernet, IPv4, ICMP, "ping"
    assert [getattr(crossed, name) for name, _ in DomainCounters.TOTALS] == [2, 2 * size, 1, size]
