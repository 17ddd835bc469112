"""The product catalog: SKUs with category, brand and price; bulk import from CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storelens.cloud.db import Database, migrations
from storelens.contract.bounds import Price

MIGRATIONS = migrations(
    "catalog",
    [
        """
        CREATE TABLE products (
            sku TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            category TEXT NOT NULL,
            brand TEXT NOT NULL DEFAULT '',
            price {REAL} NOT NULL,
            image_url TEXT,
            consumable {BOOL} NOT NULL DEFAULT 0,
            active {BOOL} NOT NULL DEFAULT 1,
            updated_at {REAL} NOT NULL
        );
        CREATE INDEX products_category ON products (category)
        """
    ],
)

Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class Product(BaseModel):
    """One sellable item."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    sku: Sku = Field(description="Stock keeping unit, unique across the chain.")
    name: str = Field(min_length=1, max_length=200, description="Display name.")
    category: str = Field(min_length=1, max_length=64, description="Category (maps to zones).")
    brand: str = Field("", max_length=100, description="Brand name.")
    price: Price = Field(description="Regular unit price in the chain's currency.")
    image_url: str | None = Field(None, max_length=1000, description="Product image URL.")
    consumable: bool = Field(False, description="Bought repeatedly (replenishment candidates).")
    active: bool = Field(True, description="False when discontinued (kept for history).")


class CatalogImportError(ValueError):
    """A bulk import was rejected; ``errors`` lists each bad row (nothing was written)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} invalid rows: " + "; ".join(errors[:5]))
        self.errors = errors


def _row(p: Product, now: float) -> dict[str, Any]:
    return {
        "sku": p.sku,
        "name": p.name,
        "category": p.category,
        "brand": p.brand,
        "price": p.price,
        "image_url": p.image_url,
        "consumable": int(p.consumable),
        "active": int(p.active),
        "updated_at": now,
    }


def upsert_products(db: Database, products: list[Product]) -> int:
    """Insert or replace products by SKU in one transaction; returns the count written."""
    if not products:
        return 0
    now = time.time()
    rows = [_row(p, now) for p in products]
    cols = list(rows[0])
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "sku")
    sql = (
        f"INSERT INTO products ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
        f"ON CONFLICT (sku) DO UPDATE SET {updates}"
    )
    with db.transaction():
        db.executemany(sql, ([r[c] for c in cols] for r in rows))
    return len(rows)


def parse_products(data: bytes | str, fmt: str) -> list[Product]:
    """Parse a CSV (header row) or JSON (list of objects) catalog file; all-or-nothing."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    if fmt == "json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CatalogImportError([f"bad JSON: {exc}"]) from None
        if not isinstance(items, list):
            raise CatalogImportError(["JSON catalog must be a list of products"])
    elif fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        items = [{k: v for k, v in row.items() if k and v not in (None, "")} for row in reader]
        for item in items:
            if "consumable" in item:
                item["consumable"] = item["consumable"].strip().lower() in ("1", "true", "yes")
            if "active" in item:
                item["active"] = item["active"].strip().lower() in ("1", "true", "yes")
    else:
        raise CatalogImportError([f"unknown format {fmt!r} (csv or json)"])
    products, errors = [], []
    for i, item in enumerate(items, start=1):
        try:
            products.append(Product.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            errors.append(f"row {i}: {'.'.join(map(str, err['loc']))}: {err['msg']}")
    if errors:
        raise CatalogImportError(errors)
    return products


def get_product(db: Database, sku: str) -> dict[str, Any] | None:
    return db.query_one("SELECT * FROM products WHERE sku = ?", (sku,))


def list_products(
    db: Database,
    *,
    category: str | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    where, params = [], []
    if category:
        where.append("category = ?")
        params.append(category)
    if q:
        where.append("(lower(name) LIKE ? OR lower(brand) LIKE ?)")
        params += [f"%{q.lower()}%"] * 2
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return db.query(
        f"SELECT * FROM products {clause} ORDER BY sku LIMIT ? OFFSET ?", (*params, limit, offset)
    )


def prices(db: Database, skus: list[str]) -> dict[str, float]:
    """Current price per SKU for the given SKUs (unknown SKUs are absent)."""
    if not skus:
        return {}
    marks = ", ".join("?" for _ in skus)
    rows = db.query(f"SELECT sku, price FROM products WHERE sku IN ({marks})", skus)
    return {r["sku"]: r["price"] for r in rows}


def categories(db: Database) -> list[dict[str, Any]]:
    return db.query(
        "SELECT category, count(*) AS products FROM products GROUP BY category ORDER BY category"
    )
