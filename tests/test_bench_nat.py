"""bench/gateway_nat.py's own pieces, without a network: the frames it sends are what
it claims (checked against scapy's parse), ``nat_capture.py`` reads back the
endpoints a check compares (of plain UDP and of NVGRE's inner frame), each ratio to
the kernel's NAT is taken within its repetition and its own direction, and the memory
figure counts the sessions it opened. The benchmark itself never runs in the tests."""

from __future__ import annotations

import sys
from pathlib import Path

from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Ether

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from hostfwd.common import REMOTE_VM, VSID
from hostfwd.nat_capture import endpoints
from hostfwd.nat_measure import below, key_of, ratios
from hostfwd.nat_setup import (
    EXT_ADDR,
    EXT_MAC,
    GW_RECORD,
    SERVER,
    SERVER_PORT,
    kernel_frames,
    memory_per_session,
    reply_frames,
    tenant_frames,
)


def test_the_way_out_is_the_same_inner_frame_in_nvgre_and_plain() -> None:
    for size in (64, 1400):
        nvgre, plain = tenant_frames(size), kernel_frames(size)
        assert len(nvgre) == len(plain) == 8
        for n, (tunnelled, bare) in enumerate(zip(nvgre, plain, strict=True), start=1):
            outer = Ether(tunnelled)
            assert outer[GRE].key == VSID << 8 | n and outer[GRE].proto == 0x6558
            inner = Ether(bytes(outer[GRE].payload))
            assert len(bytes(inner)) == len(bare) == size
            assert inner.dst == GW_RECORD[1]  # routed by the gateway
            assert bytes(inner[IP]) == bytes(Ether(bare)[IP])  # the same datagram
            assert (inner[IP].src, inner[IP].dst) == (REMOTE_VM[0], SERVER)
            assert (inner[UDP].sport, inner[UDP].dport) == (40000 + n, SERVER_PORT)
            assert endpoints(tunnelled) == [REMOTE_VM[0], 40000 + n, SERVER, SERVER_PORT, size + 42]
            assert endpoints(bare) == [REMOTE_VM[0], 40000 + n, SERVER, SERVER_PORT, size]


def test_replies_go_to_the_external_ports_with_valid_checksums() -> None:
    frames = reply_frames(64, [1234, 50000], EXT_MAC)
    for frame, port in zip(frames, (1234, 50000), strict=True):
        parsed = Ether(frame)
        assert parsed.dst == EXT_MAC and len(frame) == 64
        assert endpoints(frame) == [SERVER, SERVER_PORT, EXT_ADDR, port, 64]
        recomputed = Ether(frame)
        del recomputed[IP].chksum, recomputed[UDP].chksum
        rebuilt = Ether(bytes(recomputed))
        assert (rebuilt[IP].chksum, rebuilt[UDP].chksum) == (parsed[IP].chksum, parsed[UDP].chksum)


def test_capture_ignores_what_is_not_udp() -> None:
    arp = bytes(6) + bytes(6) + b"\x08\x06" + bytes(28)
    assert endpoints(arp) is None
    icmp = bytes(Ether() / IP(src="192.0.2.1", dst="192.0.2.2", proto=1) / (b"\x08" * 30))
    assert endpoints(icmp) is None


def runs(pps: dict[int, float]) -> dict:
    return {"runs": [{"rep": rep, "delivered_pps": v} for rep, v in pps.items()]}


def test_each_ratio_is_against_the_kernel_of_its_own_repetition_and_direction() -> None:
    results = {
        key_of("out", "kernel", 64): runs({1: 100.0, 2: 200.0}),
        key_of("out", "asyncio", 64): runs({1: 50.0, 2: 80.0, 3: 90.0}),
        key_of("back", "kernel", 64): runs({1: 400.0, 2: 400.0}),
        key_of("back", "trio", 64): runs({1: 100.0, 2: 200.0}),
    }
    rat = ratios(results)
    assert rat["out-asyncio_64/kernel"]["per_rep"] == [0.5, 0.4]  # repetition 3: no kernel
    assert rat["back-trio_64/kernel"]["per_rep"] == [0.25, 0.5]
    assert set(rat) == {"out-asyncio_64/kernel", "back-trio_64/kernel"}


def test_the_bare_loop_is_the_kernel_s_ceiling_and_the_daemons_anchor_not_a_verdict() -> None:
    results = {
        key_of("back", "kernel", 64): runs({1: 400.0, 2: 500.0}),
        key_of("back", "bare", 64): runs({1: 160.0, 2: 150.0}),
        key_of("back", "asyncio", 64): runs({1: 120.0, 2: 135.0}),
        key_of("out", "kernel", 1400): runs({1: 400.0}),
        key_of("out", "trio", 1400): runs({1: 200.0}),
    }
    rat = ratios(results)
    assert rat["back-bare_64/kernel"]["per_rep"] == [0.4, 0.3]
    assert rat["back-asyncio_64/bare"]["per_rep"] == [0.75, 0.9]
    assert rat["back-asyncio_64/kernel"]["per_rep"] == [0.3, 0.27]
    assert "out-trio_1400/bare" not in rat  # no bare loop measured on that way
    # Only the daemons are held to the target: the bare loop under it says the
    # target is above Python's ceiling, which is no verdict on the daemon.
    assert below(rat, 0.45) == ["back-asyncio_64/kernel"]
    assert below(rat, 0.25) == []


def test_memory_is_per_session_opened() -> None:
    m = memory_per_session(2000)
    assert m["sessions"] == 2000 and m["external_addresses"] == 1
    assert m["bytes_per_session"] == round(m["bytes"] / 2000) > 0
