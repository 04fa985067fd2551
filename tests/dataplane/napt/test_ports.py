"""External ports: O(1) rings that never hand out a port in use, checked against a
plain set model under hypothesis, and through the table: exhaustion, then reuse
after expiry."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.dataplane.napt import AddressPool, PortAllocator, Session
from gateway.errors import Drop

from ._packets import CA, EXT, EXT2, REMOTE, SHORT, a, out, table, udp

T0 = 50.0


def test_every_port_of_the_range_once_then_exhausted() -> None:
    ports = PortAllocator(2000, 2099, random.Random(1))
    got = [ports.allocate() for _ in range(100)]
    assert sorted(got) == list(range(2000, 2100))
    assert got != sorted(got)  # shuffled: not guessable from the last one (RFC 6056)
    assert ports.allocate() == -1 and ports.free == 0


def test_a_released_port_is_the_last_to_come_back() -> None:
    ports = PortAllocator(2000, 2009, random.Random(1))
    first = ports.allocate()
    ports.release(first)
    got = [ports.allocate() for _ in range(10)]
    assert got[-1] == first and ports.allocate() == -1


def test_reserved_ports_are_skipped_and_return_when_unreserved() -> None:
    ports = PortAllocator(2000, 2004, random.Random(3))
    ports.reserve(2002)
    got = {ports.allocate() for _ in range(4)}
    assert got == {2000, 2001, 2003, 2004} and ports.allocate() == -1
    ports.unreserve(2002)
    assert ports.allocate() == 2002
    with pytest.raises(ValueError, match="in use"):
        ports.reserve(2002)
    with pytest.raises(ValueError, match="not in use"):
        ports.release(1500)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("arRU"), st.integers(0, 15)), max_size=120))
def test_allocator_matches_a_set_model(ops: list[tuple[str, int]]) -> None:
    """Never a port in use, every free port reachable, whatever the order."""
    first, last = 100, 111  # a few ports below the range too, for reservations
    ports = PortAllocator(first, last, random.Random(0))
    used: set[int] = set()
    reserved: set[int] = set()
    for op, n in ops:
        port = 96 + n
        if op == "a":
            got = ports.allocate()
            free = set(range(first, last + 1)) - used - reserved
            if not free:
                assert got == -1
            else:
                assert got in free
                used.add(got)
        elif op == "r" and port in used:
            ports.release(port)
            used.discard(port)
        elif op == "R" and port not in used | reserved:
            ports.reserve(port)
            reserved.add(port)
        elif op == "U" and port in reserved:
            ports.unreserve(port)
            reserved.discard(port)
        for p in range(96, 112):
            assert ports.in_use(p) == (p in used | reserved), p
    rest = {ports.allocate() for _ in range(20)} - {-1}
    assert rest == set(range(first, last + 1)) - used - reserved


def test_pool_pairs_a_tenant_address_with_one_external_address() -> None:
    pool = AddressPool([a(EXT), a(EXT2)], (2000, 2001), seed=0)
    chosen = {pool.allocate("blue", a(CA), 17)[0] for _ in range(2)}
    assert len(chosen) == 1  # paired (RFC 4787 REQ-2) while it has ports
    other, port = pool.allocate("blue", a(CA), 17)
    assert other not in chosen and port >= 0  # then the next address
    pool.allocate("blue", a(CA), 17)
    assert pool.allocate("blue", a(CA), 17)[1] == -1


def test_ports_exhausted_then_reused_after_expiry() -> None:
    napt, blue, _ = table(ports=(3000, 3003))
    sessions = [out(napt, blue, udp(CA, REMOTE, 5000 + i, 53), T0) for i in range(4)]
    assert all(isinstance(s, Session) for s in sessions)
    held = {s.mapping.ext_port for s in sessions}
    assert held == {3000, 3001, 3002, 3003}
    assert out(napt, blue, udp(CA, REMOTE, 6000, 53), T0 + 1) is Drop.NAPT_PORTS_EXHAUSTED
    # A new destination from an endpoint that has a mapping needs no new port (EIM).
    again = out(napt, blue, udp(CA, "203.0.113.2", 5000, 53), T0 + 1)
    assert isinstance(again, Session) and again.mapping is sessions[0].mapping
    # All four end; the first one's mapping (and port) stays with the newer session.
    assert napt.expire(T0 + SHORT.udp_unreplied_s) == 4
    fresh = out(napt, blue, udp(CA, REMOTE, 6000, 53), T0 + SHORT.udp_unreplied_s)
    assert isinstance(fresh, Session) and fresh.mapping.ext_port in held - {
        sessions[0].mapping.ext_port
    }
