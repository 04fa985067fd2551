"""The table's bounds and its tenants: limits with their own verdicts, a flood that
never grows it past them, two tenants with the same CA and port kept apart, the
translation log, expiry's bounded work; and the table against a plain dict model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import IP, UDP

from gateway.dataplane.napt import Napt, Session, in_key, out_key
from gateway.errors import Drop

from ._packets import (
    BLUE,
    CA,
    EXT,
    RED,
    REMOTE,
    SHORT,
    a,
    echo,
    fast_udp,
    into,
    out,
    table,
    tcp,
    udp,
)

T0 = 10.0


def _ext(session: Session) -> str:
    return ".".join(map(str, session.mapping.ext_addr))


def test_a_sessions_keys_are_out_key_and_in_key() -> None:
    """A session builds its keys from its mapping's ints (shared, for memory): the
    same tuples ``out_key`` and ``in_key`` make from the addresses, which is how
    everything else (the general path, ``nvgw trace``, the fuzz oracles) finds it."""
    napt, blue, _ = table()
    napt.forward(6, a(EXT), 80, blue, a(CA), 8080)
    opened = [
        out(napt, blue, udp(CA, REMOTE, 5000, 7), T0),
        out(napt, blue, echo(CA, REMOTE, 77), T0),
        into(napt, tcp(REMOTE, EXT, 5555, 80, "S"), T0),
    ]
    for session in opened:
        assert isinstance(session, Session)
        m = session.mapping
        remote, rport = session.remote, session.remote_port
        assert session.out_key == out_key(blue.rdid, m.key[1], m.ca, m.ca_port, remote, rport)
        assert session.in_key == in_key(m.key[1], m.ext_addr, m.ext_port, remote, rport)
        assert napt.by_out[session.out_key] is napt.by_in[session.in_key] is session


def test_two_tenants_same_ca_and_port_get_their_own_ports_and_replies() -> None:
    napt, blue, red = table()
    b = out(napt, blue, udp(CA, REMOTE, 5000, 7), T0)
    r = out(napt, red, udp(CA, REMOTE, 5000, 7), T0)
    assert isinstance(b, Session) and isinstance(r, Session) and b is not r
    assert (b.mapping.ext_addr, b.mapping.ext_port) != (r.mapping.ext_addr, r.mapping.ext_port)
    for session, tenant in ((b, blue), (r, red)):
        reply = udp(REMOTE, _ext(session), 7, session.mapping.ext_port)
        assert into(napt, reply, T0 + 1) is session and session.tenant is tenant
        assert IP(bytes(reply)).dst == CA and IP(bytes(reply))[UDP].dport == 5000


def test_tenant_at_its_limit_is_refused_while_another_still_opens() -> None:
    napt, blue, red = table()
    napt.tenant(BLUE, max_sessions=3)
    for port in range(3):
        assert isinstance(out(napt, blue, udp(CA, REMOTE, 5000 + port, 7), T0), Session)
    assert out(napt, blue, udp(CA, REMOTE, 6000, 7), T0) is Drop.NAPT_TENANT_LIMIT
    assert isinstance(out(napt, red, udp(CA, REMOTE, 6000, 7), T0), Session)
    assert (blue.sessions, red.sessions, napt.count) == (3, 1, 4)
    # Existing sessions still work at the limit.
    assert isinstance(out(napt, blue, udp(CA, REMOTE, 5000, 7), T0), Session)


def test_global_limit_has_its_own_verdict() -> None:
    napt, blue, red = table(max_sessions=2)
    assert isinstance(out(napt, blue, udp(CA, REMOTE, 5000, 7), T0), Session)
    assert isinstance(out(napt, red, udp(CA, REMOTE, 5000, 7), T0), Session)
    assert out(napt, red, udp(CA, REMOTE, 5001, 7), T0) is Drop.NAPT_TABLE_FULL
    napt.expire(T0 + SHORT.udp_unreplied_s)
    assert isinstance(out(napt, red, udp(CA, REMOTE, 5001, 7), T0 + 6), Session)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 65535), st.integers(0, 255)), min_size=1, max_size=300))
def test_a_flood_of_distinct_flows_never_grows_past_the_tenant_limit(flows) -> None:
    napt = Napt([a(EXT)], seed=1, timeouts=SHORT, max_sessions=1000)
    blue = napt.tenant(BLUE, max_sessions=17)
    red = napt.tenant(RED, max_sessions=17)
    for i, (port, host) in enumerate(flows):
        verdict = out(napt, blue, fast_udp(CA, f"203.0.113.{host}", port, 53), T0 + i * 0.001)
        assert isinstance(verdict, Session) or verdict is Drop.NAPT_TENANT_LIMIT
        assert blue.sessions <= 17 and napt.count <= 17
        assert len(napt.by_out) == len(napt.by_in) == napt.count
        assert len(napt.mappings) <= napt.count and sum(map(len, napt.queues)) == napt.count
        assert len(napt.log) <= napt.log_capacity
    assert isinstance(out(napt, red, udp(CA, REMOTE, 1, 53), T0 + 1), Session)


def test_translation_log_names_each_session_once_opened_once_closed() -> None:
    napt, blue, red = table()
    b = out(napt, blue, udp(CA, REMOTE, 5000, 7, b"12345"), T0)
    out(napt, red, udp(CA, REMOTE, 5000, 7), T0)  # red does not log
    into(napt, udp(REMOTE, _ext(b), 7, b.mapping.ext_port, b"abc"), T0 + 1)
    opened = napt.take_log()
    assert [(r.event, r.rdid, r.ca, r.ca_port, r.ext_port, r.start, r.end) for r in opened] == [
        ("open", BLUE, a(CA), 5000, b.mapping.ext_port, T0, None)
    ]
    assert napt.take_log() == []
    assert napt.still_open()[0].event == "open_at_shutdown"
    napt.expire(T0 + 100)
    (closed,) = napt.take_log()
    assert (closed.event, closed.remote, closed.remote_port) == ("close", a(REMOTE), 7)
    assert (closed.start, closed.end) == (T0, T0 + 1 + SHORT.udp_stream_s)
    assert (closed.out_packets, closed.out_bytes) == (1, 20 + 8 + 5)
    assert (closed.in_packets, closed.in_bytes) == (1, 20 + 8 + 3)


def test_a_full_log_counts_what_it_lost_and_never_grows() -> None:
    napt, blue, _ = table(log_capacity=4)
    for port in range(10):
        out(napt, blue, udp(CA, REMOTE, 5000 + port, 7), T0)
    assert len(napt.log) == 4 and napt.log_lost == 6
    assert len(napt.take_log()) == 4
    out(napt, blue, udp(CA, REMOTE, 6000, 7), T0)
    assert len(napt.log) == 1 and napt.log_lost == 6


def test_expire_does_bounded_work_per_call() -> None:
    napt, blue, _ = table()
    for port in range(25):
        out(napt, blue, udp(CA, REMOTE, 5000 + port, 7), T0)
    later = T0 + SHORT.udp_unreplied_s
    assert [napt.expire(later, limit=10) for _ in range(4)] == [10, 10, 5, 0]
    assert napt.count == 0 and not napt.mappings


def test_tenant_settings_update_in_place() -> None:
    napt, blue, _ = table()
    assert napt.tenant(BLUE, max_sessions=5, log=False) is blue
    assert (blue.max_sessions, blue.log) == (5, False)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["out", "in", "tick"]),
            st.sampled_from([BLUE, RED]),
            st.integers(0, 3),  # the VM's source port index
            st.integers(0, 2),  # the remote host
        ),
        max_size=60,
    )
)
def test_table_matches_a_dict_model(ops) -> None:
    """Each (tenant, port, remote) flow is one session while used within its timeout,
    its reply reaches exactly it, and the external endpoint is the same for every
    remote of one tenant endpoint (endpoint-independent mapping)."""
    napt, blue, red = table()
    tenants = {BLUE: blue, RED: red}
    model: dict[tuple[str, int, int], float] = {}  # flow -> deadline
    ext_of: dict[tuple[str, int], tuple[bytes, int]] = {}
    now = T0
    for op, rdid, port, host in ops:
        remote = f"203.0.113.{host + 1}"
        flow = (rdid, port, host)
        if op == "tick":
            now += 2
            continue
        for key in [k for k, deadline in model.items() if deadline <= now]:
            del model[key]
        if not any(k[:2] == (rdid, port) for k in model):
            ext_of.pop((rdid, port), None)
        if op == "out":
            s = out(napt, tenants[rdid], fast_udp(CA, remote, 1000 + port, 9), now)
            assert isinstance(s, Session)
            ext = (s.mapping.ext_addr, s.mapping.ext_port)
            assert ext_of.setdefault((rdid, port), ext) == ext
            model[flow] = now + (SHORT.udp_stream_s if s.state == 10 else SHORT.udp_unreplied_s)
        elif (rdid, port) in ext_of:
            ext_addr, ext_port = ext_of[rdid, port]
            reply = fast_udp(remote, ".".join(map(str, ext_addr)), 9, ext_port)
            s = into(napt, reply, now)
            if flow in model:
                assert isinstance(s, Session) and s.tenant is tenants[rdid]
                assert int.from_bytes(reply[22:24], "big") == 1000 + port  # UDP dport
                model[flow] = now + SHORT.udp_stream_s
            else:
                assert s is Drop.NAPT_NO_SESSION  # that remote never was sent to
        napt.expire(now, limit=1000)
        assert napt.count == len(model)
