"""`storelens bench analytics` on options that seed nothing: a clear error, not a crash."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storelens.tools.bench import analytics as bench


def test_one_day_before_opening_is_a_clear_error() -> None:
    early = datetime(2026, 3, 20, 4, tzinfo=UTC).timestamp()  # before any store opens
    with pytest.raises(bench.BenchError, match="--days 1 seeds no events"):
        bench.run(stores_sizes=(1, 2), days=1, visitors_per_day=10, repeats=1,
                  backends=("sqlite",), until=early)  # fmt: skip


def test_ratios_over_nothing_are_none() -> None:
    assert bench._ratio(0, 5) is None
    assert bench._ratio(2, 5) == 2.5


def test_history_compares_the_same_chain_over_more_days() -> None:
    # One store, 2 vs 4 days: the longer history is its own database, and the dashboard (the
    # same last days) is compared with the shorter one's.
    until = datetime(2026, 3, 20, 21, tzinfo=UTC).timestamp()
    result = bench.run(stores_sizes=(1, 2), days=2, visitors_per_day=10, repeats=1,
                       backends=("sqlite",), until=until, history_days=4)  # fmt: skip
    history = result["sqlite"]["history"]
    short, long = history["sizes"]
    assert (short["stores"], short["days"]) == (1, 2)
    assert (long["stores"], long["days"]) == (1, 4)
    assert long["events"] > short["events"] > 0
    assert history["events_ratio"] == round(long["events"] / short["events"], 2)
    assert set(history["chart_ratio"]) == set(short["chart_ms"])
