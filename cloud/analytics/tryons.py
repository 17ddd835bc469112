"""Try-on sessions per store and day: how many visits used a fitting room, for how long, and
how many members who tried something on bought in the same visit.

A try-on session is a stay in a `fitting_room` zone (see the contract's ``ZoneVisit.kind``).
The camera sees people go in and out, never garments: a session is "used the fitting room".
Staff visits are left out of every count. Conversion is for members only: an anonymous
visitor's purchase is matched to a visit by time at the till, which is too uncertain to judge
a try-on by (see `storelens.cloud.commerce.visit_sales`).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from storelens.cloud.analytics.scope import DAY_S, Scope, local_label
from storelens.cloud.analytics.table import Table, ratio
from storelens.cloud.analytics.zone_kinds import is_kind, payload, zones_of_kind
from storelens.cloud.commerce import visit_sales
from storelens.cloud.db import Database

COLUMNS = [
    "day", "store", "visits", "tryon_visits", "tryon_rate", "sessions", "median_tryon_s",
    "mean_tryon_s", "member_tryon_visits", "member_tryon_purchases", "member_tryon_conversion",
]  # fmt: skip


def _bucketed(db: Database, scope: Scope, event_type: str) -> list[dict[str, Any]]:
    bucket, bucket_params = scope.bucket(DAY_S)
    where, params = scope.where()
    return db.query(
        f"SELECT store, {bucket} AS b, visit_id, zone, member, dwell_s, payload FROM events"
        f" WHERE type = ? AND {where}",
        [*bucket_params, event_type, *params],
    )


def tryons(db: Database, scope: Scope) -> Table:
    visit_sales.link_pending(db, scope.stores)
    named = zones_of_kind(db, "fitting_room")
    staff: set[str] = set()
    visits: dict[tuple[str, int], set[str]] = defaultdict(set)
    for r in _bucketed(db, scope, "visit_ended"):
        if payload(r).get("staff") is True:
            staff.add(r["visit_id"])
        else:
            visits[(r["store"], int(r["b"]))].add(r["visit_id"])
    sessions: dict[tuple[str, int], list[float]] = defaultdict(list)
    tried: dict[tuple[str, int], set[str]] = defaultdict(set)
    member_tried: dict[tuple[str, int], set[str]] = defaultdict(set)
    for r in _bucketed(db, scope, "zone_visit"):
        body = payload(r)
        if body.get("staff") is True or r["visit_id"] in staff:
            continue
        if not is_kind(r, body, "fitting_room", named):
            continue
        key = (r["store"], int(r["b"]))
        sessions[key].append(float(r["dwell_s"]))
        tried[key].add(r["visit_id"])
        if r["member"]:
            member_tried[key].add(r["visit_id"])
    bought = _member_bought(db, {v for vs in member_tried.values() for v in vs})
    rows = []
    for key in sorted(set(visits) | set(sessions), key=lambda k: (k[1], k[0])):
        store, b = key
        durations = sessions.get(key, [])
        # A session ending today may belong to a visit that ends tomorrow: count it in both.
        n_visits = len(visits.get(key, set()) | tried.get(key, set()))
        members_here = member_tried.get(key, set())
        purchases = len(members_here & bought)
        rows.append({
            "day": local_label(b, daily=True), "store": store, "visits": n_visits,
            "tryon_visits": len(tried.get(key, ())),
            "tryon_rate": ratio(len(tried.get(key, ())), n_visits),
            "sessions": len(durations),
            "median_tryon_s": round(statistics.median(durations), 1) if durations else None,
            "mean_tryon_s": round(statistics.fmean(durations), 1) if durations else None,
            "member_tryon_visits": len(members_here), "member_tryon_purchases": purchases,
            "member_tryon_conversion": ratio(purchases, len(members_here)),
        })  # fmt: skip
    all_sessions = [d for ds in sessions.values() for d in ds]
    totals = {
        "visits": sum(r["visits"] for r in rows),
        "tryon_visits": sum(r["tryon_visits"] for r in rows),
        "sessions": len(all_sessions),
        "median_tryon_s": round(statistics.median(all_sessions), 1) if all_sessions else None,
        "member_tryon_visits": sum(r["member_tryon_visits"] for r in rows),
        "member_tryon_purchases": sum(r["member_tryon_purchases"] for r in rows),
    }
    totals["tryon_rate"] = ratio(totals["tryon_visits"], totals["visits"])
    totals["member_tryon_conversion"] = ratio(
        totals["member_tryon_purchases"], totals["member_tryon_visits"]
    )
    return Table("try-ons", COLUMNS, rows, {"totals": totals})


def _member_bought(db: Database, visit_ids: set[str]) -> set[str]:
    if not visit_ids:
        return set()
    ids = sorted(visit_ids)
    found: set[str] = set()
    for i in range(0, len(ids), 500):  # bounded IN lists
        chunk = ids[i : i + 500]
        rows = db.query(
            "SELECT visit_id FROM sale_visits WHERE method = 'member'"
            f" AND visit_id IN ({', '.join('?' for _ in chunk)})",
            chunk,
        )
        found |= {r["visit_id"] for r in rows}
    return found
