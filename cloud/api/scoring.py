"""Engagement scoring over HTTP: the interactions other systems report, scoring plans (ops),
the contacts/responses report per plan and the hand-off deliveries.

``POST /interactions`` takes an integration token (`storelens cloud integration-token`), a
POS device token (its own store only) or an ops token; anonymous calls are refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, status
from pydantic import BaseModel, Field

from storelens.cloud.api.body_limits import BULK_MAX
from storelens.cloud.api.deps import (
    Caller,
    Page,
    get_db,
    page,
    require_integration,
    require_ops,
)
from storelens.cloud.db import Database
from storelens.cloud.personalization import handoff, interactions, scoring, scoring_report
from storelens.cloud.personalization.scoring_plans import ScoringPlan, get_plan, list_plans

PlanId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Delivers hand-off webhooks beside the API (every replica may: rows are claimed)."""
    interval = app.state.settings.handoff_interval_s
    worker = None
    if interval > 0:
        worker = handoff.DeliveryWorker(app.state.db, interval_s=interval)
        worker.start()
    try:
        yield
    finally:
        if worker is not None:
            worker.stop()


router = APIRouter(tags=["scoring"], lifespan=_lifespan)


class InteractionsOut(BaseModel):
    results: list[interactions.InteractionResult] = Field(description="One per item, in order.")
    recorded: int = Field(description="Items stored and scored now.")


@router.post(
    "/interactions",
    max_body_size=BULK_MAX,
    response_model=InteractionsOut,
    summary="Report interactions of known customers (web shop, CRM, events, POS)",
    description=(
        "Each item names the customer by `member_id` or by a linked online `account_id`, and "
        "carries a unique `id`: sending it again is answered `duplicate` and changes nothing. "
        "Types: profile_completed, web_page_viewed, email_opened, event_attended, "
        "product_viewed and cart_add (these two need `sku`: they also feed recommendations and "
        "the member profile), try_on (with `store`), or any type a scoring plan declares "
        "(else `unknown_type`). Only members who allow tracking are recorded (`not_tracked`). "
        "Points and actions come from the scoring plans (`/scoring/plans`)."
    ),
)
def post_interactions(
    body: interactions.InteractionBatch,
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_integration()),
) -> InteractionsOut:
    for item in body.interactions:
        if item.store is not None:
            caller.check_store(item.store)
    results = interactions.record_batch(
        db, body.interactions, source=f"{caller.principal.kind}:{caller.principal.subject}"
    )
    return InteractionsOut(results=results, recorded=sum(r.outcome == "recorded" for r in results))


@router.get("/scoring/plans", response_model=list[ScoringPlan], summary="Scoring plans")
def plans(db: Database = Depends(get_db), _: Caller = Depends(require_ops())) -> list[ScoringPlan]:
    return list_plans(db)


@router.get("/scoring/plans/{plan_id}", response_model=ScoringPlan, summary="One scoring plan")
def plan(
    plan_id: PlanId, db: Database = Depends(get_db), _: Caller = Depends(require_ops())
) -> ScoringPlan:
    found = get_plan(db, plan_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"not found: scoring plan {plan_id}")
    return found


@router.put(
    "/scoring/plans/{plan_id}",
    response_model=ScoringPlan,
    summary="Create or replace a scoring plan (admin); set active false to retire it",
)
def put_plan(
    plan_id: PlanId,
    body: ScoringPlan,
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("admin")),
) -> ScoringPlan:
    if body.id != plan_id:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "id in body and path differ")
    scoring.put_plan(db, body)
    return body


class PlanReport(BaseModel):
    plan: str
    name: str
    active: bool
    share: float = Field(description="Share of members the plan acts for now (0 if inactive).")
    response_days: float
    members: int = Field(description="Members assigned to the plan now.")
    contacts: int = Field(description="Actions taken in the period (alerts, coupons, webhooks).")
    contacts_by_action: dict[str, int]
    contacted_members: int
    responses: int = Field(description="Contacts followed by a purchase or redemption in time.")
    responders: int = Field(description="Distinct members behind the responses.")
    buyers: int = Field(description="The plan's members who bought in the period at all.")
    response_rate: float | None = Field(description="responses / contacts.")
    contacts_per_response: float | None
    contacts_per_member: float | None
    buyer_rate: float | None = Field(description="buyers / members.")


class ReportOut(BaseModel):
    since: float
    until: float
    stores: list[str] | None = Field(
        description="The stores reported on; null: the whole chain (online included)."
    )
    plans: list[PlanReport]


@router.get(
    "/scoring/report",
    response_model=ReportOut,
    summary="Contacts and responses per scoring plan",
)
def report(
    since: float | None = Query(None, ge=0, le=1e11, description="Epoch s; default 90 days ago."),
    until: float | None = Query(None, ge=0, le=1e11, description="Epoch s; default now."),
    stores: str | None = Query(
        None,
        max_length=2000,
        description="Comma-separated store IDs; empty: the caller's scope (the whole chain, "
        "or the stores an ops user is limited to; another store is a 403).",
    ),
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_ops()),
) -> dict:
    requested = tuple(s.strip() for s in (stores or "").split(",") if s.strip())
    scope = caller.stores_in_scope(requested)
    known = {r["id"] for r in db.query("SELECT id FROM stores")}
    unknown = sorted(set(requested) - known)
    if unknown:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"unknown store(s): {', '.join(unknown)}"
        )
    return scoring_report.plan_report(db, since=since, until=until, stores=scope or None)


class DeliveryOut(BaseModel):
    id: str
    plan: str
    threshold: str
    member_id: str
    url: str
    status: str = Field(description="pending, delivered or failed.")
    attempts: int
    max_attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    created_at: float
    delivered_at: float | None


@router.get(
    "/scoring/deliveries",
    response_model=list[DeliveryOut],
    summary="Hand-off webhook deliveries, newest first",
)
def deliveries(
    state: Literal["pending", "delivered", "failed"] | None = Query(None, alias="status"),
    plan_id: str | None = Query(None, alias="plan", max_length=64, pattern=r"^[^\x00]*$"),
    p: Page = Depends(page),
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops()),
) -> list[dict]:
    return handoff.list_deliveries(db, status=state, plan=plan_id, limit=p.limit, offset=p.offset)
