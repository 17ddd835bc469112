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


def test_the_windows_are_configuration_and_change_the_linking(shop) -> None:
    """A member's visit that ended 20 min before the sale: outside the default 15-min window
    (unmatched), inside a 30-min one (linked); a 5-min window leaves a 10-min-old visit out."""
    wide = visit_sales.LinkWindows(just_ended_s=30 * 60)
    narrow = visit_sales.LinkWindows(just_ended_s=5 * 60)
    m = enroll(shop, "6011000000000006")
    ended_20 = visit(shop, "s1", T - 3000, T - 1200, member=m["token"])
    settled = T + visit_sales.SETTLE_S + 5
    default_sale = sell(shop, T, m["id"], now=settled)
    assert visit_sales.sale_link(shop, default_sale).method == "unmatched"
    wide_sale = sales.record_sale(shop, sales.SaleIn(
        store="s1", ts=T + 1, member_id=m["id"], items=[sales.SaleItem(sku="BAG-1", qty=1)]
    ))[0]  # fmt: skip
    assert visit_sales.link_sale(shop, wide_sale, settled, wide).visit_id == ended_20
    m2 = enroll(shop, "6011000000000007")
    ended_10 = visit(shop, "s1", T - 3000, T - 600, member=m2["token"])
    assert visit_sales.sale_link(shop, sell(shop, T, m2["id"])).visit_id == ended_10
    narrow_sale = sales.record_sale(shop, sales.SaleIn(
        store="s1", ts=T + 2, member_id=m2["id"], items=[sales.SaleItem(sku="BAG-1", qty=1)]
    ))[0]  # fmt: skip
    assert visit_sales.link_sale(shop, narrow_sale, T + 10, narrow) is None  # pending
    assert visit_sales.link_pending(shop, now=settled, windows=narrow) == 1
    assert visit_sales.sale_link(shop, narrow_sale).method == "unmatched"


def test_the_clock_skew_window_decides_an_anonymous_sale(shop) -> None:
    # The till's camera saw the buyer leave 60 s before the POS stamped the sale.
    at_till = visit(shop, "s1", T - 900, T - 50,
                    zones=[("tills", T - 200, T - 60, "checkout", 20.0, 120.0)])  # fmt: skip
    settled = T + visit_sales.SETTLE_S + 5
    first = sell(shop, T, now=settled)
    assert visit_sales.sale_link(shop, first).method == "unmatched"  # 30 s default skew
    second = sales.record_sale(shop, sales.SaleIn(
        store="s1", ts=T + 1, items=[sales.SaleItem(sku="BAG-1", qty=1)]
    ))[0]  # fmt: skip
    loose = visit_sales.LinkWindows(skew_s=90)
    assert visit_sales.link_sale(shop, second, settled, loose).visit_id == at_till


def test_bad_windows_are_refused_with_the_reason() -> None:
    from storelens.cloud.settings import Settings

    with pytest.raises(ValueError, match="settle_s must be at least skew_s"):
        visit_sales.LinkWindows(skew_s=60, settle_s=10)
    with pytest.raises(ValueError, match="just_ended_s must be a number >= 0"):
        visit_sales.LinkWindows(just_ended_s=-1)
    with pytest.raises(ValueError, match="at most 21600"):
        visit_sales.LinkWindows(just_ended_s=7 * 3600)
    s = Settings.from_env({"STORELENS_SALE_LINK_JUST_ENDED_S": "1800",
                           "STORELENS_SALE_LINK_SKEW_S": "45"})  # fmt: skip
    assert visit_sales.LinkWindows.from_settings(s) == visit_sales.LinkWindows(1800, 45, 900)
    with pytest.raises(ValueError, match="sale_link_settle_s must be at least sale_link_skew_s"):
        Settings.from_env({"STORELENS_SALE_LINK_SKEW_S": "120",
                           "STORELENS_SALE_LINK_SETTLE_S": "60"})  # fmt: skip
    with pytest.raises(ValueError, match="sale_link_just_ended_s"):
        Settings.from_env({"STORELENS_SALE_LINK_JUST_ENDED_S": "soon"})


def test_the_api_links_sales_by_the_services_windows(shop, db_url) -> None:
    """Through the service: `STORELENS_SALE_LINK_JUST_ENDED_S` decides the POS's sale."""
    from fastapi.testclient import TestClient

    from storelens.cloud.api import principals as auth
    from storelens.cloud.api.app import create_app
    from storelens.cloud.commerce import till
    from storelens.cloud.settings import Settings

    token = auth.create_pos_token(shop, "s1", "till-1")
    results = {}
    for minutes, card in ((15, "6011000000000008"), (40, "6011000000000009")):
        m = enroll(shop, card)
        till.arrived(shop, "s1", "till-1", m["id"])  # the member swiped at this till
        ended = visit(shop, "s1", T - 3000, T - 1200, member=m["token"])  # 20 min before
        app = create_app(Settings(db_url=db_url, sale_link_just_ended_s=minutes * 60), db=shop)
        with TestClient(app) as client:
            r = client.post("/api/v1/sales", headers={"Authorization": f"Bearer {token}"}, json={
                "store": "s1", "ts": T, "member_id": m["id"],
                "items": [{"sku": "BAG-1", "qty": 1}],
            })  # fmt: skip
        assert r.status_code == 201, r.text
        link = visit_sales.sale_link(shop, r.json()["id"])
        results[minutes] = link.visit_id if link else None
        assert (results[minutes] == ended) == (minutes == 40)


def test_the_charts_link_pending_sales_by_the_services_windows(shop, db_url, monkeypatch) -> None:
    """An anonymous sale an hour ago, one person at the till: the entry-to-checkout chart
    decides it under the default 15-min settle window, and leaves it pending under a day's."""
    import time
    from datetime import UTC, datetime, timedelta

    from fastapi.testclient import TestClient

    from storelens.cloud.api import principals
    from storelens.cloud.api.app import create_app
    from storelens.cloud.settings import Settings

    monkeypatch.setitem(principals._SCRYPT, "n", 2**4)
    principals.create_user(shop, "ana", "password-123", "analyst")
    headers = {"Authorization": f"Bearer {principals.login(shop, 'ana', 'password-123', 600)}"}
    t = time.time() - 3600
    visit(shop, "s1", t - 900, t + 60, zones=[("tills", t - 120, t + 40, "checkout", 20.0, 100.0)])
    sell(shop, t)
    day = datetime.fromtimestamp(t, UTC).date()
    period = {"start": (day - timedelta(days=1)).isoformat(),  # any store time zone
              "end": (day + timedelta(days=1)).isoformat()}  # fmt: skip
    totals = {}
    for settle in (86_400, 900):
        app = create_app(Settings(db_url=db_url, sale_link_settle_s=settle,
                                  propensity_refresh_s=0), db=shop)  # fmt: skip
        with TestClient(app) as client:
            r = client.get("/api/v1/analytics/entry-to-checkout", headers=headers,
                           params={"stores": "s1", **period})  # fmt: skip
        assert r.status_code == 200, r.text
        totals[settle] = r.json()["totals"]
    assert (totals[86_400]["pending"], totals[86_400]["linked_time"]) == (1, 0)
    assert (totals[900]["pending"], totals[900]["linked_time"]) == (0, 1)


def test_a_members_visits_starting_together_are_told_apart_by_id(shop, monkeypatch) -> None:
    """Two just-ended visits of the member with the same start: the larger visit id wins,
    whichever order their events were stored in (both orders, two members)."""
    import uuid

    import visit_story

    ids = iter(uuid.UUID(int=n) for n in (0xA2, 0xA1, 0xB1, 0xB2))
    monkeypatch.setattr(visit_story.uuid, "uuid4", lambda: next(ids))
    first, second = enroll(shop, "6011000000000031"), enroll(shop, "6011000000000032")
    for m in (first, second):
        for _ in range(2):
            visit(shop, "s1", T - 1200, T - 120, member=m["token"])
    for m, want in ((first, 0xA2), (second, 0xB2)):
        found = visit_sales.member_visit(shop, "s1", m["token"], T)
        assert found is not None and found.visit_id == str(uuid.UUID(int=want))


def _scans(node: dict) -> list[tuple[str, str]]:
    """(table, index or "" for a seq scan) of every table read in a PostgreSQL JSON plan."""
    children = node.get("Plans", [])
    if node["Node Type"] == "Bitmap Heap Scan":  # its index is its Bitmap Index Scan's
        names = [c.get("Index Name", "") for c in children]
        return [(node["Relation Name"], name) for name in names]
    found = [(node["Relation Name"], node.get("Index Name", ""))] if "Relation Name" in node else []
    for child in children:
        found += _scans(child)
    return found


def test_pending_sales_are_read_by_ts_not_the_whole_history(shop) -> None:
    # A chart calls `link_pending` for the last days of every store: pos_sales and its links
    # must be read by a ts index, or each chart reads every sale and link ever stored.
    for day in range(3):
        sell(shop, T - day * 86_400)
    sql, params = visit_sales.pending_query(T - 3 * 86_400)
    if shop.dialect == "sqlite":
        plan = [r["detail"] for r in shop.query(f"EXPLAIN QUERY PLAN {sql}", params)]
        assert not [d for d in plan if d.startswith("SCAN")], plan
        return
    with shop.transaction():  # tiny tables: make the planner show which index it can use
        shop.execute("SET LOCAL enable_seqscan = off")
        plan = shop.query(f"EXPLAIN (FORMAT JSON) {sql}", params)[0]["QUERY PLAN"][0]["Plan"]
    reads = [s for s in _scans(plan) if s[0] in ("pos_sales", "sale_visits")]
    bounded = {"pos_sales_ts", "pos_sales_pkey", "sale_visits_ts", "sale_visits_pkey"}
    assert reads and all(index in bounded for _, index in reads), reads
