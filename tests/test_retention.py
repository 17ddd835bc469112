"""Retention of raw events and rollups on both backends, and PostgreSQL's day partitions
(including the migration that moves an existing unpartitioned table into them)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from storelens.cloud import analytics
from storelens.cloud.analytics.rollups import settle
from storelens.cloud.commerce import stores
from storelens.cloud.db import connect, retention
from storelens.cloud.ingest import events
from storelens.cloud.settings import Settings
from storelens.tools.seed import instore as analytics_seed

UNTIL = datetime(2026, 3, 20, 19, tzinfo=UTC).timestamp()
NOW = datetime(2026, 3, 21, 12, tzinfo=UTC).timestamp()


def seed(db, days: int = 6) -> None:
    stores.upsert_store(db, stores.Store(id="paris", name="Paris", lat=48.8, lon=2.3,
                                         timezone="Europe/Paris", zones={}))  # fmt: skip
    profile = analytics_seed.TrafficProfile(visitors_per_day=30)
    analytics_seed.seed_instore(db, days=days, until=UNTIL, profile=profile)


def daily(db, start: date, end: date, *, raw: bool = False) -> list[dict]:
    scope = dataclasses.replace(analytics.scope_for(db, start, end), raw=raw)
    return analytics.CHARTS["footfall-daily"](db, scope).rows


def test_expired_events_go_by_whole_days_and_rollups_stay(db, monkeypatch) -> None:
    seed(db)
    monkeypatch.setattr(retention, "DELETE_BATCH", 50)  # several bounded batches
    first, last = date(2026, 3, 15), date(2026, 3, 20)
    before = daily(db, first, last)
    assert all(r["visits"] for r in before)
    retention.ensure_partitions(db, now=NOW)
    out = retention.expire(db, events_days=3, now=NOW)  # keep 18, 19, 20 March (UTC)
    cutoff = datetime(2026, 3, 18, tzinfo=UTC).timestamp()
    assert db.scalar("SELECT MIN(ts) FROM events") >= cutoff
    assert db.scalar("SELECT count(*) FROM events WHERE ts >= ?", (cutoff,)) > 0
    if db.dialect == "postgres":
        assert out["partitions_dropped"] == [f"events_p202603{d}" for d in (15, 16, 17)]
    else:
        assert out["events_deleted"] > 50
    # The dashboard still answers for the expired days, from the rollups.
    assert daily(db, first, last) == before
    assert daily(db, first, last, raw=True) != before

    # A straggler for an expired hour is stored, but settling leaves that hour's rollups.
    late = analytics_seed.generate({"id": "paris", "timezone": "Europe/Paris"}, [],
                                   date(2026, 3, 16), 1, seed=99, until=UNTIL)  # fmt: skip
    event = next(e for e in late if e.type == "visit_started")
    events.store_events(db, [events.event_row("paris", event, NOW, None)])
    settle.settle(db, quiet_s=0, events_since=retention.events_cutoff(3, NOW))
    assert daily(db, first, last) == before

    # Rollups have their own, longer retention.
    rollups_out = retention.expire(db, events_days=3, rollups_days=4, now=NOW)
    assert rollups_out["rollup_rows"] > 0
    assert (
        db.scalar("SELECT MIN(ts) FROM rollup_counts")
        >= datetime(2026, 3, 17, tzinfo=UTC).timestamp()
    )


def test_partitions_are_created_ahead_and_late_days_get_their_own(pg_url) -> None:
    db = connect(pg_url)
    assert retention.partitioned(db)
    created = retention.ensure_partitions(db, now=NOW)
    assert "events_p20260320" in created and "events_p20260328" in created
    seed(db, days=3)  # 18-20 March: the 18th lands in the default partition
    assert db.scalar("SELECT count(*) FROM events_default") > 0
    retention.ensure_partitions(db, now=NOW)
    assert db.scalar("SELECT count(*) FROM events_default") == 0
    assert db.scalar("SELECT count(*) FROM events_p20260318") > 0
    # Duplicates are still refused with the (id, ts) key.
    row = db.query_one(f"SELECT {', '.join(events.EVENT_COLUMNS)} FROM events LIMIT 1")
    assert events.store_events(db, [row]) == 0
    db.close()


def test_migration_moves_an_unpartitioned_table_into_day_partitions(pg_url, monkeypatch) -> None:
    steps = retention.MIGRATIONS
    monkeypatch.setattr(retention, "MIGRATIONS", ())
    db = connect(pg_url)
    assert not retention.partitioned(db)
    seed(db, days=4)
    total = db.scalar("SELECT count(*) FROM events")
    expected = daily(db, date(2026, 3, 17), date(2026, 3, 20), raw=True)

    monkeypatch.setattr(retention, "MIGRATIONS", steps)
    applied = db.migrate()
    assert [m.component for m in applied] == ["events_partitions"]
    assert retention.partitioned(db)
    assert db.scalar("SELECT count(*) FROM events") == total
    retention.ensure_partitions(db, now=NOW)
    assert db.scalar("SELECT count(*) FROM events_default") == 0
    assert (
        sum(db.scalar(f"SELECT count(*) FROM {name}") for name in retention.partitions(db).values())
        == total
    )
    assert daily(db, date(2026, 3, 17), date(2026, 3, 20), raw=True) == expected
    assert daily(db, date(2026, 3, 17), date(2026, 3, 20)) == expected
    db.close()


def test_rollups_must_outlive_events() -> None:
    with pytest.raises(ValueError, match="rollups_retention_days"):
        Settings(events_retention_days=30, rollups_retention_days=7)
    with pytest.raises(ValueError, match="rollups_retention_days"):
        Settings(rollups_retention_days=7)
    assert Settings(events_retention_days=30, rollups_retention_days=400).rollups_retention_days
    assert Settings(events_retention_days=30).rollups_retention_days == 0


def test_sqlite_keeps_no_partitions(tmp_path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'x.db'}")
    assert retention.ensure_partitions(db, now=NOW) == []
    assert retention.expire(db, events_days=0, now=NOW)["events_deleted"] == 0
    assert timedelta(days=1).total_seconds() == retention.DAY_S


def test_event_id_owners_expire_with_their_days(pg_url) -> None:
    """PostgreSQL's owners of event IDs (collision checks) go by the time in the UUIDv7."""
    from storelens.tools.bench.ingest import realistic_events

    db = connect(pg_url)
    stores.upsert_store(db, stores.Store(id="paris", name="Paris", lat=48.8, lon=2.3))
    retention.ensure_partitions(db, now=NOW)

    def at(day: int) -> uuid.UUID:  # a UUIDv7 of that March day, noon UTC
        ms = int(datetime(2026, 3, day, 12, tzinfo=UTC).timestamp() * 1000)
        return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62) | day)

    start = datetime(2026, 3, 15, 12, tzinfo=UTC)
    made = realistic_events("cam-1", 2, seed=1, start=start)
    rows = [events.event_row("paris", e.model_copy(update={"id": at(day), "ts": start}), NOW, None)
            for e, day in zip(made, (15, 20), strict=True)]  # fmt: skip
    assert events.store_events(db, rows) == 2
    assert db.scalar("SELECT count(*) FROM event_ids") == 2
    out = retention.expire(db, events_days=3, now=NOW)  # the cut-off is 18 March
    assert out["event_ids_deleted"] == 1
    assert [str(r["id"]) for r in db.query("SELECT id FROM event_ids")] == [str(at(20))]
    db.close()
