"""Compute the visit shapes (flows, paths, heat) of hours ingest marked dirty.

Each dirty (store, hour) is recomputed whole from its raw ``visit_ended`` events and its
rollup rows replaced, so settling is idempotent: two workers settling the same hour write
the same rows, and an event is never counted twice. The dirty mark carries a version that
every ingest commit touching the hour increments; the mark is removed only if the version is
still the one read before the recompute, so an event committed meanwhile leaves the hour
dirty for the next round. Hours are settled once quiet for ``quiet_s`` (the hour being
filled now is recomputed once it is over, not after every batch).
"""

from __future__ import annotations

import time

from storelens.cloud.rollups import aggregate, sql
from storelens.cloud.store import Database

QUIET_S = 120.0
HOUR_S = aggregate.HOUR_S


def settle(db: Database, *, quiet_s: float = QUIET_S, limit: int = 200) -> int:
    """Settle up to ``limit`` dirty hours quiet for ``quiet_s``; returns how many."""
    due = db.query(
        "SELECT store, ts, version FROM rollup_dirty WHERE marked_at <= ? ORDER BY ts LIMIT ?",
        (time.time() - quiet_s, limit),
    )
    for row in due:
        settle_hour(db, row["store"], int(row["ts"]), int(row["version"]))
    return len(due)


def hour_shapes(db: Database, store: str, hour: int) -> dict[str, object]:
    """Flows, paths and heat of one store's hour, from its raw events."""
    rows = db.query(
        "SELECT payload FROM events WHERE type = 'visit_ended' AND ts >= ? AND ts < ?"
        " AND store = ?",
        (hour, hour + HOUR_S, store),
    )
    return aggregate.shapes_of(r["payload"] for r in rows)


def settle_hour(db: Database, store: str, hour: int, version: int | None = None) -> None:
    with db.transaction():
        shapes = hour_shapes(db, store, hour)
        db.execute(
            "DELETE FROM rollup_maps WHERE store = ? AND ts = ? AND kind IN (?, ?, ?)",
            (store, hour, *aggregate.SHAPE_KINDS),
        )
        if shapes:
            db.executemany(
                "INSERT INTO rollup_maps (store, ts, kind, data) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (kind, ts, store) DO UPDATE SET data = excluded.data",
                [(store, hour, kind, sql.encode(value)) for kind, value in shapes.items()],
            )
        if version is None:
            db.execute("DELETE FROM rollup_dirty WHERE store = ? AND ts = ?", (store, hour))
        else:
            db.execute(
                "DELETE FROM rollup_dirty WHERE store = ? AND ts = ? AND version = ?",
                (store, hour, version),
            )


def settle_all(db: Database) -> int:
    """Settle every dirty hour now (after a bulk load)."""
    total = 0
    while done := settle(db, quiet_s=float("-inf"), limit=1000):
        total += done
    return total
