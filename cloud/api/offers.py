"""Ops endpoints for offer templates: list, read, create or replace (admin writes; set
``active`` false to retire one)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, status

from storelens.cloud.api.deps import Caller, get_db, require_ops
from storelens.cloud.db import Database
from storelens.cloud.personalization import offers

router = APIRouter(prefix="/offers", tags=["offers"])


@router.get("/templates", response_model=list[offers.OfferTemplate], summary="Offer templates")
def list_templates(
    trigger: offers.Trigger | None = Query(None, description="Only this trigger."),
    active_only: bool = Query(False),
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("analyst")),
) -> list[offers.OfferTemplate]:
    return offers.list_templates(db, trigger=trigger, active_only=active_only)


@router.get("/templates/{template_id}", response_model=offers.OfferTemplate, summary="One template")
def get_template(
    template_id: str, db: Database = Depends(get_db), _: Caller = Depends(require_ops("analyst"))
) -> offers.OfferTemplate:
    template = offers.get_template(db, template_id)
    if template is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"not found: offer template {template_id}")
    return template


@router.put(
    "/templates/{template_id}",
    response_model=offers.OfferTemplate,
    summary="Create or replace a template (admin); coupons already issued keep their terms",
)
def put_template(
    template_id: str,
    body: offers.OfferTemplate,
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("admin")),
) -> offers.OfferTemplate:
    if body.id != template_id:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "id in body and path differ")
    offers.save_template(db, body)
    return body
