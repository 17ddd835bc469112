"""Time to checkout: the queue at the tills over the day, waits and service times, and how
long shoppers who bought were in the store before paying.

Queue length comes from the devices' occupancy snapshots (``queues``: people in a checkout
zone who have not reached the till yet; contract 1.2), summed over a store's checkout zones at
each snapshot and averaged per local hour of the day. Waits and service times come from the
stays in checkout zones (``queue_s``, ``service_s``). Entry-to-checkout is the sale time minus
the start of the visit the sale was attached to (`storelens.cloud.commerce.visit_sales`). Staff
visits (``staff_visits``) are left out as in every shopper chart. Queues, stays and visits are
read from the rollups (``checkout`` maps, finished visits); sales from ``pos_sales``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from storelens.cloud.analytics import rollups
from storelens.cloud.analytics.rollups.aggregate import FLOW_SEP
from storelens.cloud.analytics.scope import DAY_S, Scope, local_label
from storelens.cloud.analytics.staff import shoppers_only
from storelens.cloud.analytics.table import Table, ratio
from storelens.cloud.analytics.zone_kinds import payload, zones_of_kind
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
    """The ``q`` percentile as ``statistics.quantiles(values, n=100, method="inclusive")``
    gives it, with the same arithmetic, computing only that one (the chart asks for three
    per store-hour; the stdlib computes all 99 each time)."""
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    data = sorted(values)
    j, delta = divmod(int(q * 100) * (len(data) - 1), 100)
    return round((data[j] * (100 - delta) + data[j + 1] * delta) / 100, 1)


Cell = tuple[str, int]  # (store, local hour of the day)


def _raw_queue(db: Database, scope: Scope) -> dict[Cell, dict[str, Any]]:
    """Per store and local hour of the day, from the events: ``q`` [snapshots, sum, max] and
    ``z`` zone + FLOW_SEP + device-given kind -> [stays, waits, service times] (the rollups'
    ``checkout`` shape)."""
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
    out: dict[Cell, dict[str, Any]] = {}
    for (store, h, _), n in per_instant.items():
        q = out.setdefault((store, h), {"q": [0, 0, None], "z": {}})["q"]
        q[0], q[1], q[2] = q[0] + 1, q[1] + n, n if q[2] is None else max(q[2], n)
    for r in db.query(
        f"SELECT store, {hour} AS h, zone, dwell_s, payload FROM events"
        f" WHERE type = 'zone_visit' AND zone IS NOT NULL AND dwell_s IS NOT NULL AND {where}"
        f" AND {shoppers_only()}",
        hour_params + params,
    ):
        body = payload(r)
        if body.get("staff") is True:
            continue
        kind = body.get("kind") if isinstance(body.get("kind"), str) else ""
        cell = out.setdefault((r["store"], int(r["h"])), {"q": [0, 0, None], "z": {}})
        z = cell["z"].setdefault(r["zone"] + FLOW_SEP + kind, [0, [], []])
        z[0] += 1
        if body.get("queue_s") is not None:
            z[1].append(float(body["queue_s"]))
        if body.get("service_s"):  # 0: left the queue without being served
            z[2].append(float(body["service_s"]))
    return out


def checkout_queue(db: Database, scope: Scope) -> Table:
    cells = _raw_queue(db, scope) if scope.raw else rollups.reader(db).checkout(scope)
    named = zones_of_kind(db, "checkout")
    lengths: dict[Cell, list[Any]] = {}
    waits: dict[Cell, list[float]] = defaultdict(list)
    services: dict[Cell, list[float]] = defaultdict(list)
    stays: dict[Cell, int] = defaultdict(int)
    for (store, h), cell in cells.items():
        if cell["q"][0]:
            lengths[(store, h)] = cell["q"]
        for key, (n, w, s) in cell["z"].items():
            zone, _, kind = key.partition(FLOW_SEP)
            if kind != "checkout" and (store, zone) not in named:
                continue
            stays[(store, h)] += n
            waits[(store, h)] += w
            services[(store, h)] += s
    rows = []
    for store, h in sorted(set(lengths) | set(stays), key=lambda k: (k[1], k[0])):
        n, total, top = lengths.get((store, h), [0, 0, None])
        w = waits.get((store, h), [])
        s = services.get((store, h), [])
        rows.append({
            "hour_of_day": h, "store": store, "snapshots": n,
            "avg_queue": round(total / n, 2) if n else None,
            "max_queue": top, "checkouts": stays.get((store, h), 0),
            "median_wait_s": _quantile(w, 0.5), "p90_wait_s": _quantile(w, 0.9),
            "median_service_s": _quantile(s, 0.5),
        })  # fmt: skip
    all_waits = [v for vs in waits.values() for v in vs]
    snapshots = sum(q[0] for q in lengths.values())
    extra = {
        "totals": {
            "checkouts": sum(stays.values()),
            "median_wait_s": _quantile(all_waits, 0.5),
            "avg_queue": round(sum(q[1] for q in lengths.values()) / snapshots, 2)
            if snapshots
            else None,
            "max_queue": max((q[2] for q in lengths.values()), default=None),
        }
    }
    return Table("checkout-queue", QUEUE_COLUMNS, rows, extra)


def _shopper_visits(db: Database, scope: Scope) -> list[dict[str, Any]]:
    """Shoppers' finished visits per store and local day (staff are not shoppers)."""
    if not scope.raw:
        ended = rollups.reader(db).ended_by_day(scope)
        return [{"store": s, "b": b, "visits": n} for (s, b), n in ended.items()]
    vb, vb_params = scope.bucket(DAY_S)
    vwhere, vparams = scope.where()
    return db.query(
        f"SELECT store, {vb} AS b, COUNT(*) AS visits FROM events WHERE type = 'visit_ended'"
        f" AND {vwhere} AND {shoppers_only()} GROUP BY store, b",
        vb_params + vparams,
    )


def entry_to_checkout(db: Database, scope: Scope) -> Table:
    visit_sales.link_pending(
        db, scope.stores, windows=scope.sale_link or visit_sales.DEFAULT_WINDOWS
    )
    bucket, bucket_params = scope.bucket(DAY_S, "s")
    where, params = scope.where("s")
    rows_db = db.query(
        f"SELECT s.store, {bucket} AS b, v.method, v.entry_to_checkout_s FROM pos_sales s"
        f" LEFT JOIN sale_visits v ON v.sale_id = s.id WHERE {where}",
        bucket_params + params,
    )
    counts: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    # Days with visits but no sale are rows too (0 sales), as in the conversion chart.
    visits: dict[tuple[str, int], int] = {}
    for r in _shopper_visits(db, scope):
        visits[(r["store"], int(r["b"]))] = int(r["visits"])
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
