"""Online orders from the web shop: idempotent creation, items, shipping, status.

`create_order(db, order, idempotency_key)` is a plain function so the fulfillment domain can
route right after creation: the ``order_created`` hooks (cloud/hooks.py) run inside the
creating transaction with ``(db, order_id)``.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from storelens.cloud import services
from storelens.cloud.db import Database, IntegrityError, migrations
from storelens.cloud.hooks import Hooks
from storelens.contract.bounds import EpochSeconds, Price

MIGRATIONS = migrations(
    "orders",
    [
        """
        CREATE TABLE online_orders (
            id TEXT PRIMARY KEY,
            idempotency_key TEXT UNIQUE,
            request_sha256 TEXT,
            external_id TEXT,
            customer_account TEXT,
            member_id TEXT,
            status TEXT NOT NULL,
            fulfillment_type TEXT NOT NULL,
            pickup_store TEXT,
            allow_brokering {BOOL} NOT NULL DEFAULT 1,
            ship_name TEXT,
            ship_address TEXT,
            ship_city TEXT,
            ship_postcode TEXT,
            ship_country TEXT,
            ship_lat {REAL},
            ship_lon {REAL},
            total {REAL} NOT NULL,
            currency TEXT NOT NULL DEFAULT 'EUR',
            created_at {REAL} NOT NULL,
            updated_at {REAL} NOT NULL
        );
        CREATE INDEX online_orders_account ON online_orders (customer_account, created_at);
        CREATE INDEX online_orders_member ON online_orders (member_id, created_at);
        CREATE INDEX online_orders_status ON online_orders (status, created_at);
        CREATE TABLE online_order_items (
            order_id TEXT NOT NULL REFERENCES online_orders (id) ON DELETE CASCADE,
            line INTEGER NOT NULL,
            sku TEXT NOT NULL,
            qty INTEGER NOT NULL,
            unit_price {REAL} NOT NULL,
            PRIMARY KEY (order_id, line)
        );
        CREATE INDEX online_order_items_sku ON online_order_items (sku)
        """
    ],
)

OrderStatus = Literal[
    "received",
    "routing",
    "brokered",
    "in_fulfillment",
    "shipped",
    "ready_for_pickup",
    "delivered",
    "picked_up",
    "cancelled",
    "unfulfillable",
]
STATUSES: tuple[str, ...] = OrderStatus.__args__  # type: ignore[attr-defined]


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Annotated[str, Field(min_length=1, max_length=64)] = Field(description="Catalog SKU.")
    qty: int = Field(ge=1, le=1000, description="Units ordered.")
    unit_price: Price | None = Field(
        None, description="Price charged per unit; omitted = current catalog price."
    )


class ShippingAddress(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200, description="Recipient.")
    address: str = Field(min_length=1, max_length=500, description="Street and number.")
    city: str = Field("", max_length=100, description="City.")
    postcode: str = Field("", max_length=20, description="Postal code.")
    country: str = Field("", max_length=2, description="ISO 3166-1 alpha-2.")
    lat: float = Field(
        ge=-90, le=90, allow_inf_nan=False, description="Geocoded latitude (routing distance)."
    )
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, description="Geocoded longitude.")


class OrderIn(BaseModel):
    """An order as the web shop sends it to the webhook."""

    model_config = ConfigDict(extra="forbid")

    external_id: str | None = Field(None, max_length=128, description="Web shop's order number.")
    customer_account: str | None = Field(None, max_length=128, description="Online account ID.")
    items: list[OrderItem] = Field(min_length=1, max_length=200, description="Order lines.")
    fulfillment_type: Literal["ship", "pickup"] = Field(description="Delivery or store pickup.")
    shipping: ShippingAddress | None = Field(None, description="Required for `ship` orders.")
    pickup_store: str | None = Field(None, max_length=64, description="Required for `pickup`.")
    allow_brokering: bool = Field(
        True, description="May the order be split/routed to any store (ship-from-store)."
    )
    currency: str = Field("EUR", min_length=3, max_length=3, description="ISO 4217 code.")
    created_at: EpochSeconds | None = Field(None, description="Order time, epoch s; default now.")

    @model_validator(mode="after")
    def _where_to(self) -> OrderIn:
        if self.fulfillment_type == "ship" and self.shipping is None:
            raise ValueError("ship orders need a shipping address")
        if self.fulfillment_type == "pickup" and not self.pickup_store:
            raise ValueError("pickup orders need pickup_store")
        return self


class OrderError(ValueError):
    pass


class IdempotencyConflict(OrderError):
    """The key was used before with a different request body."""


class UnknownOrder(LookupError):
    pass


def request_digest(order: OrderIn) -> str:
    return hashlib.sha256(order.model_dump_json(exclude={"created_at"}).encode()).hexdigest()


def create_order(
    db: Database,
    order: OrderIn,
    idempotency_key: str | None = None,
    *,
    hooks: Hooks | None = None,
) -> tuple[str, bool]:
    """Store an order; returns ``(order_id, created)``. Replaying the same key with the same
    body returns the first order with ``created=False``; a different body raises. ``hooks``
    (default: those of the process serving ``db``, `services.hooks_for`) route and score it."""
    hooks = services.hooks_for(db) if hooks is None else hooks
    digest = request_digest(order)
    if idempotency_key is not None:
        prior = _by_key(db, idempotency_key, digest)
        if prior is not None:
            return prior, False
    from storelens.cloud.commerce import catalog, members, stores

    skus = sorted({i.sku for i in order.items})
    current = catalog.prices(db, skus)
    missing = [s for s in skus if s not in current]
    if missing:
        raise OrderError(f"unknown SKUs: {', '.join(missing)}")
    if order.pickup_store and stores.get_store(db, order.pickup_store) is None:
        raise OrderError(f"unknown pickup store {order.pickup_store}")
    member = (
        members.member_by_account(db, order.customer_account) if order.customer_account else None
    )
    lines = [
        (i.sku, i.qty, current[i.sku] if i.unit_price is None else i.unit_price)
        for i in order.items
    ]
    total = round(sum(q * p for _, q, p in lines), 2)
    order_id = "o_" + uuid.uuid4().hex[:20]
    now = time.time()
    ship = order.shipping
    try:
        with db.transaction():
            if order.customer_account:
                members.upsert_account(db, order.customer_account)
            db.execute(
                "INSERT INTO online_orders (id, idempotency_key, request_sha256, external_id,"
                " customer_account, member_id, status, fulfillment_type, pickup_store,"
                " allow_brokering, ship_name, ship_address, ship_city, ship_postcode, ship_country,"
                " ship_lat, ship_lon, total, currency, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    order_id,
                    idempotency_key,
                    digest,
                    order.external_id,
                    order.customer_account,
                    member["id"] if member else None,
                    "received",
                    order.fulfillment_type,
                    order.pickup_store,
                    int(order.allow_brokering),
                    ship.name if ship else None,
                    ship.address if ship else None,
                    ship.city if ship else None,
                    ship.postcode if ship else None,
                    ship.country if ship else None,
                    ship.lat if ship else None,
                    ship.lon if ship else None,
                    total,
                    order.currency,
                    order.created_at or now,
                    now,
                ),
            )
            db.executemany(
                "INSERT INTO online_order_items (order_id, line, sku, qty, unit_price)"
                " VALUES (?, ?, ?, ?, ?)",
                [(order_id, n, sku, qty, price) for n, (sku, qty, price) in enumerate(lines, 1)],
            )
            for hook in hooks["order_created"]:
                hook(db, order_id)
    except IntegrityError:
        # A concurrent request with the same key won the race.
        if idempotency_key is not None:
            prior = _by_key(db, idempotency_key, digest)
            if prior is not None:
                return prior, False
        raise
    return order_id, True


def _by_key(db: Database, key: str, digest: str) -> str | None:
    row = db.query_one(
        "SELECT id, request_sha256 FROM online_orders WHERE idempotency_key = ?", (key,)
    )
    if row is None:
        return None
    if row["request_sha256"] != digest:
        raise IdempotencyConflict("Idempotency-Key was already used with a different order")
    return row["id"]


def get_order(db: Database, order_id: str) -> dict[str, Any] | None:
    row = db.query_one("SELECT * FROM online_orders WHERE id = ?", (order_id,))
    if row is None:
        return None
    row.pop("request_sha256", None)
    row["allow_brokering"] = bool(row["allow_brokering"])
    row["items"] = db.query(
        "SELECT line, sku, qty, unit_price FROM online_order_items WHERE order_id = ?"
        " ORDER BY line",
        (order_id,),
    )
    return row


def list_orders(
    db: Database,
    *,
    status: str | None = None,
    customer_account: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    where, params = [], []
    if status:
        where.append("status = ?")
        params.append(status)
    if customer_account:
        where.append("customer_account = ?")
        params.append(customer_account)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = db.query(
        f"SELECT * FROM online_orders {clause} ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    if not rows:
        return []
    # One query for the page's items instead of one per order.
    marks = ", ".join("?" for _ in rows)
    items: dict[str, list[dict[str, Any]]] = {}
    for item in db.query(
        f"SELECT order_id, line, sku, qty, unit_price FROM online_order_items"
        f" WHERE order_id IN ({marks}) ORDER BY order_id, line",
        [r["id"] for r in rows],
    ):
        items.setdefault(item.pop("order_id"), []).append(item)
    for row in rows:
        row.pop("request_sha256", None)
        row["allow_brokering"] = bool(row["allow_brokering"])
        row["items"] = items.get(row["id"], [])
    return rows


def set_status(db: Database, order_id: str, status: str) -> None:
    if status not in STATUSES:
        raise OrderError(f"unknown status {status!r}")
    if not db.execute(
        "UPDATE online_orders SET status = ?, updated_at = ? WHERE id = ?",
        (status, time.time(), order_id),
    ):
        raise UnknownOrder(order_id)
