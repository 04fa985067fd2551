"""ICMP errors through the NAT (RFC 5508): the quote translated back. The oracle is
the datagram as its sender wrote it: after translation an error from the internet
must quote exactly the bytes the tenant's VM sent (addresses, ports, quoted IP and
transport checksums), inside an error scapy finds valid, addressed to the VM."""

from __future__ import annotations

import pytest
from scapy.all import ICMP, IP, Raw, raw

from gateway.dataplane.napt import Session
from gateway.errors import Drop

from ._packets import CA, EXT, REMOTE, ROUTER, echo, into, out, scapy_valid, table, tcp, udp

T0 = 3.0


def _error(src: str, dst: str, quoted: bytes, kind: int = 3, code: int = 3, **fields) -> bytearray:
    return bytearray(raw(IP(src=src, dst=dst) / ICMP(type=kind, code=code, **fields) / Raw(quoted)))


def _sent(build):
    """A table with one session opened by ``build()``'s datagram; (napt, blue, the
    session, what the VM sent, what went out)."""
    napt, blue, _ = table()
    vm_sent = bytes(build())
    wire = bytearray(vm_sent)
    session = out(napt, blue, wire, T0)
    assert isinstance(session, Session)
    return napt, blue, session, vm_sent, bytes(wire)


CASES = {
    "udp-port-unreachable": (lambda: udp(CA, REMOTE, 5000, 53, b"question"), 3, 3, {}),
    "tcp-fragmentation-needed": (
        lambda: tcp(CA, REMOTE, 40000, 443, "S", b"x" * 40),
        3,
        4,
        {"nexthopmtu": 1400},
    ),
    "icmp-time-exceeded": (lambda: echo(CA, REMOTE, 4242), 11, 0, {}),
    "udp-time-exceeded": (lambda: udp(CA, REMOTE, 33434, 33434, b"trace"), 11, 0, {}),
}


@pytest.mark.parametrize("quote", [28, 48, None], ids=["8-bytes", "20-bytes", "whole"])
@pytest.mark.parametrize("case", CASES)
def test_error_from_the_internet_quotes_what_the_vm_sent(case: str, quote: int | None) -> None:
    build, kind, code, fields = CASES[case]
    napt, _, session, vm_sent, wire = _sent(build)
    size = len(wire) if quote is None else min(quote, len(wire))
    error = _error(ROUTER, EXT, wire[:size], kind, code, **fields)
    assert scapy_valid(error)
    assert into(napt, error, T0 + 1) is session
    expected = _error(ROUTER, CA, vm_sent[:size], kind, code, **fields)
    assert bytes(error) == bytes(expected)  # every checksum, quoted ones included
    assert session.in_packets == 0  # errors do not count as, or refresh, the session
    assert session.expires == T0 + napt.timeout_of[session.state]


def test_quoted_udp_without_checksum_stays_without() -> None:
    napt, _, _, vm_sent, wire = _sent(lambda: bytearray(raw(IP(src=CA, dst=REMOTE) / _udp0())))
    error = _error(REMOTE, EXT, wire[:28])
    assert isinstance(into(napt, error, T0), Session)
    assert bytes(error) == bytes(_error(REMOTE, CA, vm_sent[:28]))
    assert bytes(error)[20 + 8 + 20 + 6 : 20 + 8 + 20 + 8] == b"\0\0"


def _udp0():
    from scapy.all import UDP

    return UDP(sport=5000, dport=53, chksum=0) / b"q"


@pytest.mark.parametrize(
    ("side", "zero"), [("arriving", 0x0000), ("arriving", 0xFFFF), ("delivered", 0x0000)]
)
def test_error_checksum_corners(side: str, zero: int) -> None:
    """Fragmentation needed whose next-hop MTU word is chosen so that the ICMP
    checksum is zero on arrival, or after translation; on arrival in either of its
    forms (scapy writes 0x0000; 0xFFFF, the other zero, is put in by hand). The
    translated error is still byte for byte what scapy builds."""
    napt, _, session, vm_sent, wire = _sent(lambda: udp(CA, REMOTE, 5000, 53, b"question"))

    def arriving(mtu: int) -> bytearray:
        return _error(ROUTER, EXT, wire[:28], 3, 4, nexthopmtu=mtu)

    def delivered(mtu: int) -> bytearray:
        return _error(ROUTER, CA, vm_sent[:28], 3, 4, nexthopmtu=mtu)

    # The MTU word adds to the sum: ~S there makes the sum 0xFFFF, the checksum 0.
    mtu = IP(bytes((arriving if side == "arriving" else delivered)(0)))[ICMP].chksum
    error = arriving(mtu)
    if side == "arriving":
        assert IP(bytes(error))[ICMP].chksum == 0x0000
        error[22:24] = zero.to_bytes(2, "big")
    else:
        assert IP(bytes(delivered(mtu)))[ICMP].chksum == 0x0000
    assert into(napt, error, T0) is session
    assert bytes(error) == bytes(delivered(mtu))


def test_error_from_a_tenant_quotes_what_the_internet_sent() -> None:
    """The VM answers a datagram that came in through its session with port
    unreachable: the quote becomes what the remote end sent, from the external
    address, so the remote's stack finds its socket."""
    napt, blue, session, _, _ = _sent(lambda: udp(CA, REMOTE, 5000, 53))
    ext, port = EXT, session.mapping.ext_port
    from_remote = bytes(udp(REMOTE, ext, 53, port, b"answer"))
    delivered = bytearray(from_remote)
    assert into(napt, delivered, T0) is session
    error = _error(CA, REMOTE, bytes(delivered)[:28])
    assert out(napt, blue, error, T0 + 1) is session
    assert bytes(error) == bytes(_error(ext, REMOTE, from_remote[:28]))


def test_error_about_an_echo_reply_from_a_tenant() -> None:
    napt, blue, session, _, _ = _sent(lambda: echo(CA, REMOTE, 99))
    reply = bytes(echo(REMOTE, EXT, session.mapping.ext_port, reply=True))
    delivered = bytearray(reply)
    assert into(napt, delivered, T0) is session
    error = _error(CA, REMOTE, bytes(delivered)[:28], 3, 3)
    assert out(napt, blue, error, T0) is session
    assert bytes(error) == bytes(_error(EXT, REMOTE, reply[:28], 3, 3))


def test_errors_that_name_no_session_are_dropped() -> None:
    napt, blue, session, _, wire = _sent(lambda: udp(CA, REMOTE, 5000, 53))
    other_port = bytearray(wire)
    other_port[20:22] = (session.mapping.ext_port ^ 1).to_bytes(2, "big")
    assert into(napt, _error(ROUTER, EXT, bytes(other_port)[:28]), T0) is Drop.NAPT_NO_SESSION
    # Sent to another address than the one its quote came from.
    assert into(napt, _error(ROUTER, "203.0.113.99", wire[:28]), T0) is Drop.NAPT_NO_SESSION
    # A tenant's error about something no session of its own brought in.
    stranger = bytes(udp(REMOTE, CA, 53, 4999))
    assert out(napt, blue, _error(CA, REMOTE, stranger[:28]), T0) is Drop.NAPT_NO_SESSION


def test_truncated_quotes_and_odd_quotes_are_refused_with_a_reason() -> None:
    napt, _, _, _, wire = _sent(lambda: udp(CA, REMOTE, 5000, 53))
    assert into(napt, _error(ROUTER, EXT, wire[:24]), T0) is Drop.TRUNCATED  # no ports
    assert into(napt, _error(ROUTER, EXT, wire[:12]), T0) is Drop.TRUNCATED  # no IP header
    later_fragment = bytearray(wire[:28])
    later_fragment[6:8] = b"\x00\x10"
    assert into(napt, _error(ROUTER, EXT, bytes(later_fragment)), T0) is Drop.NAPT_FRAGMENT
    gre = bytearray(wire[:28])
    gre[9] = 47
    assert into(napt, _error(ROUTER, EXT, bytes(gre)), T0) is Drop.NAPT_UNSUPPORTED
    bad_version = bytearray(wire[:28])
    bad_version[0] = 0x65
    assert into(napt, _error(ROUTER, EXT, bytes(bad_version)), T0) is Drop.INNER_MALFORMED
    whole = _error(ROUTER, EXT, wire[:28])
    for size in range(len(whole)):
        assert into(napt, bytearray(whole[:size]), T0) is Drop.TRUNCATED, size
