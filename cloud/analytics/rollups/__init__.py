"""Rollups: aggregates of the in-store events, maintained behind ingest, read by every chart.

Raw ``events`` stay the system of record; the rollups are what the ops dashboard reads, so a
chart's cost depends on the hours and stores it shows, not on how many events are stored.

- Ingest calls `record` with the rows of each batch inside the transaction that stores
  them: it marks their (store, hour) dirty, a few upserts per batch whatever its size.
- `storelens.cloud.analytics.rollups.settle` (a thread of every ingest worker) recomputes each dirty
  hour from its raw events once quiet, replacing its rollup rows: a follow-up step with the
  same exactly-once guarantee, because a settled hour is a pure function of its raw events
  (a duplicate or a resend changes nothing; a late event re-dirties its hour, which is
  recomputed once).
- Charts read a `RollupReader`; `SqlRollups` answers from the rollup tables for settled
  hours and from the raw events for the few dirty ones, so numbers are exact at all times.
- `rebuild` recomputes any period (`storelens cloud rollups rebuild`).

``STORELENS_ROLLUPS=0`` stops the marking (benchmarks compare ingest with and without);
charts then miss what arrived until `storelens cloud rollups rebuild` runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

from storelens.cloud.analytics.rollups import aggregate
from storelens.cloud.analytics.rollups.reader import SqlRollups
from storelens.cloud.db import Database


def enabled() -> bool:
    return os.environ.get("STORELENS_ROLLUPS", "1") not in ("0", "false", "no", "off")


def record(db: Database, rows: Sequence[Sequence[Any]]) -> None:
    """Mark the hours of stored ``events`` rows for settling, in the caller's transaction
    (rows already stored may be among them: an hour marked once too often is only
    recomputed to the same numbers)."""
    if rows and enabled():
        from storelens.cloud.analytics.rollups import sql

        sql.mark_dirty(db, aggregate.hours_of(rows))


class RollupReader(Protocol):
    """What the charts read (an OLAP engine's adapter implements the same); see
    `SqlRollups` for the meaning of each method."""

    def counts(self, scope: Any, seconds: int) -> list[dict[str, Any]]: ...
    def totals(self, scope: Any, seconds: int) -> dict[int, dict[str, int]]: ...
    def ended_visits(self, scope: Any) -> dict[str, int]: ...
    def member_visits(self, scope: Any) -> list[dict[str, Any]]: ...
    def ended_by_day(self, scope: Any) -> dict[tuple[str, int], int]: ...
    def dwell(self, scope: Any) -> dict[str, aggregate.DwellHistogram]: ...
    def flows(self, scope: Any) -> dict[str, int]: ...
    def paths(self, scope: Any, top: int) -> tuple[list[tuple[str, int]], int]: ...
    def heat(self, scope: Any, store: str) -> aggregate.Heat: ...
    def staff(self, scope: Any) -> dict[tuple[str, int], list[float]]: ...
    def checkout(self, scope: Any) -> dict[tuple[str, int], dict[str, Any]]: ...
    def tryons(
        self, scope: Any, named: set[tuple[str, str]]
    ) -> tuple[list[tuple[str, int, dict[str, Any]]], list[tuple[str, int, list[Any]]]]: ...


def reader(db: Database, *, compare: bool = False) -> RollupReader:
    """The rollups the charts of ``db`` read (the service's own database); one per chart
    (it shares the chart's reads). ``compare``: the chart reads the period before its
    scope's too (a comparison), which is then read with the scope's."""
    return SqlRollups(db, compare=compare)


__all__ = ["RollupReader", "enabled", "reader", "record"]
