"""bench/api_change.py's arithmetic and table, on made-up figures: the percentile, each
change's lag on a follower (a revision it jumped past counts from the later one
it reached), and the table that puts the stores and the file store of --rev side
by side. The benchmark itself never runs in the tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from api_report import lags, percentile, summary, table


def test_percentile_is_a_value_measured_by_nearest_rank() -> None:
    values = [float(n) for n in range(100, 0, -1)]  # 1..100, unordered
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 99) == 3.0  # fewer than 100: the max
    assert percentile([0.1, 0.2, 0.3, 0.4], 50) == 0.2  # never interpolated (0.25)
    assert percentile([7.0], 1) == 7.0


@pytest.mark.parametrize("p", [0, 101, -1])
def test_percentile_refuses_what_is_no_percentile(p: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], p)
    with pytest.raises(ValueError):
        percentile([], 50)


def test_lag_of_each_change_is_from_the_answer_to_the_first_revision_as_new_in_force() -> None:
    answers = {5: 1000, 6: 2000, 7: 3000}
    # seeded at 4; reached 5 at 1300, then 7 at 3500 in one reload (6 coalesced)
    in_force = [(4, 0), (5, 1300), (7, 3500)]
    assert lags(answers, in_force) == [300, 1500, 500]


def test_a_follower_ahead_of_the_answer_lags_by_a_negative_time() -> None:
    """It polled between the commit and the writer's answer: reported as measured."""
    assert lags({5: 1000}, [(4, 0), (5, 990)]) == [-10]


def test_a_revision_never_reached_is_named() -> None:
    with pytest.raises(ValueError, match="revision 6"):
        lags({5: 1000, 6: 2000}, [(4, 0), (5, 1100)])


def test_summary_counts_and_rounds_to_a_tenth_of_a_ms() -> None:
    figures = summary([0.01234, 0.02, 0.5, 0.03456])
    assert figures == {"samples": 4, "median_s": 0.0273, "p99_s": 0.5, "max_s": 0.5}


def _row(records: int, change: float, reload: float) -> dict:
    return {
        "records": records,
        "change": {"best_s": change, "median_s": change},
        "load (SIGHUP)": {"best_s": reload, "median_s": reload},
    }


def test_table_puts_each_store_and_the_older_file_store_side_by_side() -> None:
    results = {
        "change": {
            "sqlite": [_row(1000, 0.003, 0.035), _row(100000, 0.041, 4.9)],
            "etcd": [_row(1000, 0.004, 0.05), _row(100000, 0.06, 13.0)],
        },
        "file_store": {"commit": "5cdcc4a", "results": [_row(1000, 1.0, 1.5)]},
        "propagation": {
            "sqlite": [{"records": 100000, "in_force_after_answer": {"p99_s": 5.2, "max_s": 6.0}}]
        },
    }
    head, *rows = table(results)
    assert head.split(" | ") == [
        "records", "change sqlite", "change etcd", "change file@5cdcc4a",
        "reload sqlite", "reload etcd", "reload file@5cdcc4a", "others p99/max sqlite",
    ]  # fmt: skip
    assert rows == [
        "1,000 | 3 ms | 4 ms | 1.00 s | 35 ms | 50 ms | 1.50 s | -",
        "100,000 | 41 ms | 60 ms | - | 4.90 s | 13.00 s | - | 5.20 s / 6.00 s",
    ]
