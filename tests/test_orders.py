"""Online orders on both databases: the idempotent webhook, validation, the creation hook."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from storelens.cloud.api import principals as auth
from storelens.cloud.api.app import create_app
from storelens.cloud.commerce import catalog, members, orders, stores
from storelens.cloud.hooks import Hooks
from storelens.cloud.settings import Settings


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Production scrypt cost is ~50 ms a hash; tests hash dozens of passwords.
    monkeypatch.setitem(auth._SCRYPT, "n", 2**8)


ORDER = {
    "external_id": "W-1001",
    "customer_account": "acc-1",
    "items": [{"sku": "BAG-1", "qty": 2}, {"sku": "TEA-1", "qty": 1, "unit_price": 3.0}],
    "fulfillment_type": "ship",
    "shipping": {
        "name": "Ann",
        "address": "1 rue X",
        "city": "Paris",
        "postcode": "75001",
        "country": "FR",
        "lat": 48.86,
        "lon": 2.34,
    },
}


@pytest.fixture
def client(db):
    stores.upsert_store(db, stores.Store(id="s1", name="One", lat=48.85, lon=2.35))
    catalog.upsert_products(
        db,
        [
            catalog.Product(sku="BAG-1", name="Tote", category="handbags", price=80),
            catalog.Product(sku="TEA-1", name="Tea", category="grocery", price=5),
        ],
    )
    auth.create_user(db, "shop", "webhook pass", "admin")
    with TestClient(create_app(Settings(db_url="unused"), db=db)) as c:
        r = c.post("/api/v1/auth/login", json={"username": "shop", "password": "webhook pass"})
        c.headers["Authorization"] = f"Bearer {r.json()['token']}"
        yield c


def test_webhook_is_idempotent_by_key(client, db) -> None:
    key = {"Idempotency-Key": "a1b2c3d4-0001"}
    first = client.post("/api/v1/orders", json=ORDER, headers=key)
    assert first.status_code == 201
    body = first.json()
    assert body["total"] == 163.0 and body["status"] in orders.STATUSES and len(body["items"]) == 2
    replay = client.post("/api/v1/orders", json=ORDER, headers=key)
    assert replay.status_code == 200 and replay.json()["id"] == body["id"]
    assert db.scalar("SELECT count(*) FROM online_orders") == 1
    assert db.scalar("SELECT count(*) FROM online_order_items") == 2
    changed = client.post("/api/v1/orders", json={**ORDER, "external_id": "W-2"}, headers=key)
    assert changed.status_code == 409
    other = client.post("/api/v1/orders", json=ORDER, headers={"Idempotency-Key": "a1b2c3d4-0002"})
    assert other.status_code == 201 and other.json()["id"] != body["id"]
    assert client.post("/api/v1/orders", json=ORDER).status_code == 422  # the key is required


def test_bad_orders_are_rejected_clearly(client, db) -> None:
    key = {"Idempotency-Key": "bad-order-0001"}
    no_address = {**ORDER, "shipping": None}
    assert "shipping address" in client.post("/api/v1/orders", json=no_address, headers=key).text
    pickup = {**ORDER, "fulfillment_type": "pickup", "pickup_store": "nowhere"}
    r = client.post("/api/v1/orders", json=pickup, headers=key)
    assert r.status_code == 422 and "pickup store" in r.json()["detail"][0]["msg"]
    unknown = {**ORDER, "items": [{"sku": "GHOST", "qty": 1}]}
    r = client.post("/api/v1/orders", json=unknown, headers=key)
    assert r.status_code == 422 and "GHOST" in r.json()["detail"][0]["msg"]
    zero = {**ORDER, "items": [{"sku": "BAG-1", "qty": 0}]}
    assert client.post("/api/v1/orders", json=zero, headers=key).status_code == 422
    assert db.scalar("SELECT count(*) FROM online_orders") == 0


def test_linked_member_status_listing_and_hook(client, db, monkeypatch) -> None:
    from storelens.pseudonym import PseudonymKey

    m = members.enroll(
        db,
        PseudonymKey("k", b"x" * 16),
        members.Enrollment(card_number="12345678", account_id="acc-1"),
    )
    seen: list[str] = []
    record = Hooks({"test": [("order_created", lambda d, oid: seen.append(oid))]})
    monkeypatch.setattr(client.app.state.services, "hooks", record)
    r = client.post("/api/v1/orders", json=ORDER, headers={"Idempotency-Key": "hook-00001"})
    oid = r.json()["id"]
    assert seen == [oid] and r.json()["member_id"] == m["id"]
    r = client.patch(f"/api/v1/orders/{oid}/status", json={"status": "shipped"})
    assert r.json()["status"] == "shipped"
    assert client.patch(f"/api/v1/orders/{oid}/status", json={"status": "lost"}).status_code == 422
    assert client.patch("/api/v1/orders/o_x/status", json={"status": "shipped"}).status_code == 404
    page = client.get("/api/v1/orders?status=shipped").json()
    assert [o["id"] for o in page["items"]] == [oid]

    def failing_router(d: object, oid: str) -> None:
        raise RuntimeError("router down")

    failing = Hooks({"test": [("order_created", failing_router)]})
    with pytest.raises(RuntimeError):
        orders.create_order(db, orders.OrderIn.model_validate(ORDER), "hook-00002", hooks=failing)
    # The hook runs in the order's transaction: no half-created order is left behind.
    assert (
        db.scalar("SELECT count(*) FROM online_orders WHERE idempotency_key = ?", ("hook-00002",))
        == 0
    )
