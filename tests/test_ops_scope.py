"""Ops users scoped to the chain, a region (some stores) or one store (a store manager):
every chart, CSV, device view and the store list follow the scope; asking for a store
outside it is 403. Both backends."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient

from storelens.cloud.api import principals as auth
from storelens.cloud.api.app import create_app
from storelens.cloud.commerce import stores
from storelens.cloud.settings import Settings
from storelens.tools.seed import instore as analytics_seed

PERIOD = {"start": "2026-03-09", "end": "2026-03-10"}
STORES = ("paris", "lyon", "lille")


@pytest.fixture
def client(db, db_url: str):
    for sid in STORES:
        stores.upsert_store(db, stores.Store(id=sid, name=sid.title(), lat=45.0, lon=3.0,
                                             timezone="Europe/Paris"))  # fmt: skip
    until = datetime(2026, 3, 11, tzinfo=UTC).timestamp()
    profile = analytics_seed.TrafficProfile(visitors_per_day=20)
    analytics_seed.seed_instore(db, days=2, end=date(2026, 3, 10), until=until, profile=profile)
    users = {"chain": None, "region": ("lyon", "paris"), "manager": ("paris",)}
    headers = {}
    for name, scope in users.items():
        auth.create_user(db, name, "password-123", "analyst", scope)
        headers[name] = {"Authorization": f"Bearer {auth.login(db, name, 'password-123', 600)}"}
    app = create_app(Settings(db_url=db_url), db=db)
    with TestClient(app) as c:
        c.users = headers  # type: ignore[attr-defined]
        yield c


def _get(client, user: str, path: str, **params):
    return client.get(path, params={**PERIOD, **params}, headers=client.users[user])


def _daily_visits(client, user: str, **params) -> int:
    r = _get(client, user, "/api/v1/analytics/footfall-daily", **params)
    assert r.status_code == 200, r.text
    return sum(row["visits"] for row in r.json()["rows"])


def test_each_scope_sees_its_stores_and_nothing_else(client) -> None:
    per_store = {s: _daily_visits(client, "chain", stores=s) for s in STORES}
    assert all(per_store.values())
    assert _daily_visits(client, "chain") == sum(per_store.values())
    # A region: its stores by default, one of them on request, another store: 403.
    assert _daily_visits(client, "region") == per_store["paris"] + per_store["lyon"]
    assert _daily_visits(client, "region", stores="lyon") == per_store["lyon"]
    denied = _get(client, "region", "/api/v1/analytics/footfall-daily", stores="lyon,lille")
    assert denied.status_code == 403 and "lille" in denied.json()["detail"]
    # A store manager: their store only.
    assert _daily_visits(client, "manager") == per_store["paris"]
    for path in ("/api/v1/analytics/dwell", "/api/v1/analytics/dwell.csv",
                 "/api/v1/analytics/heatmap", "/api/v1/analytics/devices"):  # fmt: skip
        assert _get(client, "manager", path, stores="lyon").status_code == 403, path
    member = _get(client, "manager", "/api/v1/analytics/member-share").json()
    assert {r["store"] for r in member["rows"]} == {"paris"}
    heat = _get(client, "manager", "/api/v1/analytics/heatmap").json()
    assert heat["store"] == "paris"
    table = _get(client, "manager", "/api/v1/analytics/conversion.csv")
    assert table.status_code == 200
    assert {r["store"] for r in csv.DictReader(io.StringIO(table.text))} == {"paris"}


def test_device_views_and_store_list_follow_the_scope(client) -> None:
    def devices(user: str, **params) -> set[str]:
        r = client.get("/api/v1/devices", params=params, headers=client.users[user])
        assert r.status_code == 200, r.text
        return {d["store"] for d in r.json()["items"]}

    assert devices("chain") == set(STORES)
    assert devices("region") == {"paris", "lyon"}
    assert devices("manager") == {"paris"}
    assert client.get("/api/v1/devices", params={"store": "lille"},
                      headers=client.users["region"]).status_code == 403  # fmt: skip
    one = client.get("/api/v1/devices/lyon/lyon-edge1", headers=client.users["manager"])
    assert one.status_code == 403
    assert client.get("/api/v1/devices/paris/paris-edge1",
                      headers=client.users["manager"]).status_code == 200  # fmt: skip
    health = _get(client, "region", "/api/v1/analytics/devices").json()
    assert {r["store"] for r in health["rows"]} == {"paris", "lyon"}
    assert client.get("/api/v1/dead-letters", headers=client.users["manager"]).status_code == 403
    listed = client.get("/api/v1/stores", headers=client.users["manager"]).json()["items"]
    assert [s["id"] for s in listed] == ["paris"]
    everything = client.get("/api/v1/stores", headers=client.users["chain"]).json()["items"]
    assert {s["id"] for s in everything} == set(STORES)


def test_a_scope_names_known_stores(db) -> None:
    stores.upsert_store(db, stores.Store(id="paris", name="Paris", lat=48.8, lon=2.3))
    with pytest.raises(auth.AuthError, match="unknown store"):
        auth.create_user(db, "bob", "password-123", "analyst", ("paris", "atlantis"))
    assert db.scalar("SELECT count(*) FROM ops_users WHERE username = 'bob'") == 0
    assert auth.parse_scope(" paris, ,lyon ") == ("lyon", "paris")
    assert auth.parse_scope("") is None
