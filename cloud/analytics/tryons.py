"""Try-on sessions per store and day: how many visits used a fitting room, for how long, and
how many members who tried something on bought in the same visit.

A try-on session is a stay in a `fitting_room` zone (see the contract's ``ZoneVisit.kind``).
The camera sees people go in and out, never garments: a session is "used the fitting room".
Staff visits (``staff_visits``, as in every shopper chart) are left out of every count. Read
from the rollups (``tryons`` entries per store-hour); zones named fitting rooms in the store's
settings are taken at settle time, so naming a new one needs `storelens cloud rollups rebuild`.
Conversion is for members only: an anonymous visitor's purchase is matched to a visit by time
at the till, which is too uncertain to judge a try-on by (see
`storelens.cloud.commerce.visit_sales`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date
from typing import Any

import numpy as np

from storelens.cloud.analytics import rollups
from storelens.cloud.analytics.rollups import chain
from storelens.cloud.analytics.scope import DAY_S, Scope, local_label
from storelens.cloud.analytics.staff import shoppers_only
from storelens.cloud.analytics.table import Table, ratio
from storelens.cloud.analytics.zone_kinds import is_kind, payload, zones_of_kind
from storelens.cloud.commerce import visit_sales
from storelens.cloud.db import Database

COLUMNS = [
    "day", "store", "visits", "tryon_visits", "tryon_rate", "sessions", "median_tryon_s",
    "mean_tryon_s", "member_tryon_visits", "member_tryon_purchases", "member_tryon_conversion",
]  # fmt: skip


Key = tuple[str, int]  # (store, local day)
# A fitting-room session: visit ID, member visit?, seconds, its visit ended that local day?
Session = tuple[str, bool, float, bool]


def _bucketed(db: Database, scope: Scope, event_type: str) -> list[dict[str, Any]]:
    bucket, bucket_params = scope.bucket(DAY_S)
    where, params = scope.where()
    return db.query(
        f"SELECT store, {bucket} AS b, visit_id, zone, member, dwell_s, payload FROM events"
        f" WHERE type = ? AND {where} AND {shoppers_only()}",
        [*bucket_params, event_type, *params],
    )


def _raw(db: Database, scope: Scope, named: set) -> tuple[dict[Key, int], dict[Key, list]]:
    """Shoppers' finished visits and fitting-room sessions per store and day, from events."""
    visits: dict[Key, set[str]] = defaultdict(set)
    for r in _bucketed(db, scope, "visit_ended"):
        visits[(r["store"], int(r["b"]))].add(r["visit_id"])
    sessions: dict[Key, list[Session]] = defaultdict(list)
    for r in _bucketed(db, scope, "zone_visit"):
        body = payload(r)
        if body.get("staff") is True or not is_kind(r, body, "fitting_room", named):
            continue
        key = (r["store"], int(r["b"]))
        ended = r["visit_id"] in visits.get(key, ())
        sessions[key].append((r["visit_id"], bool(r["member"]), float(r["dwell_s"]), ended))
    return {k: len(v) for k, v in visits.items()}, sessions


def _rolled(
    db: Database, scope: Scope, named: set
) -> tuple[dict[Key, int], dict[Key, list], dict[Key, dict[str, Any]]]:
    """The same from the rollups (`storelens.cloud.analytics.rollups`), with the store-days
    the rollups have summed (`rollups.chain.tryon_day`) apart."""
    reader = rollups.reader(db)
    sessions: dict[Key, list[Session]] = defaultdict(list)
    offsets = {s: int(o or 0) for s, o in scope.offsets.items()}
    summed, entries = reader.tryons(scope, named)
    for store, b, (visit, zone, kind, member, seconds, end) in entries:
        if kind != "fitting_room" and (store, zone) not in named:
            continue
        # Ended with the visits of its day in scope: the same local day (so inside the
        # period, as the session is) and, with an hour filter, a selected hour.
        ended = False
        if end is not None:
            local = end + offsets.get(store, 0)
            ended = int(local // DAY_S) * DAY_S == b and (
                scope.all_hours or scope.hour_selected(int(local // 3600) % 24)
            )
        sessions[(store, b)].append((visit, bool(member), float(seconds), ended))
    return reader.ended_by_day(scope), sessions, {(s, b): v for s, b, v in summed}


# What a row needs of a store-day: the sessions' seconds (sorted), the number of try-on
# visits, the member visits that tried on (`chain.visit_hashes`, distinct), and the visits
# with a session that did not end that day.
Day = tuple[np.ndarray, int, np.ndarray, int]
NO_SECONDS = np.empty(0, dtype=np.float64)
NO_VISITS = np.empty(0, dtype=np.uint64)


def _days(found: dict[Key, list[Session]], summed: dict[Key, dict[str, Any]]) -> dict[Key, Day]:
    out: dict[Key, Day] = {}
    for key, v in found.items():
        out[key] = (np.sort(np.array([s[2] for s in v], dtype=np.float64)), len({s[0] for s in v}),
                    chain.visit_hashes({s[0] for s in v if s[1]}),
                    len({s[0] for s in v if not s[3]}))  # fmt: skip
    for key, value in summed.items():
        # Stored sorted (`chain.tryon_day`): no sort per day; read in place (not copied).
        seconds = np.frombuffer(value["d"], dtype="<f8")
        members = np.frombuffer(value["m"], dtype="<u8")
        out[key] = (seconds, int(value["v"]), members, int(value["o"]))
    return out


def _median(seconds: np.ndarray) -> float:
    """``statistics.median`` of sorted seconds (the same arithmetic), without its sort."""
    n = len(seconds)
    if n % 2:
        return float(seconds[n // 2])
    return (float(seconds[n // 2 - 1]) + float(seconds[n // 2])) / 2


def tryons(db: Database, scope: Scope) -> Table:
    visit_sales.link_pending(
        db, scope.stores, windows=scope.sale_link or visit_sales.DEFAULT_WINDOWS
    )
    named = zones_of_kind(db, "fitting_room")
    if scope.raw:
        ended, found = _raw(db, scope, named)
        summed: dict[Key, dict[str, Any]] = {}
    else:
        ended, found, summed = _rolled(db, scope, named)
    days = _days(found, summed)
    # A session ending today may belong to a visit that ends tomorrow: counted in both
    # (the day's open visits are added to its finished ones).
    tried: dict[str, list[np.ndarray]] = defaultdict(list)
    for (store, _), day in days.items():
        if len(day[2]):
            tried[store].append(day[2])
    ids = None if summed else {s[0] for v in found.values() for s in v if s[1]}
    bought = _member_bought(db, scope, tried, ids)
    labels: dict[int, str] = {}
    empty: Day = (NO_SECONDS, 0, NO_VISITS, 0)
    keys = sorted(set(ended) | set(days), key=lambda k: (k[1], k[0]))
    # Every row's member visits that bought, in one pass over all of them.
    members = [days.get(key, empty)[2] for key in keys]
    sizes = np.fromiter((len(m) for m in members), dtype=np.int64, count=len(members))
    hits = np.isin(np.concatenate([NO_VISITS, *members]), bought)
    running = np.concatenate([[0], np.cumsum(hits, dtype=np.int64)])
    ends = np.cumsum(sizes)
    per_row = running[ends] - running[ends - sizes]
    rows = []
    for key, purchases in zip(keys, per_row.tolist(), strict=True):
        store, b = key
        durations, tried_n, members_here, still_open = days.get(key, empty)
        n_visits = ended.get(key, 0) + still_open
        label = labels.get(b)
        if label is None:
            label = labels[b] = local_label(b, daily=True)
        n = len(durations)
        rows.append({
            "day": label, "store": store, "visits": n_visits,
            "tryon_visits": tried_n,
            "tryon_rate": ratio(tried_n, n_visits),
            "sessions": n,
            "median_tryon_s": round(_median(durations), 1) if n else None,
            "mean_tryon_s": round(math.fsum(durations.tolist()) / n, 1) if n else None,
            "member_tryon_visits": len(members_here), "member_tryon_purchases": purchases,
            "member_tryon_conversion": ratio(purchases, len(members_here)),
        })  # fmt: skip
    all_sessions = np.sort(np.concatenate([NO_SECONDS, *(day[0] for day in days.values())]))
    totals = {
        "visits": sum(r["visits"] for r in rows),
        "tryon_visits": sum(r["tryon_visits"] for r in rows),
        "sessions": len(all_sessions),
        "median_tryon_s": round(_median(all_sessions), 1) if len(all_sessions) else None,
        "member_tryon_visits": sum(r["member_tryon_visits"] for r in rows),
        "member_tryon_purchases": sum(r["member_tryon_purchases"] for r in rows),
    }
    totals["tryon_rate"] = ratio(totals["tryon_visits"], totals["visits"])
    totals["member_tryon_conversion"] = ratio(
        totals["member_tryon_purchases"], totals["member_tryon_visits"]
    )
    return Table("try-ons", COLUMNS, rows, {"totals": totals})


# Up to this many visits, their sales are looked up by visit ID; beyond, the member sales of
# their stores over the period are read by (store, time) and intersected (fewer lookups).
BY_ID_MAX = 2000
# A member sale goes to a visit of its store open at the sale or ended at most
# `visit_sales.MAX_VISIT_S` before it, and visits last at most a day: a sale of a session's
# visit is within this of the scope's days, whatever the store's UTC offset (<= 14 h).
SALE_MARGIN_S = 2 * DAY_S


def _member_bought(
    db: Database, scope: Scope, tried: dict[str, list[np.ndarray]], ids: set[str] | None
) -> np.ndarray:
    """The `chain.visit_hashes` of the visits linked to a member sale, among (or beyond) the
    member visits ``tried`` (store -> their hashes). ``ids``: the tried visits' IDs, when
    the chart has them all (no store-day sums, which hold hashes only)."""
    if not tried:
        return NO_VISITS
    found: set[str] = set()
    if ids is None or len(ids) > BY_ID_MAX:
        epoch = date(1970, 1, 1)
        lo = (scope.start - epoch).days * DAY_S - SALE_MARGIN_S
        hi = ((scope.end - epoch).days + 1) * DAY_S + SALE_MARGIN_S
        stores = sorted(tried)
        for i in range(0, len(stores), 500):  # bounded IN lists; (store, ts) is indexed
            chunk = stores[i : i + 500]
            rows = db.query_tuples(
                "SELECT visit_id FROM sale_visits WHERE method = 'member'"
                f" AND store IN ({', '.join('?' for _ in chunk)}) AND ts >= ? AND ts < ?",
                [*chunk, lo, hi],
            )
            found |= {r[0] for r in rows}
        return chain.visit_hashes(found)
    ordered = sorted(ids)
    for i in range(0, len(ordered), 500):  # bounded IN lists
        chunk = ordered[i : i + 500]
        rows = db.query_tuples(
            "SELECT visit_id FROM sale_visits WHERE method = 'member'"
            f" AND visit_id IN ({', '.join('?' for _ in chunk)})",
            chunk,
        )
        found |= {r[0] for r in rows}
    return chain.visit_hashes(found)
