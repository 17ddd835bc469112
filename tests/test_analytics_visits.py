"""Try-on, checkout-queue and entry-to-checkout charts on both databases, from stored
contract events and POS sales (staff visits left out everywhere)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from visit_story import occupancy, visit

from storelens.cloud import analytics
from storelens.cloud.commerce import catalog, members, sales, stores, visit_sales
from storelens.cloud.personalization.checkout import checkout
from storelens.pseudonym import PseudonymKey

KEY = PseudonymKey("k1", b"0123456789abcdef0123456789abcdef")
DAY = date(2026, 3, 10)
T = datetime(2026, 3, 10, 10, 0, tzinfo=UTC).timestamp()  # 11:00 in Paris


@pytest.fixture
def shop(db):
    paris = stores.Store(id="paris", name="Paris", lat=48.85, lon=2.35, timezone="Europe/Paris",
                         zones={"cabins": "fitting_room"})  # fmt: skip
    stores.upsert_store(db, paris)
    catalog.upsert_products(db, [catalog.Product(sku="B1", name="Bag", category="bags", price=9)])
    return db


def table(db, chart: str) -> analytics.Table:
    return analytics.CHARTS[chart](db, analytics.scope_for(db, DAY, DAY))


def test_try_on_rate_duration_and_member_conversion(shop) -> None:
    buyer = members.enroll(shop, KEY, members.Enrollment(card_number="60110001"))
    browser = members.enroll(shop, KEY, members.Enrollment(card_number="60110002"))
    bought = visit(shop, "paris", T, T + 1200, member=buyer["token"],
                   zones=[("fitting", T + 100, T + 400, "fitting_room", None, None)])  # fmt: skip
    visit(shop, "paris", T + 60, T + 900, member=browser["token"],
          zones=[("fitting", T + 200, T + 320, "fitting_room", None, None),
                 ("fitting", T + 500, T + 560, "fitting_room", None, None)])  # fmt: skip
    # An older device: no kind, but the store names the zone a fitting room.
    visit(shop, "paris", T + 100, T + 700, zones=[("cabins", T + 200, T + 440, None, None, None)])
    visit(shop, "paris", T + 200, T + 800, zones=[("shoes", T + 300, T + 400, None, None, None)])
    visit(shop, "paris", T, T + 3000, staff=True,  # staff tidying the cabins: not a shopper
          zones=[("fitting", T + 100, T + 2900, "fitting_room", None, None)])  # fmt: skip
    sale = sales.SaleIn(store="paris", ts=T + 1100, member_id=buyer["id"],
                        items=[sales.SaleItem(sku="B1", qty=1)])  # fmt: skip
    sale_id = checkout(shop, sale, now=T + 1105).sale_id
    assert visit_sales.sale_link(shop, sale_id).visit_id == bought
    [row] = table(shop, "try-ons").rows
    assert row["visits"] == 4 and row["tryon_visits"] == 3 and row["tryon_rate"] == 0.75
    assert row["sessions"] == 4 and row["median_tryon_s"] == 180.0  # 60, 120, 240, 300
    assert row["member_tryon_visits"] == 2 and row["member_tryon_purchases"] == 1
    assert row["member_tryon_conversion"] == 0.5


def test_checkout_queue_over_the_day_and_wait_times(shop) -> None:
    for minute, waiting in ((0, 2), (10, 4), (20, 0)):
        occupancy(shop, "paris", T + 60 * minute, {"tills": waiting + 1}, {"tills": waiting})
    occupancy(shop, "paris", T + 3600, {"tills": 1}, {"tills": 1})  # 12:00 local
    occupancy(shop, "paris", T + 7200, {"shoes": 3}, {})  # no checkout zone on that camera
    for queue_s, service_s in ((30.0, 60.0), (90.0, 45.0), (150.0, 0.0)):
        visit(shop, "paris", T, T + 900,
              zones=[("tills", T + 300, T + 300 + queue_s + service_s, "checkout", queue_s,
                      service_s)])  # fmt: skip
    visit(shop, "paris", T, T + 900, staff=True,
          zones=[("tills", T + 10, T + 800, "checkout", 0.0, 790.0)])  # fmt: skip
    rows = {r["hour_of_day"]: r for r in table(shop, "checkout-queue").rows}
    eleven, noon = rows[11], rows[12]
    assert eleven["snapshots"] == 3 and eleven["avg_queue"] == 2.0 and eleven["max_queue"] == 4
    assert eleven["checkouts"] == 3 and eleven["median_wait_s"] == 90.0
    assert eleven["median_service_s"] == 52.5  # the one who gave up was never served
    assert noon["snapshots"] == 1 and noon["checkouts"] == 0


def test_entry_to_checkout_counts_linked_and_unmatched_sales(shop) -> None:
    m = members.enroll(shop, KEY, members.Enrollment(card_number="60110003"))
    visit(shop, "paris", T, None, member=m["token"])
    visit(shop, "paris", T + 60, T + 2000,
          zones=[("tills", T + 1700, T + 1900, "checkout", 100.0, 100.0)])  # fmt: skip

    def sell(ts: float, member_id: str | None = None) -> None:
        sale = sales.SaleIn(store="paris", ts=ts, member_id=member_id,
                            items=[sales.SaleItem(sku="B1", qty=1)])  # fmt: skip
        checkout(shop, sale, now=ts + visit_sales.SETTLE_S + 1)

    sell(T + 600, m["id"])  # 10 min after entry
    sell(T + 1850)  # 29.8 min after the other shopper's entry, at the till
    sell(T + 2500)  # nobody at the till
    [row] = table(shop, "entry-to-checkout").rows
    assert row["visits"] == 1  # the member's visit is still open
    assert (row["sales"], row["linked_member"], row["linked_time"], row["unmatched"]) == (
        3, 1, 1, 1,
    )  # fmt: skip
    assert row["median_entry_to_checkout_s"] == pytest.approx((600 + 1790) / 2, abs=0.1)
