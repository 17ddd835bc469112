"""Token-bucket limits: refill arithmetic, key isolation, and 429 with Retry-After over HTTP."""

from __future__ import annotations

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from storelens.cloud.api.ratelimit import RateLimit, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_burst_then_refills() -> None:
    clock = FakeClock()
    bucket = TokenBucket(3, 1.0, clock=clock)
    assert [bucket.acquire("k") for _ in range(3)] == [0, 0, 0]
    assert bucket.acquire("k") == pytest.approx(1.0)
    clock.now += 0.5
    assert bucket.acquire("k") == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.acquire("k") == 0
    assert bucket.acquire("other") == 0  # keys do not share a budget
    clock.now += 100
    assert [bucket.acquire("k") for _ in range(4)][:3] == [0, 0, 0]  # capped at capacity


def test_bucket_memory_is_bounded() -> None:
    bucket = TokenBucket(1, 0.001, max_keys=10, clock=FakeClock())
    for i in range(100):
        bucket.acquire(f"k{i}")
    assert len(bucket._buckets) == 10


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1)
    with pytest.raises(ValueError):
        TokenBucket(1, 0)


def test_dependency_answers_429_with_retry_after() -> None:
    clock = FakeClock()
    limit = RateLimit("login", capacity=2, per_minute=6, clock=clock)
    app = FastAPI()

    @app.post("/login", dependencies=[Depends(limit)])
    def login() -> dict:
        return {"ok": True}

    client = TestClient(app)
    assert [client.post("/login").status_code for _ in range(2)] == [200, 200]
    refused = client.post("/login")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "10"
    assert "login" in refused.json()["detail"]
    clock.now += 10
    assert client.post("/login").status_code == 200


def _app(tmp_path):  # noqa: ANN001, ANN202 - fixture-style helper
    from storelens.cloud.api import principals as auth
    from storelens.cloud.api.app import create_app
    from storelens.cloud.commerce import stores
    from storelens.cloud.db import connect
    from storelens.cloud.settings import Settings

    db = connect(f"sqlite:///{tmp_path / 'api.db'}")
    auth.create_user(db, "ops", "correct horse battery", "admin")
    stores.upsert_store(db, stores.Store(id="s1", name="One", lat=0, lon=0))
    pos_token = auth.create_pos_token(db, "s1", "till-1")
    app = create_app(Settings(db_url=f"sqlite:///{tmp_path / 'api.db'}"), db=db)
    return app, pos_token


def _frozen(monkeypatch, *limits: RateLimit) -> None:  # noqa: ANN001
    """The API's limits on a clock that stands still: on a loaded machine the requests take
    long enough for a bucket to refill (coupons: one every 2 s), and the counts drift."""
    for limit in limits:
        monkeypatch.setattr(limit, "clock", FakeClock())


def test_login_is_rate_limited_in_the_api(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from storelens.cloud.api.ratelimit import LOGIN_LIMIT

    _frozen(monkeypatch, LOGIN_LIMIT)
    app, _ = _app(tmp_path)
    with TestClient(app) as client:
        wrong = {"username": "ops", "password": "guess-guess"}
        codes = [client.post("/api/v1/auth/login", json=wrong).status_code for _ in range(10)]
        assert codes == [401] * 10
        right = {"username": "ops", "password": "correct horse battery"}
        refused = client.post("/api/v1/auth/login", json=right)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


def _shop(tmp_path, monkeypatch):  # noqa: ANN001, ANN202 - fixture-style helper
    from storelens.cloud.api import principals as auth
    from storelens.cloud.commerce import catalog, members, stores
    from storelens.pseudonym import PseudonymKey

    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", "ab" * 32)
    app, pos_token = _app(tmp_path)
    db = app.state.db
    stores.upsert_store(db, stores.Store(id="s2", name="Two", lat=0, lon=0))
    catalog.upsert_products(db, [catalog.Product(sku="x", name="X", category="c", price=1.0)])
    for store in ("s1", "s2"):
        stores.set_inventory(db, store, [stores.InventoryLevel(sku="x", on_hand=10_000)])
    key = PseudonymKey("k1", bytes.fromhex("ab" * 32))
    ann = members.enroll(db, key, members.Enrollment(card_number="1111 2222"))["id"]
    other = auth.create_pos_token(db, "s2", "till-9")
    return app, pos_token, other, ann


def test_coupon_guesses_are_limited_per_token_and_member_only(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from storelens.cloud.api.ratelimit import COUPON_LIMIT, MEMBER_LOOKUP_LIMIT

    _frozen(monkeypatch, COUPON_LIMIT, MEMBER_LOOKUP_LIMIT)
    app, pos_token, other_token, ann = _shop(tmp_path, monkeypatch)
    till = {"Authorization": f"Bearer {pos_token}"}
    other = {"Authorization": f"Bearer {other_token}"}
    items = [{"sku": "x", "qty": 1, "unit_price": 1.0}]
    with TestClient(app) as client:
        for h in (till, other):  # the member swipes at both tills
            r = client.post("/api/v1/pos/members/lookup", json={"card_number": "1111 2222"},
                            headers=h)  # fmt: skip
            assert r.status_code == 200, r.text
        body = {"code": "NOPE-NOPE-NOPE", "member_id": ann, "items": items}
        codes = [
            client.post("/api/v1/pos/coupons/validate", json=body, headers=till).status_code
            for _ in range(21)
        ]
        assert 500 not in codes and codes.index(429) == 20  # 20 guesses, then refused
        # The same client address, another till: plain checkouts are never charged...
        for n in range(25):
            sale = {"id": f"plain-sale-{n:03d}", "items": items}
            assert client.post("/api/v1/pos/sales", json=sale, headers=other).status_code == 201
        # ...but guesses for the same member from another till share the member's budget.
        sale = {"id": "guess-sale-001", "member_id": ann, "items": items,
                "coupon_codes": ["NOPE-NOPE-0001"]}  # fmt: skip
        assert client.post("/api/v1/pos/sales", json=sale, headers=other).status_code == 429
        # /api/v1/sales has the same coupon limit (it had none).
        client.app.state.rate_limits.clear()
        codes = []
        for n in range(22):
            sale = {"id": f"core-sale-{n:03d}", "store": "s1", "member_id": ann, "items": items,
                    "coupon_codes": [f"NOPE-{n:04d}"]}  # fmt: skip
            codes.append(client.post("/api/v1/sales", json=sale, headers=till).status_code)
        assert codes[:20] == [409] * 20 and codes[20:] == [429, 429]


@pytest.mark.parametrize("trusted", ["", "127.0.0.1"])
def test_forwarded_for_is_believed_only_from_configured_proxies(tmp_path, trusted) -> None:  # noqa: ANN001
    """A real uvicorn with `cloud serve`'s options: a local client naming a new address in
    X-Forwarded-For on every try still hits the login limit, unless 127.0.0.1 is a proxy."""
    import threading

    import httpx
    import uvicorn
    from conftest import free_port, wait_port

    from storelens.cloud.api.app import server_options
    from storelens.cloud.settings import Settings

    app, _ = _app(tmp_path)
    options = server_options(Settings(db_url="unused", trusted_proxies=trusted))
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_port(port)
        wrong = {"username": "ops", "password": "guess-guess"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            codes = [
                client.post("/api/v1/auth/login", json=wrong,
                            headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
                for n in range(12)
            ]  # fmt: skip
    finally:
        server.should_exit = True
        thread.join(10)
    if trusted:
        assert codes == [401] * 12  # each forwarded address has its own budget
    else:
        assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
