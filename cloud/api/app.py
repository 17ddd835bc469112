"""The API application factory: one router per domain under ``/api/v1``.

``create_app(settings)`` opens (and migrates) the database, mounts the routers, maps domain
errors to clear 4xx responses and, when ``settings.ingest_in_process`` is set, runs an ingest
worker beside the API (the single-machine default deployment). It also schedules the
propensity refresh (``settings.propensity_refresh_s``; `propensity.RefreshScheduler`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from storelens import __version__
from storelens.cloud.api import auth as auth_api
from storelens.cloud.api import catalog as catalog_api
from storelens.cloud.api import devices as devices_api
from storelens.cloud.api import errors as errors_api
from storelens.cloud.api import health as health_api
from storelens.cloud.api import members as members_api
from storelens.cloud.api import metrics as metrics_api
from storelens.cloud.api import orders as orders_api
from storelens.cloud.api import principals as auth
from storelens.cloud.api import sales as sales_api
from storelens.cloud.api import stores as stores_api
from storelens.cloud.api.body_limits import AUTH_MAX, DEFAULT_MAX
from storelens.cloud.api.unit_of_work import UnitOfWorkMiddleware
from storelens.cloud.commerce import catalog, members, orders, sales, stores
from storelens.cloud.db import Database, connect
from storelens.cloud.personalization.scoring_plans import PlanError
from storelens.cloud.services import Services
from storelens.cloud.settings import Settings
from storelens.pseudonym import PseudonymError

log = logging.getLogger(__name__)

# Domain errors -> HTTP status. Order matters: subclasses before their bases.
ERROR_STATUS: list[tuple[type[Exception], int]] = [
    (orders.IdempotencyConflict, 409),
    (members.UnknownMember, 404),
    (orders.UnknownOrder, 404),
    (stores.UnknownStore, 404),
    (stores.StockError, 409),
    (members.MemberError, 409),
    (orders.OrderError, 422),
    (sales.SaleError, 422),
    (catalog.CatalogImportError, 422),
    (stores.StoreImportError, 422),
    (PseudonymError, 422),
    (auth.AuthError, 400),
    (PlanError, 422),
]


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    services: Services | None = None,
) -> FastAPI:
    """The API app. ``services``: the process's composition root when its starter built it
    (the demo, tests); else built here for ``db`` (connected from ``settings`` if None)."""
    settings = settings or Settings.from_env()
    if services is not None:
        db = services.db

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = None
        if settings.ingest_in_process:
            from storelens.cloud.ingest.worker import IngestWorker

            worker = IngestWorker(settings, app.state.db, services=app.state.services)
            worker.start()
        app.state.ingest = worker
        scheduler = None
        if settings.propensity_refresh_s > 0:
            from storelens.cloud.personalization.propensity import RefreshScheduler

            scheduler = RefreshScheduler(app.state.db, settings.propensity_refresh_s)
            scheduler.start()
        app.state.propensity = scheduler
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            if worker is not None:
                worker.stop()
            app.state.services.close()

    # FastAPI's own /docs and /redoc load Swagger UI and ReDoc from a CDN: blank pages on a
    # store network without internet. fastapi-offline serves the same assets from its package.
    app = FastAPIOffline(
        title="storelens cloud API",
        version=__version__,
        description="Members, catalog, stores and inventory, online orders, POS sales, devices, "
        "and the operational endpoints of the storelens cloud service.",
        lifespan=lifespan,
        max_body_size=DEFAULT_MAX,  # per route class: cloud/api/body_limits.py
    )
    app.state.settings = settings
    app.state.db = db if db is not None else connect(settings.db_url)
    app.state.services = services or Services.for_api(settings, app.state.db)
    app.state.ingest = None
    app.state.propensity = None

    metrics_api.instrument(app)
    app.include_router(health_api.router)
    app.include_router(metrics_api.router)
    api = "/api/v1"
    # The POS routes first: routes are matched in order, and these are the hot path of a till.
    from storelens.cloud.api import pos as pos_api

    app.include_router(pos_api.router, prefix=api)
    from storelens.cloud.api import offers as offers_api

    app.include_router(offers_api.router, prefix=api)
    app.include_router(auth_api.router, prefix=api, max_body_size=AUTH_MAX)
    app.include_router(devices_api.router, prefix=api)
    app.include_router(members_api.router, prefix=api)
    app.include_router(catalog_api.router, prefix=api)
    app.include_router(stores_api.router, prefix=api)
    app.include_router(orders_api.router, prefix=api)
    app.include_router(sales_api.router, prefix=api)
    from storelens.cloud.api import analytics as analytics_api
    from storelens.cloud.api import pages as pages_api

    app.include_router(analytics_api.router, prefix=api)
    app.include_router(pages_api.router)  # /ops, /pos and their static files
    # Other domains (recommendations, offers, fulfillment, analytics, web) mount below.
    from storelens.cloud.api import fulfillment as fulfillment_api

    app.include_router(fulfillment_api.router, prefix=api)  # POS tasks, manual queue, journeys
    from storelens.cloud.api import scoring as scoring_api

    app.include_router(scoring_api.router, prefix=api)  # interactions, plans, contacts report

    for exc_type, code in ERROR_STATUS:
        app.add_exception_handler(exc_type, _handler(code))
    errors_api.install(app)
    # Outermost (added last): one transaction per request, committed before the response.
    app.add_middleware(UnitOfWorkMiddleware)
    return app


def server_options(settings: Settings) -> dict[str, object]:
    """uvicorn options for `cloud serve`: X-Forwarded-For is believed only from the proxies in
    ``STORELENS_TRUSTED_PROXIES`` (uvicorn's own default trusts 127.0.0.1, so any local
    process could name its address and walk past the per-address login limit)."""
    trusted = [a.strip() for a in settings.trusted_proxies.split(",") if a.strip()]
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": trusted}


def _handler(code: int):  # noqa: ANN202 - a Starlette exception handler
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        body: dict = {
            "detail": str(exc) if not isinstance(exc, LookupError) else f"not found: {exc}"
        }
        errors = getattr(exc, "errors", None)
        extra = {"errors": errors} if isinstance(errors, list) else {}
        if code == 422:
            return errors_api.unprocessable(body["detail"], extra)
        return JSONResponse({**body, **extra}, status_code=code)

    return handle
