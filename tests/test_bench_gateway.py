"""bench/gateway_forwarding.py's arithmetic, on made-up runs: each daemon's ratio to
its own path's bare loop and (``in``) to Open vSwitch is taken within its repetition,
a repetition missing from an anchor is left out, and a path below its bare loop is
named. The benchmark itself never runs in the tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from hostfwd.gateway_report import key_of, ratios


def runs(pps: dict[int, float]) -> dict:
    return {"runs": [{"rep": rep, "delivered_pps": v} for rep, v in pps.items()]}


def test_each_ratio_is_taken_within_its_repetition_against_its_own_path() -> None:
    results = {
        key_of("in", "bare", 64): runs({1: 100.0, 2: 200.0, 3: 100.0}),
        key_of("in", "ovs", 64): runs({1: 50.0, 2: 100.0}),
        key_of("in", "asyncio", 64): runs({1: 110.0, 2: 180.0, 3: 120.0}),
        key_of("out", "bare", 64): runs({1: 40.0, 2: 40.0, 3: 40.0}),
        key_of("out", "asyncio", 64): runs({1: 20.0, 2: 30.0, 3: 60.0}),
    }
    rat = ratios(results)
    # per repetition 1.1, 0.9, 1.2: a median of the ratios, not a ratio of medians
    assert rat["in-asyncio_64/bare"]["per_rep"] == [1.1, 0.9, 1.2]
    assert rat["in-asyncio_64/bare"]["median"] == 1.1
    # OVS ran in repetitions 1 and 2 only: repetition 3 has nothing to compare with
    assert rat["in-asyncio_64/ovs"]["per_rep"] == [2.2, 1.8]
    # the out path against the out path's bare loop, never the in path's
    assert rat["out-asyncio_64/bare"]["per_rep"] == [0.5, 0.75, 1.5]
    assert (rat["out-asyncio_64/bare"]["min"], rat["out-asyncio_64/bare"]["max"]) == (0.5, 1.5)
    # OVS against the bare loop too; the out path has no OVS anchor; none against itself
    assert rat["in-ovs_64/bare"]["per_rep"] == [0.5, 0.5]
    assert set(rat) == {
        "in-asyncio_64/bare",
        "in-asyncio_64/ovs",
        "in-ovs_64/bare",
        "out-asyncio_64/bare",
    }
