"""The fuzzer's NAT rules (``gateway_oracle.py``, ``gateway_nat.py``), proven: the
internet's seeds reach every verdict of the NAT, and each rule reports a bug planted
in the gateway's NAT (by monkeypatching one function) as the kind of finding it is.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest

from gateway.dataplane import GatewayTables, gateway_routing, gateway_tap
from gateway.dataplane.gateway_tables import ExternalTap
from gateway.dataplane.napt import AddressPool, Napt, napt_inbound, napt_outbound, translate
from gateway.errors import Drop
from gateway.wire import (
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    build_icmp_unreachable,
    build_ipv4,
    build_udp_v4,
    internet_checksum,
)

from .engine import Bench, Planes, run_chunk
from .gateway_frames import TAP
from .gateway_nat import FAR
from .test_fuzz import _bench, _target

NAT_SEEDS = "gateway/gw"  # the shipped NAT: Blue and Red both route 0.0.0.0/0 to it
NAT_ISOLATED = "private-cloud/gw"  # a NAT only Blue routes to


def _plant_nat(
    monkeypatch: pytest.MonkeyPatch,
    owner: object,
    name: str,
    method: object,
    target: str = NAT_SEEDS,
    inputs: int = 2000,
) -> dict[str, str]:
    """A short campaign on a gateway with ``owner.name`` planted: kind -> details."""
    monkeypatch.setattr(owner, name, method)
    found: dict[str, str] = {}
    for f in run_chunk(Bench(_target(target)), "planted", 0, inputs).findings:
        found[f["kind"]] = found.get(f["kind"], "") + f["detail"] + "\n"
    return found


def test_the_internet_seeds_reach_every_nat_verdict() -> None:
    """The external TAP's seeds, unmutated: replies and errors about each session the
    tenants opened come back into their VSIDs, forged ones and the expired session's
    reply are refused, the NAT's addresses are answered; none is a finding."""
    for name in (NAT_SEEDS, NAT_ISOLATED):
        bench = _bench(name)
        planes = Planes(bench)
        external = len(bench.view.gateway.taps)
        seen: dict[str, set[str]] = {}
        for seed in bench.seeds[TAP]:
            if seed.port == external:
                found, outcomes = planes.judge(TAP, seed.port, seed.data, 0)
                assert not found, (seed.what, found)
                seen.setdefault(seed.what, set()).add(outcomes[0].label())
        for what in ("reply", "port unreachable", "fragmentation needed", "time exceeded"):
            assert "out:provider" in seen[what], (name, what, seen[what])
        assert "drop:napt_no_session" in seen["reply"], "the long idle session's"
        assert seen["reply to another port"] == {"drop:napt_no_session"}
        assert seen["ARP for a NAT address"] == {"out:port"}
        assert {"drop:too_big", "out:provider"} <= seen["oversized reply"]
    assert seen["SYN to a port forward"] == {"out:provider"}


def test_a_domain_without_nat_reaching_the_internet_is_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every destination of every routing domain routed to the NAT: Red, which has
    no route to it, reaches the internet."""
    found = _plant_nat(
        monkeypatch,
        GatewayTables,
        "_resolve",
        lambda self, domain, dst: self.to_nat,
        NAT_ISOLATED,
    )
    assert "from a routing domain with no route to nat" in found["isolation"]


def test_an_untranslated_or_misported_packet_to_the_internet_is_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The NAT's verdict taken but the packet left as the tenant sent it; then sent
    from a port the session does not hold."""
    translate_out = gateway_routing.napt_outbound

    def untranslated(napt, tenant, packet, now, at=0):  # type: ignore[no-untyped-def]
        packet = packet[at:]  # the IPv4 header on (the router passes the frame)
        before = bytes(packet)
        verdict = translate_out(napt, tenant, packet, now)
        packet[: len(before)] = before
        return verdict

    found = _plant_nat(monkeypatch, gateway_routing, "napt_outbound", untranslated)
    assert "IPv4 not from a NAT address (untranslated)" in found["output"]
    monkeypatch.undo()

    def misported(napt, tenant, packet, now, at=0):  # type: ignore[no-untyped-def]
        packet = packet[at:]  # the IPv4 header on (the router passes the frame)
        verdict = translate_out(napt, tenant, packet, now)
        if packet[9] in (IPPROTO_TCP, IPPROTO_UDP):
            at = (packet[0] & 0x0F) * 4
            packet[at + 1] ^= 1
        return verdict

    found = _plant_nat(monkeypatch, gateway_routing, "napt_outbound", misported)
    assert "not from the session's address and port" in found["output"]


def test_a_translation_that_breaks_a_checksum_is_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Checksums not updated at all; then the transport's (and ICMP's) alone."""
    found = _plant_nat(monkeypatch, translate, "apply_delta", lambda checksum, delta: checksum)
    assert "an IPv4 header checksum that held on input is broken by the NAT" in found["output"]
    monkeypatch.undo()
    rewrite = translate._rewrite

    def ip_only(packet, ihl, protocol, addr_at, port_at, addr, port, ip_delta, l4_delta):  # type: ignore[no-untyped-def]
        rewrite(packet, ihl, protocol, addr_at, port_at, addr, port, ip_delta, 0)

    found = _plant_nat(monkeypatch, translate, "_rewrite", ip_only)
    assert "a TCP/UDP checksum that held on input is broken by the NAT" in found["output"]
    assert "an ICMP checksum that held on input is broken by the NAT" in found["output"]


def test_a_translation_that_changes_other_fields_is_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A NAT that also rewrites the IP identification (its header checksum made
    right): only addresses, ports, TTL, MSS and checksums may change."""
    translate_out = gateway_routing.napt_outbound

    def renumbers(napt, tenant, packet, now, at=0):  # type: ignore[no-untyped-def]
        packet = packet[at:]  # the IPv4 header on (the router passes the frame)
        verdict = translate_out(napt, tenant, packet, now)
        ihl = (packet[0] & 0x0F) * 4
        packet[4:6] = b"\xbe\xef"
        packet[10:12] = b"\0\0"
        packet[10:12] = internet_checksum(packet[:ihl]).to_bytes(2, "big")
        return verdict

    found = _plant_nat(monkeypatch, gateway_routing, "napt_outbound", renumbers)
    assert "the NAT changed byte 4, not an address" in found["output"]


def test_an_internet_packet_in_the_wrong_domain_is_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inbound translation that routes Blue's replies in Red's routing domain (both
    hold 10.10.10.11); one that lets in what no session holds, to some CA; one that
    delivers to another address than the session's CA; one that delivers into a corp
    network."""
    translate_in = gateway_tap.napt_inbound

    def swapped(napt, packet, now, at=0):  # type: ignore[no-untyped-def]
        packet = packet[at:]  # the IPv4 header on (the TAP passes the frame)
        verdict = translate_in(napt, packet, now)
        if isinstance(verdict, Drop):
            return verdict
        other = next(t for rdid, t in napt.tenants.items() if rdid != verdict.tenant.rdid)
        return SimpleNamespace(tenant=other)

    found = _plant_nat(monkeypatch, gateway_tap, "napt_inbound", swapped)
    assert "into another routing domain's VSID" in found["isolation"]
    monkeypatch.undo()

    def open_door(napt, packet, now, at=0):  # type: ignore[no-untyped-def]
        packet = packet[at:]  # the IPv4 header on (the TAP passes the frame)
        verdict = translate_in(napt, packet, now)
        if verdict is Drop.NAPT_NO_SESSION and napt.by_in:
            session = next(iter(napt.by_in.values()))
            packet[16:20] = session.mapping.ca
            return session
        return verdict

    found = _plant_nat(monkeypatch, gateway_tap, "napt_inbound", open_door)
    assert "from the internet, for no session" in found["isolation"]
    monkeypatch.undo()

    def neighbour(napt, packet, now, at=0):  # type: ignore[no-untyped-def]
        packet = packet[at:]  # the IPv4 header on (the TAP passes the frame)
        verdict = translate_in(napt, packet, now)
        if not isinstance(verdict, Drop):
            packet[19] ^= 7  # 10.10.10.11 (the sessions' VM) -> .12, another VM
        return verdict

    found = _plant_nat(monkeypatch, gateway_tap, "napt_inbound", neighbour)
    assert "not to the session's CA in its routing domain" in found["isolation"]
    monkeypatch.undo()

    def to_corp(napt, packet, now, at=0):  # type: ignore[no-untyped-def]
        packet = packet[at:]  # the IPv4 header on (the TAP passes the frame)
        verdict = translate_in(napt, packet, now)
        if not isinstance(verdict, Drop):
            packet[16:20] = bytes([172, 16, 0, 2])  # the corp server behind gw-blue
        return verdict

    found = _plant_nat(monkeypatch, gateway_tap, "napt_inbound", to_corp)
    assert "from the internet into a corp network" in found["isolation"]


def test_the_internet_answered_or_echoed_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The external TAP answering ARP for an address not the NAT's; an internet
    packet sent straight back out."""
    init = ExternalTap.__init__

    def answers_more(self, nat):  # type: ignore[no-untyped-def]
        init(self, nat)
        self.answers = self.answers | {FAR}

    found = _plant_nat(monkeypatch, ExternalTap, "__init__", answers_more)
    assert "ARP not about one of the NAT's addresses" in found["output"]
    monkeypatch.undo()

    def echo(node, tap, frame):  # type: ignore[no-untyped-def]
        node.out.to_tap(tap, frame)

    found = _plant_nat(monkeypatch, gateway_tap, "_from_internet", echo)
    assert "an internet packet sent back to it" in found["isolation"]


def test_a_packet_over_the_external_mtu_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """An external TAP that believes in jumbo frames: oversized corp packets without
    DF leave whole, over the TAP's 1500."""
    init = ExternalTap.__init__

    def jumbo(self, nat):  # type: ignore[no-untyped-def]
        init(self, nat)
        self.mtu = 9000

    found = _plant_nat(monkeypatch, ExternalTap, "__init__", jumbo, inputs=4000)
    assert "over the external TAP's MTU" in found["output"]


def test_nat_state_that_changes_a_verdict_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ports drawn from a counter outside the NAT's table: every feed of an input
    opens its session on another port, which the second feed and the cold data plane
    see (the table itself is the same for every feed)."""
    ports = itertools.count(2000)

    def drifting(self, rdid, ca, protocol):  # type: ignore[no-untyped-def]
        return self.addresses[0], next(ports)

    found = _plant_nat(monkeypatch, AddressPool, "allocate", drifting)
    assert {"twice", "cache"} <= set(found)


def test_an_error_about_an_expired_session_is_refused() -> None:
    """Found by the internet's seeds (the long idle session's fragmentation-needed
    reached its VM while its reply was refused): RFC 5508 sec. 4.2 lets in an error
    only for a mapping that exists, and a session past its timeout is gone for a
    reply (Linux: an expired conntrack entry is not found)."""
    ext, ca = bytes([203, 0, 113, 10]), bytes([10, 10, 10, 11])
    napt = Napt([ext], seed=1)
    udp = build_udp_v4(ca, FAR, 40000, 7, b"x" * 8)
    sent = bytearray(build_ipv4(ca, FAR, IPPROTO_UDP, len(udp)) + udp)
    session = napt_outbound(napt, napt.tenant("blue"), memoryview(sent), 0.0)
    assert not isinstance(session, Drop)
    icmp = build_icmp_unreachable(3, bytes(sent))  # port unreachable, quoting what left
    error = bytearray(build_ipv4(FAR, ext, IPPROTO_ICMP, len(icmp)) + icmp)
    later = session.expires + 1.0
    assert napt_inbound(napt, memoryview(error), later) is Drop.NAPT_NO_SESSION
