"""The store network as fulfillment sees it: routing candidates, stock reservations and the
stock effects of the workflow.

Every statement that touches the core domains' tables (stores, inventory) lives here, so the
routing and workflow modules speak only in SKUs, quantities and store IDs. Stock changes are
conditional UPDATEs: two routers reserving the last unit race on the row, and the loser sees
zero affected rows instead of overselling. Rows are always locked in (store, SKU) order so
concurrent transactions on PostgreSQL cannot deadlock on each other's inventory rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from storelens.cloud.db import Database
from storelens.cloud.fulfillment.rules import StoreCandidate
from storelens.cloud.fulfillment.states import OPEN_STATES, STORE_DECLINED_STATES

CUT_RETENTION_S = 3 * 86400  # cuts only matter on their own day; keep a few for the audit


def _in_list(values: Iterable[Any]) -> str:
    return ", ".join("?" for _ in values)


def local_day(timezone: str | None, now: float) -> str:
    """The store's calendar day (capacity is per local day, not per UTC day)."""
    try:
        tz = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    return datetime.fromtimestamp(now, tz).date().isoformat()


def store_row(db: Database, store_id: str) -> dict[str, Any] | None:
    return db.query_one(
        "SELECT id, name, lat, lon, timezone, fulfillment_capacity, acceptance_deadline_min,"
        " priority FROM stores WHERE id = ?",
        (store_id,),
    )


def open_task_counts(db: Database, store_id: str | None = None) -> dict[str, int]:
    """Open tasks per store (only ``store_id``'s when given)."""
    states = sorted(OPEN_STATES)
    where, params = (" AND store_id = ?", [*states, store_id]) if store_id else ("", states)
    rows = db.query(
        f"SELECT store_id, count(*) AS n FROM fulfillment_tasks WHERE state IN ({_in_list(states)})"
        f"{where} GROUP BY store_id",
        params,
    )
    return {r["store_id"]: int(r["n"]) for r in rows}


def day_limit(capacity: Any, cut: Any) -> int:
    """Tasks a store takes on a day: its configured capacity, lowered by that day's cut."""
    limit = int(capacity)
    return limit if cut is None else min(limit, int(cut))


def rejection_rates(db: Database, since: float) -> dict[str, float]:
    """Share of each store's tasks since ``since`` that it rejected or let lapse."""
    declined = sorted(STORE_DECLINED_STATES)
    rows = db.query(
        "SELECT store_id, count(*) AS total, sum(CASE WHEN state IN"
        f" ({_in_list(declined)}) THEN 1 ELSE 0 END) AS declined"
        " FROM fulfillment_tasks WHERE created_at >= ? GROUP BY store_id",
        (*declined, since),
    )
    return {r["store_id"]: int(r["declined"] or 0) / int(r["total"]) for r in rows if r["total"]}


def load_candidates(
    db: Database, skus: Iterable[str], *, now: float, rejection_window_s: float
) -> list[StoreCandidate]:
    skus = sorted(set(skus))
    stores = db.query(
        "SELECT id, lat, lon, timezone, fulfillment_capacity, priority FROM stores ORDER BY id"
    )
    cuts = {
        (r["store_id"], r["day"]): int(r["capacity"])
        for r in db.query("SELECT store_id, day, capacity FROM fulfillment_capacity_cuts")
    }
    open_tasks = open_task_counts(db)
    rates = rejection_rates(db, now - rejection_window_s)
    available: dict[str, dict[str, int]] = {}
    if skus:
        for r in db.query(
            "SELECT store, sku, on_hand - reserved - safety_stock AS available FROM inventory"
            f" WHERE sku IN ({_in_list(skus)})",
            skus,
        ):
            available.setdefault(r["store"], {})[r["sku"]] = int(r["available"])
    out = []
    for s in stores:
        limit = day_limit(
            s["fulfillment_capacity"], cuts.get((s["id"], local_day(s["timezone"], now)))
        )
        out.append(
            StoreCandidate(
                store_id=s["id"],
                lat=float(s["lat"]),
                lon=float(s["lon"]),
                capacity_left=limit - open_tasks.get(s["id"], 0),
                priority=int(s["priority"]),
                rejection_rate=rates.get(s["id"], 0.0),
                available=available.get(s["id"], {}),
            )
        )
    return out


def claim_capacity(db: Database, store_id: str, now: float) -> bool:
    """True when the store still has a free task slot today, holding the store's row lock
    until the caller's transaction ends, so two routers cannot both take its last slot.

    The candidates' ``capacity_left`` was read without a lock (read committed on PostgreSQL);
    the decision is checked again here, behind the lock, before a task is created. SQLite
    needs no row lock: its write transactions (BEGIN IMMEDIATE) already run one at a time."""
    lock = " FOR UPDATE" if db.dialect == "postgres" else ""
    row = db.query_one(
        f"SELECT timezone, fulfillment_capacity FROM stores WHERE id = ?{lock}", (store_id,)
    )
    if row is None:
        return False
    cut = db.scalar(
        "SELECT capacity FROM fulfillment_capacity_cuts WHERE store_id = ? AND day = ?",
        (store_id, local_day(row["timezone"], now)),
    )
    taken = open_task_counts(db, store_id).get(store_id, 0)
    return taken < day_limit(row["fulfillment_capacity"], cut)


def reserve(db: Database, store_id: str, lines: Mapping[str, int]) -> bool:
    """Reserve every line at the store or none: False when stock moved under our feet."""
    now = time.time()
    done: dict[str, int] = {}
    for sku, qty in sorted(lines.items()):
        changed = db.execute(
            "UPDATE inventory SET reserved = reserved + ?, updated_at = ?"
            " WHERE store = ? AND sku = ? AND on_hand - reserved - safety_stock >= ?",
            (qty, now, store_id, sku, qty),
        )
        if changed != 1:
            release(db, store_id, done)
            return False
        done[sku] = qty
    return True


def release(db: Database, store_id: str, lines: Mapping[str, int]) -> None:
    """Give reserved units back to available stock (cancel, rejection, lapse)."""
    now = time.time()
    for sku, qty in sorted(lines.items()):
        db.execute(
            "UPDATE inventory SET reserved = CASE WHEN reserved > ? THEN reserved - ? ELSE 0 END,"
            " updated_at = ? WHERE store = ? AND sku = ?",
            (qty, qty, now, store_id, sku),
        )


def consume(db: Database, store_id: str, lines: Mapping[str, int]) -> None:
    """The goods left the store (shipped or collected): off the shelf and off the reservation."""
    now = time.time()
    for sku, qty in sorted(lines.items()):
        db.execute(
            "UPDATE inventory SET"
            " on_hand = CASE WHEN on_hand > ? THEN on_hand - ? ELSE 0 END,"
            " reserved = CASE WHEN reserved > ? THEN reserved - ? ELSE 0 END,"
            " updated_at = ? WHERE store = ? AND sku = ?",
            (qty, qty, qty, qty, now, store_id, sku),
        )


def mark_out_of_stock(db: Database, store_id: str, sku: str) -> None:
    """The shelf is empty: on hand drops to what is already promised, so nothing is available
    to promise any more (other orders' reservations stay visible for their own rejections)."""
    db.execute(
        "UPDATE inventory SET on_hand = CASE WHEN on_hand > reserved + safety_stock"
        " THEN reserved + safety_stock ELSE on_hand END, updated_at = ?"
        " WHERE store = ? AND sku = ?",
        (time.time(), store_id, sku),
    )


def write_off(db: Database, store_id: str, sku: str, quantity: int) -> None:
    """Damaged units leave the sellable stock."""
    db.execute(
        "UPDATE inventory SET on_hand = CASE WHEN on_hand > ? THEN on_hand - ? ELSE 0 END,"
        " updated_at = ? WHERE store = ? AND sku = ?",
        (quantity, quantity, time.time(), store_id, sku),
    )


def cut_capacity(db: Database, store_id: str, now: float) -> int:
    """The store said it cannot take more today: today's limit becomes its current load."""
    store = store_row(db, store_id)
    if store is None:
        return 0
    load = open_task_counts(db).get(store_id, 0)
    db.execute("DELETE FROM fulfillment_capacity_cuts WHERE at < ?", (now - CUT_RETENTION_S,))
    db.execute(
        "INSERT INTO fulfillment_capacity_cuts (store_id, day, capacity, at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (store_id, day) DO UPDATE SET capacity = excluded.capacity, at = excluded.at",
        (store_id, local_day(store["timezone"], now), load, now),
    )
    return load


def shelf_locations(db: Database, store_id: str, skus: Iterable[str]) -> dict[str, str | None]:
    skus = sorted(set(skus))
    if not skus:
        return {}
    rows = db.query(
        f"SELECT sku, shelf_location FROM inventory WHERE store = ? AND sku IN ({_in_list(skus)})",
        (store_id, *skus),
    )
    return {r["sku"]: r["shelf_location"] for r in rows}


def product_names(db: Database, skus: Iterable[str]) -> dict[str, str]:
    skus = sorted(set(skus))
    if not skus:
        return {}
    rows = db.query(f"SELECT sku, name FROM products WHERE sku IN ({_in_list(skus)})", skus)
    return {r["sku"]: r["name"] for r in rows}
