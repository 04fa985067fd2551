"""The direct path (``napt_outbound``/``napt_inbound`` inline, for a TCP segment or UDP
datagram of a live session with no IP options) does what the general path
(``_outbound``/``_inbound``, with ``_advance`` and ``_rewrite``) does: the same bytes,
the same state, deadline, queue order and counts, for sessions a tenant opened and
sessions a port forward let in, both ways, whatever the flags and checksums."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import IP, TCP, UDP, raw

from gateway.dataplane.napt import Napt, Session, Tenant, translate
from gateway.dataplane.napt.translate import _inbound, _outbound

from ._packets import CA, EXT, REMOTE, a, into, out, table, tcp, udp

T0 = 1.0
_FLAG_BITS = "FSRPAUEC"


def _session(napt: Napt, blue: Tenant, proto: str, forwarded: bool) -> Session:
    """A session of ``proto``, opened by the tenant or by the remote end through a
    port forward (TCP: its SYN; UDP: its first datagram)."""
    if forwarded:
        number = 6 if proto == "tcp" else 17
        napt.forward(number, a(EXT), 80, blue, a(CA), 8080)
        opener = tcp(REMOTE, EXT, 5555, 80, "S") if proto == "tcp" else udp(REMOTE, EXT, 5555, 80)
        session = into(napt, opener, T0)
    else:
        opener = tcp(CA, REMOTE, 40000, 443, "S") if proto == "tcp" else udp(CA, REMOTE, 40000, 53)
        session = out(napt, blue, opener, T0)
    assert isinstance(session, Session)
    return session


def _packet(session: Session, inbound: bool, flags: int, word: int, zero: bool) -> bytearray:
    """A packet of ``session`` (``inbound``: from the remote end to the external
    endpoint), with TCP ``flags``, a payload word, and (UDP) no checksum if ``zero``."""
    m = session.mapping
    ca, ext, remote = (".".join(map(str, x)) for x in (m.ca, m.ext_addr, session.remote))
    ends = (
        (remote, ext, session.remote_port, m.ext_port)
        if inbound
        else (ca, remote, m.ca_port, session.remote_port)
    )
    src, dst, sport, dport = ends
    payload = struct.pack("!H", word) + b"xy"
    if session.protocol == 6:
        flag_text = "".join(f for i, f in enumerate(_FLAG_BITS) if flags >> i & 1)
        layer = TCP(sport=sport, dport=dport, flags=flag_text)
    else:
        layer = UDP(sport=sport, dport=dport, chksum=0) if zero else UDP(sport=sport, dport=dport)
    return bytearray(raw(IP(src=src, dst=dst) / layer / payload))


def _seen(napt: Napt, session: Session) -> tuple[object, ...]:
    order = [list(queue).index(session) if session in queue else -1 for queue in napt.queues]
    counts = (session.out_packets, session.out_bytes, session.in_packets, session.in_bytes)
    return session.state, session.expires, order, counts


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["tcp", "udp"]),
    st.booleans(),  # forwarded
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.booleans()),
        min_size=1,
        max_size=6,
    ),
)
def test_the_direct_path_is_the_general_path(proto: str, forwarded: bool, steps) -> None:
    tables = [table(), table()]  # the same seed: the same external ports
    sessions = [_session(napt, blue, proto, forwarded) for napt, blue, _ in tables]
    # Another session after it, so a refresh moves it in its queue.
    for napt, blue, _ in tables:
        assert isinstance(out(napt, blue, udp(CA, REMOTE, 40001, 53), T0), Session)
    for i, (inbound, flags, word, zero) in enumerate(steps):
        now = T0 + 0.5 * (i + 1)
        results = []
        for (napt, blue, _), session, direct in zip(tables, sessions, (True, False), strict=True):
            packet = _packet(session, inbound, flags, word, zero)
            view = memoryview(packet)
            if direct:
                verdict = into(napt, packet, now) if inbound else out(napt, blue, packet, now)
            else:
                verdict = _inbound(napt, view, now) if inbound else _outbound(napt, blue, view, now)
            results.append((verdict is session, bytes(packet), _seen(napt, session)))
        assert results[0] == results[1]


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("forwarded", [False, True])
def test_the_direct_path_finds_the_session_by_the_tables_keys(
    monkeypatch: pytest.MonkeyPatch, proto: str, forwarded: bool
) -> None:
    """The direct path builds its keys inline (addresses unpacked as ints): they are
    ``out_key``'s and ``in_key``'s, or every packet would miss and go the general
    way (the same result, so the test above cannot tell)."""
    napt, blue, _ = table()
    session = _session(napt, blue, proto, forwarded)

    def general(*_: object) -> None:
        raise AssertionError("a live session's packet went the general way")

    monkeypatch.setattr(translate, "_outbound", general)
    monkeypatch.setattr(translate, "_inbound", general)
    for i, inbound in enumerate((False, True, False)):
        packet = _packet(session, inbound, 0x10, i, False)  # TCP: ACK
        now = T0 + 0.5 * (i + 1)
        verdict = into(napt, packet, now) if inbound else out(napt, blue, packet, now)
        assert verdict is session


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_at_translates_the_datagram_where_it_starts_in_a_frame(proto: str) -> None:
    """``at`` (the gateway passes its frames whole, no slice per packet): the same
    verdicts and bytes as the datagram alone, the bytes before it untouched, on the
    direct path and the general one (the opening packet; one too short to read)."""
    prefix = bytes(range(14))
    runs = []
    for at in (0, len(prefix)):
        napt, blue, _ = table()
        session = _session(napt, blue, proto, False)
        seen = []
        for inbound in (True, False):
            frame = bytearray(prefix[:at]) + _packet(session, inbound, 0x10, 7, False)
            view = memoryview(frame)
            verdict = (
                translate.napt_inbound(napt, view, T0 + 1, at)
                if inbound
                else translate.napt_outbound(napt, blue, view, T0 + 1, at)
            )
            assert bytes(frame[:at]) == prefix[:at]
            seen.append((verdict is session, bytes(frame[at:])))
        short = bytearray(prefix[:at]) + bytes(20)
        seen.append(translate.napt_inbound(napt, memoryview(short), T0 + 1, at))
        runs.append(seen)
    assert runs[0] == runs[1] and runs[0][0][0] and runs[0][1][0]
