"""POS sales: what was sold in a store, to which member (optional), with which coupons.

Recording a sale decrements the store's inventory in the same transaction. A sale ID chosen
by the POS makes retries safe (a replay is ignored, stock is decremented once).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from storelens.cloud.db import Database, migrations
from storelens.contract.bounds import EpochSeconds, Price, Quantity
from storelens.contract.events import Identifier

MIGRATIONS = migrations(
    "sales",
    [
        """
        CREATE TABLE pos_sales (
            id TEXT PRIMARY KEY,
            store TEXT NOT NULL,
            device TEXT,
            ts {REAL} NOT NULL,
            member_id TEXT,
            total {REAL} NOT NULL,
            created_at {REAL} NOT NULL
        );
        CREATE INDEX pos_sales_store_ts ON pos_sales (store, ts);
        CREATE INDEX pos_sales_member_ts ON pos_sales (member_id, ts);
        CREATE TABLE pos_sale_items (
            sale_id TEXT NOT NULL REFERENCES pos_sales (id) ON DELETE CASCADE,
            line INTEGER NOT NULL,
            sku TEXT NOT NULL,
            qty INTEGER NOT NULL,
            unit_price {REAL} NOT NULL,
            PRIMARY KEY (sale_id, line)
        );
        CREATE INDEX pos_sale_items_sku ON pos_sale_items (sku);
        CREATE TABLE pos_sale_coupons (
            sale_id TEXT NOT NULL REFERENCES pos_sales (id) ON DELETE CASCADE,
            code TEXT NOT NULL,
            PRIMARY KEY (sale_id, code)
        );
        CREATE INDEX pos_sale_coupons_code ON pos_sale_coupons (code)
        """,
        # Sales of a period across the chain (`visit_sales.link_pending`: the last days of
        # every store) by ts alone: (store, ts) cannot bound that, every stored sale was read.
        "CREATE INDEX pos_sales_ts ON pos_sales (ts)",
    ],
)


class SaleItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Annotated[str, Field(min_length=1, max_length=64)] = Field(description="Catalog SKU.")
    qty: Quantity = Field(description="Units sold (returns are not sales).")
    unit_price: Price | None = Field(None, description="Price paid; omitted = catalog price.")


class SaleIn(BaseModel):
    """A completed checkout at a store's POS."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")] | None = (
        Field(None, description="POS-generated sale ID; replays with the same ID are ignored.")
    )
    store: Identifier = Field(description="Store where the sale happened.")
    ts: EpochSeconds | None = Field(None, description="Checkout time, epoch s; default now.")
    items: list[SaleItem] = Field(min_length=1, max_length=500, description="Lines sold.")
    member_id: str | None = Field(None, max_length=64, description="Member, if identified.")
    coupon_codes: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=20, description="Coupon codes redeemed."
    )


class SaleError(ValueError):
    pass


def record_sale(db: Database, sale: SaleIn, device: str | None = None) -> tuple[str, bool]:
    """Store a sale and decrement inventory; returns ``(sale_id, created)``."""
    from storelens.cloud.commerce import catalog, members, stores

    sale_id = sale.id or "s_" + uuid.uuid4().hex[:20]
    if sale.id and db.scalar("SELECT count(*) FROM pos_sales WHERE id = ?", (sale.id,)):
        return sale_id, False
    if stores.get_store(db, sale.store) is None:
        raise SaleError(f"unknown store {sale.store}")
    if sale.member_id and members.get_member(db, sale.member_id) is None:
        raise SaleError(f"unknown member {sale.member_id}")
    skus = sorted({i.sku for i in sale.items})
    current = catalog.prices(db, skus)
    missing = [s for s in skus if s not in current]
    if missing:
        raise SaleError(f"unknown SKUs: {', '.join(missing)}")
    lines = [
        (i.sku, i.qty, current[i.sku] if i.unit_price is None else i.unit_price) for i in sale.items
    ]
    now = time.time()
    with db.transaction():
        inserted = db.execute(
            "INSERT INTO pos_sales (id, store, device, ts, member_id, total, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (
                sale_id,
                sale.store,
                device,
                sale.ts or now,
                sale.member_id,
                round(sum(q * p for _, q, p in lines), 2),
                now,
            ),
        )
        if not inserted:
            return sale_id, False
        db.executemany(
            "INSERT INTO pos_sale_items (sale_id, line, sku, qty, unit_price)"
            " VALUES (?, ?, ?, ?, ?)",
            [(sale_id, n, sku, qty, price) for n, (sku, qty, price) in enumerate(lines, 1)],
        )
        codes = sorted(set(sale.coupon_codes))
        if codes:
            db.executemany(
                "INSERT INTO pos_sale_coupons (sale_id, code) VALUES (?, ?)",
                [(sale_id, c) for c in codes],
            )
        sold: dict[str, int] = {}
        for sku, qty, _ in lines:
            sold[sku] = sold.get(sku, 0) + qty
        # The goods left the shop whatever the system believed was on hand.
        stores.adjust_inventory(
            db,
            sale.store,
            [stores.InventoryChange(sku=s, delta_on_hand=-q) for s, q in sold.items()],
            allow_negative=True,
        )
    return sale_id, True


def get_sale(db: Database, sale_id: str) -> dict[str, Any] | None:
    row = db.query_one("SELECT * FROM pos_sales WHERE id = ?", (sale_id,))
    if row is None:
        return None
    row["items"] = db.query(
        "SELECT line, sku, qty, unit_price FROM pos_sale_items WHERE sale_id = ? ORDER BY line",
        (sale_id,),
    )
    row["coupon_codes"] = [
        r["code"]
        for r in db.query(
            "SELECT code FROM pos_sale_coupons WHERE sale_id = ? ORDER BY code", (sale_id,)
        )
    ]
    return row


def list_sales(
    db: Database,
    *,
    store: str | None = None,
    member_id: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    where, params = [], []
    for clause, value in (
        ("store = ?", store),
        ("member_id = ?", member_id),
        ("ts >= ?", since),
        ("ts < ?", until),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    sql_where = f"WHERE {' AND '.join(where)}" if where else ""
    rows = db.query(
        f"SELECT * FROM pos_sales {sql_where} ORDER BY ts DESC, id LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    if not rows:
        return []
    # Two queries for the page's items and coupons instead of two per sale.
    ids = [r["id"] for r in rows]
    marks = ", ".join("?" for _ in ids)
    items: dict[str, list[dict[str, Any]]] = {}
    for item in db.query(
        "SELECT sale_id, line, sku, qty, unit_price FROM pos_sale_items"
        f" WHERE sale_id IN ({marks}) ORDER BY sale_id, line",
        ids,
    ):
        items.setdefault(item.pop("sale_id"), []).append(item)
    codes: dict[str, list[str]] = {}
    for c in db.query(
        f"SELECT sale_id, code FROM pos_sale_coupons WHERE sale_id IN ({marks}) ORDER BY code",
        ids,
    ):
        codes.setdefault(c["sale_id"], []).append(c["code"])
    for row in rows:
        row["items"] = items.get(row["id"], [])
        row["coupon_codes"] = codes.get(row["id"], [])
    return rows
