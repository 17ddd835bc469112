"""Stores (location, zones mapped to categories, fulfillment capacity) and their inventory."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storelens.cloud.db import Database, migrations
from storelens.contract.bounds import SmallCount, StockDelta, StockLevel
from storelens.contract.events import Identifier

MIGRATIONS = migrations(
    "stores",
    [
        """
        CREATE TABLE stores (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            address TEXT NOT NULL DEFAULT '',
            lat {REAL} NOT NULL,
            lon {REAL} NOT NULL,
            timezone TEXT NOT NULL DEFAULT 'UTC',
            fulfillment_capacity INTEGER NOT NULL DEFAULT 0,
            acceptance_deadline_min INTEGER NOT NULL DEFAULT 120,
            priority INTEGER NOT NULL DEFAULT 0,
            created_at {REAL} NOT NULL
        );
        CREATE TABLE store_zones (
            store TEXT NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
            zone TEXT NOT NULL,
            category TEXT NOT NULL,
            PRIMARY KEY (store, zone)
        );
        CREATE TABLE inventory (
            store TEXT NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
            sku TEXT NOT NULL,
            on_hand INTEGER NOT NULL DEFAULT 0,
            reserved INTEGER NOT NULL DEFAULT 0,
            safety_stock INTEGER NOT NULL DEFAULT 0,
            shelf_location TEXT,
            updated_at {REAL} NOT NULL,
            PRIMARY KEY (store, sku)
        );
        CREATE INDEX inventory_sku ON inventory (sku)
        """
    ],
)


class Store(BaseModel):
    """A physical store of the chain."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: Identifier = Field(description="Store ID used in MQTT topics and everywhere else.")
    name: str = Field(min_length=1, max_length=200, description="Display name.")
    address: str = Field("", max_length=500, description="Postal address.")
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="Latitude, WGS84 degrees.")
    lon: float = Field(
        ge=-180, le=180, allow_inf_nan=False, description="Longitude, WGS84 degrees."
    )
    timezone: str = Field("UTC", max_length=64, description="IANA time zone, e.g. Europe/Paris.")
    zones: dict[Identifier, str] = Field(
        default_factory=dict, description="Camera zone name -> product category shown there."
    )
    fulfillment_capacity: SmallCount = Field(0, description="Online orders it can fulfil per day.")
    acceptance_deadline_min: int = Field(
        120,
        ge=1,
        le=60 * 24 * 30,
        description="Minutes a store has to accept a brokered order before re-routing.",
    )
    priority: int = Field(
        0, ge=-1_000_000, le=1_000_000, description="Routing tie-breaker: higher is preferred."
    )


class InventoryLevel(BaseModel):
    """Stock of one SKU at one store."""

    model_config = ConfigDict(extra="forbid")

    sku: Annotated[str, Field(min_length=1, max_length=64)] = Field(description="Catalog SKU.")
    on_hand: StockLevel = Field(description="Units physically in the store.")
    reserved: StockLevel = Field(0, description="Units promised to orders, not yet picked.")
    safety_stock: StockLevel = Field(0, description="Units kept back from online selling.")
    shelf_location: str | None = Field(None, max_length=64, description="Aisle/shelf code.")


class InventoryChange(BaseModel):
    """An incremental stock movement (delivery, count correction, shrink)."""

    model_config = ConfigDict(extra="forbid")

    sku: Annotated[str, Field(min_length=1, max_length=64)] = Field(description="Catalog SKU.")
    delta_on_hand: StockDelta = Field(0, description="Units added (+) or removed (-).")
    delta_reserved: StockDelta = Field(0, description="Reservation change.")


class UnknownStore(LookupError):
    pass


class StockError(ValueError):
    """An inventory change would make stock negative."""


def upsert_store(db: Database, store: Store) -> None:
    with db.transaction():
        db.execute(
            "INSERT INTO stores (id, name, address, lat, lon, timezone, fulfillment_capacity,"
            " acceptance_deadline_min, priority, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, address = excluded.address,"
            " lat = excluded.lat, lon = excluded.lon, timezone = excluded.timezone,"
            " fulfillment_capacity = excluded.fulfillment_capacity,"
            " acceptance_deadline_min = excluded.acceptance_deadline_min,"
            " priority = excluded.priority",
            (
                store.id,
                store.name,
                store.address,
                store.lat,
                store.lon,
                store.timezone,
                store.fulfillment_capacity,
                store.acceptance_deadline_min,
                store.priority,
                time.time(),
            ),
        )
        db.execute("DELETE FROM store_zones WHERE store = ?", (store.id,))
        if store.zones:
            db.executemany(
                "INSERT INTO store_zones (store, zone, category) VALUES (?, ?, ?)",
                [(store.id, z, c) for z, c in store.zones.items()],
            )


def get_store(db: Database, store_id: str) -> dict[str, Any] | None:
    row = db.query_one("SELECT * FROM stores WHERE id = ?", (store_id,))
    if row is not None:
        row["zones"] = zone_categories(db, store_id)
    return row


def list_stores(db: Database, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    rows = db.query("SELECT * FROM stores ORDER BY id LIMIT ? OFFSET ?", (limit, offset))
    zones = db.query("SELECT store, zone, category FROM store_zones")
    by_store: dict[str, dict[str, str]] = {}
    for z in zones:
        by_store.setdefault(z["store"], {})[z["zone"]] = z["category"]
    for row in rows:
        row["zones"] = by_store.get(row["id"], {})
    return rows


def zone_categories(db: Database, store_id: str) -> dict[str, str]:
    rows = db.query("SELECT zone, category FROM store_zones WHERE store = ?", (store_id,))
    return {r["zone"]: r["category"] for r in rows}


def _require_store(db: Database, store_id: str) -> None:
    if db.scalar("SELECT count(*) FROM stores WHERE id = ?", (store_id,)) == 0:
        raise UnknownStore(store_id)


def set_inventory(db: Database, store_id: str, levels: list[InventoryLevel]) -> int:
    """Bulk load: set absolute levels (insert or replace per SKU) in one transaction."""
    _require_store(db, store_id)
    now = time.time()
    with db.transaction():
        db.executemany(
            "INSERT INTO inventory (store, sku, on_hand, reserved, safety_stock, shelf_location,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (store, sku) DO UPDATE SET"
            " on_hand = excluded.on_hand, reserved = excluded.reserved,"
            " safety_stock = excluded.safety_stock, shelf_location = excluded.shelf_location,"
            " updated_at = excluded.updated_at",
            [
                (store_id, lv.sku, lv.on_hand, lv.reserved, lv.safety_stock, lv.shelf_location, now)
                for lv in levels
            ],
        )
    return len(levels)


def adjust_inventory(
    db: Database, store_id: str, changes: list[InventoryChange], *, allow_negative: bool = False
) -> list[dict[str, Any]]:
    """Apply stock movements atomically; rejects the whole batch if any level would go
    negative (unless ``allow_negative``, used by POS sales: the sale happened regardless)."""
    _require_store(db, store_id)
    now = time.time()
    with db.transaction():
        for ch in changes:
            db.execute(
                "INSERT INTO inventory (store, sku, on_hand, reserved, updated_at)"
                " VALUES (?, ?, 0, 0, ?) ON CONFLICT (store, sku) DO NOTHING",
                (store_id, ch.sku, now),
            )
            db.execute(
                "UPDATE inventory SET on_hand = on_hand + ?, reserved = reserved + ?,"
                " updated_at = ? WHERE store = ? AND sku = ?",
                (ch.delta_on_hand, ch.delta_reserved, now, store_id, ch.sku),
            )
            if not allow_negative:
                row = db.query_one(
                    "SELECT on_hand, reserved FROM inventory WHERE store = ? AND sku = ?",
                    (store_id, ch.sku),
                )
                if row is None or row["on_hand"] < 0 or row["reserved"] < 0:
                    raise StockError(f"{ch.sku}: stock would become negative at {store_id}")
        marks = ", ".join("?" for _ in changes)
        return db.query(
            f"SELECT * FROM inventory WHERE store = ? AND sku IN ({marks}) ORDER BY sku",
            (store_id, *[c.sku for c in changes]),
        )


def get_inventory(
    db: Database, store_id: str, *, sku: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    if sku is not None:
        return db.query("SELECT * FROM inventory WHERE store = ? AND sku = ?", (store_id, sku))
    return db.query(
        "SELECT * FROM inventory WHERE store = ? ORDER BY sku LIMIT ? OFFSET ?",
        (store_id, limit, offset),
    )


def available_to_sell(db: Database, sku: str) -> list[dict[str, Any]]:
    """Per store: units sellable online (on hand - reserved - safety stock), for routing."""
    return db.query(
        "SELECT store, on_hand - reserved - safety_stock AS available FROM inventory"
        " WHERE sku = ? AND on_hand - reserved - safety_stock > 0 ORDER BY store",
        (sku,),
    )


class StoreImportError(ValueError):
    """A stores or inventory file was rejected; ``errors`` lists each bad row."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} invalid rows: " + "; ".join(errors[:5]))
        self.errors = errors


def _validate_rows(model: type[BaseModel], items: object) -> list:
    if not isinstance(items, list):
        raise StoreImportError(["the file must hold a list"])
    out, errors = [], []
    for i, item in enumerate(items, start=1):
        try:
            out.append(model.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            errors.append(f"row {i}: {'.'.join(map(str, err['loc']))}: {err['msg']}")
    if errors:
        raise StoreImportError(errors)
    return out


def parse_stores(data: bytes | str) -> list[Store]:
    """A JSON list of stores (zones as an object of zone -> category); all or nothing."""
    try:
        items = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreImportError([f"bad JSON: {exc}"]) from None
    return _validate_rows(Store, items)


def parse_inventory(data: bytes | str, fmt: str) -> list[InventoryLevel]:
    """Stock levels as CSV (header: sku,on_hand[,reserved,safety_stock,shelf_location]) or a
    JSON list; all or nothing."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    if fmt == "json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoreImportError([f"bad JSON: {exc}"]) from None
    elif fmt == "csv":
        items = [
            {k: v for k, v in row.items() if k and v not in (None, "")}
            for row in csv.DictReader(io.StringIO(text))
        ]
    else:
        raise StoreImportError([f"unknown format {fmt!r} (csv or json)"])
    return _validate_rows(InventoryLevel, items)


def upsert_stores(db: Database, items: list[Store]) -> int:
    with db.transaction():
        for store in items:
            upsert_store(db, store)
    return len(items)
