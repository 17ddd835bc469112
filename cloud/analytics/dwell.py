"""Dwell per zone: how many zone visits, how long people stayed, zones ranked.

The database groups zone visits by zone and whole second of dwell, so the service receives at
most (zones x distinct seconds) rows however many visits there were; quartiles and the
histogram are then exact to the second.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from storelens.cloud.analytics import rollups
from storelens.cloud.analytics.rollups.aggregate import DwellHistogram
from storelens.cloud.analytics.scope import Scope
from storelens.cloud.analytics.staff import shoppers_only
from storelens.cloud.analytics.table import Table, change
from storelens.cloud.db import Database

# Human-sized bins: a glance, a look, browsing, shopping, a long stay.
HISTOGRAM_EDGES_S = (0, 10, 30, 60, 120, 300, 600)


def _bin_name(i: int) -> str:
    lo = HISTOGRAM_EDGES_S[i]
    if i + 1 < len(HISTOGRAM_EDGES_S):
        return f"dwell_{lo}_{HISTOGRAM_EDGES_S[i + 1]}s"
    return f"dwell_{lo}s_plus"


BIN_COLUMNS = [_bin_name(i) for i in range(len(HISTOGRAM_EDGES_S))]


def _histogram(items: list[tuple[int, int, float, float, float]]) -> DwellHistogram:
    """(second, visits, total, min, max) rows of one zone as the rollups' histogram."""
    items.sort()
    return DwellHistogram(
        seconds=np.array([i[0] for i in items], dtype=float),
        counts=np.array([i[1] for i in items], dtype=float),
        total=sum(i[2] for i in items),
        lowest=items[0][3],
        highest=items[-1][4],
    )


def _per_second(
    db: Database, scope: Scope, reader: rollups.RollupReader | None = None
) -> dict[str, DwellHistogram]:
    """``reader``: the chart's, shared by its period and the previous one."""
    if not scope.raw:
        return (reader or rollups.reader(db)).dwell(scope)
    where, params = scope.where()
    rows = db.query(
        "SELECT zone, CAST(FLOOR(dwell_s) AS BIGINT) AS s, COUNT(*) AS n, SUM(dwell_s) AS total,"
        " MIN(dwell_s) AS lo, MAX(dwell_s) AS hi"
        f" FROM events WHERE type = 'zone_visit' AND zone IS NOT NULL AND {where}"
        f" AND {shoppers_only()}"
        " GROUP BY zone, s",
        params,
    )
    grouped: dict[str, list[tuple[int, int, float, float, float]]] = defaultdict(list)
    for r in rows:
        grouped[r["zone"]].append(
            (int(r["s"]), int(r["n"]), float(r["total"]), float(r["lo"]), float(r["hi"]))
        )
    return {zone: _histogram(items) for zone, items in grouped.items()}


QUANTILES = (0.25, 0.5, 0.75, 0.9)


def _quantiles(seconds: np.ndarray, counts: np.ndarray) -> list[float]:
    """The `QUANTILES` over 1-second bins, each interpolated inside its bin (one cumsum and
    one searchsorted for all four)."""
    cum = np.cumsum(counts)
    targets = np.array(QUANTILES) * cum[-1]
    out = []
    for target, i in zip(targets.tolist(), np.searchsorted(cum, targets, side="left").tolist(),
                         strict=True):  # fmt: skip
        before = float(cum[i - 1]) if i else 0.0
        inside = (target - before) / counts[i] if counts[i] else 0.0
        out.append(round(float(seconds[i] + inside), 1))
    return out


_EDGES = np.array(HISTOGRAM_EDGES_S, dtype=float)


def _binned(seconds: np.ndarray, counts: np.ndarray) -> list[int]:
    """Visits per `HISTOGRAM_EDGES_S` bin (the last one open-ended), as np.histogram with
    those edges and inf would count them, without its sort."""
    bins = np.searchsorted(_EDGES, seconds, side="right") - 1
    inside = bins >= 0  # below the first edge: in no bin
    hist = np.bincount(bins[inside], weights=counts[inside], minlength=len(_EDGES))
    return [int(v) for v in hist.tolist()]


def zone_dwell(db: Database, scope: Scope, categories: dict[str, str] | None = None) -> Table:
    """One row per zone, ranked by number of visits (then by median dwell)."""
    # One reader for both periods: the groups, dirty marks and day rows read once.
    reader = rollups.reader(db, compare=True)
    current = _per_second(db, scope, reader)
    previous = _per_second(db, scope.previous(), reader)
    rows: list[dict[str, Any]] = []
    for zone, z in current.items():
        seconds, counts = z.seconds, z.counts
        n = int(counts.sum())
        q1, median, q3, p90 = _quantiles(seconds, counts)
        prev_n = int(previous[zone].counts.sum()) if zone in previous else 0
        row: dict[str, Any] = {
            "zone": zone,
            "category": (categories or {}).get(zone),
            "visits": n,
            "previous_visits": prev_n,
            "visits_change_pct": change(n, prev_n),
            "mean_s": round(z.total / n, 1),
            "min_s": round(z.lowest, 1),
            "q1_s": q1,
            "median_s": median,
            "q3_s": q3,
            "p90_s": p90,
            "max_s": round(z.highest, 1),
            "total_dwell_s": round(z.total, 1),
        }
        row.update(zip(BIN_COLUMNS, _binned(seconds, counts), strict=True))
        rows.append(row)
    rows.sort(key=lambda r: (-r["visits"], -r["median_s"], r["zone"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    columns = [
        "rank",
        "zone",
        "category",
        "visits",
        "previous_visits",
        "visits_change_pct",
        "mean_s",
        "min_s",
        "q1_s",
        "median_s",
        "q3_s",
        "p90_s",
        "max_s",
        "total_dwell_s",
        *BIN_COLUMNS,
    ]
    return Table(
        chart="dwell",
        columns=columns,
        rows=rows,
        extra={"histogram_edges_s": list(HISTOGRAM_EDGES_S), "bins": BIN_COLUMNS},
    )
