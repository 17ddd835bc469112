"""The analytics HTTP API and the page routes, on both storage backends."""

from __future__ import annotations

import csv
import gzip
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


@pytest.fixture
def client(db, db_url: str):
    for sid in ("paris", "lyon"):
        stores.upsert_store(
            db, stores.Store(id=sid, name=sid.title(), lat=45.0, lon=3.0, timezone="Europe/Paris")
        )
    until = datetime(2026, 3, 11, tzinfo=UTC).timestamp()
    profile = analytics_seed.TrafficProfile(visitors_per_day=30)
    analytics_seed.seed_instore(db, days=3, end=date(2026, 3, 10), until=until, profile=profile)
    auth.create_user(db, "ana", "analyst-password", "analyst")
    ops = auth.login(db, "ana", "analyst-password", 600)
    pos = auth.create_pos_token(db, "paris", "till-1")
    app = create_app(Settings(db_url=db_url), db=db)
    with TestClient(app) as c:
        c.ops = {"Authorization": f"Bearer {ops}"}  # type: ignore[attr-defined]
        c.pos = {"Authorization": f"Bearer {pos}"}  # type: ignore[attr-defined]
        yield c


def test_every_chart_as_json_and_identical_csv(client: TestClient) -> None:
    charts = client.get("/api/v1/analytics", headers=client.ops).json()
    assert "footfall-hourly" in charts and "devices" in charts
    for chart in charts:
        params = {**PERIOD, "stores": "paris,lyon", "hour_from": 9, "hour_to": 21}
        body = client.get(f"/api/v1/analytics/{chart}", params=params, headers=client.ops)
        assert body.status_code == 200, (chart, body.text)
        data = body.json()
        assert data["filters"] == {
            **PERIOD,
            "stores": ["paris", "lyon"],
            "hour_from": 9,
            "hour_to": 21,
        }
        if chart == "devices":
            continue  # "seconds since seen" moves between two requests
        as_file = client.get(f"/api/v1/analytics/{chart}.csv", params=params, headers=client.ops)
        as_param = client.get(
            f"/api/v1/analytics/{chart}", params={**params, "format": "csv"}, headers=client.ops
        )
        assert as_file.headers["content-type"].startswith("text/csv")
        assert (
            f'filename="storelens-{chart}-2026-03-09-2026-03-10.csv"'
            in as_file.headers["content-disposition"]
        )
        assert as_file.text == as_param.text
        rows = list(csv.DictReader(io.StringIO(as_file.text)))
        assert rows == [
            {c: "" if r[c] is None else str(r[c]) for c in data["columns"]} for r in data["rows"]
        ], chart


def test_access_and_bad_filters_get_clear_errors(client: TestClient) -> None:
    url = "/api/v1/analytics/footfall-daily"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=client.pos).status_code == 403
    assert client.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    missing = client.get("/api/v1/analytics/nope", headers=client.ops)
    assert missing.status_code == 404 and "footfall-daily" in missing.json()["detail"]
    backwards = client.get(
        url, params={"start": "2026-03-10", "end": "2026-03-01"}, headers=client.ops
    )
    assert backwards.status_code == 422 and "before start" in backwards.json()["detail"][0]["msg"]
    unknown = client.get(url, params={**PERIOD, "stores": "paris,atlantis"}, headers=client.ops)
    assert unknown.status_code == 422 and "atlantis" in unknown.json()["detail"][0]["msg"]
    assert client.get(url, params={"hour_to": 0}, headers=client.ops).status_code == 422
    assert client.get(url, params={"start": "yesterday"}, headers=client.ops).status_code == 422
    too_long = client.get(
        url, params={"start": "2020-01-01", "end": "2026-01-01"}, headers=client.ops
    )
    assert too_long.status_code == 422


def test_pages_and_their_assets_come_from_the_app(client: TestClient) -> None:
    for path in ("/ops", "/pos"):
        page = client.get(path)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "http://" not in page.text and "https://" not in page.text  # nothing external
    assert 'src="/static/vendor/plotly.min.js"' in client.get("/ops").text
    js = client.get("/static/vendor/plotly.min.js", headers={"Accept-Encoding": "gzip"})
    assert js.status_code == 200 and js.headers["content-encoding"] == "gzip"
    assert len(js.content) > 1_000_000 and b"plotly" in js.content[:2000].lower()
    raw = client.get("/static/vendor/plotly.min.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert gzip.compress(raw.content)[:2] == b"\x1f\x8b"
    assert client.get("/static/ops.js").status_code == 200
    assert client.get("/static/../api/app.py").status_code == 404
    assert client.get("/static/%2e%2e/api/app.py").status_code == 404
    svg = client.get(
        "/static/products/SKU-1.svg", params={"name": "<script>x", "category": "shoes"}
    )
    assert svg.headers["content-type"] == "image/svg+xml" and "<script" not in svg.text
