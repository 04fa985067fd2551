"""Port forwards of the gateway's NAT on the one fabric: what the internet sends to an
external address:port reaches the tenant VM the forward names, in NVGRE with its
VSID, and the VM's replies leave translated from that address:port; a reload adds
and withdraws forwards by delta. (Fabric and internet router: ``_gateway_lab``.)"""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from gateway.dataplane import router_mac
from gateway.wire import IPPROTO_TCP, parse_nvgre

from ._gateway_lab import (
    EXT_ADDRESSES,
    GW_PA,
    SERVER_IP,
    VSID,
    Internet,
    gateway_lab,
    gateway_snapshot,
    nat_document,
)
from ._policies import NOW
from .test_gateway_fabric import VM, VM_IP, from_vm, vm_frames
from .test_gateway_napt import gw
from .test_host import PA1, checksums_valid

PORT = {"blue": 8080, "red": 8081}  # each tenant's service on 203.0.113.10
MAC = {"blue2": "00:00:00:00:00:12"}  # Blue's VM on host2, 10.10.10.12
GW_ROUTER = {"blue": router_mac(VSID["blue"]).hex(":")}  # what blue2 resolved its gateway to


def forwards_document(document: dict, tenants: tuple[str, ...] = ("blue", "red")) -> None:
    """The NAT lab with sessions given ports from 10000 up, and a TCP forward of
    203.0.113.10:PORT[tenant] to the tenant's VM's port 80."""
    nat_document(document)
    document["nodes"]["gw"]["nat"]["dynamic_ports"] = [10000, 65535]
    for tenant in tenants:
        document["nodes"]["gw"]["routing_domains"][tenant]["port_forwards"] = [
            {
                "protocol": "tcp",
                "address": EXT_ADDRESSES[0],
                "port": PORT[tenant],
                "ca": VM_IP,
                "ca_port": 80,
            }
        ]


def syn(dport: int, sport: int = 50000):  # type: ignore[no-untyped-def]
    return IP(src=SERVER_IP, dst=EXT_ADDRESSES[0]) / TCP(
        sport=sport, dport=dport, flags="S", seq=100
    )


def test_an_inbound_syn_reaches_the_forwarded_vm_and_its_reply_leaves_translated() -> None:
    network = gateway_lab(forwards_document)
    internet = Internet(network)
    for tenant in ("blue", "red"):
        steps = internet.send(syn(PORT[tenant]))
        assert [step.node for step in steps] == ["gw", "host1"]
        [(src_pa, dst_pa, datagram)] = steps[0].nvgre
        assert (src_pa, dst_pa) == (GW_PA, PA1)
        assert parse_nvgre(memoryview(datagram)).vsid == VSID[tenant]
        [arrived] = vm_frames(network, VM[tenant])
        assert (arrived[IP].src, arrived[IP].dst) == (SERVER_IP, VM_IP)
        assert (arrived[TCP].sport, arrived[TCP].dport, arrived[TCP].flags) == (50000, 80, "S")
        assert checksums_valid(raw(arrived))
        other = "red" if tenant == "blue" else "blue"
        assert vm_frames(network, VM[other]) == []
        # The VM's SYN-ACK goes back out from the forwarded address and port.
        answer = IP(src=VM_IP, dst=SERVER_IP) / TCP(
            sport=80, dport=50000, flags="SA", seq=9000, ack=101
        )
        network.send(VM[tenant], from_vm(tenant, answer), NOW)
        [sent] = internet.receive()
        assert (sent[IP].src, sent[TCP].sport) == (EXT_ADDRESSES[0], PORT[tenant])
        assert (sent[IP].dst, sent[TCP].dport, sent[TCP].flags) == (SERVER_IP, 50000, "SA")
        assert checksums_valid(raw(sent))
    assert network.drops("gw") == {} and network.drops("host1") == {}


def test_a_port_not_forwarded_gets_no_session() -> None:
    network = gateway_lab(forwards_document)
    internet = Internet(network)
    [step] = internet.send(syn(8082))
    assert step.nvgre == [] and network.drops("gw") == {"NAPT_NO_SESSION": 1}


def test_a_reload_withdraws_and_adds_forwards_by_delta() -> None:
    network = gateway_lab(forwards_document)
    internet = Internet(network)
    napt = gw(network).napt
    assert napt is not None
    blue = napt.forwards[IPPROTO_TCP, bytes([203, 0, 113, 10]), PORT["blue"]]
    network.swap(gateway_snapshot(lambda document: forwards_document(document, ("blue",))))
    assert gw(network).napt is napt
    assert napt.forwards[IPPROTO_TCP, bytes([203, 0, 113, 10]), PORT["blue"]] is blue, "kept"
    [step] = internet.send(syn(PORT["red"]))
    assert step.nvgre == [] and network.drops("gw") == {"NAPT_NO_SESSION": 1}
    network.swap(gateway_snapshot(forwards_document))
    steps = internet.send(syn(PORT["red"]))
    assert [step.node for step in steps] == ["gw", "host1"]
    assert len(vm_frames(network, VM["red"])) == 1


def test_sessions_take_ports_from_the_configured_dynamic_range() -> None:
    network = gateway_lab(forwards_document)
    internet = Internet(network)
    out = IP(src=VM_IP, dst=SERVER_IP) / TCP(sport=40000, dport=80, flags="S", seq=1)
    network.send(VM["blue"], from_vm("blue", out), NOW)
    [sent] = internet.receive()
    assert 10000 <= sent[TCP].sport <= 65535


def test_hairpin_a_tenant_reaches_its_own_forward_through_the_next_hop() -> None:
    """blue2 opens 203.0.113.10:8080, Blue's own forward to blue1: the gateway
    translates it like any packet to the internet and sends it to the router, which
    routes it back (as a Linux router does, out of the link it came in on); it then
    arrives as from the internet, from blue2's external address:port, and blue1's
    answer takes the same way back to blue2 (RFC 5382 REQ-8: hairpinning, the source
    seen being the external endpoint)."""
    network = gateway_lab(forwards_document)
    internet = Internet(network)
    hello = IP(src="10.10.10.12", dst=EXT_ADDRESSES[0]) / TCP(
        sport=33000, dport=PORT["blue"], flags="S", seq=7
    )
    network.send("blue2", raw(Ether(src=MAC["blue2"], dst=GW_ROUTER["blue"]) / hello), NOW)
    [out] = internet.receive()
    outside = (out[IP].src, out[TCP].sport)
    assert outside[0] in EXT_ADDRESSES and outside[1] >= 10000
    internet.send(out[IP])  # routed back by the router
    [arrived] = vm_frames(network, "blue1")
    assert (arrived[IP].src, arrived[TCP].sport) == outside
    assert (arrived[IP].dst, arrived[TCP].dport) == (VM_IP, 80)
    back = IP(src=VM_IP, dst=outside[0]) / TCP(
        sport=80, dport=outside[1], flags="SA", seq=99, ack=8
    )
    network.send("blue1", from_vm("blue", back), NOW)
    [reflected] = internet.receive()
    assert (reflected[IP].src, reflected[TCP].sport) == (EXT_ADDRESSES[0], PORT["blue"])
    internet.send(reflected[IP])
    [answer] = vm_frames(network, "blue2")
    assert (answer[IP].src, answer[TCP].sport) == (EXT_ADDRESSES[0], PORT["blue"])
    assert (answer[IP].dst, answer[TCP].dport, answer[TCP].flags) == ("10.10.10.12", 33000, "SA")
    assert checksums_valid(raw(answer))
    assert network.drops("gw") == {}


def test_a_forward_moved_to_another_vm_while_a_session_runs_through_it() -> None:
    """Blue's :8080 moves from blue1 to blue2 while the internet holds a session to
    blue1 through it: the session runs on to blue1, new connections reach blue2."""
    network = gateway_lab(forwards_document)
    internet = Internet(network)
    internet.send(syn(PORT["blue"], sport=50000))
    assert len(vm_frames(network, "blue1")) == 1

    def moved(document: dict) -> None:
        forwards_document(document)
        forward = document["nodes"]["gw"]["routing_domains"]["blue"]["port_forwards"][0]
        forward["ca"] = "10.10.10.12"

    network.swap(gateway_snapshot(moved))
    internet.send(syn(PORT["blue"], sport=50000))  # the old session's retransmission
    [again] = vm_frames(network, "blue1")
    assert again[TCP].dport == 80
    steps = internet.send(syn(PORT["blue"], sport=50001))  # a new connection
    assert [step.node for step in steps] == ["gw", "host2"]
    [new] = vm_frames(network, "blue2")
    assert (new[IP].dst, new[TCP].sport) == ("10.10.10.12", 50001)
