"""Token-bucket limits: refill arithmetic, key isolation, and 429 with Retry-After over HTTP."""

from __future__ import annotations

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from storelens.cloud.ratelimit import RateLimit, TokenBucket


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
