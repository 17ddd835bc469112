"""Catalog and inventory on both databases: bulk import (CSV, JSON), all-or-nothing errors,
upserts, incremental stock movements."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from storelens.cloud.api import principals as auth
from storelens.cloud.api.app import create_app
from storelens.cloud.commerce import catalog, stores
from storelens.cloud.settings import Settings


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Production scrypt cost is ~50 ms a hash; tests hash dozens of passwords.
    monkeypatch.setitem(auth._SCRYPT, "n", 2**8)


CSV = """sku,name,category,brand,price,image_url,consumable
SHO-1,Runner,shoes,Dune,79.90,https://img.example/sho-1.jpg,false
TEA-1,Green tea,grocery,Mistral,4.50,,true
"""


def test_csv_and_json_import_upsert(db) -> None:
    assert catalog.upsert_products(db, catalog.parse_products(CSV.encode(), "csv")) == 2
    tea = catalog.get_product(db, "TEA-1")
    assert tea["consumable"] == 1 and tea["price"] == 4.5 and tea["image_url"] is None
    update = [{"sku": "TEA-1", "name": "Green tea 100g", "category": "grocery", "price": 4.9}]
    catalog.upsert_products(db, catalog.parse_products(json.dumps(update), "json"))
    assert catalog.get_product(db, "TEA-1")["name"] == "Green tea 100g"
    assert [r["sku"] for r in catalog.list_products(db, category="shoes")] == ["SHO-1"]
    assert [r["sku"] for r in catalog.list_products(db, q="tea")] == ["TEA-1"]
    assert catalog.categories(db) == [
        {"category": "grocery", "products": 1},
        {"category": "shoes", "products": 1},
    ]


def test_bad_rows_reject_the_whole_file(db) -> None:
    bad = CSV + "BAD 1,Broken,shoes,X,-3,,false\n"
    with pytest.raises(catalog.CatalogImportError) as err:
        catalog.parse_products(bad.encode(), "csv")
    assert len(err.value.errors) == 1 and err.value.errors[0].startswith("row 3")
    for raw, fmt in (("{", "json"), ('{"sku": 1}', "json"), ("x", "xml")):
        with pytest.raises(catalog.CatalogImportError):
            catalog.parse_products(raw, fmt)
    assert db.scalar("SELECT count(*) FROM products") == 0


def test_inventory_bulk_and_movements(db) -> None:
    stores.upsert_store(db, stores.Store(id="s1", name="One", lat=1, lon=2, zones={"z1": "shoes"}))
    assert stores.get_store(db, "s1")["zones"] == {"z1": "shoes"}
    stores.set_inventory(
        db,
        "s1",
        [
            stores.InventoryLevel(sku="SHO-1", on_hand=5, safety_stock=1, shelf_location="A1"),
            stores.InventoryLevel(sku="TEA-1", on_hand=2),
        ],
    )
    rows = stores.adjust_inventory(
        db, "s1", [stores.InventoryChange(sku="SHO-1", delta_on_hand=-2, delta_reserved=1)]
    )
    assert (rows[0]["on_hand"], rows[0]["reserved"]) == (3, 1)
    assert stores.available_to_sell(db, "SHO-1") == [{"store": "s1", "available": 1}]
    with pytest.raises(stores.StockError):
        stores.adjust_inventory(
            db,
            "s1",
            [
                stores.InventoryChange(sku="TEA-1", delta_on_hand=-1),
                stores.InventoryChange(sku="SHO-1", delta_on_hand=-9),
            ],
        )
    # All or nothing: TEA-1 was not touched by the rejected batch.
    assert stores.get_inventory(db, "s1", sku="TEA-1")[0]["on_hand"] == 2
    with pytest.raises(stores.UnknownStore):
        stores.set_inventory(db, "nope", [])


def test_catalog_and_inventory_api(db) -> None:
    stores.upsert_store(db, stores.Store(id="s1", name="One", lat=1, lon=2))
    auth.create_user(db, "boss", "correct horse", "admin")
    with TestClient(create_app(Settings(db_url="unused"), db=db)) as c:
        token = c.post("/api/v1/auth/login", json={"username": "boss", "password": "correct horse"})
        admin = {"Authorization": f"Bearer {token.json()['token']}"}
        r = c.post("/api/v1/products/import?format=csv", content=CSV, headers=admin)
        assert r.json() == {"imported": 2}
        r = c.post("/api/v1/products/import?format=csv", content=CSV + "X,,,,,,\n", headers=admin)
        assert r.status_code == 422 and r.json()["errors"]
        assert c.get("/api/v1/products/SHO-1", headers=admin).json()["brand"] == "Dune"
        assert c.get("/api/v1/products/NOPE", headers=admin).status_code == 404
        body = {"sku": "SHO-2", "name": "Boot", "category": "shoes", "price": 120}
        assert c.put("/api/v1/products/SHO-2", json=body, headers=admin).status_code == 200
        assert c.put("/api/v1/products/SHO-3", json=body, headers=admin).status_code == 422
        page = c.get("/api/v1/products?limit=2", headers=admin).json()
        assert len(page["items"]) == 2 and page["next_offset"] == 2
        levels = {"levels": [{"sku": "SHO-1", "on_hand": 4}]}
        assert c.put("/api/v1/stores/s1/inventory", json=levels, headers=admin).json() == {
            "written": 1
        }
        move = {"changes": [{"sku": "SHO-1", "delta_on_hand": -5}]}
        r = c.post("/api/v1/stores/s1/inventory/adjustments", json=move, headers=admin)
        assert r.status_code == 409


def test_store_and_inventory_files(db) -> None:
    raw = json.dumps(
        [
            {"id": "s1", "name": "One", "lat": 48.8, "lon": 2.3, "zones": {"door": "entrance"}},
            {"id": "s2", "name": "Two", "lat": 45.7, "lon": 4.8, "fulfillment_capacity": 20},
        ]
    )
    assert stores.upsert_stores(db, stores.parse_stores(raw)) == 2
    assert stores.get_store(db, "s2")["fulfillment_capacity"] == 20
    with pytest.raises(stores.StoreImportError) as err:
        stores.parse_stores('[{"id": "s3", "name": "x", "lat": 95, "lon": 0}]')
    assert err.value.errors[0].startswith("row 1: lat")
    levels = stores.parse_inventory("sku,on_hand,shelf_location\nSHO-1,4,B2\nTEA-1,9,\n", "csv")
    assert stores.set_inventory(db, "s1", levels) == 2
    assert stores.get_inventory(db, "s1", sku="SHO-1")[0]["shelf_location"] == "B2"
    with pytest.raises(stores.StoreImportError):
        stores.parse_inventory("sku,on_hand\nSHO-1,-4\n", "csv")
    with TestClient(create_app(Settings(db_url="unused"), db=db)) as c:
        auth.create_user(db, "boss", "correct horse", "admin")
        r = c.post("/api/v1/auth/login", json={"username": "boss", "password": "correct horse"})
        admin = {"Authorization": f"Bearer {r.json()['token']}"}
        body = [{"id": "s9", "name": "Nine", "lat": 1, "lon": 2}]
        assert c.post("/api/v1/stores/import", json=body, headers=admin).json() == {"written": 1}
        assert (
            c.post("/api/v1/stores/import", json=[{"id": "bad id"}], headers=admin).status_code
            == 422
        )
