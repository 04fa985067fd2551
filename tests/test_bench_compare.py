"""bench/host_forwarding.py's comparison of two commits, on made-up runs: each ratio
to the bare loop is taken within its repetition, and the verdict follows issue 10's
bar (no median ratio drops by more than the larger of 5 % and the reference's spread).
The benchmark itself never runs in the tests: this is its arithmetic only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from hostfwd.report import compare, ratios, result_key, split_key

OLD, NEW = "aaaaaaaaaaaa", "bbbbbbbbbbbb"


def runs(pps: list[float]) -> dict:
    return {"runs": [{"rep": rep, "delivered_pps": v} for rep, v in enumerate(pps, 1)]}


def results_of(old: list[float], new: list[float], bare: list[float]) -> dict:
    """The same figures for both daemons (asyncio, trio) and both sizes."""
    out = {}
    for size in (64, 1400):
        out[f"bare_{size}"] = runs(bare)
        for kind in ("asyncio", "trio"):
            out[result_key(kind, size, OLD)] = runs(old)
            out[result_key(kind, size, NEW)] = runs(new)
    return out


def test_keys_name_the_revision_only_when_several_are_measured() -> None:
    assert result_key("trio", 64, None) == "trio_64"
    assert result_key("trio", 64, OLD) == f"trio_64@{OLD}"
    assert split_key(f"asyncio_1400@{OLD}") == ("asyncio", 1400, OLD)
    assert split_key("bare_64") == ("bare", 64, None)


def test_each_ratio_is_taken_within_its_repetition() -> None:
    """The bare loop doubles in repetition 2 (the machine, not the code): so does the
    daemon, and its ratio stays 1.2; a ratio of the medians would say otherwise."""
    rat = ratios(results_of([120, 240, 120], [120, 240, 120], [100, 200, 100]))
    assert rat[f"asyncio_64@{OLD}"] == {
        "per_rep": [1.2, 1.2, 1.2],
        "median": 1.2,
        "min": 1.2,
        "max": 1.2,
    }
    assert list(rat) == [
        f"asyncio_64@{OLD}",
        f"asyncio_64@{NEW}",
        f"asyncio_1400@{OLD}",
        f"asyncio_1400@{NEW}",
        f"trio_64@{OLD}",
        f"trio_64@{NEW}",
        f"trio_1400@{OLD}",
        f"trio_1400@{NEW}",
    ], "the order of earlier results.json files: by receiver, then size"


@pytest.mark.parametrize(
    ("old", "new", "no_slower", "allowed"),
    [
        # a steady reference: 5 % is the bar
        ([100, 100, 100, 100, 100], [96, 96, 96, 96, 96], True, 0.05),
        ([100, 100, 100, 100, 100], [94, 94, 94, 94, 94], False, 0.05),
        # a reference that itself moves by 20 % (90..110 around 100): that is the bar
        ([90, 100, 110, 100, 100], [85, 85, 85, 85, 85], True, 0.2),
        ([90, 100, 110, 100, 100], [79, 79, 79, 79, 79], False, 0.2),
        # faster is never a problem
        ([100, 100, 100, 100, 100], [150, 150, 150, 150, 150], True, 0.05),
    ],
)
def test_the_verdict(old: list[float], new: list[float], no_slower: bool, allowed: float) -> None:
    bare = [100.0] * 5
    comparison = compare(ratios(results_of(old, new, bare)), [OLD, NEW], reps=5)
    assert comparison["reference"] == OLD and comparison["enough_reps"]
    assert comparison["no_slower"] is no_slower
    assert len(comparison["lines"]) == 4  # two daemons, two sizes
    for line in comparison["lines"]:
        assert line["against"] == NEW
        assert line["allowed_drop"] == pytest.approx(allowed)
        assert line["ok"] is no_slower


def test_a_missing_measurement_is_no_verdict_of_no_slower() -> None:
    results = results_of([100] * 5, [100] * 5, [100] * 5)
    del results[result_key("trio", 1400, NEW)]
    comparison = compare(ratios(results), [OLD, NEW], reps=5)
    assert comparison["no_slower"] is False
    [missing] = [line for line in comparison["lines"] if not line["ok"]]
    assert missing == {
        "receiver": "trio",
        "size": 1400,
        "against": NEW,
        "ok": False,
        "missing": True,
    }


def test_fewer_than_five_repetitions_are_said_to_be_too_few() -> None:
    comparison = compare(ratios(results_of([100], [100], [100])), [OLD, NEW], reps=1)
    assert comparison["no_slower"] and not comparison["enough_reps"]
