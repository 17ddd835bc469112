"""A member's visit to one store today, for the clerk at the till: since when they are in the
store (or how long they stayed), the zones they went through, their fitting-room sessions.

"Today" is the store's local day. Visits are found by the member's pseudonym on stored events
(a visit carries it from the door swipe on); the zones of a visit come from all its zone
stays, also those before the swipe. A member who opted out of tracking has no visit here.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from storelens.cloud.db import Database


def local_midnight(timezone: str | None, now: float) -> float:
    try:
        tz = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local = datetime.fromtimestamp(now, tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def _kind(row: dict[str, Any], categories: dict[str, str]) -> str | None:
    try:
        kind = json.loads(row["payload"]).get("kind")
    except (TypeError, ValueError, AttributeError):
        kind = None
    return kind or (categories.get(row["zone"]) if categories.get(row["zone"]) in
                    ("fitting_room", "checkout") else None)  # fmt: skip


def member_visit_today(
    db: Database, store: str, member: dict[str, Any], now: float | None = None
) -> dict[str, Any]:
    now = time.time() if now is None else now
    empty = {"visits_today": 0, "in_store": False, "started_at": None, "ended_at": None,
             "minutes_in_store": 0.0, "zones": [], "tryons": 0, "tryon_minutes": 0.0,
             "checkout": False}  # fmt: skip
    if not member.get("tracking", True):
        return empty
    store_row = db.query_one("SELECT timezone FROM stores WHERE id = ?", (store,))
    since = local_midnight(store_row["timezone"] if store_row else None, now)
    ids = [
        r["visit_id"]
        for r in db.query(
            "SELECT DISTINCT visit_id FROM events WHERE member = ? AND store = ? AND ts >= ?"
            " AND visit_id IS NOT NULL",
            (member["token"], store, since),
        )
    ]
    if not ids:
        return empty
    marks = ", ".join("?" for _ in ids)
    rows = db.query(
        "SELECT visit_id, type, ts, zone, dwell_s, t_start, payload FROM events"
        " WHERE type IN ('visit_started', 'visit_ended', 'zone_visit') AND ts >= ?"
        f" AND store = ? AND visit_id IN ({marks}) ORDER BY ts",
        (since - 6 * 3600, store, *ids),
    )
    bounds: dict[str, list[float | None]] = {v: [None, None] for v in ids}
    for r in rows:
        b = bounds[r["visit_id"]]
        if r["type"] == "visit_started":
            b[0] = r["ts"] if b[0] is None else min(b[0], r["ts"])
        elif r["type"] == "visit_ended":
            b[0] = r["t_start"] if b[0] is None else min(b[0], r["t_start"])
            b[1] = r["ts"]
    latest = max(ids, key=lambda v: bounds[v][0] or 0.0)
    start, end = bounds[latest]
    categories = {
        r["zone"]: r["category"]
        for r in db.query("SELECT zone, category FROM store_zones WHERE store = ?", (store,))
    }
    zones: list[dict[str, Any]] = []
    tryons, tryon_s, checkout = 0, 0.0, False
    for r in rows:
        if r["visit_id"] != latest or r["type"] != "zone_visit":
            continue
        kind = _kind(r, categories)
        zones.append({"zone": r["zone"], "entered_at": r["t_start"], "dwell_s": r["dwell_s"],
                      "kind": kind})  # fmt: skip
        if kind == "fitting_room":
            tryons += 1
            tryon_s += float(r["dwell_s"] or 0.0)
        checkout = checkout or kind == "checkout"
    in_store = end is None
    minutes = ((now if in_store else end) - (start or now)) / 60.0
    return {
        "visits_today": len(ids), "in_store": in_store, "started_at": start, "ended_at": end,
        "minutes_in_store": round(max(0.0, minutes), 1), "zones": zones, "tryons": tryons,
        "tryon_minutes": round(tryon_s / 60.0, 1), "checkout": checkout,
    }  # fmt: skip
