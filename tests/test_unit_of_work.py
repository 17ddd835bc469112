"""One transaction per API request: a request that fails after a write, even after a domain
transaction of its own committed, leaves nothing behind; a domain transaction that fails
inside it undoes only itself; pushes wait for the request's commit. Both backends."""

from __future__ import annotations

import contextlib
import json
import threading

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient
from personalization_chain import KEY_HEX, build_chain

from storelens.cloud import push
from storelens.cloud.api import pos as pos_api
from storelens.cloud.api.app import create_app
from storelens.cloud.commerce import stores
from storelens.cloud.db import IntegrityError, unit_of_work
from storelens.cloud.personalization import checkout, coupons, offers
from storelens.cloud.settings import Settings


@pytest.fixture
def app_db(db, monkeypatch):
    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", KEY_HEX)
    chain = build_chain(db)
    db.execute("CREATE TABLE uow_probe (id TEXT PRIMARY KEY, n INTEGER)")
    app = create_app(Settings.from_env({}, db_url="unused"), db=db)

    def two_writes(fail: str) -> None:
        # Two domain transactions, each committing on its own outside a request.
        with db.transaction():
            db.execute("INSERT INTO uow_probe (id, n) VALUES ('a', 1)")
        hub = app.state.services.push
        db.after_commit(lambda: hub.publish("paris", "probe", {"fail": fail}))
        with db.transaction():
            db.execute("INSERT INTO uow_probe (id, n) VALUES ('b', 2)")
        if fail == "error":
            raise RuntimeError("injected failure after two commits")
        if fail == "http":
            raise HTTPException(409, "injected conflict after two commits")

    @app.post("/probe/{fail}")
    def probe(fail: str) -> dict:
        two_writes(fail)
        return {"ok": True}

    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, chain, db, {"Authorization": f"Bearer {chain.tokens['paris']}"}
        recommender = app.state.services.recommender
        if recommender is not None:
            recommender.stop()


def _probe_rows(db) -> list:  # noqa: ANN001
    return [r["id"] for r in db.query("SELECT id FROM uow_probe ORDER BY id")]


@pytest.mark.parametrize(("fail", "status"), [("error", 500), ("http", 409)])
def test_a_request_that_fails_after_its_commits_leaves_nothing(
    app_db, monkeypatch, fail, status
) -> None:
    client, _, db, _ = app_db
    pushed: list[tuple[str, list]] = []  # what was pushed, and what was stored by then
    monkeypatch.setattr(push.PushHub, "publish", lambda _hub, store, kind, payload: pushed.append(
        (payload["fail"], _probe_rows(db))))  # fmt: skip
    assert client.post(f"/probe/{fail}").status_code == status
    assert _probe_rows(db) == []
    assert pushed == []  # announced only after a commit that never came
    assert client.post("/probe/none").status_code == 200
    assert _probe_rows(db) == ["a", "b"]
    assert pushed == [("none", ["a", "b"])]  # pushed once both writes were committed


def test_a_sale_whose_response_fails_is_not_stored_and_its_id_goes_through(
    app_db, monkeypatch
) -> None:
    client, _, db, paris = app_db
    sale = {"id": "sale-uow-1", "items": [{"sku": "H1", "qty": 2}]}

    def broken(**_: object) -> None:  # the step after the checkout committed fails
        raise RuntimeError("injected failure building the response")

    monkeypatch.setattr(pos_api, "CheckoutOut", broken)
    assert client.post("/api/v1/pos/sales", json=sale, headers=paris).status_code == 500
    assert db.scalar("SELECT count(*) FROM pos_sales WHERE id = 'sale-uow-1'") == 0
    assert db.scalar("SELECT on_hand FROM inventory WHERE store = 'paris' AND sku = 'H1'") == 20
    monkeypatch.undo()
    r = client.post("/api/v1/pos/sales", json=sale, headers=paris)
    assert r.status_code == 201, r.text
    assert db.scalar("SELECT on_hand FROM inventory WHERE store = 'paris' AND sku = 'H1'") == 18


@pytest.mark.parametrize("fails", [False, True])
def test_a_coupon_earned_at_checkout_is_pushed_only_once_committed(
    app_db, monkeypatch, fails
) -> None:
    client, chain, db, paris = app_db
    ann = chain.member("ann")["id"]
    swipe = client.post("/api/v1/pos/members/lookup", json={"card_number": "CARD0000"},
                        headers=paris)  # fmt: skip
    assert swipe.status_code == 200
    terms = coupons.DiscountTerms(kind="percent", value=10)

    def earned(db, facts, store, skus, **_):  # noqa: ANN001, ANN202
        return [coupons.issue(db, facts.member_id, terms, valid_days=7, source="probe")]

    def stored_coupons() -> int:  # committed ones: read outside the request's transaction
        with unit_of_work.suspended():
            return db.scalar("SELECT count(*) FROM coupons WHERE source = 'probe'")

    pushed: list[tuple[str, int]] = []  # kind, coupons stored when it was pushed
    monkeypatch.setattr(offers, "reward_recommended_purchase", earned)
    monkeypatch.setattr(push.PushHub, "publish", lambda _hub, store, kind, payload: pushed.append(
        (kind, stored_coupons())))  # fmt: skip
    if fails:
        monkeypatch.setattr(pos_api, "CheckoutOut", _raise)
    sale = {"id": "sale-uow-push", "member_id": ann, "items": [{"sku": "H1", "qty": 1}]}
    r = client.post("/api/v1/pos/sales", json=sale, headers=paris)
    if fails:
        assert r.status_code == 500
        assert (pushed, stored_coupons()) == ([], 0)
    else:
        assert r.status_code == 201, r.text
        assert ("coupon_issued", 1) in pushed  # after the commit: the coupon was visible


def _raise(**_: object) -> None:
    raise RuntimeError("injected failure building the response")


def _past_the_edge(monkeypatch, module, name: str, **update: object) -> None:  # noqa: ANN001
    """The route's domain call gets values its request model would have refused: what a
    missing bound let through before (issue 16)."""
    real = getattr(module, name)

    def patched(db, where, changes, **kw):  # noqa: ANN001, ANN202
        return real(db, where, [c.model_copy(update=update) for c in changes], **kw)

    monkeypatch.setattr(module, name, patched)


def test_a_stock_delta_past_64_bits_leaves_nothing_and_the_listing_works(
    app_db, monkeypatch
) -> None:
    client, _, db, paris = app_db
    _past_the_edge(monkeypatch, stores, "adjust_inventory", delta_on_hand=2**63 - 1)
    body = {"changes": [{"sku": "H2", "delta_on_hand": 1}, {"sku": "H1", "delta_on_hand": 1}]}
    r = client.post("/api/v1/stores/paris/inventory/adjustments", json=body, headers=paris)
    assert r.status_code >= 400
    monkeypatch.undo()
    levels = {
        x["sku"]: x["on_hand"]
        for x in db.query(
            "SELECT sku, on_hand FROM inventory WHERE store = 'paris' AND sku IN ('H1', 'H2')"
        )
    }
    assert levels == {"H1": 20, "H2": 20}
    assert all(type(v) is int for v in levels.values())  # SQLite stored a REAL once
    listing = client.get("/api/v1/stores/paris/inventory", headers=paris)
    assert listing.status_code == 200, listing.text


def test_an_infinite_price_past_the_edge_leaves_nothing(app_db, monkeypatch) -> None:
    client, _, db, paris = app_db
    real = checkout.checkout

    def infinite(db, sale, **kw):  # noqa: ANN001, ANN202
        items = [i.model_copy(update={"unit_price": float("inf")}) for i in sale.items]
        return real(db, sale.model_copy(update={"items": items}), **kw)

    monkeypatch.setattr(checkout, "checkout", infinite)
    sale = {"id": "sale-uow-inf", "items": [{"sku": "H1", "qty": 1}]}
    r = client.post("/api/v1/pos/sales", content=json.dumps(sale),
                    headers={**paris, "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code >= 400
    monkeypatch.undo()
    assert db.scalar("SELECT count(*) FROM pos_sales WHERE id = 'sale-uow-inf'") == 0
    assert client.post("/api/v1/pos/sales", json=sale, headers=paris).status_code == 201


# -- the unit of work on its own ------------------------------------------------------------


def _in_unit(db, work, *, commit: bool = True):  # noqa: ANN001, ANN202
    unit, token = unit_of_work.open_unit(db)
    try:
        result = work()
    except BaseException:
        unit.rollback()
        raise
    else:
        (unit.commit if commit else unit.rollback)()
    finally:
        unit_of_work.close_unit(token)
    return result


def test_a_failed_domain_transaction_inside_a_request_undoes_only_itself(db) -> None:
    db.execute("CREATE TABLE uow_probe (id TEXT PRIMARY KEY, n INTEGER)")
    announced: list[str] = []

    def work() -> None:
        db.execute("INSERT INTO uow_probe VALUES ('a', 1)")
        try:
            with db.transaction():
                db.execute("INSERT INTO uow_probe VALUES ('b', 2)")
                db.after_commit(lambda: announced.append("b"))
                db.execute("INSERT INTO uow_probe VALUES ('a', 3)")  # duplicate key
        except IntegrityError:
            pass
        # A lone failed write (on PostgreSQL it would abort the whole transaction).
        with contextlib.suppress(IntegrityError):
            db.execute("INSERT INTO uow_probe VALUES ('a', 4)")
        db.after_commit(lambda: announced.append("c"))
        db.execute("INSERT INTO uow_probe VALUES ('c', 5)")
        assert announced == []  # nothing is announced before the request commits

    _in_unit(db, work)
    assert [(r["id"], r["n"]) for r in db.query("SELECT * FROM uow_probe ORDER BY id")] == [
        ("a", 1), ("c", 5)]  # fmt: skip
    assert announced == ["c"]


def test_a_rolled_back_unit_leaves_nothing_and_reads_take_no_lock(db) -> None:
    db.execute("CREATE TABLE uow_probe (id TEXT PRIMARY KEY, n INTEGER)")
    seen_by_others: list[int] = []

    def work() -> None:
        assert db.scalar("SELECT count(*) FROM uow_probe") == 0
        # Only read so far: another thread (its own transaction) writes without waiting.
        other = threading.Thread(target=lambda: db.execute("INSERT INTO uow_probe VALUES ('x', 0)"))
        other.start()
        other.join(5)
        assert not other.is_alive()
        with db.transaction():
            db.execute("INSERT INTO uow_probe VALUES ('a', 1)")
        assert db.scalar("SELECT count(*) FROM uow_probe") == 2  # reads its own writes
        probe = threading.Thread(
            target=lambda: seen_by_others.append(db.scalar("SELECT count(*) FROM uow_probe"))
        )
        probe.start()
        probe.join(5)

    _in_unit(db, work, commit=False)
    assert seen_by_others == [1]  # the request's write was never visible outside it
    assert [r["id"] for r in db.query("SELECT id FROM uow_probe")] == ["x"]


def test_an_independent_write_stands_when_the_request_rolls_back(db) -> None:
    db.execute("CREATE TABLE uow_probe (id TEXT PRIMARY KEY, n INTEGER)")

    def work() -> None:
        with db.independent():
            db.execute("INSERT INTO uow_probe VALUES ('kept', 1)")
        db.execute("INSERT INTO uow_probe VALUES ('undone', 2)")
        if db.dialect == "sqlite":
            with pytest.raises(RuntimeError, match="write lock"), db.independent():
                pass

    _in_unit(db, work, commit=False)
    assert [r["id"] for r in db.query("SELECT id FROM uow_probe")] == ["kept"]
