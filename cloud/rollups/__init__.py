"""Rollups: aggregates of the in-store events, maintained by ingest, read by every chart.

Raw ``events`` stay the system of record; the rollups are what the ops dashboard reads, so a
chart's cost depends on the hours and stores it shows, not on how many events are stored.

Two halves behind one interface each, so an OLAP engine can take over (docs/scaling.md):

- writing: `record` is called with the rows ingest has just stored as new, inside the same
  transaction (`storelens.cloud.events.store_events` and the PostgreSQL COPY path call it);
  duplicates are never passed, so a resend changes nothing and a late event updates its hour
  once. `storelens.cloud.rollups.rebuild` recomputes them from the raw events.
- reading: `RollupReader`, answered here by `SqlRollups` (the service's own database).

``STORELENS_ROLLUPS=0`` turns maintenance off (benchmarks compare ingest with and without);
charts then read stale rollups until `storelens cloud rollups rebuild` runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

from storelens.cloud.rollups import aggregate
from storelens.cloud.rollups.reader import SqlRollups
from storelens.cloud.store import Database


def enabled() -> bool:
    return os.environ.get("STORELENS_ROLLUPS", "1") not in ("0", "false", "no", "off")


def record(db: Database, rows: Sequence[Sequence[Any]]) -> None:
    """Add newly stored ``events`` rows (each exactly once) to the rollups, in the caller's
    transaction."""
    if not rows or not enabled():
        return
    from storelens.cloud.rollups import sql

    sql.apply(db, aggregate.deltas_of(rows))


def record_sqlite_since(db: Database, rowid: int) -> None:
    """`record` for SQLite: the rows the current transaction stored past ``rowid``."""
    if enabled():
        from storelens.cloud.rollups import sql

        sql.apply_sqlite_since(db, rowid)


class RollupReader(Protocol):
    """What the charts read; see `SqlRollups` for the meaning of each method."""

    def counts(self, scope: Any, seconds: int) -> list[dict[str, Any]]: ...
    def member_visits(self, scope: Any) -> list[dict[str, Any]]: ...
    def dwell(self, scope: Any) -> dict[str, dict[int, list[float]]]: ...
    def flows(self, scope: Any) -> dict[str, int]: ...
    def paths(self, scope: Any) -> dict[str, int]: ...
    def heat(self, scope: Any, store: str) -> aggregate.Heat: ...


def reader(db: Database) -> RollupReader:
    """The rollups the charts of ``db`` read (the service's own database)."""
    return SqlRollups(db)


__all__ = ["RollupReader", "enabled", "reader", "record"]
