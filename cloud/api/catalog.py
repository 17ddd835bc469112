"""The product catalog: browse, upsert, bulk import (CSV or JSON)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from storelens.cloud.api.body_limits import BULK_MAX
from storelens.cloud.api.deps import Caller, Page, get_db, page, require_ops, require_staff
from storelens.cloud.api.pagination import Paged, paged
from storelens.cloud.commerce import catalog
from storelens.cloud.db import Database

router = APIRouter(tags=["catalog"])
MAX_IMPORT_BYTES = 20 * 1024 * 1024


class ProductOut(catalog.Product):
    updated_at: float = Field(description="Epoch seconds of the last change.")


class CategoryOut(BaseModel):
    category: str = Field(description="Category name.")
    products: int = Field(description="Products in the category.")


class ImportOut(BaseModel):
    imported: int = Field(description="Products inserted or updated.")


def _out(row: dict) -> ProductOut:
    row = dict(row)
    row["consumable"] = bool(row["consumable"])
    row["active"] = bool(row["active"])
    return ProductOut(**row)


@router.get("/products", response_model=Paged[ProductOut], summary="Browse the catalog")
def list_products(
    category: str | None = Query(None, description="Only this category."),
    q: str | None = Query(None, max_length=100, description="Name/brand contains."),
    p: Page = Depends(page),
    db: Database = Depends(get_db),
    _: Caller = Depends(require_staff()),
) -> dict:
    rows = catalog.list_products(db, category=category, q=q, limit=p.limit, offset=p.offset)
    return paged([_out(r) for r in rows], p)


@router.get("/products/{sku}", response_model=ProductOut, summary="One product")
def get_product(
    sku: str, db: Database = Depends(get_db), _: Caller = Depends(require_staff())
) -> ProductOut:
    row = catalog.get_product(db, sku)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no product {sku}")
    return _out(row)


@router.put("/products/{sku}", response_model=ProductOut, summary="Create or replace (admin)")
def put_product(
    sku: str,
    body: catalog.Product,
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("admin")),
) -> ProductOut:
    if body.sku != sku:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "SKU in path and body differ")
    catalog.upsert_products(db, [body])
    return _out(catalog.get_product(db, sku))  # type: ignore[arg-type]


@router.post(
    "/products/import",
    max_body_size=BULK_MAX,
    response_model=ImportOut,
    summary="Bulk import: the request body is a CSV (header row) or JSON list (admin)",
    openapi_extra={"requestBody": {"content": {"text/csv": {}, "application/json": {}}}},
)
async def import_products(
    request: Request,
    format: Literal["csv", "json"] = Query(description="Body format."),
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("admin")),
) -> ImportOut:
    body = await request.body()
    if len(body) > MAX_IMPORT_BYTES:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "catalog file too large")
    products = catalog.parse_products(body, format)
    # The write is synchronous; keep it off the event loop.
    imported = await run_in_threadpool(catalog.upsert_products, db, products)
    from storelens.cloud.api.pos import request_recommendation_rebuild

    request_recommendation_rebuild(request.app)  # new products: refresh recommendations soon
    return ImportOut(imported=imported)


@router.get("/categories", response_model=list[CategoryOut], summary="Categories and counts")
def categories(db: Database = Depends(get_db), _: Caller = Depends(require_staff())) -> list:
    return catalog.categories(db)
