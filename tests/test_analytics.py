"""Ops analytics on both storage backends, from events written the way ingest writes them."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from storelens.cloud import analytics
from storelens.cloud.analytics.scope import Scope, ScopeError
from storelens.cloud.commerce import catalog, members, sales, stores
from storelens.cloud.ingest import device_registry, events
from storelens.cloud.personalization import coupons, offers
from storelens.contract.events import (
    CameraStatus,
    DeviceStatus,
    LineCrossing,
    VisitEnded,
    VisitStarted,
    ZoneVisit,
)
from storelens.pseudonym import PseudonymKey
from storelens.tools.seed import instore as analytics_seed

DAY = date(2026, 3, 10)  # a Tuesday; Paris is UTC+1 then
TOKEN = "ab" * 32


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    """A UTC instant from a Paris wall-clock time on ``day`` (UTC+1 in March before DST)."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC) - timedelta(hours=1)


class Device:
    def __init__(self, db, store: str = "paris") -> None:
        self.db, self.store, self.seq = db, store, 0
        device_registry.register_device(db, store, f"{store}-box")

    def put(self, cls, **fields) -> None:
        fields.setdefault("camera", "cam1")
        event = cls(device=f"{self.store}-box", seq=self.seq, **fields)
        self.seq += 1
        member = getattr(event, "member", None)
        events.store_events(self.db, [events.event_row(self.store, event, 0.0, member)])

    def visit(self, when: datetime, *, door: str = "entrance", member: str | None = None,
              zones: tuple[tuple[str, float], ...] = (), path=()) -> None:  # fmt: skip
        vid = uuid.uuid4()
        link = {"member": member, "key_id": "k1"} if member else {}
        if door:
            self.put(LineCrossing, ts=when, visit_id=vid, line=door, direction="in")
        self.put(VisitStarted, ts=when, visit_id=vid)
        t = when
        for zone, dwell in zones:
            end = t + timedelta(seconds=dwell)
            self.put(ZoneVisit, ts=end, visit_id=vid, zone=zone, entered_at=t, exited_at=end,
                     dwell_s=dwell, **link)  # fmt: skip
            t = end
        self.put(VisitEnded, ts=t + timedelta(seconds=5), visit_id=vid, started_at=when,
                 duration_s=(t - when).total_seconds() + 5, path=list(path),
                 zones=[z for z, _ in zones], **link)  # fmt: skip


@pytest.fixture
def chain(db):
    zones = {"shoes": "Shoes", "bags": "Handbags"}
    paris = stores.Store(
        id="paris", name="Paris", lat=48.85, lon=2.35, timezone="Europe/Paris", zones=zones
    )
    stores.upsert_store(db, paris)
    stores.upsert_store(
        db, stores.Store(id="lyon", name="Lyon", lat=45.76, lon=4.83, timezone="Europe/Paris")
    )
    return db


def table(db, chart: str, **kw) -> analytics.Table:
    kw.setdefault("start", DAY)
    kw.setdefault("end", DAY)
    return analytics.CHARTS[chart](db, analytics.scope_for(db, **kw))


def test_footfall_counts_entrances_in_local_hours_and_marks_peaks(chain) -> None:
    dev = Device(chain)
    for minute in (5, 10, 20):
        dev.visit(at(10, minute))
    dev.visit(at(17, 30))
    dev.visit(at(17, 40), door="aisle_3")  # not a door: a visit but no entrance
    dev.put(LineCrossing, ts=at(17, 50), visit_id=uuid.uuid4(), line="Door_B", direction="out")
    t = table(chain, "footfall-hourly", stores=("paris",))
    by_hour = {r["hour"]: r for r in t.rows}
    assert len(t.rows) == 24
    assert by_hour["2026-03-10T10:00"]["entrances"] == 3
    assert by_hour["2026-03-10T17:00"] == {
        "hour": "2026-03-10T17:00", "entrances": 1, "visits": 2, "visitors": 1,
        "previous_visitors": 0, "peak": 0,
    }  # fmt: skip
    assert [r["hour"] for r in t.rows if r["peak"]] == ["2026-03-10T10:00"]
    assert t.extra["comparison"]["totals"] == {"entrances": 4, "visits": 5, "visitors": 4}

    # a store without any door line counts its confirmed visits
    lyon = Device(chain, "lyon")
    lyon.visit(at(11), door="")
    daily = table(chain, "footfall-daily")
    assert daily.rows == [
        {"day": "2026-03-10", "entrances": 4, "visits": 6, "visitors": 5,
         "previous_visitors": 0, "peak": 1}
    ]  # fmt: skip


def test_entrance_flag_from_the_device_decides_over_the_line_name(chain) -> None:
    """Contract 1.1 devices say which lines are entrances; older ones are judged by name."""
    dev = Device(chain)
    crossings = [
        ("main_gate", True),  # flagged entrance, whatever its name: counts
        ("door_staff", False),  # named like a door, but the device says it is not: no
        ("door_a", None),  # an older device: the name decides: counts
        ("aisle_2", None),  # neither: no
    ]
    for line, flag in crossings:
        extra = {} if flag is None else {"entrance": flag}
        dev.put(LineCrossing, ts=at(12), visit_id=uuid.uuid4(), line=line, direction="in",
                **extra)  # fmt: skip
    t = table(chain, "footfall-hourly", stores=("paris",))
    assert {r["hour"]: r["entrances"] for r in t.rows}["2026-03-10T12:00"] == 2


def test_filters_hours_stores_and_previous_period(chain) -> None:
    dev = Device(chain)
    dev.visit(at(9, 30))
    dev.visit(at(12, 30))
    dev.visit(at(23, 30))  # 22:30 UTC: still the 10th locally
    for d in (DAY - timedelta(days=2), DAY - timedelta(days=1)):
        dev.visit(at(12, 0, d))
    dev.visit(at(12, 0, DAY - timedelta(days=3)))  # outside both periods
    t = table(chain, "footfall-daily", start=DAY - timedelta(days=1), end=DAY)
    assert [(r["day"], r["visitors"], r["previous_visitors"]) for r in t.rows] == [
        ("2026-03-09", 1, 1),
        ("2026-03-10", 3, 1),
    ]
    assert t.extra["comparison"]["change_pct"]["visitors"] == 100.0
    assert t.extra["previous"]["start"] == "2026-03-07"
    noon = table(chain, "footfall-daily", hour_from=12, hour_to=13)
    assert noon.rows[0]["visitors"] == 1
    night = table(chain, "peak-hours", hour_from=22, hour_to=10)
    assert [r["hour_of_day"] for r in night.rows] == [*range(10), 22, 23]
    assert {r["hour_of_day"]: r["visitors"] for r in night.rows if r["visitors"]} == {9: 1, 23: 1}
    assert table(chain, "footfall-daily", stores=("lyon",)).rows[0]["visitors"] == 0
    with pytest.raises(ScopeError, match="unknown store"):
        table(chain, "footfall-daily", stores=("nowhere",))
    with pytest.raises(ScopeError):
        Scope(DAY, DAY - timedelta(days=1))
    with pytest.raises(ScopeError):
        Scope(DAY, DAY, hour_from=5, hour_to=5)


def test_dwell_per_zone_quantiles_histogram_and_rank(chain) -> None:
    dev = Device(chain)
    for dwell in (5, 12, 20, 40, 700):
        dev.visit(at(11), zones=(("shoes", dwell),))
    dev.visit(at(12), zones=(("bags", 100.0), ("shoes", 3.5)))
    dev.visit(at(13), zones=(("bags", 300.0),))
    t = table(chain, "dwell")
    assert [r["zone"] for r in t.rows] == ["shoes", "bags"]
    shoes, bags = t.rows
    assert shoes["rank"] == 1 and shoes["visits"] == 6 and shoes["category"] == "Shoes"
    assert 12.0 <= shoes["median_s"] <= 20.0
    assert shoes["min_s"] == 3.5 and shoes["max_s"] == 700.0
    assert shoes["total_dwell_s"] == 780.5
    assert (shoes["dwell_0_10s"], shoes["dwell_10_30s"], shoes["dwell_30_60s"]) == (2, 2, 1)
    assert shoes["dwell_600s_plus"] == 1
    assert bags["visits"] == 2 and bags["dwell_60_120s"] == 1 and bags["dwell_300_600s"] == 1
    assert bags["q1_s"] <= bags["median_s"] <= bags["q3_s"]


def test_heatmap_weights_time_and_flows_count_moves(chain) -> None:
    dev = Device(chain)
    # 60 s near (2, 3), a 1 s walk, then 10 s near (10, 8); the walk's second is spread out
    path = [[2.1, 3.1, 0.0], [2.2, 3.2, 60.0], [10.0, 8.0, 61.0], [10.1, 8.1, 71.0]]
    dev.visit(at(10), zones=(("shoes", 10), ("bags", 10)), path=path)
    dev.visit(at(11), zones=(("shoes", 10), ("bags", 10)), path=path)
    dev.visit(at(12), zones=(("bags", 10),))
    # a damaged row (never written by ingest, which validates) must not break the charts
    chain.execute(
        "INSERT INTO events (id, store, device, seq, type, ts, received_at, payload)"
        " VALUES ('broken', 'paris', 'paris-box', 999, 'visit_ended', ?, 0, ?)",
        (at(12).timestamp(), '{"zones": "[x", "path": [[1, 2], "y"]}'),
    )
    heat = table(chain, "heatmap", stores=("paris",))
    cells = {(r["x_m"], r["y_m"]): r["presence_s"] for r in heat.rows}
    assert sum(cells.values()) == pytest.approx(142.0, abs=0.5)
    assert 120.0 <= cells[(2.25, 3.25)] <= 120.4
    assert 20.0 <= cells[(10.25, 8.25)] <= 20.4
    assert len(cells) > 10  # the walk between the two crosses many cells
    grid = heat.extra["grid"]
    assert len(grid["z"]) == len(grid["y"]) and len(grid["z"][0]) == len(grid["x"])
    flows = {(r["from_zone"], r["to_zone"]): r["moves"] for r in table(chain, "flows").rows}
    assert flows[("shoes", "bags")] == 2
    assert flows[("(entry)", "bags")] == 1 and flows[("bags", "(exit)")] == 3
    paths = table(chain, "paths").rows
    assert paths[0] == {"rank": 1, "path": "shoes > bags", "visits": 2, "share": 0.6667}


def test_conversion_member_share_and_devices(chain) -> None:
    dev = Device(chain)
    key = PseudonymKey("k1", b"k" * 32)
    member = members.enroll(chain, key, members.Enrollment(card_number="1234567890"))
    catalog.upsert_products(
        chain, [catalog.Product(sku="SKU1", name="Shoe", category="Shoes", price=50.0)]
    )
    dev.visit(at(10), member=member["token"], zones=(("shoes", 30),))
    for minute in (10, 20, 30):
        dev.visit(at(10, minute))
    for minute, qty in ((15, 1), (45, 3)):
        items = [sales.SaleItem(sku="SKU1", qty=qty)]
        sale = sales.SaleIn(store="paris", ts=at(10, minute).timestamp(), items=items)
        sales.record_sale(chain, sale)
    conv = table(chain, "conversion", stores=("paris",))
    assert conv.rows == [
        {"day": "2026-03-10", "store": "paris", "visitors": 4, "transactions": 2,
         "conversion": 0.5, "revenue": 200.0, "avg_basket": 100.0}
    ]  # fmt: skip
    assert conv.extra["comparison"]["conversion"] == 0.5
    hourly = table(chain, "conversion-hourly", stores=("paris",))
    assert hourly.rows == [
        {"hour_of_day": 10, "visitors": 4, "transactions": 2, "conversion": 0.5, "revenue": 200.0}
    ]
    share = table(chain, "member-share", stores=("paris",)).rows
    assert share == [
        {"day": "2026-03-10", "store": "paris", "visits": 4, "member_visits": 1, "members": 1,
         "member_share": 0.25}
    ]  # fmt: skip

    now = at(18).timestamp()
    status = DeviceStatus(device="paris-box", seq=99, ts=at(17, 59), outbox_depth=7, lost_events=2,
                          cameras=[CameraStatus(camera="cam1", online=True, fps=9.5),
                                   CameraStatus(camera="cam2", online=False, fps=0)])  # fmt: skip
    device_registry.apply_status(chain, "paris", [status], received_at=at(17, 59).timestamp())
    device_registry.register_device(chain, "lyon", "lyon-box")
    health = analytics.devices.device_health(chain, (), now=now).rows
    paris = next(r for r in health if r["store"] == "paris")
    assert paris["health"] == "degraded" and paris["cameras_offline"] == "cam2"
    assert paris["seconds_since_seen"] == 60.0 and paris["outbox_depth"] == 7
    assert paris["lost_events"] == 2 and paris["fps"] == 4.8
    lyon = next(r for r in health if r["store"] == "lyon")
    assert lyon["health"] == "never seen"


def test_seeded_traffic_fills_every_chart_and_csv_matches_json(chain) -> None:
    key = PseudonymKey("k1", b"k" * 32)
    for n in range(6):
        members.enroll(chain, key, members.Enrollment(card_number=f"99000{n}", tracking=n != 0))
    opted_out = members.opted_out_tokens(chain)
    until = datetime(2026, 3, 11, 12, tzinfo=UTC).timestamp()
    profile = analytics_seed.TrafficProfile(visitors_per_day=40, member_share=0.5)
    counts = analytics_seed.seed_instore(chain, days=3, until=until, profile=profile)
    assert set(counts) == {"paris", "lyon"} and min(counts.values()) > 100
    again = analytics_seed.seed_instore(chain, days=3, until=until, profile=profile)
    assert sum(again.values()) == 0  # deterministic IDs: a re-run stores nothing new
    linked = {
        r["member"]
        for r in chain.query("SELECT DISTINCT member FROM events WHERE member IS NOT NULL")
    }
    assert linked and not linked & opted_out

    for chart in analytics.CHARTS:
        t = table(chain, chart, start=date(2026, 3, 9), end=date(2026, 3, 11))
        assert t.rows, chart
        parsed = list(csv.DictReader(io.StringIO(t.to_csv())))
        body = t.to_json({})
        assert [list(r) for r in parsed][0] == body["columns"]
        assert [[str("" if v is None else v) for v in r.values()] for r in body["rows"]] == [
            list(r.values()) for r in parsed
        ], chart


def test_coupon_uplift_compares_offered_members_with_holdout(chain) -> None:
    key = PseudonymKey("k1", b"k" * 32)
    policy = offers.OfferPolicy(holdout_share=0.5)
    catalog.upsert_products(
        chain, [catalog.Product(sku="SKU1", name="Bag", category="Bags", price=40.0)]
    )
    enrolled = [
        members.enroll(chain, key, members.Enrollment(card_number=f"5500{n:02d}", marketing=True))
        for n in range(12)
    ]
    members.enroll(
        chain, key, members.Enrollment(card_number="770001")
    )  # no marketing: not counted
    holdout = [m for m in enrolled if offers.in_holdout(m["id"], policy)]
    offered = [m for m in enrolled if not offers.in_holdout(m["id"], policy)]
    assert holdout and len(offered) >= 2
    sale_ts = at(15).timestamp()

    def buy(member_id: str, qty: int, code: str | None = None) -> None:
        sale = sales.SaleIn(store="paris", ts=sale_ts, member_id=member_id,
                            items=[sales.SaleItem(sku="SKU1", qty=qty)])  # fmt: skip
        sale_id, _ = sales.record_sale(chain, sale)
        if code:
            coupons.redeem(chain, code, member_id=member_id, store="paris", sale_id=sale_id,
                           discount=8.0, now=sale_ts)  # fmt: skip

    terms = coupons.DiscountTerms(kind="percent", value=20)
    for m in offered[:2]:
        coupon = coupons.issue(
            chain, m["id"], terms, valid_days=7, source="offer", now=sale_ts - 60
        )
        chain.execute(
            "INSERT INTO offer_impressions (member_id, template_id, store, action, at, coupon_code)"
            " VALUES (?, 't1', 'paris', 'shown', ?, ?)",
            (m["id"], sale_ts - 60, coupon["code"]),
        )
        buy(m["id"], 2, coupon["code"])
    buy(holdout[0]["id"], 1)
    t = analytics.commerce.coupon_uplift(chain, analytics.scope_for(chain, DAY, DAY), policy)
    rows = {r["group"]: r for r in t.rows}
    assert rows["offered"]["members"] == len(offered) and rows["holdout"]["members"] == len(holdout)
    assert rows["offered"]["offers_shown"] == 2 and rows["offered"]["coupons_redeemed"] == 2
    assert rows["offered"]["spend"] == 160.0 and rows["holdout"]["spend"] == 40.0
    assert rows["offered"]["discount_given"] == 16.0 and rows["holdout"]["coupons_redeemed"] == 0
    assert rows["offered"]["spend_per_member"] == round(160.0 / len(offered), 2)
    expected = (
        100
        * (round(160 / len(offered), 2) - round(40 / len(holdout), 2))
        / round(40 / len(holdout), 2)
    )
    assert t.extra["uplift_pct"]["spend_per_member"] == round(expected, 1)
    # the hour filter follows the sale: nothing was bought in the morning
    morning = analytics.scope_for(chain, DAY, DAY, hour_from=6, hour_to=12)
    assert all(
        r["spend"] == 0 for r in analytics.commerce.coupon_uplift(chain, morning, policy).rows
    )


def test_default_period_ends_today_on_the_stores_clock(chain) -> None:
    """At 23:40 UTC Paris is already on the next day: the default period must hold it."""
    late = datetime(2026, 3, 10, 23, 40, tzinfo=UTC)
    scope = analytics.scope_for(chain, None, None, now=late)
    assert scope.end == date(2026, 3, 11) and scope.days == analytics.DEFAULT_DAYS
    assert analytics.scope_for(chain, DAY, None, now=late).start == DAY
    stores.upsert_store(
        chain, stores.Store(id="nyc", name="NYC", lat=40.7, lon=-74.0, timezone="America/New_York")
    )
    # New York is still on the 10th; a period for it alone ends there.
    assert analytics.scope_for(chain, None, None, ("nyc",), now=late).end == DAY


def test_conversion_divides_sales_of_store_days_that_counted_visitors(chain) -> None:
    """Lyon has no camera and the day before had no footfall either: their sales are counted
    as transactions but not divided by Paris's visitors on one day."""
    catalog.upsert_products(
        chain, [catalog.Product(sku="SKU1", name="Shoe", category="Shoes", price=10.0)]
    )
    dev = Device(chain)
    for minute in (0, 10, 20, 30):
        dev.visit(at(11, minute))

    def sell(store: str, when: datetime) -> None:
        items = [sales.SaleItem(sku="SKU1", qty=1)]
        sales.record_sale(chain, sales.SaleIn(store=store, ts=when.timestamp(), items=items))

    sell("paris", at(11, 15))
    for minute in range(0, 50, 10):
        sell("lyon", at(12, minute))
        sell("paris", at(12, minute, DAY - timedelta(days=1)))
    conv = table(chain, "conversion", start=DAY - timedelta(days=1))
    c = conv.extra["comparison"]
    assert c["visitors"] == 4 and c["transactions"] == 11 and c["counted_transactions"] == 1
    assert c["conversion"] == 0.25 and c["uncounted_store_days"] == 2
    hourly = table(chain, "conversion-hourly", start=DAY - timedelta(days=1)).rows
    assert {r["hour_of_day"]: r["transactions"] for r in hourly} == {11: 1}


def test_heatmap_opens_on_the_store_with_visits(chain) -> None:
    Device(chain, "lyon").visit(at(11), path=[[1.0, 1.0, 0.0], [3.0, 1.0, 4.0]])
    assert table(chain, "heatmap").extra["store"] == "lyon"  # "lyon" < "paris" anyway
    Device(chain, "paris")  # no visits: a chosen store is still shown, empty
    assert table(chain, "heatmap", stores=("paris",)).extra["points"] == 0
    for _ in range(2):
        Device(chain).visit(at(12), path=[[1.0, 1.0, 0.0], [3.0, 1.0, 4.0]])
    assert table(chain, "heatmap").extra["store"] == "paris"
    assert table(chain, "heatmap", stores=("lyon", "paris")).extra["store"] == "paris"
