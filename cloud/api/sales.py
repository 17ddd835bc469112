"""POS sales: record a checkout (decrements inventory), list and read sales."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field

from storelens.cloud.api.deps import (
    Caller,
    Page,
    get_db,
    get_sale_link,
    page,
    require_pos,
    require_staff,
)
from storelens.cloud.api.member_access import MemberAction, authorize
from storelens.cloud.api.pagination import Paged, paged
from storelens.cloud.api.ratelimit import coupon_attempt
from storelens.cloud.commerce import sales, visit_sales
from storelens.cloud.db import Database
from storelens.cloud.personalization import checkout
from storelens.cloud.personalization.coupons import CouponRejected

router = APIRouter(prefix="/sales", tags=["sales"])


class SaleLineOut(BaseModel):
    line: int = Field(description="Line number, from 1.")
    sku: str = Field(description="Catalog SKU.")
    qty: int = Field(description="Units sold.")
    unit_price: float = Field(description="Price paid per unit.")


class SaleOut(BaseModel):
    id: str = Field(description="Sale ID (the POS's own, or assigned).")
    store: str = Field(description="Store where it happened.")
    device: str | None = Field(description="POS device that recorded the sale.")
    ts: float = Field(description="Checkout time, epoch seconds.")
    member_id: str | None = Field(description="Member, if identified at the till.")
    total: float = Field(description="Sum of lines.")
    created_at: float = Field(description="When it was recorded, epoch seconds.")
    items: list[SaleLineOut] = Field(description="Lines sold.")
    coupon_codes: list[str] = Field(description="Coupon codes redeemed.")


@router.post(
    "",
    response_model=SaleOut,
    status_code=201,
    summary="Record a sale at the caller's store (replaying a sale ID is safe)",
    responses={
        200: {"description": "A sale with this ID was already recorded."},
        429: {"description": "Too many coupon attempts for this token or member."},
    },
)
def record(
    request: Request,
    body: sales.SaleIn,
    response: Response,
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_pos()),
    sale_link: visit_sales.LinkWindows = Depends(get_sale_link),
) -> dict:
    caller.check_store(body.store)
    if body.member_id:
        authorize(db, caller, MemberAction.READ, body.member_id)
    coupon_attempt(request, body.member_id, len(body.coupon_codes))
    device = caller.principal.subject if caller.is_pos else None
    # Through checkout, never a bare insert: coupon codes on a sale must be validated and
    # redeemed (single use) in the same transaction, and rewards/scoring must see every sale.
    try:
        result = checkout.checkout(db, body, device=device, sale_link=sale_link)
    except CouponRejected as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, {"reason": exc.reason, "code": exc.code, "detail": str(exc)}
        ) from None
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return sales.get_sale(db, result.sale_id)  # type: ignore[return-value]


@router.get("", response_model=Paged[SaleOut], summary="Sales, newest first")
def list_sales(
    store: str | None = Query(None, description="Only this store (POS: its own)."),
    member_id: str | None = Query(None),
    since: float | None = Query(None, description="From, epoch seconds."),
    until: float | None = Query(None, description="Before, epoch seconds."),
    p: Page = Depends(page),
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_staff()),
) -> dict:
    store = store or caller.store
    rows = sales.list_sales(
        db,
        store=store,
        member_id=member_id,
        since=since,
        until=until,
        limit=p.limit,
        offset=p.offset,
    )
    return paged(rows, p)


@router.get("/{sale_id}", response_model=SaleOut, summary="One sale")
def get_sale(
    sale_id: str, db: Database = Depends(get_db), caller: Caller = Depends(require_staff())
) -> dict:
    row = sales.get_sale(db, sale_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no sale {sale_id}")
    caller.check_store(row["store"])
    return row
