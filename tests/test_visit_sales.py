"""Sales attached to visits on both databases: a member's sale to their open or just-ended
visit, an anonymous sale to the one visit at the till, everything else unmatched."""

from __future__ import annotations

import pytest
from visit_story import visit

from storelens.cloud.commerce import catalog, members, sales, stores, visit_sales
from storelens.cloud.personalization.checkout import checkout
from storelens.pseudonym import PseudonymKey

KEY = PseudonymKey("k1", b"0123456789abcdef0123456789abcdef")
T = 1_780_000_000.0  # a Tuesday in 2026, 10:13 UTC


@pytest.fixture
def shop(db):
    stores.upsert_store(
        db, stores.Store(id="s1", name="s1", lat=48.85, lon=2.35, zones={"tills": "checkout"})
    )
    stores.upsert_store(db, stores.Store(id="s2", name="s2", lat=48.85, lon=2.35))
    catalog.upsert_products(db, [catalog.Product(sku="BAG-1", name="Tote", category="bags",
                                                 price=80)])  # fmt: skip
    return db


def enroll(db, card: str, tracking: bool = True) -> dict:
    return members.enroll(db, KEY, members.Enrollment(card_number=card, tracking=tracking))


def sell(db, ts: float, member_id: str | None = None, store: str = "s1", now: float | None = None):
    sale = sales.SaleIn(store=store, ts=ts, member_id=member_id,
                        items=[sales.SaleItem(sku="BAG-1", qty=1)])  # fmt: skip
    return checkout(db, sale, now=ts + 5 if now is None else now).sale_id


def test_member_sale_joins_the_open_visit_at_checkout(shop) -> None:
    m = enroll(shop, "6011000000000001")
    visit(shop, "s1", T - 3600, T - 1800, member=m["token"])  # an earlier visit today
    open_visit = visit(shop, "s1", T - 900, None, member=m["token"])
    visit(shop, "s2", T - 600, None, member=m["token"])  # another store
    sale_id = sell(shop, T, m["id"])
    link = visit_sales.sale_link(shop, sale_id)
    assert link is not None and link.method == "member" and link.visit_id == open_visit
    row = shop.query_one("SELECT * FROM sale_visits WHERE sale_id = ?", (sale_id,))
    assert row["entry_to_checkout_s"] == pytest.approx(900)


def test_member_sale_joins_a_just_ended_visit_not_an_old_one(shop) -> None:
    m = enroll(shop, "6011000000000002")
    just = visit(shop, "s1", T - 1200, T - 120, member=m["token"])
    sale_id = sell(shop, T, m["id"])
    assert visit_sales.sale_link(shop, sale_id).visit_id == just
    m2 = enroll(shop, "6011000000000003")
    visit(shop, "s1", T - 7200, T - 3600, member=m2["token"])  # ended an hour ago
    late = sell(shop, T + 10, m2["id"])
    assert visit_sales.sale_link(shop, late) is None  # pending: events may still arrive
    assert visit_sales.link_pending(shop, now=T + visit_sales.SETTLE_S + 60) == 1
    assert visit_sales.sale_link(shop, late).method == "unmatched"


def test_opted_out_member_is_never_linked(shop) -> None:
    m = enroll(shop, "6011000000000004", tracking=False)
    visit(shop, "s1", T - 900, None, member=m["token"])  # as if a device linked it anyway
    sale_id = sell(shop, T, m["id"])
    link = visit_sales.sale_link(shop, sale_id)
    assert link.method == "unmatched" and link.visit_id is None


def test_anonymous_sale_matches_the_one_visit_at_the_till(shop) -> None:
    at_till = visit(shop, "s1", T - 1500, T + 60,
                    zones=[("tills", T - 120, T + 40, "checkout", 80.0, 80.0)])  # fmt: skip
    visit(shop, "s1", T - 1500, T + 90,  # still queueing at the sale: not the buyer
          zones=[("tills", T - 30, T + 80, "checkout", 90.0, 20.0)])  # fmt: skip
    sale_id = sell(shop, T)
    assert visit_sales.sale_link(shop, sale_id) is None  # anonymous: waits for the events
    visit_sales.link_pending(shop, now=T + visit_sales.SETTLE_S + 1)
    link = visit_sales.sale_link(shop, sale_id)
    assert link.method == "time" and link.visit_id == at_till
    assert link.entry_to_checkout_s(T) == pytest.approx(1500)
    # A second sale at the same moment cannot take the same visit: unmatched.
    other = sell(shop, T + 1, now=T + visit_sales.SETTLE_S + 10)
    assert visit_sales.sale_link(shop, other).method == "unmatched"


def test_anonymous_sale_with_two_people_at_the_tills_is_unmatched(shop) -> None:
    for _ in range(2):  # no service area: both stays cover the sale
        visit(shop, "s1", T - 600, T + 60, zones=[("tills", T - 60, T + 30, None, None, None)])
    sale_id = sell(shop, T, now=T + visit_sales.SETTLE_S + 5)
    assert visit_sales.sale_link(shop, sale_id).method == "unmatched"


def test_staff_at_the_till_is_not_a_buyer(shop) -> None:
    visit(shop, "s1", T - 600, T + 60, staff=True,
          zones=[("tills", T - 60, T + 30, "checkout", 0.0, 90.0)])  # fmt: skip
    sale_id = sell(shop, T, now=T + visit_sales.SETTLE_S + 5)
    assert visit_sales.sale_link(shop, sale_id).method == "unmatched"


def test_forget_me_unlinks_the_sale(shop) -> None:
    m = enroll(shop, "6011000000000005")
    visit(shop, "s1", T - 900, None, member=m["token"])
    sale_id = sell(shop, T, m["id"])
    assert visit_sales.sale_link(shop, sale_id).method == "member"
    members.forget(shop, m["id"])
    link = visit_sales.sale_link(shop, sale_id)
    assert link.method == "unmatched" and link.visit_id is None
    visit_sales.link_pending(shop, now=T + visit_sales.SETTLE_S + 5)
    assert visit_sales.sale_link(shop, sale_id).visit_id is None
