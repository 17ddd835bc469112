"""Footfall: people coming into the stores, per hour, per day and per hour of the day.

Two counts, both from the wire contract:

- ``entrances``: ``line_crossing`` events with ``direction = "in"`` on an entrance line: one
  the device config marks ``entrance: true`` (the event's ``entrance`` flag, contract 1.1).
  Events from devices before 1.1 carry no flag; for them lines named ``entrance*`` or
  ``door*`` (case-insensitive) count.
- ``visits``: confirmed visits (``visit_started``), one per person per camera view.

``visitors`` is what conversion and comparisons use: a store's entrance count when the store
reported any entrance crossing in the period (doors are counted once), else its visits (stores
without a door camera).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from storelens.cloud.analytics import rollups
from storelens.cloud.analytics.scope import DAY_S, HOUR_S, Scope, local_label
from storelens.cloud.analytics.staff import shoppers_only
from storelens.cloud.analytics.table import Table, change, ratio
from storelens.cloud.db import Database

_NAMED_ENTRANCE = "(LOWER(line) LIKE 'entrance%' OR LOWER(line) LIKE 'door%')"
# The flag lives in the stored event JSON (no typed column: line crossings are a small share
# of events, and a column would cost every insert).
_FLAG = {
    "sqlite": "json_extract(payload, '$.entrance')",
    "postgres": "CAST(payload AS jsonb) ->> 'entrance'",
}
_TRUE = {"sqlite": "1", "postgres": "'true'"}


def entrance_line_sql(dialect: str) -> str:
    """SQL that is true for a line crossing on an entrance line (see the module doc)."""
    flag = _FLAG[dialect]
    return f"({flag} = {_TRUE[dialect]} OR ({flag} IS NULL AND {_NAMED_ENTRANCE}))"


PEAKS_MARKED = 3

Counts = dict[int, dict[str, int]]  # bucket start (local epoch) -> entrances/visits/visitors


def counts_by_store(
    db: Database, scope: Scope, seconds: int, reader: rollups.RollupReader | None = None
) -> dict[str, Counts]:
    """Per store and local bucket: entrances, visits, and visitors (see module doc).
    ``reader``: the chart's rollup reader, so its reads are shared (one is made if None)."""
    if scope.raw:
        rows = _raw_counts(db, scope, seconds)
    else:
        rows = (reader or rollups.reader(db)).counts(scope, seconds)
    per_store: dict[str, Counts] = defaultdict(dict)
    for r in rows:
        per_store[r["store"]][int(r["b"])] = {
            "entrances": int(r["entrances"] or 0),
            "visits": int(r["visits"] or 0),
        }
    for counts in per_store.values():
        has_door = any(c["entrances"] for c in counts.values())
        for c in counts.values():
            c["visitors"] = c["entrances"] if has_door else c["visits"]
    return dict(per_store)


def _raw_counts(db: Database, scope: Scope, seconds: int) -> list[dict[str, Any]]:
    bucket, bucket_params = scope.bucket(seconds)
    where, where_params = scope.where()
    return db.query(
        f"SELECT store, {bucket} AS b,"
        " SUM(CASE WHEN type = 'line_crossing' THEN 1 ELSE 0 END) AS entrances,"
        " SUM(CASE WHEN type = 'visit_started' THEN 1 ELSE 0 END) AS visits"
        f" FROM events WHERE {where} AND ((type = 'line_crossing' AND direction = 'in'"
        f" AND {entrance_line_sql(db.dialect)}) OR type = 'visit_started') AND {shoppers_only()}"
        " GROUP BY store, b",
        bucket_params + where_params,
    )


def totals(
    db: Database, scope: Scope, seconds: int, reader: rollups.RollupReader | None = None
) -> Counts:
    """Counts per bucket summed over the selected stores (``reader``: as `counts_by_store`)."""
    if not scope.raw:
        return (reader or rollups.reader(db)).totals(scope, seconds)
    summed: Counts = defaultdict(lambda: {"entrances": 0, "visits": 0, "visitors": 0})
    for counts in counts_by_store(db, scope, seconds).values():
        for b, c in counts.items():
            for k, v in c.items():
                summed[b][k] += v
    return dict(summed)


def _buckets(scope: Scope, seconds: int) -> list[int]:
    """Every bucket of the period inside the selected hours, so empty hours show as zero."""
    first = (scope.start - date(1970, 1, 1)).days * DAY_S
    out = []
    for b in range(first, first + scope.days * DAY_S, seconds):
        if seconds < DAY_S and not scope.hour_selected((b // HOUR_S) % 24):
            continue
        out.append(b)
    return out


def _sum(counts: Counts) -> dict[str, int]:
    keys = ("entrances", "visits", "visitors")
    return {k: sum(c[k] for c in counts.values()) for k in keys}


def _comparison(current: Counts, previous: Counts) -> dict[str, Any]:
    now, before = _sum(current), _sum(previous)
    return {
        "totals": now,
        "previous_totals": before,
        "change_pct": {k: change(now[k], before[k]) for k in now},
    }


def _series(db: Database, scope: Scope, seconds: int, label: str) -> Table:
    daily = seconds == DAY_S
    reader = rollups.reader(db, compare=True)  # one per chart: the period and the previous
    current = totals(db, scope, seconds, reader)
    previous_scope = scope.previous()
    previous = totals(db, previous_scope, seconds, reader)
    shift = scope.days * DAY_S
    rows: list[dict[str, Any]] = []
    for b in _buckets(scope, seconds):
        c = current.get(b, {"entrances": 0, "visits": 0, "visitors": 0})
        rows.append(
            {
                label: local_label(b, daily=daily),
                "entrances": c["entrances"],
                "visits": c["visits"],
                "visitors": c["visitors"],
                "previous_visitors": previous.get(b - shift, {}).get("visitors", 0),
                "peak": 0,
            }
        )
    _mark_peaks(rows, daily=daily)
    return Table(
        chart=f"footfall-{'daily' if daily else 'hourly'}",
        columns=[label, "entrances", "visits", "visitors", "previous_visitors", "peak"],
        rows=rows,
        extra={"comparison": _comparison(current, previous), "previous": previous_scope.describe()},
    )


def _mark_peaks(rows: list[dict[str, Any]], *, daily: bool) -> None:
    """Daily: the busiest days of the period. Hourly: each day's busiest hour."""
    if daily:
        groups = [rows]
        per_group = PEAKS_MARKED
    else:
        by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by_day[str(r["hour"])[:10]].append(r)
        groups = list(by_day.values())
        per_group = 1
    for group in groups:
        ranked = sorted((r for r in group if r["visitors"]), key=lambda r: -r["visitors"])
        for r in ranked[:per_group]:
            r["peak"] = 1


def hourly(db: Database, scope: Scope) -> Table:
    return _series(db, scope, HOUR_S, "hour")


def daily(db: Database, scope: Scope) -> Table:
    return _series(db, scope, DAY_S, "day")


def peak_hours(db: Database, scope: Scope) -> Table:
    """Average visitors per hour of the day over the period, the busiest hours marked."""
    reader = rollups.reader(db, compare=True)
    current = totals(db, scope, HOUR_S, reader)
    previous = totals(db, scope.previous(), HOUR_S, reader)

    def by_hour(counts: Counts) -> dict[int, int]:
        out: dict[int, int] = defaultdict(int)
        for b, c in counts.items():
            out[(b // HOUR_S) % 24] += c["visitors"]
        return out

    now, before = by_hour(current), by_hour(previous)
    rows: list[dict[str, Any]] = [
        {
            "hour_of_day": h,
            "visitors": now.get(h, 0),
            "avg_visitors_per_day": ratio(now.get(h, 0), scope.days, 2) or 0.0,
            "previous_avg_visitors_per_day": ratio(before.get(h, 0), scope.days, 2) or 0.0,
            "peak": 0,
        }
        for h in range(24)
        if scope.hour_selected(h)
    ]
    for r in sorted((r for r in rows if r["visitors"]), key=lambda r: -r["visitors"])[
        :PEAKS_MARKED
    ]:
        r["peak"] = 1
    return Table(
        chart="peak-hours",
        columns=[
            "hour_of_day",
            "visitors",
            "avg_visitors_per_day",
            "previous_avg_visitors_per_day",
            "peak",
        ],
        rows=rows,
        extra={"comparison": _comparison(current, previous)},
    )


def visitors_by_store_day(db: Database, scope: Scope) -> dict[tuple[str, str], int]:
    """(store, local day) -> visitors; conversion divides transactions by this."""
    out: dict[tuple[str, str], int] = {}
    for store, counts in counts_by_store(db, scope, DAY_S).items():
        for b, c in counts.items():
            out[(store, local_label(b, daily=True))] = c["visitors"]
    return out


__all__ = ["counts_by_store", "daily", "hourly", "peak_hours", "totals", "visitors_by_store_day"]
