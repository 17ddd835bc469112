"""The recommender: co-purchase similarity, dwell-driven category affinity, serving filters,
fallbacks, reasons, and the background-rebuilt service over the database."""

from __future__ import annotations

import time
import uuid

import numpy as np
from personalization_chain import build_chain

from storelens.cloud.commerce import sales
from storelens.cloud.ingest import events
from storelens.cloud.personalization.recommend import (
    RecommendationService,
    RecommendSettings,
    ServingContext,
)
from storelens.cloud.personalization.recommend.model import (
    Catalog,
    Dwells,
    Interactions,
    build_model,
)
from storelens.cloud.personalization.recommend.ranking import format_duration, recommend

NOW = 1_790_000_000.0
DAY = 86400.0


def _catalog() -> Catalog:
    cats = ["Handbags"] * 5 + ["Shoes"] * 5 + ["Beauty"] * 5
    return Catalog(
        skus=[f"{c[0]}{i % 5}" for i, c in enumerate(cats)],
        names=[f"{c} {i % 5}" for i, c in enumerate(cats)],
        categories=cats,
        active=np.array([sku != "S4" for sku in [f"{c[0]}{i % 5}" for i, c in enumerate(cats)]]),
        consumable=np.array([c == "Beauty" for c in cats]),
    )


def _model(rows, dwells=()) -> object:
    return build_model(
        _catalog(), Interactions.from_rows(rows), Dwells.from_rows(list(dwells)), now=NOW
    )


def _base_rows() -> list:
    rows = []
    for m in range(20):  # H0 and S1 go together
        rows += [(f"pair{m}", "H0", NOW - 5 * DAY, 1, "paris"),
                 (f"pair{m}", "S1", NOW - 5 * DAY, 1, "paris")]  # fmt: skip
    for _ in range(8):  # B2 sells well, anonymously
        rows.append((None, "B2", NOW - DAY, 1, "paris"))
    for _ in range(5):
        rows.append((None, "H3", NOW - 2 * DAY, 1, "paris"))
        rows.append((None, "S4", NOW - 2 * DAY, 1, "paris"))  # discontinued item
    return rows


def test_co_purchase_reason_and_already_bought_filter() -> None:
    rows = _base_rows() + [("ann", "H0", NOW - DAY, 1, "paris")]
    recs = recommend(_model(rows), ServingContext(member="ann", store="paris"), limit=5)
    assert recs[0].sku == "S1" and recs[0].source == "similar"
    assert recs[0].reason == "often bought with Handbags 0"
    skus = [r.sku for r in recs]
    assert "H0" not in skus and "S4" not in skus  # bought already; discontinued
    assert all(r.reason for r in recs)


def test_todays_dwell_weighs_most_and_explains() -> None:
    rows = _base_rows() + [("ann", "B2", NOW - 60 * DAY, 1, "paris")]
    dwells = [("ann", "Shoes", NOW - 30 * DAY, 900.0)]  # browsed shoes long ago
    ctx = ServingContext(member="ann", store="paris", today_dwell={"Handbags": 245.0})
    recs = recommend(_model(rows, dwells), ctx, limit=3)
    assert recs[0].category == "Handbags"
    assert recs[0].reason == "spent 4 min in Handbags today"
    assert format_duration(42) == "42 s" and format_duration(360) == "6 min"


def test_consumables_can_be_recommended_again() -> None:
    rows = _base_rows() + [("ann", "B2", NOW - 3 * DAY, 1, "paris")] * 3
    recs = recommend(_model(rows), ServingContext(member="ann", store="paris"), limit=5)
    assert "B2" in [r.sku for r in recs]


def test_stock_filter_and_fallbacks_for_unknown_member() -> None:
    model = _model(_base_rows())
    in_stock = {"H0", "H3", "B2"}
    ctx = ServingContext(member="newcomer", store="paris", today_dwell={"Handbags": 130.0})
    recs = recommend(model, ctx, limit=4, in_stock=lambda skus: set(skus) & in_stock)
    assert [r.sku for r in recs[:2]] == ["H0", "H3"] or recs[0].category == "Handbags"
    assert {r.sku for r in recs} <= in_stock
    first = recs[0]
    assert first.reason in (
        "spent 2 min in Handbags today",
        "best seller in Handbags, where you spent 2 min today",
    )
    # Nobody known, nothing dwelt: the store's best sellers.
    plain = recommend(model, ServingContext(member=None, store="paris"), limit=3)
    assert [r.source for r in plain] == ["store_best_seller"] * 3
    assert plain[0].sku == "H0" and plain[0].reason == "best seller at this store"
    # A store without sales falls back to the chain's best sellers.
    other = recommend(model, ServingContext(member=None, store="lyon"), limit=2)
    assert [r.sku for r in other] == ["H0", "S1"]


def test_empty_model_serves_nothing_without_error() -> None:
    model = build_model(_catalog(), Interactions.from_rows([]), now=NOW)
    assert recommend(model, ServingContext(member="x", store="paris")) == []


def test_service_reads_the_database_and_rebuilds(db) -> None:
    chain = build_chain(db, with_tokens=False)
    ann, cid = chain.member("ann"), chain.member("cid")
    now = time.time()
    for n in range(5):
        sales.record_sale(db, sales.SaleIn(store="paris", ts=now - DAY * (n + 1), items=[
            sales.SaleItem(sku="H1", qty=1), sales.SaleItem(sku="S2", qty=1)]))  # fmt: skip
    service = RecommendationService(db, RecommendSettings(rebuild_interval_s=3600))
    service.start()
    assert service.wait_ready(30)
    recs = service.for_member(ann, "paris", limit=3)
    assert [r.source for r in recs] == ["store_best_seller"] * 2  # only two items ever sold
    # Ann buys H1 and dwells in Beauty today; the model learns after a rebuild.
    sales.record_sale(db, sales.SaleIn(store="paris", ts=now - 3600, member_id=ann["id"],
                                       items=[sales.SaleItem(sku="H1", qty=1)]))  # fmt: skip
    sales.record_sale(db, sales.SaleIn(store="paris", ts=now - 7200, items=[
        sales.SaleItem(sku="B3", qty=1)]))  # fmt: skip
    # Already bought since the last build: filtered even before the rebuild.
    assert "H1" not in [r.sku for r in service.for_member(ann, "paris")]
    events.store_events(db, [{
        "id": str(uuid.uuid4()), "store": "paris", "device": "e1", "seq": 1,
        "type": "zone_visit", "ts": now - 30, "camera": "c1", "visit_id": str(uuid.uuid4()),
        "member": ann["token"], "key_id": "k1", "zone": "z_beauty", "line": None,
        "direction": None, "dwell_s": 200.0, "t_start": now - 230, "received_at": now,
        "payload": "{}",
    }])  # fmt: skip
    assert service.today_dwell(ann["token"], "paris") == {"Beauty": 200.0}
    requested = time.time()  # a build that started earlier (the first learned one) is not it
    service.request_rebuild()
    deadline = time.monotonic() + 30
    while service.model.built_at < requested:
        assert time.monotonic() < deadline, "no rebuild after request_rebuild()"
        time.sleep(0.05)
    recs = service.for_member(ann, "paris", limit=3)
    assert recs[0].sku == "S2" and recs[0].reason == "often bought with Handbags item 1"
    assert any(r.reason == "spent 3 min in Beauty today" for r in recs)
    # Tracking consent withdrawn: today's dwell is not used.
    no_tracking = dict(ann, tracking=False)
    assert all("today" not in r.reason for r in service.for_member(no_tracking, "paris"))
    # Out of stock at Lyon: never recommended there.
    db.execute("UPDATE inventory SET on_hand = 0 WHERE store = 'lyon' AND sku = 'S2'")
    assert "S2" not in [r.sku for r in service.for_member(ann, "lyon")]
    assert service.for_member(cid, "paris")  # a member with no purchases still gets items
    service.stop()
