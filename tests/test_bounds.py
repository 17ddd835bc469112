"""Numbers a store cannot have are refused at the edge with a 422 that names the field, and
nothing is written; the storage layer refuses what PostgreSQL refuses on both backends, inside
the transaction, so a failed write leaves nothing behind. Both backends."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from personalization_chain import KEY_HEX, build_chain

from storelens.cloud.api.app import create_app
from storelens.cloud.db import DataError
from storelens.cloud.settings import Settings


@pytest.fixture
def api(db, monkeypatch):
    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", KEY_HEX)
    chain = build_chain(db)
    app = create_app(Settings.from_env({}, db_url="unused"), db=db)
    with TestClient(app) as client:
        yield client, chain, {"Authorization": f"Bearer {chain.tokens['paris']}"}
        recommender = app.state.services.recommender
        if recommender is not None:
            recommender.stop()


def _post(client, url: str, body: dict, headers: dict):  # noqa: ANN001, ANN202
    # json.dumps writes NaN and Infinity as the probe sent them (httpx refuses to).
    return client.post(url, content=json.dumps(body),
                       headers={**headers, "Content-Type": "application/json"})  # fmt: skip


def _field(r) -> set[str]:  # noqa: ANN001
    assert r.status_code == 422, r.text
    return {str(e["loc"][-1]) for e in r.json()["detail"]}


@pytest.mark.parametrize(
    ("line", "extra", "field"),
    [
        ({"unit_price": float("inf")}, {}, "unit_price"),
        ({"unit_price": float("nan")}, {}, "unit_price"),
        ({"unit_price": 1e308}, {}, "unit_price"),
        ({"qty": 10**12}, {}, "qty"),
        ({}, {"ts": 1e300}, "ts"),
        ({}, {"ts": -1e300}, "ts"),
    ],
)
def test_a_sale_with_impossible_numbers_is_422_and_stores_nothing(api, line, extra, field) -> None:
    client, chain, paris = api
    db = chain.db
    before = db.scalar("SELECT count(*) FROM pos_sales")
    sale = {"id": "sale-bounds-1", "items": [{"sku": "H1", "qty": 1, **line}], **extra}
    assert field in _field(_post(client, "/api/v1/pos/sales", sale, paris))
    core = {**sale, "store": "paris"}
    assert field in _field(_post(client, "/api/v1/sales", core, paris))
    assert db.scalar("SELECT count(*) FROM pos_sales") == before
    # The same sale ID with sane numbers goes through (nothing half-stored blocks it).
    ok = {"id": "sale-bounds-1", "items": [{"sku": "H1", "qty": 1}]}
    assert client.post("/api/v1/pos/sales", json=ok, headers=paris).status_code == 201


def test_a_stock_delta_past_any_store_is_422_and_the_listing_keeps_working(api) -> None:
    client, chain, paris = api
    url = "/api/v1/stores/paris/inventory"
    huge = {"changes": [{"sku": "H1", "delta_on_hand": 2**63 - 1}]}
    assert "delta_on_hand" in _field(client.post(f"{url}/adjustments", json=huge, headers=paris))
    listing = client.get(url, headers=paris)
    assert listing.status_code == 200
    assert {r["sku"]: r["on_hand"] for r in listing.json()["items"]}["H1"] == 20
    assert isinstance(chain.db.scalar(
        "SELECT on_hand FROM inventory WHERE store = 'paris' AND sku = 'H1'"), int)  # fmt: skip


def test_list_offsets_past_64_bits_are_422(api) -> None:
    client, _, paris = api
    for url in ("/api/v1/stores", "/api/v1/stores/paris/inventory", "/api/v1/sales"):
        assert "offset" in _field(client.get(f"{url}?offset={2**63}", headers=paris))


def test_storage_refuses_what_postgres_refuses_and_rolls_back(db) -> None:
    db.execute("CREATE TABLE bounds_probe (id INTEGER PRIMARY KEY, v REAL)")
    for bad in (float("inf"), float("nan"), 2**63):
        with pytest.raises(DataError), db.transaction():
            db.execute("INSERT INTO bounds_probe (id, v) VALUES (1, 1.0)")
            db.execute("INSERT INTO bounds_probe (id, v) VALUES (2, ?)", (bad,))
        assert db.scalar("SELECT count(*) FROM bounds_probe") == 0
    with pytest.raises(DataError):
        db.query("SELECT * FROM bounds_probe LIMIT 1 OFFSET ?", (2**63,))


def _raw(client, method: str, url: str, text: str, headers: dict | None = None):  # noqa: ANN001, ANN202
    headers = {**(headers or {}), "Content-Type": "application/json"}
    return client.request(method, url, content=text.encode(), headers=headers)


def test_lone_surrogates_are_422_never_500(api) -> None:
    client, chain, paris = api
    login = _raw(client, "POST", "/api/v1/auth/login",
                 '{"username": "\\ud800", "password": "\\udfff-x"}')  # fmt: skip
    assert login.status_code in (401, 422), login.text  # unauthenticated, and no 500
    bad_type = _raw(client, "POST", "/api/v1/auth/login", '{"username": ["\\ud800"]}')
    assert bad_type.status_code == 422 and "\\ud800" not in bad_type.text  # input not echoed
    enroll = _raw(client, "POST", "/api/v1/members",
                  '{"card_number": "1234 9876", "name": "\\ud800"}', paris)  # fmt: skip
    assert enroll.status_code == 422, enroll.text
    assert chain.db.scalar("SELECT count(*) FROM members") == len(chain.members)


def test_every_422_matches_the_documented_shape(api) -> None:
    """Route checks, domain errors and validation all answer {"detail": [{loc, msg, type}]}."""
    from storelens.cloud.api import principals as auth

    client, chain, paris = api
    auth.create_user(chain.db, "ana", "correct horse", "analyst")
    ana = {"Authorization": f"Bearer {auth.create_api_token(chain.db, 'ana')}"}
    auth.create_user(chain.db, "boss", "correct horse", "admin")
    boss = {"Authorization": f"Bearer {auth.create_api_token(chain.db, 'boss')}"}
    answers = [
        client.get("/api/v1/analytics/footfall-daily?start=2024-02-01&end=2024-01-01",
                   headers=ana),
        client.get("/api/v1/analytics/footfall-daily?start=9999-12-30", headers=ana),
        client.get("/api/v1/analytics/footfall-daily?start=0001-01-01", headers=ana),
        client.get("/api/v1/pos/members/x/offers", headers=boss),  # "name the store"
        client.post("/api/v1/pos/sales", json={"items": [{"sku": "NOPE", "qty": 1}]},
                    headers=paris),
        client.post("/api/v1/pos/sales", json={"items": []}, headers=paris),
    ]  # fmt: skip
    for r in answers:
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert isinstance(detail, list) and detail
        assert all(set(d) >= {"loc", "msg", "type"} for d in detail), detail


def test_static_paths_the_file_system_refuses_are_404(api) -> None:
    client, _, _ = api
    for path in ("/static/%00", "/static/a%00b.js", "/static/../../etc/passwd"):
        assert client.get(path).status_code == 404


def test_body_size_caps_per_route_class(api) -> None:
    from storelens.cloud.api.body_limits import AUTH_MAX, DEFAULT_MAX

    client, _, paris = api
    big = b'{"items": [' + b'{"sku": "H1", "qty": 1},' * (DEFAULT_MAX // 12) + b"{}]}"
    r = client.post("/api/v1/pos/sales", content=big,
                    headers={**paris, "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 413

    def chunks():  # no Content-Length: refused as soon as it grows past the cap
        yield b'{"username": "'
        for _ in range(AUTH_MAX // 1024 + 2):
            yield b"x" * 1024
        yield b'", "password": "y"}'

    r = client.post("/api/v1/auth/login", content=chunks(),
                    headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 413
    # A bulk route takes more than the default cap (a 2 MB inventory file is fine).
    levels = [{"sku": "H1", "on_hand": 5, "shelf_location": "A" * 40}] * 25_000
    body = json.dumps({"levels": levels}).encode()
    assert len(body) > DEFAULT_MAX
    r = client.put("/api/v1/stores/paris/inventory", content=body,
                   headers={**paris, "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code != 413
