"""POS sales on both databases: inventory decrements once, coupons recorded, store scope."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from storelens.cloud.api import principals as auth
from storelens.cloud.api.app import create_app
from storelens.cloud.commerce import catalog, sales, stores
from storelens.cloud.settings import Settings


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Production scrypt cost is ~50 ms a hash; tests hash dozens of passwords.
    monkeypatch.setitem(auth._SCRYPT, "n", 2**8)


@pytest.fixture
def shop(db):
    for sid in ("s1", "s2"):
        stores.upsert_store(db, stores.Store(id=sid, name=sid, lat=48.85, lon=2.35))
    catalog.upsert_products(
        db,
        [
            catalog.Product(sku="BAG-1", name="Tote", category="handbags", price=80),
            catalog.Product(sku="TEA-1", name="Tea", category="grocery", price=5),
        ],
    )
    stores.set_inventory(db, "s1", [stores.InventoryLevel(sku="BAG-1", on_hand=3)])
    return db


def test_sale_decrements_inventory_once(shop) -> None:
    sale = sales.SaleIn(
        id="till1-000001",
        store="s1",
        coupon_codes=["WELCOME10"],
        items=[
            sales.SaleItem(sku="BAG-1", qty=2, unit_price=72),
            sales.SaleItem(sku="TEA-1", qty=1),
        ],
    )
    assert sales.record_sale(shop, sale, "till-1") == ("till1-000001", True)
    assert sales.record_sale(shop, sale, "till-1") == ("till1-000001", False)
    stock = {r["sku"]: r["on_hand"] for r in stores.get_inventory(shop, "s1")}
    assert stock == {"BAG-1": 1, "TEA-1": -1}  # sold anyway: the count was wrong
    stored = sales.get_sale(shop, "till1-000001")
    assert stored["total"] == 149.0 and stored["coupon_codes"] == ["WELCOME10"]
    assert stored["device"] == "till-1"
    assert [s["id"] for s in sales.list_sales(shop, store="s1")] == ["till1-000001"]
    assert sales.list_sales(shop, store="s2") == []


def test_invalid_sales_change_nothing(shop) -> None:
    with pytest.raises(sales.SaleError):
        sales.record_sale(shop, sales.SaleIn(store="s1", items=[sales.SaleItem(sku="NOPE", qty=1)]))
    with pytest.raises(sales.SaleError):
        sales.record_sale(
            shop, sales.SaleIn(store="zz", items=[sales.SaleItem(sku="BAG-1", qty=1)])
        )
    with pytest.raises(sales.SaleError):
        sales.record_sale(
            shop,
            sales.SaleIn(
                store="s1", member_id="m_nobody", items=[sales.SaleItem(sku="BAG-1", qty=1)]
            ),
        )
    assert shop.scalar("SELECT count(*) FROM pos_sales") == 0
    assert stores.get_inventory(shop, "s1", sku="BAG-1")[0]["on_hand"] == 3


def test_pos_can_only_sell_in_its_store(shop) -> None:
    pos = {"Authorization": f"Bearer {auth.create_pos_token(shop, 's1', 'till-1')}"}
    with TestClient(create_app(Settings(db_url="unused"), db=shop)) as c:
        body = {"store": "s1", "items": [{"sku": "BAG-1", "qty": 1}]}
        r = c.post("/api/v1/sales", json=body, headers=pos)
        assert r.status_code == 201 and r.json()["device"] == "till-1"
        assert c.post("/api/v1/sales", json={**body, "store": "s2"}, headers=pos).status_code == 403
        assert c.get(f"/api/v1/sales/{r.json()['id']}", headers=pos).status_code == 200
        assert c.get("/api/v1/sales?store=s2", headers=pos).status_code == 403
        assert len(c.get("/api/v1/sales", headers=pos).json()["items"]) == 1
        bad = {"store": "s1", "items": [{"sku": "BAG-1", "qty": -1}]}
        assert c.post("/api/v1/sales", json=bad, headers=pos).status_code == 422
        assert c.get("/api/v1/sales/s_missing", headers=pos).status_code == 404


def test_sales_api_redeems_coupons_only_through_validation(shop) -> None:
    pos = {"Authorization": f"Bearer {auth.create_pos_token(shop, 's1', 'till-1')}"}
    with TestClient(create_app(Settings(db_url="unused"), db=shop)) as c:
        body = {"store": "s1", "items": [{"sku": "BAG-1", "qty": 1}], "coupon_codes": ["MADEUP"]}
        r = c.post("/api/v1/sales", json=body, headers=pos)
        assert r.status_code == 409 and r.json()["detail"]["reason"] == "unknown"
        assert c.get("/api/v1/sales", headers=pos).json()["items"] == []
        left = "SELECT on_hand FROM inventory WHERE store = ? AND sku = ?"
        assert shop.scalar(left, ("s1", "BAG-1")) == 3
