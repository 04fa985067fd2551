"""Static port forwards: what comes in to a published external port opens a session
to the tenant's CA and port, its replies leave from the published port, and the
forward's mapping is the endpoint's for what it opens itself."""

from __future__ import annotations

import pytest
from scapy.all import IP, TCP, UDP

from gateway.dataplane.napt import Session
from gateway.dataplane.napt.states import TCP_ESTABLISHED, TCP_SYN_RECV, TCP_SYN_SENT
from gateway.errors import Drop

from ._packets import CA, EXT, EXT2, REMOTE, SHORT, a, into, out, scapy_valid, table, tcp, udp

T0 = 20.0
CLIENT = "198.51.100.7"


def _published():
    napt, blue, red = table()
    napt.forward(6, a(EXT), 80, blue, a(CA), 8080)
    return napt, blue, red


def test_inbound_syn_opens_a_session_and_replies_leave_from_the_published_port() -> None:
    napt, blue, _ = _published()
    syn = tcp(CLIENT, EXT, 5555, 80, "S", b"")
    session = into(napt, syn, T0)
    assert isinstance(session, Session) and session.tenant is blue and session.opener == 1
    got = IP(bytes(syn))
    assert (got.dst, got[TCP].dport) == (CA, 8080) and scapy_valid(syn)
    assert session.state == TCP_SYN_SENT
    synack = tcp(CA, CLIENT, 8080, 5555, "SA")
    assert out(napt, blue, synack, T0 + 1) is session and session.state == TCP_SYN_RECV
    sent = IP(bytes(synack))
    assert (sent.src, sent[TCP].sport) == (EXT, 80) and scapy_valid(synack)
    assert into(napt, tcp(CLIENT, EXT, 5555, 80, "A"), T0 + 2) is session
    assert session.state == TCP_ESTABLISHED


def test_only_a_syn_opens_through_a_tcp_forward_and_other_ports_stay_shut() -> None:
    napt, _, _ = _published()
    assert into(napt, tcp(CLIENT, EXT, 5555, 80, "A"), T0) is Drop.NAPT_NO_SESSION
    assert into(napt, tcp(CLIENT, EXT, 5555, 81, "S"), T0) is Drop.NAPT_NO_SESSION
    assert into(napt, udp(CLIENT, EXT, 5555, 80), T0) is Drop.NAPT_NO_SESSION


def test_udp_forward_and_each_client_its_own_session() -> None:
    napt, _, red = table()
    napt.forward(17, a(EXT), 53, red, a(CA), 5353)
    first = into(napt, udp(CLIENT, EXT, 1000, 53), T0)
    second = into(napt, udp(REMOTE, EXT, 1000, 53), T0)
    assert isinstance(first, Session) and isinstance(second, Session) and first is not second
    assert first.tenant is second.tenant is red and red.sessions == 2
    answer = udp(CA, CLIENT, 5353, 1000)
    assert out(napt, red, answer, T0 + 1) is first
    assert IP(bytes(answer))[UDP].sport == 53
    assert napt.expire(T0 + SHORT.udp_stream_s + 1) == 2 and 53 in _reserved(napt)


def _reserved(napt) -> set[int]:
    allocator = napt.pool.allocators[a(EXT), 17]
    return {port for port in range(1, 65536) if allocator.in_use(port)}


def test_what_the_forwarded_endpoint_opens_leaves_from_the_published_port() -> None:
    napt, blue, _ = _published()
    syn = tcp(CA, REMOTE, 8080, 443, "S")
    session = out(napt, blue, syn, T0)
    assert isinstance(session, Session) and IP(bytes(syn))[TCP].sport == 80


def test_forward_limits_apply() -> None:
    napt, blue, _ = _published()
    napt.tenant(blue.rdid, max_sessions=1, log=True)
    assert isinstance(into(napt, tcp(CLIENT, EXT, 1, 80, "S"), T0), Session)
    assert into(napt, tcp(CLIENT, EXT, 2, 80, "S"), T0) is Drop.NAPT_TENANT_LIMIT


def test_unforward_refuses_new_clients_keeps_open_sessions_then_frees_the_port() -> None:
    napt, blue, _ = _published()
    session = into(napt, tcp(CLIENT, EXT, 5555, 80, "S"), T0)
    napt.unforward(6, a(EXT), 80)
    assert into(napt, tcp(REMOTE, EXT, 5555, 80, "S"), T0) is Drop.NAPT_NO_SESSION
    assert into(napt, tcp(CLIENT, EXT, 5555, 80, "S"), T0 + 1) is session
    allocator = napt.pool.allocators[a(EXT), 6]
    assert allocator.in_use(80)
    napt.forward(6, a(EXT), 80, blue, a(CA), 8080)  # taken back while still in use
    napt.unforward(6, a(EXT), 80)
    napt.expire(T0 + 1 + SHORT.tcp_syn_sent_s)
    assert not allocator.in_use(80) and not napt.mappings


def test_forward_conflicts_are_refused() -> None:
    napt, blue, red = _published()
    with pytest.raises(ValueError, match="forwarded already"):
        napt.forward(6, a(EXT), 80, red, a(CA), 9090)
    with pytest.raises(ValueError, match="forwarded already"):
        napt.forward(6, a(EXT), 81, blue, a(CA), 8080)
    with pytest.raises(ValueError, match="not an external address"):
        napt.forward(6, a(EXT2), 80, blue, a(CA), 8080)
    with pytest.raises(ValueError, match="TCP or UDP"):
        napt.forward(1, a(EXT), 80, blue, a(CA), 8080)
    session = out(napt, blue, udp(CA, REMOTE, 7000, 53), T0)
    port = session.mapping.ext_port
    with pytest.raises(ValueError, match="in use"):
        napt.forward(17, a(EXT), port, red, a(CA), 53)
    napt.forward(6, a(EXT), 81, red, a(CA), 8080)  # the same CA and port in another tenant


def test_a_forward_moved_to_another_endpoint_while_its_session_runs() -> None:
    """An external port withdrawn from Blue's CA:8080 and forwarded to Red's CA:9090
    while a client's session to Blue runs: that session runs on to Blue, a new client
    reaches Red, the port stays held when Blue's session ends, and is free once Red's
    forward is withdrawn with nothing open."""
    napt, blue, red = _published()
    old = into(napt, tcp(CLIENT, EXT, 5555, 80, "S"), T0)
    assert isinstance(old, Session) and old.tenant is blue
    napt.set_forwards({(6, a(EXT), 80): (red, a(CA), 9090)})
    assert into(napt, tcp(CLIENT, EXT, 5555, 80, "S"), T0 + 1) is old
    new = into(napt, tcp(REMOTE, EXT, 6666, 80, "S"), T0 + 1)
    assert isinstance(new, Session) and new.tenant is red and new.mapping.ca_port == 9090
    allocator = napt.pool.allocators[a(EXT), 6]
    napt.end(old, T0 + 2)
    assert allocator.in_use(80), "still Red's forward's"
    napt.end(new, T0 + 2)
    napt.set_forwards({})
    assert not allocator.in_use(80) and not napt.mappings and not napt.withdrawn


def test_set_forwards_keeps_what_stays_and_adds_by_difference() -> None:
    napt, blue, red = _published()
    [(kept_tenant, kept)] = napt.forwards.values()
    napt.set_forwards({(6, a(EXT), 80): (blue, a(CA), 8080), (17, a(EXT), 53): (red, a(CA), 53)})
    assert napt.forwards[6, a(EXT), 80] == (kept_tenant, kept), "the same mapping"
    assert napt.forwards[17, a(EXT), 53][0] is red
