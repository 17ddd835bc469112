"""Health of every edge device: last seen, frame rate, cameras, outbox and losses."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from storelens.cloud.analytics.table import Table
from storelens.cloud.db import Database

# A device publishes status every few seconds; silence this long means something is wrong.
STALE_AFTER_S = 5 * 60


def _status(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, (str, bytes)) and raw:
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
    return {}


def _seconds(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return round(float(value), 1) if ok else None


def _health(row: dict[str, Any], offline_cameras: list[str], age: float | None) -> str:
    if row.get("last_seen") is None:
        return "never seen"
    if row.get("online") == 0:
        return "offline"
    if age is not None and age > STALE_AFTER_S:
        return "stale"
    if offline_cameras or (row.get("lost_events") or 0) > 0:
        return "degraded"
    return "ok"


def device_health(db: Database, stores: tuple[str, ...] = (), now: float | None = None) -> Table:
    """One row per registered device of the selected stores (all stores when none given)."""
    now = time.time() if now is None else now
    sql = "SELECT * FROM devices WHERE registered = 1"
    params: list[Any] = []
    if stores:
        sql += f" AND store IN ({', '.join('?' for _ in stores)})"
        params += list(stores)
    rows = []
    for r in db.query(sql + " ORDER BY store, device", params):
        status = _status(r.get("status"))
        cameras = [c for c in status.get("cameras", []) if isinstance(c, dict)]
        offline = [str(c.get("camera")) for c in cameras if not c.get("online")]
        readers = [c for c in status.get("readers", []) if isinstance(c, dict)]
        age = None if r.get("last_seen") is None else round(now - float(r["last_seen"]), 1)
        rows.append(
            {
                "store": r["store"],
                "device": r["device"],
                "health": _health(r, offline, age),
                "last_seen": None
                if r.get("last_seen") is None
                else datetime.fromtimestamp(float(r["last_seen"]), UTC).isoformat(
                    timespec="seconds"
                ),
                "seconds_since_seen": age,
                "online": None if r.get("online") is None else int(r["online"]),
                "fps": None if r.get("fps") is None else round(float(r["fps"]), 1),
                "cameras_online": len(cameras) - len(offline),
                "cameras_offline": " ".join(offline),
                "readers_offline": " ".join(
                    str(c.get("reader")) for c in readers if not c.get("online")
                ),
                "outbox_depth": r.get("outbox_depth"),
                "outbox_age_s": _seconds(status.get("outbox_age_s")),  # contract 1.3 devices
                "lost_events": r.get("lost_events"),
            }
        )
    return Table(
        chart="devices",
        columns=[
            "store",
            "device",
            "health",
            "last_seen",
            "seconds_since_seen",
            "online",
            "fps",
            "cameras_online",
            "cameras_offline",
            "readers_offline",
            "outbox_depth",
            "outbox_age_s",
            "lost_events",
        ],
        rows=rows,
        extra={"stale_after_s": STALE_AFTER_S},
    )
