"""bench/gateway_forwarding.py's arithmetic, on made-up runs: each daemon's ratio to
its own path's bare loop and (``in``) to Open vSwitch is taken within its repetition,
a repetition missing from an anchor is left out, two sources of the daemon are
compared path by path, and a source whose code changed under the run is named. The
benchmark itself never runs in the tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from hostfwd.common import SIZES
from hostfwd.gateway_report import cases, key_of, ratios, split_key
from hostfwd.report import compare, summarize_versions


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


OLD, NEW = "aaaaaaaaaaaa", "work tree"


def test_two_sources_each_get_their_ratios_and_a_comparison_per_path() -> None:
    """``--rev OLD --rev NEW``: the daemons' keys carry their source, each is taken
    against the same anchor of its repetition, and the comparison has a line per path,
    daemon and size; a path that got slower beyond the reference's spread fails it."""
    results = {
        key_of("in", "bare", 64): runs({1: 100.0, 2: 100.0}),
        key_of("out", "bare", 64): runs({1: 100.0, 2: 100.0}),
        key_of("in", "asyncio", 64, OLD): runs({1: 90.0, 2: 100.0}),
        key_of("in", "asyncio", 64, NEW): runs({1: 100.0, 2: 110.0}),
        key_of("out", "asyncio", 64, OLD): runs({1: 100.0, 2: 100.0}),
        key_of("out", "asyncio", 64, NEW): runs({1: 80.0, 2: 90.0}),
    }
    assert split_key(key_of("in", "asyncio", 64, NEW)) == ("in", "asyncio", 64, NEW)
    assert split_key(key_of("out", "bare", 1400)) == ("out", "bare", 1400, None)
    rat = ratios(results)
    assert rat[f"in-asyncio_64@{OLD}/bare"]["per_rep"] == [0.9, 1.0]
    assert rat[f"in-asyncio_64@{NEW}/bare"]["per_rep"] == [1.0, 1.1]
    plan = {"in": ["bare", "asyncio"], "out": ["bare", "asyncio"]}
    comparison = compare(rat, [OLD, NEW], 2, cases(plan))
    lines = {(line["receiver"], line["size"]): line for line in comparison["lines"]}
    assert set(lines) == {(f"{p}-asyncio", s) for p in ("in", "out") for s in SIZES}
    assert lines["in-asyncio", 64]["change"] == pytest.approx(1.05 / 0.95 - 1, abs=1e-3)
    assert lines["in-asyncio", 64]["ok"]
    # 0.85 against 1.00, whose spread is 0: more than the 5 % allowed
    assert lines["out-asyncio", 64]["change"] == pytest.approx(-0.15)
    assert not lines["out-asyncio", 64]["ok"]
    assert lines["in-asyncio", 1400].get("missing")  # not measured: no verdict of "no slower"
    assert comparison["no_slower"] is False


def test_a_source_whose_code_changed_during_the_run_is_named() -> None:
    results = {
        key_of("in", "bare", 64): {"runs": [{"rep": 1, "gateway_py_sha256": "a"}]},
        key_of("in", "asyncio", 64, OLD): {"runs": [{"rep": 1, "gateway_py_sha256": "a"}]},
        key_of("in", "asyncio", 64, NEW): {
            "runs": [{"rep": 1, "gateway_py_sha256": "b"}, {"rep": 2, "gateway_py_sha256": "c"}]
        },
    }
    problems: list[str] = []
    summarize_versions(results, problems)
    assert problems == [f"gateway/ of {NEW} changed during the run: 2 versions"]
