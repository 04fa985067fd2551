"""The ring's socket filter, run by a classic-BPF interpreter against an oracle.

The kernel runs the program on a real veth in test_ring.py; here a small interpreter
(the opcodes ``gre_filter`` uses, with the kernel's rule that a load past the end of
the frame drops it) runs it on generated frames, and its verdict must be what the
oracle says: whole frames for GRE to our PAs with a right checksum (or options, which
the data plane checks), a counted stub for a wrong checksum or another host's MAC,
nothing for the rest. The checksum oracle is the wire layer's ``checksum_ok``.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gateway.io.ring import (
    MAX_FILTER_PAS,
    SNAP_BAD_CHECKSUM,
    SNAP_OTHER_HOST,
    Instruction,
    gre_filter,
)
from gateway.wire import build_ipv4, checksum_ok, internet_checksum

OTHERHOST, HOST = 3, 0
ACCEPT_ALL = 0x40000


def run(program: tuple[Instruction, ...], frame: bytes, pkt_type: int) -> int:
    a = x = 0
    pc = 0
    while True:
        op, jt, jf, k = program[pc]
        pc += 1
        if op in (0x20, 0x28, 0x30):  # ld / ldh / ldb [k]
            if k == 0xFFFFF004:
                a = pkt_type
                continue
            size = {0x20: 4, 0x28: 2, 0x30: 1}[op]
            if k + size > len(frame):
                return 0  # the kernel drops a frame a load runs past
            a = int.from_bytes(frame[k : k + size], "big")
        elif op == 0x15:
            pc += jt if a == k else jf
        elif op == 0x07:
            x = a
        elif op == 0x0C:
            a = (a + x) & 0xFFFFFFFF
        elif op == 0x94:
            a %= k
        elif op == 0x06:
            return k
        else:
            raise AssertionError(f"opcode {op:#x} not interpreted")


def expected(frame: bytes, pas: set[bytes], pkt_type: int) -> int:
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 47:
        return 0
    if frame[30:34] not in pas:
        return 0
    if pkt_type == OTHERHOST:
        return SNAP_OTHER_HOST
    if frame[14] != 0x45:
        return ACCEPT_ALL
    return ACCEPT_ALL if checksum_ok(frame[14:34]) else SNAP_BAD_CHECKSUM


pa_st = st.binary(min_size=4, max_size=4)


@st.composite
def frames(draw: st.DrawFn, pas: list[bytes]) -> bytes:
    dst = draw(pa_st) if draw(st.integers(0, 4)) == 0 else draw(st.sampled_from(pas))
    protocol = draw(st.sampled_from([47] * 5 + [17]))
    header = bytearray(build_ipv4(draw(pa_st), dst, protocol, 8, ttl=draw(st.integers(0, 255))))
    header[4:6] = draw(st.binary(min_size=2, max_size=2))  # any ID
    header[1] = draw(st.integers(0, 255))  # any TOS
    if draw(st.booleans()):  # the checksum is recomputed: a right header
        header[10:12] = b"\x00\x00"
        header[10:12] = struct.pack("!H", internet_checksum(header))
    if draw(st.integers(0, 3)) == 0:
        header[10:12] = draw(st.binary(min_size=2, max_size=2))  # maybe wrong
    if draw(st.integers(0, 9)) == 0:
        header[0] = draw(st.integers(0, 255))  # options, or nonsense
    ethertype = draw(st.sampled_from([b"\x08\x00"] * 5 + [b"\x86\xdd"]))
    frame = bytes(12) + ethertype + bytes(header) + bytes(8)
    return frame[: draw(st.integers(0, len(frame)))] if draw(st.integers(0, 9)) == 0 else frame


@settings(max_examples=500)
@given(st.data(), st.lists(pa_st, min_size=1, max_size=6, unique=True))
def test_the_filter_takes_what_the_oracle_takes(data: st.DataObject, pas: list[bytes]) -> None:
    program = gre_filter(pas)
    frame = data.draw(frames(pas))
    pkt_type = data.draw(st.sampled_from([HOST] * 4 + [OTHERHOST, 1, 2]))
    verdict = expected(frame, set(pas), pkt_type)
    event(f"verdict {verdict:#x}")
    assert run(program, frame, pkt_type) == verdict


def test_a_right_checksum_of_every_kind_passes() -> None:
    """The corners of the one's-complement sum: a header whose checksum field is
    0x0000 or 0xFFFF, and a sum that needs many end-around carries."""
    pas = [bytes([198, 18, 0, 2])]
    program = gre_filter(pas)
    seen = set()
    for ident in range(0x10000):
        header = build_ipv4(bytes([198, 18, 0, 1]), pas[0], 47, 8, ident=ident, ttl=255)
        checksum = header[10:12]
        if checksum in (b"\x00\x00", b"\xff\xff") or ident % 4096 == 0:
            seen.add(checksum)
            frame = bytes(12) + b"\x08\x00" + header + bytes(8)
            assert run(program, frame, HOST) == ACCEPT_ALL, ident
    assert b"\x00\x00" in seen or b"\xff\xff" in seen


def test_the_pa_list_is_bounded_by_the_jump_width() -> None:
    pas = [i.to_bytes(4, "big") for i in range(MAX_FILTER_PAS)]
    assert len(gre_filter(pas)) < 4096  # BPF_MAXINSNS
    with pytest.raises(ValueError):
        gre_filter([*pas, bytes(4)])
    with pytest.raises(ValueError):
        gre_filter([])
