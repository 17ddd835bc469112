"""Prometheus metrics at ``/metrics``: request latency here, ingest counters from the
in-process worker (`storelens.cloud.ingest.worker`), dead letters counted in the database, and the
fleet's health per device and camera (`storelens.cloud.ingest.device_metrics`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, Histogram, generate_latest

from storelens.cloud.api.deps import get_db
from storelens.cloud.db import Database
from storelens.cloud.ingest import device_metrics
from storelens.cloud.ingest import worker as ingest

router = APIRouter(tags=["health"])

REQUEST_LATENCY = Histogram(
    "storelens_http_request_seconds",
    "API request latency by route and status.",
    ["method", "route", "status"],
)
DEAD_LETTERS = Gauge(
    "storelens_dead_letters", "Dead-lettered messages stored, by reason.", ["reason"]
)
DEVICES_STALE = Gauge("storelens_devices_stale", "Registered devices silent for over 5 minutes.")


def instrument(app: FastAPI) -> None:
    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        # The route template, not the raw path, keeps label cardinality bounded.
        path = getattr(route, "path", "unmatched")
        REQUEST_LATENCY.labels(request.method, path, str(response.status_code)).observe(
            time.perf_counter() - start
        )
        return response


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(db: Database = Depends(get_db)) -> Response:
    for row in db.query("SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason"):
        DEAD_LETTERS.labels(row["reason"]).set(row["n"])
    DEVICES_STALE.set(
        db.scalar(
            "SELECT count(*) FROM devices WHERE registered = 1"
            " AND (last_seen IS NULL OR last_seen < ?)",
            (time.time() - 300,),
        )
    )
    ingest.INGEST_LAG  # noqa: B018 - ensure ingest metrics are registered before export
    body = generate_latest() + device_metrics.exposition(db)  # fleet health, per device
    return Response(body, media_type=CONTENT_TYPE_LATEST)
