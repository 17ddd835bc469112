"""The device registry: which (store, device) pairs the cloud accepts events from, and each
device's latest status and when the cloud last heard it. The table is created by
`storelens.cloud.ingest.events`' migrations (unchanged on disk)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from storelens.cloud.db import Database
from storelens.cloud.ingest.rows import StatusRow, status_row
from storelens.contract.events import DeviceStatus


def register_device(db: Database, store: str, device: str, description: str = "") -> None:
    """Register (or re-enable) a device so the cloud accepts its events."""
    with db.transaction():
        updated = db.execute(
            "UPDATE devices SET registered = 1, description = ? WHERE store = ? AND device = ?",
            (description, store, device),
        )
        if not updated:
            db.execute(
                "INSERT INTO devices (store, device, registered, registered_at, description) "
                "VALUES (?, ?, 1, ?, ?)",
                (store, device, time.time(), description),
            )


def unregister_device(db: Database, store: str, device: str) -> bool:
    return bool(
        db.execute(
            "UPDATE devices SET registered = 0 WHERE store = ? AND device = ?", (store, device)
        )
    )


def registered_devices(db: Database) -> set[tuple[str, str]]:
    rows = db.query("SELECT store, device FROM devices WHERE registered = 1")
    return {(r["store"], r["device"]) for r in rows}


def get_device(db: Database, store: str, device: str) -> dict[str, Any] | None:
    row = db.query_one("SELECT * FROM devices WHERE store = ? AND device = ?", (store, device))
    if row is not None and row.get("status"):
        row["status"] = json.loads(row["status"])
    return row


def list_devices(
    db: Database,
    store: str | Sequence[str] | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Devices of one store, of some stores, or of all (None)."""
    chosen = [store] if isinstance(store, str) else list(store or [])
    where = f"WHERE store IN ({', '.join('?' for _ in chosen)})" if chosen else ""
    params: list[Any] = chosen
    rows = db.query(
        f"SELECT * FROM devices {where} ORDER BY store, device LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    for row in rows:
        if row.get("status"):
            row["status"] = json.loads(row["status"])
    return rows


def apply_status(
    db: Database, store: str, statuses: Iterable[DeviceStatus], received_at: float | None = None
) -> None:
    """`apply_status_rows` for status models built in-process (seeds, tests), through the
    one row builder."""
    apply_status_rows(db, [status_row(store, s) for s in statuses], received_at)


def apply_status_rows(
    db: Database, statuses: Iterable[StatusRow], received_at: float | None = None
) -> None:
    """Record the latest status per device (in the order of their own times within a batch);
    ``last_seen`` is when the cloud heard it (``received_at``), never the time the device
    claims, so a wrong device clock cannot make a dead device look alive."""
    for status in sorted(statuses, key=lambda s: s.ts):
        ts = received_at if received_at is not None else time.time()
        db.execute(
            "UPDATE devices SET last_seen = ?, online = 1, status = ?, fps = ?, outbox_depth = ?,"
            " lost_events = ? WHERE store = ? AND device = ?"
            " AND (last_seen IS NULL OR last_seen <= ?)",
            (ts, status.status, status.fps, status.outbox_depth, status.lost_events,
             status.store, status.device, ts),
        )  # fmt: skip


def mark_seen(db: Database, seen: dict[tuple[str, str], float]) -> None:
    """Advance ``last_seen`` of devices the cloud heard (times of receipt; never backwards)."""
    for (store, device), ts in seen.items():
        db.execute(
            "UPDATE devices SET last_seen = ? WHERE store = ? AND device = ? "
            "AND (last_seen IS NULL OR last_seen < ?)",
            (ts, store, device, ts),
        )


def set_availability(db: Database, store: str, device: str, online: bool) -> None:
    db.execute(
        "UPDATE devices SET online = ? WHERE store = ? AND device = ?",
        (1 if online else 0, store, device),
    )
