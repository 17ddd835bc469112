"""Time to checkout: the queue at the tills over the day, waits and service times, and how
long shoppers who bought were in the store before paying.

Queue length comes from the devices' occupancy snapshots (``queues``: people in a checkout
zone who have not reached the till yet; contract 1.2), summed over a store's checkout zones at
each snapshot and averaged per local hour of the day. Waits and service times come from the
stays in checkout zones (``queue_s``, ``service_s``). Entry-to-checkout is the sale time minus
the start of the visit the sale was attached to (`storelens.cloud.commerce.visit_sales`).
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

QUEUE_COLUMNS = [
    "hour_of_day", "store", "snapshots", "avg_queue", "max_queue", "checkouts",
    "median_wait_s", "p90_wait_s", "median_service_s",
]  # fmt: skip
ENTRY_COLUMNS = [
    "day", "store", "visits", "sales", "linked_member", "linked_time", "unmatched", "pending",
    "linked_share", "median_entry_to_checkout_s", "p90_entry_to_checkout_s",
]  # fmt: skip


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1], 1)


def checkout_queue(db: Database, scope: Scope) -> Table:
    hour, hour_params = scope.local_hour()
    where, params = scope.where()
    # One store's cameras snapshot at the same aligned instants: sum their queues per instant.
    per_instant: dict[tuple[str, int, float], int] = defaultdict(int)
    for r in db.query(
        f"SELECT store, {hour} AS h, ts, payload FROM events WHERE type = 'occupancy' AND {where}",
        hour_params + params,
    ):
        queues = payload(r).get("queues")
        if isinstance(queues, dict) and queues:
            key = (r["store"], int(r["h"]), round(float(r["ts"])))
            per_instant[key] += sum(int(v) for v in queues.values() if isinstance(v, int))
    lengths: dict[tuple[str, int], list[int]] = defaultdict(list)
    for (store, h, _), n in per_instant.items():
        lengths[(store, h)].append(n)
    named = zones_of_kind(db, "checkout")
    waits: dict[tuple[str, int], list[float]] = defaultdict(list)
    services: dict[tuple[str, int], list[float]] = defaultdict(list)
    stays: dict[tuple[str, int], int] = defaultdict(int)
    for r in db.query(
        f"SELECT store, {hour} AS h, zone, dwell_s, payload FROM events"
        f" WHERE type = 'zone_visit' AND {where}",
        hour_params + params,
    ):
        body = payload(r)
        if body.get("staff") is True or not is_kind(r, body, "checkout", named):
            continue
        key = (r["store"], int(r["h"]))
        stays[key] += 1
        if body.get("queue_s") is not None:
            waits[key].append(float(body["queue_s"]))
        if body.get("service_s"):  # 0: left the queue without being served
            services[key].append(float(body["service_s"]))
    rows = []
    for store, h in sorted(set(lengths) | set(stays), key=lambda k: (k[1], k[0])):
        q = lengths.get((store, h), [])
        w = waits.get((store, h), [])
        s = services.get((store, h), [])
        rows.append({
            "hour_of_day": h, "store": store, "snapshots": len(q),
            "avg_queue": round(statistics.fmean(q), 2) if q else None,
            "max_queue": max(q) if q else None, "checkouts": stays.get((store, h), 0),
            "median_wait_s": _quantile(w, 0.5), "p90_wait_s": _quantile(w, 0.9),
            "median_service_s": _quantile(s, 0.5),
        })  # fmt: skip
    all_waits = [v for vs in waits.values() for v in vs]
    all_q = [v for vs in lengths.values() for v in vs]
    extra = {
        "totals": {
            "checkouts": sum(stays.values()),
            "median_wait_s": _quantile(all_waits, 0.5),
            "avg_queue": round(statistics.fmean(all_q), 2) if all_q else None,
            "max_queue": max(all_q) if all_q else None,
        }
    }
    return Table("checkout-queue", QUEUE_COLUMNS, rows, extra)


def entry_to_checkout(db: Database, scope: Scope) -> Table:
    visit_sales.link_pending(db, scope.stores)
    bucket, bucket_params = scope.bucket(DAY_S, "s")
    where, params = scope.where("s")
    rows_db = db.query(
        f"SELECT s.store, {bucket} AS b, v.method, v.entry_to_checkout_s FROM pos_sales s"
        f" LEFT JOIN sale_visits v ON v.sale_id = s.id WHERE {where}",
        bucket_params + params,
    )
    counts: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    # Days with visits but no sale are rows too (0 sales), as in the conversion chart.
    vb, vb_params = scope.bucket(DAY_S)
    vwhere, vparams = scope.where()
    visits: dict[tuple[str, int], int] = {}
    for r in db.query(
        f"SELECT store, {vb} AS b, COUNT(*) AS n FROM events WHERE type = 'visit_ended'"
        f" AND {vwhere} GROUP BY store, b",
        vb_params + vparams,
    ):
        visits[(r["store"], int(r["b"]))] = int(r["n"])
        counts[(r["store"], int(r["b"]))]  # noqa: B018  (creates the day's row)
    times: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in rows_db:
        key = (r["store"], int(r["b"]))
        counts[key][r["method"] or "pending"] += 1
        if r["entry_to_checkout_s"] is not None:
            times[key].append(float(r["entry_to_checkout_s"]))
    rows = []
    for store, b in sorted(counts, key=lambda k: (k[1], k[0])):
        c = counts[(store, b)]
        t = times.get((store, b), [])
        n = sum(c.values())
        rows.append({
            "day": local_label(b, daily=True), "store": store, "visits": visits.get((store, b), 0),
            "sales": n,
            "linked_member": c["member"], "linked_time": c["time"], "unmatched": c["unmatched"],
            "pending": c["pending"], "linked_share": ratio(c["member"] + c["time"], n),
            "median_entry_to_checkout_s": _quantile(t, 0.5),
            "p90_entry_to_checkout_s": _quantile(t, 0.9),
        })  # fmt: skip
    all_t = [v for vs in times.values() for v in vs]
    totals: dict[str, Any] = {
        k: sum(r[k] for r in rows)
        for k in ("sales", "linked_member", "linked_time", "unmatched", "pending")
    }
    totals["median_entry_to_checkout_s"] = _quantile(all_t, 0.5)
    return Table("entry-to-checkout", ENTRY_COLUMNS, rows, {"totals": totals})
