"""Translated datagrams, checked by scapy: every checksum is the one scapy computes
for the rewritten packet, at the 0x0000/0xFFFF corners too; the precomputed deltas
equal RFC 1624's ``checksum_update``; hostile bytes get a verdict, never an
exception."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scapy.all import ICMP, IP, TCP, UDP, raw

from gateway.dataplane.napt import Session
from gateway.dataplane.napt.session import apply_delta, words_delta
from gateway.errors import Drop
from gateway.wire import checksum_update, ones_complement_sum

from ._packets import CA, EXT, REMOTE, echo, fast_udp, into, out, scapy_valid, table, tcp, udp

T0 = 1.0
WORDS = st.integers(0, 0xFFFF)
CORNER_WORDS = st.sampled_from([0x0000, 0x0001, 0x7FFF, 0xFFFE, 0xFFFF]) | WORDS


@settings(max_examples=500)
@given(CORNER_WORDS, st.lists(st.tuples(CORNER_WORDS, CORNER_WORDS), min_size=1, max_size=3))
@example(0xFFFF, [(0xFFFF, 0x0000)])
@example(0x0000, [(0x0000, 0xFFFF)])
@example(0xFFFF, [(0x1234, 0x1234)])
def test_precomputed_delta_equals_checksum_update(checksum: int, words) -> None:
    old = b"".join(struct.pack("!H", o) for o, _ in words)
    new = b"".join(struct.pack("!H", n) for _, n in words)
    assert apply_delta(checksum, words_delta(old, new)) == checksum_update(checksum, old, new)


@settings(max_examples=300)
@given(st.binary(min_size=2, max_size=40).filter(lambda b: len(b) % 2 == 0 and any(b)), WORDS)
def test_delta_gives_a_full_recomputation(data: bytes, word: int) -> None:
    """Replace the first word of a block with a valid checksum at the end: the
    updated checksum is what a full computation over the new block gives."""
    new = struct.pack("!H", word) + data[2:]
    if not any(new):
        return
    full = lambda block: ~ones_complement_sum(block) & 0xFFFF  # noqa: E731
    got = apply_delta(full(data), words_delta(data[:2], new[:2]))
    assert got == full(new)


def _session_ext(session: Session) -> tuple[str, int]:
    return ".".join(map(str, session.mapping.ext_addr)), session.mapping.ext_port


@pytest.mark.parametrize(
    "build",
    [
        lambda: tcp(CA, REMOTE, 40000, 443, "S", b"hello"),
        lambda: udp(CA, REMOTE, 40000, 53, b"query"),
        lambda: echo(CA, REMOTE, 4242),
    ],
    ids=["tcp", "udp", "icmp"],
)
def test_both_ways_every_checksum_is_scapys(build) -> None:
    napt, blue, _ = table()
    packet = build()
    session = out(napt, blue, packet, T0)
    assert isinstance(session, Session)
    sent = IP(bytes(packet))
    ext, ext_port = _session_ext(session)
    assert sent.src == ext and scapy_valid(packet)
    assert (sent[ICMP].id if ICMP in sent else sent.sport) == ext_port
    original = IP(bytes(build()))
    # The reply, built by scapy to the external endpoint, comes back to the VM.
    reply = original.copy()
    reply.src, reply.dst = REMOTE, ext
    if ICMP in reply:
        reply[ICMP].type, reply[ICMP].id = 0, ext_port
    else:
        reply.sport, reply.dport = original.dport, ext_port
        if TCP in reply:
            reply[TCP].flags = "SA"
    back = bytearray(raw(_fresh(reply)))
    assert into(napt, back, T0 + 1) is session
    got = IP(bytes(back))
    assert got.dst == CA and scapy_valid(back)
    assert (got[ICMP].id if ICMP in got else got.dport) == (4242 if ICMP in got else 40000)


def _fresh(packet: IP) -> IP:
    for layer in (IP, TCP, UDP, ICMP):
        if layer in packet:
            del packet[layer].chksum
    return packet


def test_udp_without_checksum_stays_without() -> None:
    napt, blue, _ = table()
    packet = bytearray(raw(IP(src=CA, dst=REMOTE) / UDP(sport=1, dport=2, chksum=0) / b"x"))
    assert isinstance(out(napt, blue, packet, T0), Session)
    assert IP(bytes(packet))[UDP].chksum == 0 and scapy_valid(packet)


def _with_word(proto: str, src: str, dst: str, sport: int, dport: int, word: int) -> bytearray:
    payload = struct.pack("!H", word) + b"ab"
    if proto == "tcp":
        return tcp(src, dst, sport, dport, "A", payload)
    return udp(src, dst, sport, dport, payload)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("side", ["external", "tenant"])
def test_checksum_corners(proto: str, side: str) -> None:
    """A payload word chosen so that the checksum on ``side`` computes to 0: scapy
    writes 0x0000 for TCP and 0xFFFF for UDP (RFC 768), and so must the rewrite,
    going out and coming back."""
    napt, blue, _ = table()
    opener = tcp(CA, REMOTE, 40000, 80, "S") if proto == "tcp" else udp(CA, REMOTE, 40000, 80)
    session = out(napt, blue, opener, T0)
    ext, ext_port = _session_ext(session)
    ends = (ext, REMOTE, ext_port, 80) if side == "external" else (CA, REMOTE, 40000, 80)
    base = IP(bytes(_with_word(proto, *ends, 0)))
    word = base[TCP if proto == "tcp" else UDP].chksum  # w = ~S: the sum becomes 0xFFFF
    packet = _with_word(proto, CA, REMOTE, 40000, 80, word)
    expected = IP(bytes(_with_word(proto, *ends, word)))[TCP if proto == "tcp" else UDP].chksum
    assert expected == (0x0000 if proto == "tcp" else 0xFFFF)
    assert out(napt, blue, packet, T0) is session and scapy_valid(packet)
    reply = _with_word(proto, REMOTE, ext, 80, ext_port, word)
    assert into(napt, reply, T0) is session and scapy_valid(reply)
    layer = IP(bytes(packet if side == "external" else reply))[TCP if proto == "tcp" else UDP]
    assert layer.chksum == expected


def test_ip_header_checksum_corner() -> None:
    napt, blue, _ = table()
    session = out(napt, blue, udp(CA, REMOTE, 40000, 80), T0)
    ext, _ = _session_ext(session)
    ident = IP(raw(IP(src=ext, dst=REMOTE, id=0) / UDP(sport=1, dport=80) / b"x")).chksum
    packet = bytearray(raw(IP(src=CA, dst=REMOTE, id=ident) / UDP(sport=40000, dport=80) / b"x"))
    assert out(napt, blue, packet, T0) is session
    assert IP(bytes(packet)).chksum == 0x0000 and scapy_valid(packet)


@pytest.mark.parametrize(
    ("packet", "verdict"),
    [
        (
            lambda: bytearray(raw(IP(src=CA, dst=REMOTE, proto=47) / (b"x" * 8))),
            Drop.NAPT_UNSUPPORTED,
        ),
        (lambda: bytearray(raw(IP(src=CA, dst=REMOTE, flags="MF") / UDP())), Drop.NAPT_FRAGMENT),
        (lambda: bytearray(raw(IP(src=CA, dst=REMOTE, frag=10) / (b"x" * 8))), Drop.NAPT_FRAGMENT),
        (lambda: echo(CA, REMOTE, 1, reply=True), Drop.NAPT_NO_SESSION),
        (lambda: bytearray(raw(IP(src=CA, dst=REMOTE) / ICMP(type=13))), Drop.NAPT_UNSUPPORTED),
        (lambda: bytearray(raw(IP(src=CA, dst=REMOTE, proto=6) / (b"x" * 12))), Drop.TRUNCATED),
        (lambda: bytearray(b"\x46" + bytes(raw(IP(src=CA, dst=REMOTE)))[1:]), Drop.INNER_MALFORMED),
    ],
    ids=["gre", "first-fragment", "later-fragment", "echo-reply", "timestamp", "short-tcp", "ihl"],
)
def test_what_napt_refuses_going_out(packet, verdict) -> None:
    napt, blue, _ = table()
    data = packet()
    before = bytes(data)
    assert out(napt, blue, data, T0) is verdict
    assert bytes(data) == before and napt.count == 0


def test_what_napt_refuses_coming_in() -> None:
    napt, _, _ = table()
    assert into(napt, udp(REMOTE, EXT, 53, 40000), T0) is Drop.NAPT_NO_SESSION
    assert into(napt, echo(REMOTE, EXT, 1), T0) is Drop.NAPT_NO_SESSION
    assert into(napt, tcp(REMOTE, EXT, 1, 80, "S"), T0) is Drop.NAPT_NO_SESSION


@pytest.mark.parametrize(
    "build",
    [
        lambda: tcp(CA, REMOTE, 40000, 443, "S", b"payload"),
        lambda: udp(CA, REMOTE, 40000, 53),
        lambda: echo(CA, REMOTE, 9),
    ],
)
def test_every_prefix_is_truncated(build) -> None:
    napt, blue, _ = table()
    whole = build()
    for size in range(len(whole)):
        assert out(napt, blue, bytearray(whole[:size]), T0) is Drop.TRUNCATED, size
        assert into(napt, bytearray(whole[:size]), T0) is Drop.TRUNCATED, size
    assert napt.count == 0


def _valid_packets() -> list[bytes]:
    """Datagrams that reach every path once the table below holds its sessions."""
    ext_udp = bytes(udp(REMOTE, EXT, 53, 1))  # the port is overwritten by mutation
    error = raw(IP(src=REMOTE, dst=EXT) / ICMP(type=3, code=3) / ext_udp[:28])
    return [bytes(udp(CA, REMOTE, 40000, 53)), bytes(echo(CA, REMOTE, 1)), ext_udp, error]


VALID = _valid_packets()


@st.composite
def _mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=96) | _mutated(), st.booleans())
def test_hostile_bytes_get_a_verdict_never_an_exception(data: bytes, inbound: bool) -> None:
    napt, blue, _ = table()
    out(napt, blue, fast_udp(CA, REMOTE, 40000, 53), T0)
    result = into(napt, bytearray(data), T0) if inbound else out(napt, blue, bytearray(data), T0)
    assert isinstance(result, Session | Drop)
