"""Staff visits in the cloud, on both databases: recorded at ingest from the device's flag,
left out of footfall, dwell, heatmap, flows, paths, conversion and member share, counted in
the staff chart; with no staff flag every chart is unchanged."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from storelens.cloud import analytics
from storelens.cloud.commerce import stores
from storelens.cloud.ingest import events
from storelens.contract.events import LineCrossing, VisitEnded, VisitStarted, ZoneVisit

DAY = date(2026, 3, 10)
T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)


def person(db, start: datetime, *, staff: bool, zone: str, copied: bool = False) -> None:
    """Enter through the door (not flagged yet: the badge comes later), stay in a zone, leave."""
    vid = uuid.uuid4()
    common = {"device": "box", "camera": "cam1", "visit_id": vid}
    flag = {"staff": True} if staff else {}
    end = start + timedelta(minutes=10)
    evs = [
        VisitStarted(seq=1, ts=start, **common),
        LineCrossing(seq=2, ts=start, line="entrance", direction="in", entrance=True, **common),
        ZoneVisit(seq=3, ts=start + timedelta(minutes=5), zone=zone, entered_at=start,
                  exited_at=start + timedelta(minutes=5), dwell_s=300.0, **common, **flag),
        VisitEnded(seq=4, ts=end, started_at=start, duration_s=600.0, zones=[zone],
                   path=[[1.0, 1.0, 0.0], [5.0, 5.0, 600.0]], **common, **flag),
    ]  # fmt: skip
    rows = [events.model_row("paris", e, 0.0, None) for e in evs]
    if copied:  # as PostgreSQL ingest streams rows with COPY, past store_events
        with db.transaction():
            events.store_events(db, rows)  # stand-in for the COPY stream's insert
            events.store_prepared(db, events.StoredBatch(rows, 0.0, copied=True))
    else:
        events.store_events(db, rows)


def chart(db, name: str):
    return analytics.CHARTS[name](db, analytics.scope_for(db, DAY, DAY))


def test_staff_are_left_out_of_shopper_charts_and_counted_apart(db) -> None:
    stores.upsert_store(db, stores.Store(id="paris", name="Paris", lat=48.8, lon=2.3))
    person(db, T0, staff=False, zone="shoes")
    shopper_charts = ("footfall-daily", "dwell", "paths", "flows", "member-share", "conversion")
    before = {c: chart(db, c).rows for c in shopper_charts}
    heat_before = chart(db, "heatmap").extra
    person(db, T0 + timedelta(minutes=1), staff=True, zone="stockroom")
    person(db, T0 + timedelta(minutes=2), staff=True, zone="stockroom", copied=True)
    assert db.scalar("SELECT count(*) FROM staff_visits") == 2
    for name, rows in before.items():
        assert chart(db, name).rows == rows, name  # as if staff were never there
    assert chart(db, "footfall-daily").rows[0]["visitors"] == 1
    assert chart(db, "heatmap").extra == heat_before  # staff paths draw nothing
    [row] = chart(db, "staff").rows
    assert row["staff_visits"] == 2 and row["median_staff_visit_min"] == 10.0


def test_no_staff_flag_no_staff(db) -> None:
    stores.upsert_store(db, stores.Store(id="paris", name="Paris", lat=48.8, lon=2.3))
    person(db, T0, staff=False, zone="shoes")
    person(db, T0 + timedelta(minutes=1), staff=False, zone="bags")
    assert db.scalar("SELECT count(*) FROM staff_visits") == 0
    assert chart(db, "staff").rows == []
    assert chart(db, "footfall-daily").rows[0]["visitors"] == 2
