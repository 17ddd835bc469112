"""Online orders: the web shop's idempotent webhook, listing and status changes."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response, status
from pydantic import BaseModel, Field

from storelens.cloud.api.deps import Caller, Page, get_db, get_hooks, page, require_ops
from storelens.cloud.api.pagination import Paged, paged
from storelens.cloud.commerce import orders
from storelens.cloud.db import Database
from storelens.cloud.hooks import Hooks

router = APIRouter(prefix="/orders", tags=["orders"])


class OrderLineOut(BaseModel):
    line: int = Field(description="Line number, from 1.")
    sku: str = Field(description="Catalog SKU.")
    qty: int = Field(description="Units ordered.")
    unit_price: float = Field(description="Price charged per unit.")


class OrderOut(BaseModel):
    id: str = Field(description="Order ID assigned by storelens.")
    idempotency_key: str | None = Field(description="The webhook's Idempotency-Key.")
    external_id: str | None = Field(description="Web shop's order number.")
    customer_account: str | None = Field(description="Online account; null once forgotten.")
    member_id: str | None = Field(description="Member linked to the account at order time.")
    status: orders.OrderStatus = Field(description="Where the order is in its life.")
    fulfillment_type: str = Field(description="ship or pickup.")
    pickup_store: str | None = Field(description="Store for pickup orders.")
    allow_brokering: bool = Field(description="May be routed to any store (ship-from-store).")
    ship_name: str | None = Field(description="Recipient.")
    ship_address: str | None = Field(description="Street address.")
    ship_city: str | None = Field(description="City.")
    ship_postcode: str | None = Field(description="Postal code.")
    ship_country: str | None = Field(description="ISO 3166-1 alpha-2.")
    ship_lat: float | None = Field(description="Geocoded latitude.")
    ship_lon: float | None = Field(description="Geocoded longitude.")
    total: float = Field(description="Sum of lines.")
    currency: str = Field(description="ISO 4217 code.")
    created_at: float = Field(description="Epoch seconds.")
    updated_at: float = Field(description="Epoch seconds.")
    items: list[OrderLineOut] = Field(description="Order lines.")


class StatusIn(BaseModel):
    status: orders.OrderStatus = Field(description="The new status.")


def _found(db: Database, order_id: str) -> dict:
    row = orders.get_order(db, order_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no order {order_id}")
    return row


@router.post(
    "",
    response_model=OrderOut,
    status_code=201,
    summary="Web shop webhook: create an order (idempotent by Idempotency-Key)",
    responses={
        200: {"description": "Replay of a key already used: the same order."},
        409: {"description": "Key reused with a different body."},
    },
)
def create(
    body: orders.OrderIn,
    response: Response,
    idempotency_key: str = Header(
        min_length=8, max_length=128, description="Unique per order attempt; replays are safe."
    ),
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("admin")),
    hooks: Hooks = Depends(get_hooks),
) -> dict:
    order_id, created = orders.create_order(db, body, idempotency_key, hooks=hooks)
    if not created:
        response.status_code = status.HTTP_200_OK
    return _found(db, order_id)


@router.get("", response_model=Paged[OrderOut], summary="Orders, newest first")
def list_orders(
    status_: orders.OrderStatus | None = Query(None, alias="status"),
    customer_account: str | None = Query(None),
    p: Page = Depends(page),
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops()),
) -> dict:
    rows = orders.list_orders(
        db, status=status_, customer_account=customer_account, limit=p.limit, offset=p.offset
    )
    return paged(rows, p)


@router.get("/{order_id}", response_model=OrderOut, summary="One order")
def get_order(
    order_id: str, db: Database = Depends(get_db), _: Caller = Depends(require_ops())
) -> dict:
    return _found(db, order_id)


@router.patch("/{order_id}/status", response_model=OrderOut, summary="Set the status (admin)")
def set_status(
    order_id: str,
    body: StatusIn,
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("admin")),
) -> dict:
    orders.set_status(db, order_id, body.status)
    return _found(db, order_id)
