"""TCP MSS clamping (``clamp_mss``): the option lowered in place, the checksum patched
as a full recomputation would give it (scapy is the independent oracle), at the
checksum's 0x0000/0xFFFF corners, with the option at even and odd positions, and
nothing read past the TCP header whatever the bytes say."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import raw

from gateway.wire import clamp_mss, l4_checksum_ok_v4, l4_checksum_v4

SRC, DST = "172.16.0.2", "10.10.10.11"
CLAMP = 1418  # 1458 - 40: the gateway's auto clamp


def syn(options: list, flags: str = "S", seq: int = 1000, payload: bytes = b"", **ip) -> bytes:  # type: ignore[no-untyped-def]
    return raw(IP(src=SRC, dst=DST, **ip) / TCP(flags=flags, seq=seq, options=options) / payload)


def mss_of(packet: bytes) -> int | None:
    return dict(IP(packet)[TCP].options).get("MSS")


def recomputed(packet: bytes) -> bytes:
    """What scapy writes for the same headers: every checksum computed afresh."""
    fresh = IP(packet)
    del fresh[TCP].chksum
    return raw(fresh)


def clamped(packet: bytes, mss: int = CLAMP) -> tuple[bool, bytes]:
    buffer = bytearray(packet)
    return clamp_mss(buffer, mss), bytes(buffer)


def tcp_checksum(packet: bytes) -> int:
    return int.from_bytes(packet[36:38], "big")


@pytest.mark.parametrize(
    "options",
    [
        [("MSS", 1460)],  # at the header's start: an even position
        [("NOP", None), ("MSS", 1460), ("NOP", None), ("NOP", None), ("NOP", None)],  # odd
        [("WScale", 7), ("MSS", 1460), ("NOP", None)],  # after 3 bytes: odd
        [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)],
        [("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("MSS", 65535)],  # odd, last
    ],
)
@pytest.mark.parametrize("flags", ["S", "SA"])
def test_a_syns_mss_is_lowered_and_its_checksum_is_as_recomputed(options: list, flags: str) -> None:
    packet = syn(options, flags, payload=b"data")
    changed, result = clamped(packet)
    assert changed and mss_of(result) == CLAMP
    assert result == recomputed(result), "the checksum a full recomputation gives"
    assert len(result) == len(packet)
    assert [o for o in IP(result)[TCP].options if o[0] != "MSS"] == [
        o for o in IP(packet)[TCP].options if o[0] != "MSS"
    ]


def test_an_odd_placed_option_at_the_end_of_a_bare_header_is_clamped() -> None:
    """The MSS value straddles two checksum words, and the packet ends with the TCP
    header: the update needs no byte but the value's own."""
    packet = _options_raw(b"\x01\x02\x04\x05\xb4\x00\x00\x00")  # NOP, MSS 1460, EOL
    assert mss_of(packet) == 1460 and len(packet) == 20 + 28
    buffer = bytearray(packet)
    assert clamp_mss(memoryview(buffer), CLAMP)
    assert mss_of(bytes(buffer)) == CLAMP and bytes(buffer) == recomputed(bytes(buffer))


def _with_checksum(target: int, after_clamp: bool, odd: bool) -> bytes:
    """A SYN whose TCP checksum, before or after the clamp, is ``target``: the sequence
    number's low word is chosen for it (raising it by one lowers the checksum by one,
    in one's complement arithmetic)."""
    options = [("NOP", None), ("MSS", 1460), ("NOP", None)] if odd else [("MSS", 1460)]

    def checksum_at(low: int) -> tuple[bytes, int]:
        packet = syn(options, seq=0x12340000 | low)
        return packet, tcp_checksum(clamped(packet)[1] if after_clamp else packet)

    low = (checksum_at(0)[1] - target) % 0xFFFF
    for candidate in (low, low + 0xFFFF):
        if candidate <= 0xFFFF:
            packet, checksum = checksum_at(candidate)
            if checksum == target:
                return packet
    raise AssertionError(f"no sequence number gives checksum {target:#06x}")


@pytest.mark.parametrize("odd", [False, True])
@pytest.mark.parametrize("after_clamp", [False, True])
def test_checksum_corner_0x0000(after_clamp: bool, odd: bool) -> None:
    packet = _with_checksum(0x0000, after_clamp, odd)
    changed, result = clamped(packet)
    assert changed and result == recomputed(result)
    assert tcp_checksum(packet if not after_clamp else result) == 0x0000


@pytest.mark.parametrize("odd", [False, True])
def test_checksum_corner_0xffff_the_other_zero(odd: bool) -> None:
    """A sender may write a checksum of 0x0000 as 0xFFFF (one's complement's other zero):
    both verify, and the clamped packet must verify too."""
    packet = bytearray(_with_checksum(0x0000, False, odd))
    packet[36:38] = b"\xff\xff"
    assert l4_checksum_ok_v4(packet[12:16], packet[16:20], 6, packet[20:])
    changed, result = clamped(bytes(packet))
    assert changed and mss_of(result) == CLAMP
    assert l4_checksum_ok_v4(result[12:16], result[16:20], 6, result[20:])
    assert tcp_checksum(result) == tcp_checksum(recomputed(result))


@pytest.mark.parametrize(
    "packet",
    [
        syn([("MSS", 1400)]),  # already below the clamp
        syn([("MSS", CLAMP)]),  # at it
        syn([("MSS", 1460)], flags="A"),  # not a SYN
        syn([]),  # no option: the peer assumes 536
        raw(IP(src=SRC, dst=DST) / UDP(sport=1, dport=2) / (b"\x02\x04\x05\xb4" * 8)),  # UDP
        raw(IP(src=SRC, dst=DST, proto=6, frag=1) / (bytes(12) + b"\x60\x02" + bytes(10))),
    ],
)
def test_what_is_left_alone(packet: bytes) -> None:
    changed, result = clamped(packet)
    assert not changed and result == packet


def _options_raw(options: bytes, data_offset: int | None = None) -> bytes:
    """A SYN with these raw option bytes (padded by the caller) and that data offset."""
    words = data_offset if data_offset is not None else 5 + len(options) // 4
    tcp = bytearray(raw(TCP(flags="S", dataofs=words)))[:20] + options
    packet = bytearray(raw(IP(src=SRC, dst=DST, proto=6) / bytes(tcp)))
    segment = packet[20:]
    segment[16:18] = b"\0\0"
    segment[16:18] = l4_checksum_v4(packet[12:16], packet[16:20], 6, segment).to_bytes(2, "big")
    return bytes(packet[:20] + segment)


@pytest.mark.parametrize(
    "packet",
    [
        _options_raw(b"\x03\x00\x02\x04\x05\xb4\x01\x01"),  # an option of length 0 first
        _options_raw(b"\x03\x01\x02\x04\x05\xb4\x01\x01"),  # of length 1
        _options_raw(b"\x01\x01\x01\x02\x04\x05\xb4\x00", data_offset=6),  # MSS past the offset
        _options_raw(b"\x01\x01\x01\x08\x0a\x00\x00\x00"),  # an option running past it
        _options_raw(b"\x02\x04\x05\xb4", data_offset=4),  # a data offset under 5 words
        _options_raw(b"\x02\x04\x05\xb4", data_offset=15),  # past the packet
        _options_raw(b"\x02\x03\x05\x01"),  # an MSS option of the wrong length
        _options_raw(b"\x01\x01\x01\x02"),  # a kind with no length byte left
        _options_raw(b"\x01\x00\x02\x04\x05\xb4\x01\x01"),  # EOL ends the list before MSS
    ],
)
def test_malformed_or_ended_option_lists_are_left_alone(packet: bytes) -> None:
    changed, result = clamped(packet)
    assert not changed and result == packet


def test_the_first_fragment_is_clamped_and_the_ip_length_bounds_what_is_read() -> None:
    packet = bytearray(syn([("MSS", 1460)], payload=b"x" * 40))
    packet[6] = 0x20  # MF: the first fragment of a larger datagram, offset 0
    changed, _ = clamped(bytes(packet))
    assert changed
    short = bytearray(syn([("NOP", None), ("MSS", 1460), ("NOP", None), ("NOP", None)]))
    short[2:4] = (20 + 20).to_bytes(2, "big")  # the IP length ends before the options
    assert clamped(bytes(short) + bytes(8)) == (False, bytes(short) + bytes(8))


@given(st.binary(max_size=120), st.integers(min_value=-2, max_value=130))
def test_any_bytes_at_any_offset_never_raise(data: bytes, offset: int) -> None:
    buffer = bytearray(data)
    clamp_mss(buffer, CLAMP, offset)
    clamp_mss(memoryview(buffer), 536, offset)


@given(
    st.lists(
        st.sampled_from([("NOP", None), ("WScale", 3), ("SAckOK", b""), ("Timestamp", (5, 6))]),
        max_size=5,
    ),
    st.integers(min_value=0, max_value=5),
    st.integers(min_value=536, max_value=65535),
    st.integers(min_value=0, max_value=0xFFFFFFFF),
)
def test_any_layout_keeps_the_checksum_right(
    options: list, position: int, offered: int, seq: int
) -> None:
    sizes = {"NOP": 1, "WScale": 3, "SAckOK": 2, "Timestamp": 10}
    assume(sum(sizes[name] for name, _ in options) <= 40 - 4)  # TCP options fit 40 bytes
    layout = [*options[:position], ("MSS", offered), *options[position:]]
    packet = syn(layout, seq=seq)
    changed, result = clamped(packet)
    assert changed is (offered > CLAMP)
    assert result == recomputed(result)
