"""IPv4 fragmentation (``fragment_ipv4``, RFC 791 sec. 3.2), checked against scapy: the
fragments reassemble to the datagram, each fits the MTU, each header's checksum and
lengths are right, only copied options go past the first, and what cannot be split
is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP, defragment
from scapy.packet import raw

from gateway.wire import fragment_ipv4

ROUTER_ALERT = b"\x94\x04\x00\x00"  # type 148: copy flag set (RFC 2113)
TIMESTAMP = b"\x44\x08\x05\x00" + bytes(4)  # type 68: copy flag clear


def datagram(size: int, options: bytes = b"", **ip) -> bytes:  # type: ignore[no-untyped-def]
    header = 20 + len(options)
    body = bytes(range(256)) * (size // 256 + 1)
    return raw(
        IP(src="172.16.0.2", dst="10.10.10.11", id=99, options=options, **ip)
        / UDP(sport=53, dport=5353)
        / body[: size - header - 8]
    )


def header_ok(fragment: bytes) -> bool:
    fresh = IP(fragment)
    del fresh.chksum, fresh.len
    return raw(IP(raw(fresh)))[: (fragment[0] & 15) * 4] == fragment[: (fragment[0] & 15) * 4]


@pytest.mark.parametrize("options", [b"", ROUTER_ALERT, TIMESTAMP, ROUTER_ALERT + TIMESTAMP])
@pytest.mark.parametrize(("size", "mtu"), [(1500, 1458), (1500, 576), (4000, 1458), (69, 68)])
def test_fragments_fit_and_reassemble(options: bytes, size: int, mtu: int) -> None:
    original = datagram(size, options)
    pieces = fragment_ipv4(original, mtu)
    assert len(pieces) >= 2
    assert all(len(piece) <= mtu and header_ok(piece) for piece in pieces)
    assert all(IP(piece).id == 99 and IP(piece).ttl == IP(original).ttl for piece in pieces)
    flags = [(IP(p).flags.MF, IP(p).frag) for p in pieces]
    assert [mf for mf, _ in flags] == [1] * (len(pieces) - 1) + [0]
    assert all((len(p) - (p[0] & 15) * 4) % 8 == 0 for p in pieces[:-1]), "8-byte blocks"
    [whole] = defragment([IP(p) for p in pieces])
    assert raw(whole)[20 + len(options) :] == original[20 + len(options) :]
    assert IP(pieces[0]).options == IP(original).options
    later = {raw(o) for p in pieces[1:] for o in IP(p).options if raw(o)[0]}
    assert later <= ({ROUTER_ALERT} & {raw(o) for o in IP(original).options})


def test_a_fragment_is_split_further_keeping_its_offset_and_mf() -> None:
    original = datagram(3000)
    first, second = fragment_ipv4(original, 1500)[:2]
    again = fragment_ipv4(first, 576)
    assert IP(again[-1]).flags.MF == 1, "the datagram goes on after it"
    tail = fragment_ipv4(second, 576)
    assert IP(tail[0]).frag == IP(second).frag and IP(tail[-1]).flags.MF == IP(second).flags.MF
    [whole] = defragment([IP(p) for p in [*again, *tail, *fragment_ipv4(original, 1500)[2:]]])
    assert raw(whole)[20:] == original[20:]


@pytest.mark.parametrize(
    ("packet", "mtu"),
    [
        (datagram(1500, flags="DF"), 1458),  # DF: fragmentation-needed instead
        (datagram(1400), 1458),  # it fits
        (datagram(1500, b"\x07\x00\x00\x00"), 1458),  # an option of length 0
        (datagram(1500, b"\x83\x0a" + bytes(2)), 1458),  # an option longer than the header
        (datagram(1500), 24),  # no 8 bytes of payload fit
        (b"\x45" + bytes(10), 1458),  # shorter than a header
        (datagram(1500)[:1000], 576),  # shorter than its total length
    ],
)
def test_what_cannot_be_split_is_refused(packet: bytes, mtu: int) -> None:
    assert fragment_ipv4(packet, mtu) == []


@given(st.binary(max_size=200), st.integers(min_value=68, max_value=1500))
def test_any_bytes_never_raise(data: bytes, mtu: int) -> None:
    for piece in fragment_ipv4(data, mtu):
        assert len(piece) <= mtu
