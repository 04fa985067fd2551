"""The provider link, as an attacker on the provider network sees it (IP-Rewrite).

The daemon frames rewritten packets itself, so its neighbour table decides where a
tenant's traffic goes: it learns only from replies to its own requests, from a
sender that is the frame's own unicast source; frames for other hosts' MACs are
none of its business. Every refusal is counted.
"""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gateway.dataplane import Fabric, link_mac

from ._policies import NOW, fabric
from .test_host import MAC

ATTACKER = "02:00:00:00:66:66"
BLUE2_PA, RED2_PA, BLUE1_PA = "198.18.0.12", "198.18.0.22", "198.18.0.11"


def mac_text(mac: bytes) -> str:
    return mac.hex(":")  # as scapy writes it


HOST1, HOST2 = mac_text(link_mac(0)), mac_text(link_mac(1))  # the fabric's link MACs


def tcp(vm_from: str, vm_to: str, src: str, dst: str) -> bytes:
    return raw(
        Ether(src=MAC[vm_from], dst=MAC[vm_to]) / IP(src=src, dst=dst) / TCP(dport=80) / b"hi"
    )


def reply(claimed_pa: str, sender_mac: str, eth_src: str | None = None, **arp) -> bytes:
    """An ARP reply to host1's PA for blue1, saying ``claimed_pa`` is at ``sender_mac``."""
    fields = {"op": 2, "hwsrc": sender_mac, "psrc": claimed_pa, "hwdst": HOST1, "pdst": BLUE1_PA}
    fields.update(arp)
    return raw(Ether(src=eth_src or sender_mac, dst=HOST1) / ARP(**fields))


def link(lab: Fabric, frame: bytes, now: float = NOW) -> list[bytes]:
    """``frame`` at host1's provider link: what host1 sent on the link in answer."""
    return lab.from_link("host1", frame, now).link


def parked_by_host1() -> Fabric:
    """blue1 sends to blue2: host1 asks for blue2's PA and parks the frame."""
    lab = fabric("ip-rewrite")
    frame = tcp("blue1", "blue2", "10.10.10.11", "10.10.10.12")
    [request] = lab.from_tap("host1", "blue1", frame, NOW).link
    assert Ether(request)[ARP].pdst == BLUE2_PA
    lab.in_flight.clear()  # host2 never hears it: the answers here are the test's
    return lab


def test_a_reply_nobody_asked_for_is_refused() -> None:
    """red2's PA is one host1 sends to, but host1 never asked for it."""
    lab = parked_by_host1()
    assert link(lab, reply(RED2_PA, ATTACKER)) == []
    assert lab.node("host1").neighbors.mac(bytes([198, 18, 0, 22])) is None
    assert lab.drops("host1") == {"ARP_REFUSED": 1}


def test_a_claim_from_a_mac_that_did_not_send_it_releases_nothing() -> None:
    lab = parked_by_host1()
    forged = [
        reply(BLUE2_PA, "ff:ff:ff:ff:ff:ff", eth_src=ATTACKER),  # broadcast sender
        reply(BLUE2_PA, "01:00:5e:00:00:01", eth_src=ATTACKER),  # multicast sender
        reply(BLUE2_PA, "00:00:00:00:00:00", eth_src=ATTACKER),  # zero sender
        reply(BLUE2_PA, "02:00:00:00:00:02", eth_src=ATTACKER),  # not the frame's source
    ]
    sent = [out for frame in forged for out in link(lab, frame)]
    assert sent == [], "a parked frame went to a forged MAC"
    assert lab.node("host1").neighbors.mac(bytes([198, 18, 0, 12])) is None
    assert lab.drops("host1") == {"ARP_REFUSED": 4}
    # The genuine answer, from host2 itself, still releases the frame to host2.
    [released] = link(lab, reply(BLUE2_PA, HOST2))
    assert Ether(released).dst == HOST2 and Ether(released)[IP].dst == BLUE2_PA


def test_a_second_reply_is_not_an_answer() -> None:
    lab = parked_by_host1()
    link(lab, reply(BLUE2_PA, HOST2))
    assert link(lab, reply(BLUE2_PA, ATTACKER)) == []
    assert lab.node("host1").neighbors.mac(bytes([198, 18, 0, 12])) == link_mac(1)
    assert lab.drops("host1") == {"ARP_REFUSED": 1}


def test_an_unasked_claim_is_a_reason_to_ask_again_never_an_answer() -> None:
    """A PA that really moved announces itself (gratuitous ARP); believing that is
    what a spoofer wants. The table asks again instead, and learns the answer."""
    lab = parked_by_host1()
    assert len(link(lab, reply(BLUE2_PA, HOST2))) == 1  # host2 answers: the parked frame left
    frame = tcp("blue1", "blue2", "10.10.10.11", "10.10.10.12")
    announce = raw(
        Ether(src=ATTACKER, dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=2, hwsrc=ATTACKER, psrc=BLUE2_PA, hwdst="ff:ff:ff:ff:ff:ff", pdst=BLUE2_PA)
    )
    assert link(lab, announce) == []
    request, sent = lab.from_tap("host1", "blue1", frame, NOW + 1).link
    assert Ether(request)[ARP].op == 1 and Ether(request)[ARP].pdst == BLUE2_PA
    assert Ether(sent).dst == HOST2, "still the known MAC meanwhile"
    assert lab.drops("host1") == {"ARP_REFUSED": 1}


def test_frames_for_another_hosts_mac_are_dropped_and_counted() -> None:
    """Flooded unknown unicast (or a promiscuous link) shows host1 frames for others:
    neither an ARP request for its PA nor a packet to its PA is taken from them."""
    lab = fabric("ip-rewrite")
    other = "02:00:00:00:77:77"
    request = raw(
        Ether(src=ATTACKER, dst=other)
        / ARP(op=1, hwsrc=ATTACKER, psrc="198.18.0.200", pdst=BLUE1_PA)
    )
    packet = raw(Ether(src=HOST2, dst=other) / IP(src=BLUE2_PA, dst=BLUE1_PA) / TCP(dport=80))
    assert link(lab, request) == [] and link(lab, packet) == []
    assert lab.delivered() == []
    assert lab.drops("host1") == {"FOREIGN_MAC": 2}
    # Addressed to host1's own MAC, the same packet is its business.
    ours = raw(Ether(src=HOST2, dst=HOST1) / IP(src=BLUE2_PA, dst=BLUE1_PA) / TCP(dport=80))
    link(lab, ours)
    assert [vm for vm, _ in lab.delivered()] == ["blue1"]


def test_a_request_for_our_pa_from_a_forged_sender_is_not_answered() -> None:
    """Answering a sender MAC that did not send the request would aim the reply
    elsewhere (a broadcast sender makes it a broadcast)."""
    lab = fabric("ip-rewrite")
    request = raw(
        Ether(src=ATTACKER, dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc="ff:ff:ff:ff:ff:ff", psrc="198.18.0.200", pdst=BLUE1_PA)
    )
    assert link(lab, request) == []
    assert lab.drops("host1") == {"ARP_REFUSED": 1}
