"""What becomes of a packet the data plane raised on: counted always, logged rarely,
its headers shown and its payload never. The clock is injected, never slept on."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw
from structlog.testing import capture_logs

from gateway.errors import Drop
from gateway.io.faults import FAULT_LOG_INTERVAL_S, PacketFaults, header_length

SECRET = b"tenant-secret-payload"
INNER = Ether() / IP(src="10.10.10.11", dst="10.10.10.12") / UDP(sport=1, dport=2) / SECRET
DATAGRAM = raw(IP(src="198.18.0.1", dst="198.18.0.2") / GRE(key_present=1, proto=0x6558) / INNER)


@given(st.binary(max_size=200), st.booleans())
def test_header_length_reads_hostile_bytes_without_raising(data: bytes, ethernet: bool) -> None:
    assert 0 <= header_length(memoryview(data), ethernet) <= len(data)


def test_header_length_stops_at_the_payload() -> None:
    assert header_length(memoryview(DATAGRAM), ethernet=False) == 20 + 8 + 14 + 20 + 8
    assert header_length(memoryview(raw(INNER)), ethernet=True) == 14 + 20 + 8
    arp = raw(Ether() / ARP()) + b"\x00" * 18  # padded to 60 bytes on the wire
    assert header_length(memoryview(arp), ethernet=True) == 14 + 28
    assert header_length(memoryview(bytes(12) + b"\x88\xcc" + SECRET), ethernet=True) == 14
    options = raw(IP(src="198.18.0.1", options=b"\x01" * 8) / UDP() / SECRET)
    assert header_length(memoryview(options), ethernet=False) == 28 + 8


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def raise_here(message: str) -> Exception:
    try:
        raise ValueError(message)
    except ValueError as error:
        return error


def raise_there() -> Exception:
    try:
        {}["missing"]
    except KeyError as error:
        return error
    raise AssertionError


def test_every_fault_is_counted_and_one_event_per_interval_is_logged() -> None:
    drops = [0] * len(Drop)
    clock = Clock()
    faults = PacketFaults(drops, clock=clock)
    fault = faults.reader("provider ring pa0", ethernet=False)
    frame = memoryview(DATAGRAM)
    with capture_logs() as logs:
        for n in range(50):
            fault(raise_here(f"bug {n}"), frame)
            clock.now += FAULT_LOG_INTERVAL_S / 20
        fault(raise_there(), frame)
    assert drops[Drop.INTERNAL_ERROR] == 51
    assert len(logs) == 3  # at 0, 20 and 40 twentieths of the interval
    first, second, third = logs
    assert first["reader"] == "provider ring pa0" and first["error"] == "ValueError"
    assert first["message"] == "bug 0" and "raise_here" in first["where"]
    assert first["held_back"] == 0 and second["held_back"] == 19 and third["held_back"] == 19
    assert "Traceback" in first["traceback"] and second["traceback"] is None
    assert first["headers"] == DATAGRAM[:70].hex() and first["frame_bytes"] == len(DATAGRAM)
    assert all(SECRET.hex() not in str(entry) for entry in logs)
    assert all(entry["log_level"] == "error" for entry in logs)


def test_a_new_place_gets_its_traceback_when_it_is_first_logged() -> None:
    drops = [0] * len(Drop)
    clock = Clock()
    faults = PacketFaults(drops, clock=clock)
    fault = faults.reader("port blue1", ethernet=True)
    with capture_logs() as logs:
        fault(raise_here("one"), memoryview(raw(INNER)))
        fault(raise_there(), memoryview(raw(INNER)))  # held back: the interval is not over
        clock.now += FAULT_LOG_INTERVAL_S
        fault(raise_there(), memoryview(raw(INNER)))
        clock.now += FAULT_LOG_INTERVAL_S
        fault(raise_there(), memoryview(raw(INNER)))
    assert [entry["error"] for entry in logs] == ["ValueError", "KeyError", "KeyError"]
    assert [entry["traceback"] is not None for entry in logs] == [True, True, False]
    assert logs[1]["held_back"] == 1
