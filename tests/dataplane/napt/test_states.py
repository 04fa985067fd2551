"""TCP through every state, RST in each, and every idle timeout, by stepping ``now``
(never sleeping): sessions driven through the real packet path."""

from __future__ import annotations

import pytest

from gateway.dataplane.napt import Session
from gateway.dataplane.napt.states import (
    ICMP_ECHO,
    STATE_NAMES,
    TCP_CLOSE,
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    TCP_FIN_WAIT,
    TCP_LAST_ACK,
    TCP_SYN_RECV,
    TCP_SYN_SENT,
    TCP_SYN_SENT2,
    TCP_TIME_WAIT,
    UDP_STREAM,
    UDP_UNREPLIED,
    Timeouts,
)
from gateway.errors import Drop

from ._packets import CA, REMOTE, SHORT, a, echo, into, out, table, tcp, udp

T0 = 100.0


def _open_tcp():
    napt, blue, _ = table()
    session = out(napt, blue, tcp(CA, REMOTE, 40000, 80, "S"), T0)
    assert isinstance(session, Session) and session.state == TCP_SYN_SENT
    m = session.mapping
    ext_addr = ".".join(str(b) for b in m.ext_addr)

    def send(way: str, flags: str, now: float):
        if way == "out":
            return out(napt, blue, tcp(CA, REMOTE, 40000, 80, flags), now)
        return into(napt, tcp(REMOTE, ext_addr, 80, m.ext_port, flags), now)

    return napt, session, send


# (direction, flags, state after): a client's connection, closed by the client.
CLIENT_CLOSES = [
    ("in", "SA", TCP_SYN_RECV),
    ("out", "A", TCP_ESTABLISHED),
    ("out", "PA", TCP_ESTABLISHED),
    ("out", "FA", TCP_FIN_WAIT),
    ("in", "A", TCP_CLOSE_WAIT),
    ("in", "FA", TCP_LAST_ACK),
    ("out", "A", TCP_TIME_WAIT),
]


def test_tcp_walks_every_closing_state_and_each_has_its_timeout() -> None:
    napt, session, send = _open_tcp()
    timeout = SHORT.by_state()
    now = T0
    for way, flags, state in CLIENT_CLOSES:
        now += 0.5
        assert send(way, flags, now) is session
        assert session.state == state, (way, flags, STATE_NAMES[session.state])
        assert session.expires == now + timeout[state]
    # TIME_WAIT holds the port for its timeout, then the session ends.
    assert napt.expire(now + SHORT.tcp_time_wait_s - 0.01) == 0
    assert napt.expire(now + SHORT.tcp_time_wait_s) == 1
    assert napt.count == 0 and not napt.by_out and not napt.by_in and not napt.mappings


def test_simultaneous_open_goes_through_syn_sent2() -> None:
    _, session, send = _open_tcp()
    assert send("in", "S", T0 + 1) is session and session.state == TCP_SYN_SENT2
    assert send("in", "SA", T0 + 2) is session and session.state == TCP_SYN_RECV
    assert send("in", "A", T0 + 3) is session and session.state == TCP_SYN_RECV
    assert send("out", "A", T0 + 4) is session and session.state == TCP_ESTABLISHED


def test_an_unexpected_segment_keeps_the_state_and_does_not_refresh_the_timer() -> None:
    _, session, send = _open_tcp()
    expires = session.expires
    assert send("out", "A", T0 + 1) is session  # an ACK before any SYN+ACK: translated
    assert session.state == TCP_SYN_SENT and session.expires == expires
    assert send("out", "S", T0 + 2) is session  # a retransmitted SYN refreshes it
    assert session.expires == T0 + 2 + SHORT.tcp_syn_sent_s


ALL_STEPS = [("out", "S", TCP_SYN_SENT), *CLIENT_CLOSES]


@pytest.mark.parametrize("steps", range(len(ALL_STEPS)))
@pytest.mark.parametrize("way", ["out", "in"])
def test_rst_in_every_state_closes_and_frees_the_port_after_tcp_close_s(
    steps: int, way: str
) -> None:
    napt, session, send = _open_tcp()
    now = T0
    for step_way, flags, state in ALL_STEPS[1 : steps + 1]:
        now += 0.5
        send(step_way, flags, now)
        assert session.state == state
    now += 0.5
    assert send(way, "R", now) is session
    assert session.state == TCP_CLOSE and session.expires == now + SHORT.tcp_close_s
    allocator = napt.pool.allocators[session.mapping.ext_addr, 6]
    assert allocator.in_use(session.mapping.ext_port)
    assert napt.expire(now + SHORT.tcp_close_s) == 1
    assert not allocator.in_use(session.mapping.ext_port)


def test_syn_after_close_reopens_the_same_session() -> None:
    _, session, send = _open_tcp()
    send("in", "R", T0 + 1)
    assert session.state == TCP_CLOSE
    assert send("out", "S", T0 + 1.5) is session and session.state == TCP_SYN_SENT


@pytest.mark.parametrize("flags", ["A", "FA", "R", "SA", "PA"])
def test_only_a_syn_opens_a_tcp_session(flags: str) -> None:
    napt, blue, _ = table()
    assert out(napt, blue, tcp(CA, REMOTE, 40000, 80, flags), T0) is Drop.NAPT_NO_SESSION
    assert napt.count == 0 and not napt.mappings


def test_established_lives_as_long_as_it_is_used() -> None:
    napt, session, send = _open_tcp()
    send("in", "SA", T0)
    send("out", "A", T0)
    now = T0
    for _ in range(5):
        now += SHORT.tcp_established_s - 1
        assert napt.expire(now) == 0
        assert send("in", "PA", now) is session
    assert napt.expire(now + SHORT.tcp_established_s) == 1


def test_a_packet_after_the_deadline_finds_no_session_even_before_expire_runs() -> None:
    napt, session, send = _open_tcp()
    ext_port = session.mapping.ext_port
    assert send("in", "SA", T0 + SHORT.tcp_syn_sent_s) is Drop.NAPT_NO_SESSION
    assert napt.count == 0 and not napt.pool.allocators[session.mapping.ext_addr, 6].in_use(
        ext_port
    )


def test_udp_unreplied_then_stream_timeouts() -> None:
    napt, blue, _ = table()
    session = out(napt, blue, udp(CA, REMOTE, 5353, 53), T0)
    assert isinstance(session, Session) and session.state == UDP_UNREPLIED
    assert session.expires == T0 + SHORT.udp_unreplied_s
    out(napt, blue, udp(CA, REMOTE, 5353, 53), T0 + 1)  # more from the tenant: still unreplied
    assert session.state == UDP_UNREPLIED and session.expires == T0 + 1 + SHORT.udp_unreplied_s
    ext = ".".join(map(str, session.mapping.ext_addr))
    assert into(napt, udp(REMOTE, ext, 53, session.mapping.ext_port), T0 + 2) is session
    assert session.state == UDP_STREAM and session.expires == T0 + 2 + SHORT.udp_stream_s
    assert napt.expire(T0 + 2 + SHORT.udp_stream_s - 0.01) == 0
    assert napt.expire(T0 + 2 + SHORT.udp_stream_s) == 1


def test_unreplied_udp_expires_at_its_own_timeout() -> None:
    napt, blue, _ = table()
    out(napt, blue, udp(CA, REMOTE, 5353, 53), T0)
    assert napt.next_expiry() == T0 + SHORT.udp_unreplied_s
    assert napt.expire(T0 + SHORT.udp_unreplied_s - 0.01) == 0
    assert napt.expire(T0 + SHORT.udp_unreplied_s) == 1 and napt.count == 0
    assert napt.next_expiry() is None


def test_icmp_echo_idle_timeout_refreshed_by_replies() -> None:
    napt, blue, _ = table()
    session = out(napt, blue, echo(CA, REMOTE, 77), T0)
    assert isinstance(session, Session) and session.state == ICMP_ECHO
    ext = ".".join(map(str, session.mapping.ext_addr))
    assert into(napt, echo(REMOTE, ext, session.mapping.ext_port, reply=True), T0 + 5) is session
    assert napt.expire(T0 + 5 + SHORT.icmp_s - 0.01) == 0
    assert napt.expire(T0 + 5 + SHORT.icmp_s) == 1


def test_expiry_order_follows_last_use_across_states() -> None:
    napt, blue, _ = table()
    first = out(napt, blue, udp(CA, REMOTE, 1001, 53), T0)
    second = out(napt, blue, udp(CA, REMOTE, 1002, 53), T0 + 1)
    out(napt, blue, udp(CA, REMOTE, 1001, 53), T0 + 2)  # first used again: now the later
    assert napt.expire(T0 + 1 + SHORT.udp_unreplied_s) == 1
    assert napt.by_out.get(second.out_key) is None and napt.by_out[first.out_key] is first


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="udp_stream_s"):
        Timeouts(udp_stream_s=0)
    with pytest.raises(ValueError, match="icmp_s"):
        Timeouts(icmp_s=float("inf"))
    assert Timeouts().tcp_established_s == 432_000  # Linux's 5 days
    assert a(REMOTE) == bytes([203, 0, 113, 1])
