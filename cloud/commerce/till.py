"""Which members are at which POS till.

A POS device acts for the member in front of it, not for the chain: it may read or change a
member only after the member identified themselves at that till (a card swipe or the member
code they show, through the POS lookup) within the last ``TILL_WINDOW_S``. A row per (store,
device, member); forgetting a member drops its rows (foreign key).
"""

from __future__ import annotations

import time

from storelens.cloud.db import Database, migrations

MIGRATIONS = migrations(
    "till",
    [
        """
        CREATE TABLE pos_till_members (
            store TEXT NOT NULL,
            device TEXT NOT NULL,
            member_id TEXT NOT NULL REFERENCES members (id) ON DELETE CASCADE,
            seen_at {REAL} NOT NULL,
            PRIMARY KEY (store, device, member_id)
        )
        """
    ],
)

# Long enough for one visit to the till (lookup, offers, checkout, a coupon pushed after the
# sale); short enough that a device cannot keep a list of members to come back to.
TILL_WINDOW_S = 2 * 3600.0


def arrived(
    db: Database, store: str, device: str, member_id: str, now: float | None = None
) -> None:
    """The member identified themselves at this till."""
    now = time.time() if now is None else now
    db.execute(
        "INSERT INTO pos_till_members (store, device, member_id, seen_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (store, device, member_id) DO UPDATE SET seen_at = excluded.seen_at",
        (store, device, member_id, now),
    )


def is_at_till(
    db: Database, store: str, device: str, member_id: str, now: float | None = None
) -> bool:
    now = time.time() if now is None else now
    seen = db.scalar(
        "SELECT seen_at FROM pos_till_members WHERE store = ? AND device = ? AND member_id = ?",
        (store, device, member_id),
    )
    return seen is not None and now - float(seen) <= TILL_WINDOW_S


def prune(db: Database, now: float | None = None) -> int:
    """Drop rows past the window (called on each lookup; cheap with few tills)."""
    now = time.time() if now is None else now
    return db.execute("DELETE FROM pos_till_members WHERE seen_at < ?", (now - TILL_WINDOW_S,))
