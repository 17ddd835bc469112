"""Liveness and readiness probes for the orchestrator."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from storelens.cloud.api.deps import get_db
from storelens.cloud.db import Database
from storelens.cloud.db.schema import declared_migrations

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable, schema current, ingest alive")
def readyz(request: Request, response: Response, db: Database = Depends(get_db)) -> dict:
    checks: dict[str, str] = {}
    try:
        db.scalar("SELECT 1")
        applied = db.applied_migrations()
        missing = [m for m in declared_migrations() if (m.component, m.version) not in applied]
        checks["database"] = "ok" if not missing else f"{len(missing)} migrations pending"
    except Exception as exc:  # any driver error means "not ready", never a 500
        checks["database"] = f"error: {type(exc).__name__}"
    worker = getattr(request.app.state, "ingest", None)
    if worker is not None:
        checks["ingest"] = "ok" if worker.healthy() else "disconnected"
    ready = all(v == "ok" for v in checks.values())
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "ready" if ready else "not_ready", "checks": checks}
