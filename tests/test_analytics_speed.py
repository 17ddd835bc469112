"""What keeps the charts fast without changing their numbers: the checkout percentiles of all
cells computed at once as the stdlib computes them one at a time, and the collector paused
only while a chart runs."""

from __future__ import annotations

import contextlib
import gc
import random
import statistics

import numpy as np

from storelens.cloud import analytics
from storelens.cloud.analytics.checkout_times import _quantiles


def _stdlib(values: list[float], q: float) -> float:
    """The chart's percentile by the stdlib: inclusive quantiles, a single value as itself."""
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1], 1)


def test_checkout_percentiles_are_the_stdlib_inclusive_ones() -> None:
    rng = random.Random(5)
    for n in (2, 3, 7, 50, 101):
        values = [round(rng.lognormvariate(4, 0.8), 1) for _ in range(n)]
        for q in (0.5, 0.9):
            want = statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]
            got = _quantiles(np.array(sorted(values)), np.array([0]), np.array([n]), q)
            assert got == [round(want, 1)]


def test_checkout_percentiles_of_all_cells_at_once_are_those_one_at_a_time() -> None:
    rng = random.Random(7)
    sizes_wanted = [rng.choice((1, 2, 3, 9, 40)) for _ in range(300)]
    cells = [sorted(round(rng.lognormvariate(4, 0.8), 1) for _ in range(n)) for n in sizes_wanted]
    data = np.array([v for cell in cells for v in cell])
    sizes = np.array([len(cell) for cell in cells])
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    for q in (0.5, 0.9):
        got = _quantiles(data, starts, sizes, q)
        assert got == [_stdlib(cell, q) for cell in cells]
        assert all(type(v) is float for v in got)


class _Unpinned:
    """A database stand-in: the chart wrapper pins its connection (`Database.pinned`)."""

    def pinned(self) -> contextlib.nullcontext:
        return contextlib.nullcontext()


def test_a_chart_runs_with_the_collector_paused_and_leaves_it_on() -> None:
    seen: list[bool] = []
    probe = analytics._gc_paused(lambda db, scope: seen.append(gc.isenabled()))
    assert gc.isenabled()
    probe(_Unpinned(), None)
    assert seen == [False] and gc.isenabled()
    gc.disable()  # paused by someone else: left to them
    try:
        probe(_Unpinned(), None)
        assert not gc.isenabled()
    finally:
        gc.enable()
