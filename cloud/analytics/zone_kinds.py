"""Which zones are fitting rooms or checkouts, and which visits are staff, for the readers of
try-on and checkout analytics.

Devices since contract 1.2 say so on each zone visit (``kind``) and flag staff (``staff``);
those fields live in the stored payload only, so these helpers read it. A store's zone
categories (`store_zones`) name the same kinds for zones of older devices.
"""

from __future__ import annotations

import json
from typing import Any

from storelens.cloud.db import Database


def payload(row: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(row["payload"])
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def zones_of_kind(db: Database, kind: str) -> set[tuple[str, str]]:
    """(store, zone) pairs whose category in the store's settings is ``kind``."""
    rows = db.query("SELECT store, zone FROM store_zones WHERE category = ?", (kind,))
    return {(r["store"], r["zone"]) for r in rows}


def is_kind(row: dict[str, Any], body: dict[str, Any], kind: str, named: set) -> bool:
    return body.get("kind") == kind or (row["store"], row["zone"]) in named
