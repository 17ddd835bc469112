"""Settle dirty hours: recompute their rollups from the raw events, off the ingest path.

An hour ingest marked dirty is recomputed whole (`write_hours` replaces its rows), so
settling is idempotent: two workers settling the same hour write the same rows, and an event
is never counted twice. The dirty mark carries a version that every ingest commit touching
the hour increments; it is removed only if it still has the version read before the
recompute, so an event committed meanwhile leaves the hour dirty for the next round. Hours
are settled once quiet for ``quiet_s``: the hour being filled now is computed once it is
over, not after every batch (charts read dirty hours from the raw events meanwhile).
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from storelens.cloud.analytics.rollups import aggregate, chain, sql
from storelens.cloud.db import Database
from storelens.cloud.ingest.events import EVENT_COLUMNS

QUIET_S = 120.0
HOUR_S = aggregate.HOUR_S
DAY_S = 86_400
_TYPES = ", ".join(f"'{t}'" for t in aggregate.ROLLED_TYPES)


def settle(
    db: Database, *, quiet_s: float = QUIET_S, limit: int = 500, events_since: float | None = None
) -> int:
    """Settle up to ``limit`` dirty hours quiet for ``quiet_s``; returns how many. Hours
    before ``events_since`` (the retention cut-off) are only unmarked: their raw events are
    gone, and recomputing them from a late straggler would erase what the rollups hold."""
    if events_since is not None:
        db.execute("DELETE FROM rollup_dirty WHERE ts < ?", (int(events_since),))
    due = db.query(
        "SELECT store, ts, version FROM rollup_dirty WHERE marked_at <= ? ORDER BY ts LIMIT ?",
        (time.time() - quiet_s, limit),
    )
    per_day: dict[int, dict[tuple[str, int], int]] = defaultdict(dict)
    for r in due:
        per_day[int(r["ts"]) // DAY_S * DAY_S][(r["store"], int(r["ts"]))] = int(r["version"])
    phases = store_phases(db)
    touched: set[tuple[str, int]] = set()
    settled: list[tuple[int, str, int]] = []
    for _, versions in sorted(per_day.items()):
        # Computed before the write transaction, so SQLite's write lock (which ingest's writer
        # needs) is held only to write. An event committed meanwhile bumps its hour's version:
        # the mark stays, charts keep reading that hour raw, and the next round redoes it.
        buckets = aggregate.buckets_of(versions, phases)
        deltas = deltas_for(db, buckets)
        with db.transaction():
            sql.write_hours(db, deltas, buckets, refresh=False)
        touched |= buckets
        settled += [(h, s, v) for (s, h), v in versions.items()]
    if touched:
        # The day rows of every day touched, once (a local day straddles two UTC days, and
        # takes two UTC offsets), then the marks: until this commits, the hours are still
        # dirty, so charts read them raw and skip their groups' day rows.
        with db.transaction():
            chain.refresh(db, touched)
            db.executemany(
                "DELETE FROM rollup_dirty WHERE ts = ? AND store = ? AND version = ?",
                sorted(settled),
            )
    return len(due)


def settle_all(db: Database) -> int:
    """Settle every dirty hour now (after a bulk load)."""
    total = 0
    while done := settle(db, quiet_s=-1e9, limit=5000):  # marks made "in the future" too
        total += done
    return total


def store_phases(db: Database) -> dict[str, int]:
    """Each store's hour-bucket phase (`aggregate.phase`), for the stores that have one."""
    from storelens.cloud.analytics.scope import utc_offsets

    zones = {r["id"]: r["timezone"] for r in db.query("SELECT id, timezone FROM stores")}
    offsets = utc_offsets(zones, datetime.now(UTC).date())
    return {s: p for s, o in offsets.items() if (p := aggregate.phase(o))}


def recompute(db: Database, marks: set[tuple[str, int]]) -> None:
    """Rewrite now, in the caller's transaction, the buckets that UTC hours overlap."""
    buckets = aggregate.buckets_of(marks, store_phases(db))
    sql.write_hours(db, deltas_for(db, buckets), buckets)


def staff_column() -> str:
    """SQL for the column `aggregate` reads after `EVENT_COLUMNS`: the row is of a staff
    visit (staff are counted apart, and left out of every other rollup)."""
    from storelens.cloud.analytics.staff import shoppers_only

    return f"CASE WHEN {shoppers_only()} THEN 0 ELSE 1 END AS staff"


# The columns `aggregate.add_rows` reads; the others are selected as NULL, so rows keep the
# `EVENT_COLUMNS` positions it indexes without fetching what it never reads.
_READ = {"store", "type", "ts", "visit_id", "member", "zone", "line", "direction", "dwell_s",
         "payload"}  # fmt: skip
_READ_COLUMNS = ", ".join(c if c in _READ else "NULL" for c in EVENT_COLUMNS)


def raw_rows(
    db: Database, hours: set[tuple[str, int]], phases: dict[str, int] | None = None
) -> list[tuple]:
    """The raw ``events`` rows of some (store, hour bucket) pairs, one query per UTC day,
    each with the staff flag appended (columns `aggregate` does not read are None)."""
    phases = phases or {}
    per_day: dict[int, list[Any]] = {}  # day -> [stores, first hour, last hour]
    for store, hour in hours:
        day = hour // DAY_S * DAY_S
        span = per_day.get(day)
        if span is None:
            per_day[day] = [{store}, hour, hour]
        else:
            span[0].add(store)
            span[1] = min(span[1], hour)
            span[2] = max(span[2], hour)
    out: list[tuple] = []
    for _, (stores, lo, hi) in sorted(per_day.items()):
        marks = ", ".join("?" for _ in stores)
        rows = db.query_tuples(
            # type first: the events index is (type, ts), there is none on store
            f"SELECT {_READ_COLUMNS}, {staff_column()} FROM events WHERE type IN ({_TYPES})"
            f" AND ts >= ? AND ts < ? AND store IN ({marks})",
            [lo, hi + HOUR_S, *sorted(stores)],
        )
        if phases:
            out += [r for r in rows if (r[1], int((r[5] - phases.get(r[1], 0)) // HOUR_S)
                                        * HOUR_S + phases.get(r[1], 0)) in hours]  # fmt: skip
        else:
            out += [r for r in rows if (r[1], int(r[5] // HOUR_S) * HOUR_S) in hours]
    return out


def deltas_for(db: Database, hours: set[tuple[str, int]]) -> aggregate.Deltas:
    """What the raw events of some hour buckets (store, start) add up to."""
    if not hours:
        return aggregate.Deltas()
    deltas = new_deltas(db)
    aggregate.add_rows(deltas, raw_rows(db, hours, deltas.phases))
    fill_visit_ends(db, deltas)
    return deltas


def new_deltas(db: Database) -> aggregate.Deltas:
    """Empty deltas that know the stores' fitting-room zones (for devices sending no kind)."""
    from storelens.cloud.analytics.zone_kinds import zones_of_kind

    return aggregate.Deltas(
        fitting_rooms=zones_of_kind(db, "fitting_room"), phases=store_phases(db)
    )


def fill_visit_ends(db: Database, deltas: aggregate.Deltas) -> None:
    """Put each try-on session's visit end (``visit_ended`` time, or None while it has not
    ended) into its entry: the try-on chart counts a visit once per local day, with those
    that ended that day. A visit's end re-dirties every hour since it started
    (`aggregate.hours_of`), so a late end is filled in when those hours settle again."""
    entries = [e for per_hour in deltas.tryons.values() for e in per_hour]
    if not entries:
        return
    ids = sorted({e[0] for e in entries if e[0]})
    lo = min(h for _, h in deltas.tryons)
    hi = max(h for _, h in deltas.tryons) + HOUR_S * (aggregate.MAX_VISIT_HOURS + 1)
    ends: dict[str, float] = {}
    for i in range(0, len(ids), 500):  # bounded IN lists; (type, ts) is the index
        chunk = ids[i : i + 500]
        for r in db.query(
            "SELECT visit_id, ts FROM events WHERE type = 'visit_ended' AND ts >= ? AND ts < ?"
            f" AND visit_id IN ({', '.join('?' for _ in chunk)})",
            [lo, hi, *chunk],
        ):
            ends[r["visit_id"]] = float(r["ts"])
    for e in entries:
        e[5] = ends.get(e[0])
