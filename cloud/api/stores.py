"""Stores and per-store inventory: bulk levels and incremental movements."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from storelens.cloud.api.body_limits import BULK_MAX
from storelens.cloud.api.deps import (
    Caller,
    Page,
    get_db,
    page,
    require_ops,
    require_pos,
    require_staff,
)
from storelens.cloud.api.pagination import Paged, paged
from storelens.cloud.commerce import stores
from storelens.cloud.db import Database

router = APIRouter(prefix="/stores", tags=["stores"])


class StoreOut(stores.Store):
    created_at: float = Field(description="Epoch seconds.")


class InventoryOut(BaseModel):
    store: str = Field(description="Store ID.")
    sku: str = Field(description="Catalog SKU.")
    on_hand: int = Field(description="Units physically in the store.")
    reserved: int = Field(description="Units promised to orders.")
    safety_stock: int = Field(description="Units kept back from online selling.")
    shelf_location: str | None = Field(description="Aisle/shelf code.")
    updated_at: float = Field(description="Epoch seconds.")


class InventoryBulkIn(BaseModel):
    levels: list[stores.InventoryLevel] = Field(
        min_length=1, max_length=100_000, description="Absolute levels, one per SKU."
    )


class InventoryAdjustIn(BaseModel):
    changes: list[stores.InventoryChange] = Field(
        min_length=1, max_length=10_000, description="Movements, applied all or nothing."
    )


class CountOut(BaseModel):
    written: int = Field(description="Rows inserted or replaced.")


def _found(db: Database, store_id: str) -> dict:
    row = stores.get_store(db, store_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no store {store_id}")
    return row


@router.get("", response_model=Paged[StoreOut], summary="All stores")
def list_stores(
    p: Page = Depends(page),
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_staff()),
) -> dict:
    if caller.scope is not None:  # an ops user limited to some stores sees only those
        found = [stores.get_store(db, s) for s in caller.scope]
        rows = [s for s in found if s is not None][p.offset : p.offset + p.limit]
        return paged(rows, p)
    return paged(stores.list_stores(db, limit=p.limit, offset=p.offset), p)


@router.post(
    "/import",
    max_body_size=BULK_MAX,
    response_model=CountOut,
    summary="Bulk create or replace stores from a JSON list (admin); all or nothing",
)
def import_stores(
    body: list[stores.Store] = Body(max_length=10_000),
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("admin")),
) -> CountOut:
    return CountOut(written=stores.upsert_stores(db, body))


@router.get("/{store_id}", response_model=StoreOut, summary="One store with its zones")
def get_store(
    store_id: str, db: Database = Depends(get_db), _: Caller = Depends(require_staff())
) -> dict:
    return _found(db, store_id)


@router.put("/{store_id}", response_model=StoreOut, summary="Create or replace a store (admin)")
def put_store(
    store_id: str,
    body: stores.Store,
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("admin")),
) -> dict:
    if body.id != store_id:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY, "store ID in path and body differ"
        )
    stores.upsert_store(db, body)
    return _found(db, store_id)


@router.get("/{store_id}/inventory", response_model=Paged[InventoryOut], summary="Stock levels")
def inventory(
    store_id: str,
    sku: str | None = Query(None, description="Only this SKU."),
    p: Page = Depends(page),
    db: Database = Depends(get_db),
    _: Caller = Depends(require_staff()),
) -> dict:
    _found(db, store_id)
    return paged(stores.get_inventory(db, store_id, sku=sku, limit=p.limit, offset=p.offset), p)


@router.put(
    "/{store_id}/inventory",
    max_body_size=BULK_MAX,
    response_model=CountOut,
    summary="Bulk load absolute stock levels (admin)",
)
def put_inventory(
    store_id: str,
    body: InventoryBulkIn,
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("admin")),
) -> CountOut:
    return CountOut(written=stores.set_inventory(db, store_id, body.levels))


@router.post(
    "/{store_id}/inventory/adjustments",
    max_body_size=BULK_MAX,
    response_model=list[InventoryOut],
    summary="Incremental stock movements (the store's POS or an admin)",
)
def adjust(
    store_id: str,
    body: InventoryAdjustIn,
    db: Database = Depends(get_db),
    _: Caller = Depends(require_pos()),
) -> list:
    return stores.adjust_inventory(db, store_id, body.changes)
