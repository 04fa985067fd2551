"""Time exceeded (RFC 792) and when no ICMP error may be sent (RFC 1812 sec. 4.3.2.7),
read back by scapy, an independent codec."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPerror, fragment
from scapy.packet import raw

from gateway.wire import ICMP_TIME_EXCEEDED, build_icmp_time_exceeded, icmp_error_allowed


def test_time_exceeded_quotes_the_header_and_8_bytes_as_they_arrived() -> None:
    original = raw(
        IP(src="10.10.10.11", dst="172.16.0.2", ttl=1, options=b"\x94\x04\x00\x00")
        / UDP(sport=33434, dport=33435)
        / (b"x" * 100)
    )
    message = ICMP(build_icmp_time_exceeded(original))
    assert (message.type, message.code) == (ICMP_TIME_EXCEEDED, 0)
    assert raw(message)[8:] == original[: 24 + 8]  # the options too
    quoted = message[IPerror]
    assert (quoted.src, quoted.dst, quoted.ttl) == ("10.10.10.11", "172.16.0.2", 1)
    fresh = ICMP(raw(message))
    del fresh.chksum
    assert raw(ICMP(raw(fresh))) == raw(message), "the checksum covers the quote"


def _datagram(*layers, **ip) -> bytes:  # type: ignore[no-untyped-def]
    packet = IP(src="10.10.10.11", dst=ip.pop("dst", "172.16.0.2"), **ip)
    for layer in layers:
        packet = packet / layer
    return raw(packet)


@pytest.mark.parametrize(
    ("datagram", "allowed"),
    [
        (_datagram(UDP()), True),
        (_datagram(ICMP(type=8)), True),  # a query, not an error
        (_datagram(ICMP(type=0)), True),
        (_datagram(ICMP(type=3, code=3) / IPerror() / UDP()), False),
        (_datagram(ICMP(type=11) / IPerror() / UDP()), False),
        (_datagram(ICMP(type=4)), False),  # source quench
        (_datagram(ICMP(type=5)), False),  # redirect
        (_datagram(ICMP(type=12)), False),  # parameter problem
        (_datagram(proto=1), False),  # ICMP without a type: not known not to be an error
        (_datagram(UDP(), dst="224.0.0.251"), False),
        (_datagram(UDP(), dst="239.255.255.250"), False),
        (_datagram(UDP(), dst="255.255.255.255"), False),
        (_datagram(UDP(), dst="240.0.0.1"), False),
        (_datagram(UDP(), dst="223.255.255.255"), True),
    ],
)
def test_which_datagrams_an_error_may_be_sent_about(datagram: bytes, allowed: bool) -> None:
    assert icmp_error_allowed(datagram) is allowed


def test_only_the_first_fragment_may_get_an_error() -> None:
    first, second, *_ = fragment(IP(src="10.10.10.11", dst="172.16.0.2") / UDP() / (b"x" * 64), 24)
    assert IP(raw(first)).flags.MF and IP(raw(second)).frag > 0
    assert icmp_error_allowed(raw(first)) is True
    assert icmp_error_allowed(raw(second)) is False
