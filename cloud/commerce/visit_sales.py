"""POS sales attached to the in-store visit that ended at the till.

A member's sale (member identified at the POS) goes to that member's visit in the same store
that is open at the sale, or ended at most ``just_ended_s`` before it (the person walked out
of view right after paying); the latest such visit wins (equal starts: the larger visit id).
Its entry-to-checkout time is the sale time minus the visit's start. Members who opted out of
tracking are never linked (their events are stored without a pseudonym, and consent is
checked here too).

An anonymous sale is matched by time only: to the one visit whose stay in a checkout zone
covers the sale (at the till, when the zone has a service area), within ``skew_s`` of clock
difference between POS and camera, and not already attached to another sale. None, or more
than one, and the sale is counted as unmatched.

Events arrive late (store-and-forward), so a sale is decided once: a member sale as soon as
its visit is known, any sale when it is older than ``settle_s``; until then it is pending and
`link_pending` (called by the checkout and by the readers of these links) tries again.

The three windows are a `LinkWindows`, configured by the cloud settings
(``STORELENS_SALE_LINK_JUST_ENDED_S``, ``..._SKEW_S``, ``..._SETTLE_S``; see
`LinkWindows.from_settings`). A sale is decided once, under the windows in force then;
changing them does not relink decided sales.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from storelens.cloud.commerce import members
from storelens.cloud.db import Database, migrations

MIGRATIONS = migrations(
    "visit_sales",
    [
        """
        CREATE TABLE sale_visits (
            sale_id TEXT PRIMARY KEY,
            store TEXT NOT NULL,
            ts {REAL} NOT NULL,
            method TEXT NOT NULL,
            visit_id TEXT,
            entered_at {REAL},
            entry_to_checkout_s {REAL},
            linked_at {REAL} NOT NULL
        );
        CREATE INDEX sale_visits_store_ts ON sale_visits (store, ts);
        CREATE INDEX sale_visits_visit ON sale_visits (visit_id)
        """,
        # `link_pending` looks up the decided sales of its last days by ts (a link keeps its
        # sale's ts): without it the anti-join read every link ever stored.
        "CREATE INDEX sale_visits_ts ON sale_visits (ts)",
    ],
)

JUST_ENDED_S = 15 * 60.0  # default: a member's visit that ended this long before still counts
MAX_VISIT_S = 6 * 3600.0  # no shopping visit is longer; bounds the event scan
SKEW_S = 30.0  # default: POS clock vs camera clock
SETTLE_S = 15 * 60.0  # default: after this, a sale's visit events have arrived or never will
PENDING_LOOKBACK_S = 3 * 86_400.0  # older unlinked sales (before this feature) stay as they are
MAX_SKEW_S = 600.0  # a POS and a camera further apart than this need their clocks fixed

Method = Literal["member", "time", "unmatched"]


@dataclass(frozen=True)
class LinkWindows:
    """The time windows of sale-to-visit linking (seconds; see the module docstring)."""

    just_ended_s: float = JUST_ENDED_S
    skew_s: float = SKEW_S
    settle_s: float = SETTLE_S

    def __post_init__(self) -> None:
        for name in ("just_ended_s", "skew_s", "settle_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(f"sale link window {name} must be a number >= 0, got {value!r}")
        if self.just_ended_s > MAX_VISIT_S:
            raise ValueError(
                f"sale link window just_ended_s must be at most {MAX_VISIT_S:.0f} s "
                f"(the longest visit), got {self.just_ended_s}"
            )
        if self.skew_s > MAX_SKEW_S:
            raise ValueError(
                f"sale link window skew_s must be at most {MAX_SKEW_S:.0f} s, got {self.skew_s}"
            )
        if self.settle_s < self.skew_s:
            raise ValueError(
                "sale link window settle_s must be at least skew_s: an anonymous sale is "
                "decided only once the till's events can have arrived"
            )

    @classmethod
    def from_settings(cls, settings: Any) -> LinkWindows:
        """The windows of a `storelens.cloud.settings.Settings`."""
        return cls(
            just_ended_s=settings.sale_link_just_ended_s,
            skew_s=settings.sale_link_skew_s,
            settle_s=settings.sale_link_settle_s,
        )


DEFAULT_WINDOWS = LinkWindows()


@dataclass(frozen=True)
class SaleVisit:
    sale_id: str
    method: Method
    visit_id: str | None = None
    entered_at: float | None = None

    def entry_to_checkout_s(self, sale_ts: float) -> float | None:
        return None if self.entered_at is None else round(max(0.0, sale_ts - self.entered_at), 3)


def _payload(row: dict[str, Any]) -> dict[str, Any]:
    try:
        value = json.loads(row["payload"])
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def staff_visits(db: Database, store: str, since: float, until: float) -> set[str]:
    """Visits flagged as staff (by any of their events) in a store and time range."""
    rows = db.query(
        "SELECT visit_id, payload FROM events WHERE type IN ('visit_ended', 'zone_visit')"
        " AND ts >= ? AND ts < ? AND store = ? AND visit_id IS NOT NULL",
        (since, until, store),
    )
    return {r["visit_id"] for r in rows if _payload(r).get("staff") is True}


def _visit_bounds(
    db: Database, store: str, visit_ids: Sequence[str], since: float, until: float
) -> dict[str, tuple[float | None, float | None]]:
    """visit -> (start, end or None while open), from visit_started / visit_ended events."""
    if not visit_ids:
        return {}
    marks = ", ".join("?" for _ in visit_ids)
    rows = db.query(
        "SELECT visit_id, type, ts, t_start FROM events"
        " WHERE type IN ('visit_started', 'visit_ended') AND ts >= ? AND ts < ? AND store = ?"
        f" AND visit_id IN ({marks})",
        (since, until, store, *visit_ids),
    )
    bounds: dict[str, tuple[float | None, float | None]] = {v: (None, None) for v in visit_ids}
    for r in rows:
        start, end = bounds[r["visit_id"]]
        if r["type"] == "visit_started":
            start = r["ts"] if start is None else min(start, r["ts"])
        else:
            start = r["t_start"] if start is None else min(start, r["t_start"])
            end = r["ts"] if end is None else max(end, r["ts"])
        bounds[r["visit_id"]] = (start, end)
    return bounds


def member_visit(
    db: Database, store: str, token: str, sale_ts: float, windows: LinkWindows = DEFAULT_WINDOWS
) -> SaleVisit | None:
    """The member's visit the sale belongs to (open, or just ended), if the events show one."""
    rows = db.query(
        "SELECT visit_id, type, ts, t_start FROM events WHERE member = ? AND store = ?"
        " AND visit_id IS NOT NULL AND ts >= ? AND ts < ?",
        (token, store, sale_ts - MAX_VISIT_S, sale_ts + max(windows.settle_s, windows.skew_s)),
    )
    # An ended visit's bounds are on its (member-linked) visit_ended; only open ones need
    # their visit_started, which carries no member (one indexed scan fewer per sale).
    bounds: dict[str, tuple[float | None, float | None]] = {}
    open_ids = []
    for r in rows:
        if r["type"] == "visit_ended":
            start, end = bounds.get(r["visit_id"], (None, None))
            bounds[r["visit_id"]] = (
                r["t_start"] if start is None else min(start, r["t_start"]),
                r["ts"] if end is None else max(end, r["ts"]),
            )
    open_ids = sorted({r["visit_id"] for r in rows} - set(bounds))
    bounds.update(_visit_bounds(db, store, open_ids, sale_ts - MAX_VISIT_S, sale_ts + MAX_VISIT_S))
    best: tuple[float, str] | None = None
    for visit_id, (start, end) in bounds.items():
        if start is None or start > sale_ts + windows.skew_s:
            continue
        if end is not None and end < sale_ts - windows.just_ended_s:
            continue
        # Equal starts: the larger visit id, not whichever the events' row order gave first.
        if best is None or (start, visit_id) > best:
            best = (start, visit_id)
    if best is None:
        return None
    return SaleVisit("", "member", best[1], best[0])


def _checkout_zones(db: Database, store: str) -> set[str]:
    rows = db.query(
        "SELECT zone FROM store_zones WHERE store = ? AND category = 'checkout'", (store,)
    )
    return {r["zone"] for r in rows}


def at_the_till(
    db: Database, store: str, sale_ts: float, windows: LinkWindows = DEFAULT_WINDOWS
) -> list[str]:
    """Visits whose checkout-zone stay covers ``sale_ts`` (at the till when known)."""
    skew = windows.skew_s
    zones = _checkout_zones(db, store)
    rows = db.query(
        "SELECT visit_id, zone, t_start, ts, payload FROM events WHERE type = 'zone_visit'"
        " AND ts >= ? AND ts < ? AND store = ? AND visit_id IS NOT NULL AND t_start <= ?",
        (sale_ts - skew, sale_ts + MAX_VISIT_S, store, sale_ts + skew),
    )  # stays that began by the sale and ended after it: the people in zones then
    found: list[str] = []
    for r in rows:
        payload = _payload(r)
        if payload.get("kind") != "checkout" and r["zone"] not in zones:
            continue
        if payload.get("staff") is True:
            continue
        served_from = r["t_start"] + float(payload.get("queue_s") or 0.0)
        if served_from - skew <= sale_ts <= r["ts"] + skew and r["visit_id"] not in found:
            found.append(r["visit_id"])
    return found


def decide(
    db: Database,
    sale: dict[str, Any],
    *,
    now: float,
    taken: set[str],
    windows: LinkWindows = DEFAULT_WINDOWS,
) -> SaleVisit | None:
    """The link of one sale, or None while it is still pending."""
    settled = now >= sale["ts"] + windows.settle_s
    member_id = sale.get("member_id")
    if member_id:
        member = members.get_member(db, member_id)
        if member is None or not member.get("tracking", True):
            return SaleVisit(sale["id"], "unmatched")  # opted out: never linked
        found = member_visit(db, sale["store"], member["token"], sale["ts"], windows)
        if found is not None:
            return SaleVisit(sale["id"], "member", found.visit_id, found.entered_at)
        return SaleVisit(sale["id"], "unmatched") if settled else None
    if not settled:
        return None
    till = at_the_till(db, sale["store"], sale["ts"], windows)
    candidates = [v for v in till if v not in taken]
    if len(candidates) != 1:
        return SaleVisit(sale["id"], "unmatched")
    bounds = _visit_bounds(
        db, sale["store"], candidates, sale["ts"] - MAX_VISIT_S, sale["ts"] + MAX_VISIT_S
    )
    return SaleVisit(sale["id"], "time", candidates[0], bounds[candidates[0]][0])


def _taken(db: Database, store: str, around: float) -> set[str]:
    rows = db.query(
        "SELECT visit_id FROM sale_visits WHERE store = ? AND ts >= ? AND ts < ?"
        " AND visit_id IS NOT NULL",
        (store, around - MAX_VISIT_S, around + MAX_VISIT_S),
    )
    return {r["visit_id"] for r in rows}


def _save(db: Database, sale: dict[str, Any], link: SaleVisit, now: float) -> None:
    db.execute(
        "INSERT INTO sale_visits (sale_id, store, ts, method, visit_id, entered_at,"
        " entry_to_checkout_s, linked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (sale_id) DO NOTHING",
        (
            sale["id"], sale["store"], sale["ts"], link.method, link.visit_id, link.entered_at,
            link.entry_to_checkout_s(sale["ts"]), now,
        ),
    )  # fmt: skip


def link_sales(
    db: Database,
    sales: Iterable[dict[str, Any]],
    now: float | None = None,
    windows: LinkWindows = DEFAULT_WINDOWS,
) -> int:
    """Decide the sales that can be decided (oldest first, so earlier sales take visits
    first); returns how many were linked or marked unmatched."""
    now = time.time() if now is None else now
    decided = 0
    for sale in sorted(sales, key=lambda s: (s["ts"], s["id"])):
        with db.transaction():
            taken = _taken(db, sale["store"], sale["ts"])
            link = decide(db, sale, now=now, taken=taken, windows=windows)
            if link is not None:
                _save(db, sale, link, now)
                decided += 1
    return decided


def link_pending(
    db: Database,
    stores: Sequence[str] = (),
    *,
    since: float | None = None,
    now: float | None = None,
    windows: LinkWindows = DEFAULT_WINDOWS,
) -> int:
    """Try every sale not decided yet (of ``stores``, all when empty) since ``since``
    (default: the last few days)."""
    now = time.time() if now is None else now
    since = now - PENDING_LOOKBACK_S if since is None else since
    rows = db.query(*pending_query(since, stores))
    return link_sales(db, rows, now, windows)


def pending_query(since: float, stores: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """The sales since ``since`` with no link yet. Both sides are bounded by ts (indexes
    ``pos_sales_ts``, ``sale_visits_ts``; a link stores its sale's ts), so a chart calling
    this reads the last few days, not every sale and link of the history."""
    where = ["s.ts >= ?", "v.sale_id IS NULL"]
    params: list[Any] = [since, since]
    if stores:
        where.append(f"s.store IN ({', '.join('?' for _ in stores)})")
        params += list(stores)
    return (
        "SELECT s.id, s.store, s.ts, s.member_id FROM pos_sales s"
        " LEFT JOIN sale_visits v ON v.sale_id = s.id AND v.ts >= ?"
        f" WHERE {' AND '.join(where)} ORDER BY s.ts",
        params,
    )


def link_sale(
    db: Database, sale_id: str, now: float | None = None, windows: LinkWindows = DEFAULT_WINDOWS
) -> SaleVisit | None:
    """Try one sale right after the checkout (a member's visit is usually open then)."""
    row = db.query_one("SELECT id, store, ts, member_id FROM pos_sales WHERE id = ?", (sale_id,))
    if row is None:
        return None
    link_sales(db, [row], now, windows)
    return sale_link(db, sale_id)


def sale_link(db: Database, sale_id: str) -> SaleVisit | None:
    row = db.query_one("SELECT * FROM sale_visits WHERE sale_id = ?", (sale_id,))
    if row is None:
        return None
    return SaleVisit(row["sale_id"], row["method"], row["visit_id"], row["entered_at"])


def forget_member(db: Database, member_id: str, token: str) -> None:
    """Forget-me: the member's sales no longer point at their visits (and stay decided, so
    they are never matched again once the sale is anonymous)."""
    db.execute(
        "UPDATE sale_visits SET method = 'unmatched', visit_id = NULL, entered_at = NULL,"
        " entry_to_checkout_s = NULL"
        " WHERE sale_id IN (SELECT id FROM pos_sales WHERE member_id = ?)",
        (member_id,),
    )
    db.execute(
        "INSERT INTO sale_visits (sale_id, store, ts, method, linked_at)"
        " SELECT s.id, s.store, s.ts, 'unmatched', ? FROM pos_sales s"
        " WHERE s.member_id = ? AND NOT EXISTS"
        " (SELECT 1 FROM sale_visits v WHERE v.sale_id = s.id)",
        (time.time(), member_id),
    )


# Collected by cloud/db/schema.py into each process's Services (cloud/hooks.py).
HOOKS = [("member_forgotten", forget_member)]
