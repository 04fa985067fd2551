"""Internet egress through the gateway's NAT on the one fabric: tenant VMs on their
hosts, the gateway with its external TAP gw-ext, and the internet router behind it
(played by the tests, ``_gateway_lab.Internet``). Frames are built and read with
scapy, so what the gateway emits is also checked to be well-formed."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.dataplane import GatewayNode, tap_mac
from gateway.wire import parse_nvgre

from ._gateway_lab import (
    BLUE,
    EXT_ADDRESSES,
    EXT_TAP,
    GW_PA,
    RED,
    ROUTER_MAC,
    SERVER_IP,
    VSID,
    Internet,
    gateway_snapshot,
    nat_document,
    nat_lab,
)
from ._policies import NOW
from .test_gateway_fabric import VM, VM_IP, from_vm, vm_frames
from .test_host import PA1, checksums_valid

SPORT = 40000


def l4(protocol: str, sport: int = SPORT):  # type: ignore[no-untyped-def]
    """The tenant's datagram of ``protocol`` from ``sport``: a UDP datagram, a TCP
    SYN, or an echo request (``sport`` its identifier)."""
    if protocol == "udp":
        return UDP(sport=sport, dport=7) / b"hello"
    if protocol == "tcp":
        return TCP(sport=sport, dport=80, flags="S", seq=1000)
    return ICMP(type=8, id=sport, seq=1) / b"ping"


def answer(frame: Ether):  # type: ignore[no-untyped-def]
    """The server's answer to what the internet received: addresses and ports swapped
    (an echo reply, a SYN-ACK, a UDP echo)."""
    ip = frame[IP]
    if frame.haslayer(UDP):
        reply = UDP(sport=ip[UDP].dport, dport=ip[UDP].sport) / bytes(ip[UDP].payload)
    elif frame.haslayer(TCP):
        seq = ip[TCP].seq + 1
        reply = TCP(sport=ip[TCP].dport, dport=ip[TCP].sport, flags="SA", seq=5000, ack=seq)
    else:
        reply = ICMP(type=0, id=ip[ICMP].id, seq=ip[ICMP].seq) / bytes(ip[ICMP].payload)
    return IP(src=ip.dst, dst=ip.src) / reply


def source(frame: Ether) -> tuple[str, int]:
    """The (address, port or echo identifier) a frame came from."""
    ip = frame[IP]
    port = ip[ICMP].id if frame.haslayer(ICMP) else ip.payload.sport
    return ip.src, port


def gw(network) -> GatewayNode:  # type: ignore[no-untyped-def]
    node = network.node("gw")
    assert isinstance(node, GatewayNode)
    return node


@pytest.mark.parametrize("protocol", ["udp", "tcp", "icmp"])
def test_blue_and_red_with_one_address_and_port_each_get_their_own_external_port(
    protocol: str,
) -> None:
    network = nat_lab()
    internet = Internet(network)
    for tenant in ("blue", "red"):
        steps = network.send(
            VM[tenant], from_vm(tenant, IP(src=VM_IP, dst=SERVER_IP) / l4(protocol)), NOW
        )
        assert [step.node for step in steps] == ["host1", "gw"]
    blue, red = internet.receive()
    for frame in (blue, red):
        assert frame[IP].dst == SERVER_IP and frame[IP].src in EXT_ADDRESSES
        assert (frame.src, frame.dst) == (tap_mac(EXT_TAP).hex(":"), ROUTER_MAC)
        assert frame[IP].ttl == 62, "counted down by the host and the gateway"
        assert checksums_valid(raw(frame))
    assert source(blue) != source(red), "one external endpoint per tenant"
    # The answers come back, each to its own tenant's VM, in NVGRE with its VSID.
    for tenant, frame in (("red", red), ("blue", blue)):
        steps = internet.send(answer(frame))
        assert [step.node for step in steps] == ["gw", "host1"]
        [(src_pa, dst_pa, datagram)] = steps[0].nvgre
        assert (src_pa, dst_pa) == (GW_PA, PA1)
        assert parse_nvgre(memoryview(datagram)).vsid == VSID[tenant]
        [reply] = vm_frames(network, VM[tenant])
        assert (reply[IP].src, reply[IP].dst) == (SERVER_IP, VM_IP)
        l4_reply = reply[IP].payload
        if protocol == "icmp":
            assert (l4_reply.type, l4_reply.id) == (0, SPORT)
        else:
            assert (l4_reply.sport, l4_reply.dport) == ({"udp": 7, "tcp": 80}[protocol], SPORT)
        assert checksums_valid(raw(reply))
        assert vm_frames(network, VM["blue" if tenant == "red" else "red"]) == []
    assert network.drops("gw") == {} and network.drops("host1") == {}
    node = gw(network)
    assert node.napt is not None and node.napt.count == 2
    assert (node.external_counters.out_packets, node.external_counters.in_packets) == (2, 2)


def test_a_tenant_at_its_limit_gets_its_own_drop_while_the_other_still_opens() -> None:
    network = nat_lab(blue={"max_sessions": 1})
    internet = Internet(network)

    def flow(tenant: str, sport: int) -> None:
        network.send(
            VM[tenant], from_vm(tenant, IP(src=VM_IP, dst=SERVER_IP) / l4("udp", sport)), NOW
        )

    flow("blue", 1111)
    flow("blue", 2222)  # a second session: over Blue's limit
    assert network.drops("gw") == {"NAPT_TENANT_LIMIT": 1}
    flow("red", 1111)
    flow("red", 2222)
    sent = internet.receive()
    assert len(sent) == 3, "Blue's first flow and both of Red's"
    assert network.drops("gw") == {"NAPT_TENANT_LIMIT": 1}
    napt = gw(network).napt
    assert napt is not None
    assert (napt.tenants[BLUE].sessions, napt.tenants[RED].sessions) == (1, 2)


def test_arp_for_the_nats_addresses_is_answered_on_the_external_tap_and_nothing_else() -> None:
    network = nat_lab()
    for target in (*EXT_ADDRESSES, "203.0.113.12", "203.0.113.1"):
        request = Ether(src=ROUTER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc=ROUTER_MAC, psrc="203.0.113.1", pdst=target
        )
        network.send(EXT_TAP, raw(request), NOW)
    replies = network.delivered()
    assert [tap for tap, _ in replies] == [EXT_TAP, EXT_TAP]
    for (_, frame), address in zip(replies, EXT_ADDRESSES, strict=True):
        arp = Ether(frame)[ARP]
        assert (arp.op, arp.psrc, arp.hwsrc) == (2, address, tap_mac(EXT_TAP).hex(":"))
        assert (arp.pdst, arp.hwdst) == ("203.0.113.1", ROUTER_MAC)
    # Another host's address, and the router's own: not the gateway's to answer.
    assert network.drops("gw") == {"ARP_UNANSWERED": 2}


def test_from_the_internet_only_replies_to_sessions_get_in() -> None:
    network = nat_lab()
    internet = Internet(network)
    unsolicited = IP(src=SERVER_IP, dst=EXT_ADDRESSES[0]) / UDP(sport=7, dport=40000)
    [step] = internet.send(unsolicited)
    assert step.nvgre == [] and network.drops("gw") == {"NAPT_NO_SESSION": 1}
    elsewhere = IP(src=SERVER_IP, dst="203.0.113.99") / UDP(sport=7, dport=40000)
    [step] = internet.send(elsewhere)
    assert step.nvgre == [] and network.drops("gw")["NO_ROUTE"] == 1


def test_a_reload_keeps_the_nat_sessions() -> None:
    network = nat_lab()
    internet = Internet(network)
    network.send(VM["blue"], from_vm("blue", IP(src=VM_IP, dst=SERVER_IP) / l4("udp")), NOW)
    [sent] = internet.receive()
    napt = gw(network).napt

    def reload(document: dict) -> None:
        nat_document(document, red={"max_sessions": 5, "log": True})
        document["nodes"]["gw"]["nat"]["timeouts"] = {"udp_unreplied_s": 60}

    network.swap(gateway_snapshot(reload))
    assert gw(network).napt is napt, "the same table, with its sessions"
    assert napt is not None and napt.tenants[RED].max_sessions == 5 and napt.tenants[RED].log
    steps = internet.send(answer(sent))
    assert [step.node for step in steps] == ["gw", "host1"]
    [reply] = vm_frames(network, "blue1")
    assert reply[UDP].dport == SPORT
    assert network.drops("gw") == {}


def test_new_external_addresses_start_a_new_table() -> None:
    network = nat_lab()
    napt = gw(network).napt

    def moved(document: dict) -> None:
        nat_document(document)
        document["nodes"]["gw"]["nat"]["addresses"] = ["203.0.113.20/24"]

    network.swap(gateway_snapshot(moved))
    assert gw(network).napt is not napt
    assert gw(network).napt.pool.addresses == (bytes([203, 0, 113, 20]),)  # type: ignore[union-attr]


def test_only_tenants_that_log_write_translation_records() -> None:
    network = nat_lab(blue={"log": True})
    for tenant in ("blue", "red"):
        network.send(VM[tenant], from_vm(tenant, IP(src=VM_IP, dst=SERVER_IP) / l4("udp")), NOW)
    napt = gw(network).napt
    assert napt is not None
    [record] = napt.take_log()
    assert (record.event, record.rdid, record.ca_port) == ("open", BLUE, SPORT)


def test_a_packet_whose_ttl_runs_out_at_the_gateway_opens_no_session() -> None:
    """The router's duties come first: time-exceeded from the gateway's CA, quoting the
    packet as the VM sent it, and nothing through the NAT."""
    network = nat_lab()
    packet = IP(src=VM_IP, dst=SERVER_IP, ttl=2) / l4("udp")  # the host takes one
    network.send(VM["blue"], from_vm("blue", packet), NOW)
    [error] = vm_frames(network, "blue1")
    assert (error[IP].src, error[ICMP].type) == ("10.10.10.254", 11)
    assert error[ICMP].payload.src == VM_IP, "the quote is untranslated"
    napt = gw(network).napt
    assert napt is not None and napt.count == 0
    assert network.delivered() == [] and network.drops("gw") == {"TTL_EXPIRED": 1}
