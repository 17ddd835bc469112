"""`storelens cloud rollups rebuild`: recompute the rollups from the raw events.

After a migration, a bug fix in an aggregate, or a period ingested with rollups off. One
transaction per UTC day: the day's rollup rows (and dirty marks) are deleted and recomputed
from its events with the code settling runs (`aggregate`), so a rebuild equals what ingest
and settling produced. On PostgreSQL each day's transaction holds a SHARE lock on ``events``,
so ingest waits for that day instead of racing it; on SQLite the write lock does the same.
Rollups older than the oldest raw event are kept (retention dropped their events, not them).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time

from storelens.cloud.analytics.rollups import aggregate, sql
from storelens.cloud.db import Database
from storelens.cloud.ingest.events import EVENT_COLUMNS

DAY_S = 86_400
HOUR_S = aggregate.HOUR_S
_FETCH = 20_000


def _epoch(day: date) -> int:
    return int(datetime.combine(day, time(), UTC).timestamp())


def days_to_rebuild(db: Database, since: date | None, store: str | None) -> list[int]:
    """The UTC day starts from ``since`` (default: the oldest stored event) to the newest."""
    where, params = ("WHERE store = ?", [store]) if store else ("", [])
    row = db.query_one(f"SELECT MIN(ts) AS lo, MAX(ts) AS hi FROM events {where}", params)
    if not row or row["lo"] is None:
        return []
    first = int(row["lo"] // DAY_S) * DAY_S
    if since is not None:
        first = max(first, _epoch(since))
    return list(range(first, int(row["hi"] // DAY_S) * DAY_S + 1, DAY_S))


def rebuild_day(db: Database, day: int, store: str | None = None) -> int:
    """Recompute the hour buckets starting on one UTC day (of one store, or all); returns
    the events counted. A store in a :30 time zone has its last bucket end past midnight,
    so the day's events are read with the next hour's."""
    from storelens.cloud.analytics.rollups.settle import fill_visit_ends, new_deltas, staff_column

    columns = ", ".join(EVENT_COLUMNS) + ", " + staff_column()
    where, params = "ts >= ? AND ts < ?", [day, day + DAY_S + HOUR_S]
    if store is not None:
        where += " AND store = ?"
        params.append(store)
    read = 0
    with db.transaction():
        if db.dialect == "postgres":
            db.execute("LOCK TABLE events IN SHARE MODE")
        cleared = _clear_day(db, day, store)
        deltas = new_deltas(db)
        hours: set[tuple[str, int]] = set()
        last = ""
        while True:  # in pages by ID: a day of a big chain does not fit in memory at once
            rows = [(*(r[c] for c in EVENT_COLUMNS), r["staff"]) for r in db.query(
                f"SELECT {columns} FROM events WHERE {where} AND id > ? ORDER BY id LIMIT ?",
                [*params, last, _FETCH],
            )]  # fmt: skip
            page = [r for r in rows if day <= _bucket(deltas, r) < day + DAY_S]
            aggregate.add_rows(deltas, page)
            hours |= {(r[1], _bucket(deltas, r)) for r in page}
            read += len(page)
            if len(rows) < _FETCH:
                break
            last = rows[-1][0]
        fill_visit_ends(db, deltas)
        sql.write_hours(db, deltas, hours, cleared)
    return read


def _bucket(deltas: aggregate.Deltas, row: tuple) -> int:
    """The start of the hour bucket an ``events`` row falls in (its store's phase)."""
    p = deltas.phases.get(row[1], 0)
    return int((row[5] - p) // HOUR_S) * HOUR_S + p


def _clear_day(db: Database, day: int, store: str | None) -> set[tuple[str, int]]:
    """Delete the day's rollup rows; returns the (store, hour) pairs that had some (their
    day rows are recomputed with the rebuilt hours)."""
    where, params = "ts >= ? AND ts < ?", [day, day + DAY_S]
    if store is not None:
        where += " AND store = ?"
        params.append(store)
    cleared: set[tuple[str, int]] = set()
    for table in sql.ROLLUP_TABLES:
        rows = db.query(f"SELECT DISTINCT store, ts FROM {table} WHERE {where}", params)
        cleared |= {(r["store"], int(r["ts"])) for r in rows}
    for table in sql.TABLES:
        db.execute(f"DELETE FROM {table} WHERE {where}", params)
    return cleared


def rebuild(
    db: Database,
    since: date | None = None,
    store: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Rebuild every day from ``since``; ``progress(done, total)`` after each day."""
    days = days_to_rebuild(db, since, store)
    events = 0
    for i, day in enumerate(days, start=1):
        events += rebuild_day(db, day, store)
        if progress is not None:
            progress(i, len(days))
    return {"days": len(days), "events": events}
