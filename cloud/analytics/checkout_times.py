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

import numpy as np

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


class _Parts:
    """Checkout cells as NumPy rows, gathered from packed store-days (`chain.pack_checkout`)
    and from dict cells (``q``, ``z`` as `chain.merge_checkout` builds them: store-hours,
    raw events), so the chart groups and ranks every cell in a few array passes instead of
    a Python loop (and a sort) per store, hour and zone."""

    def __init__(self) -> None:
        self.stores: dict[str, int] = {}
        self.keys: dict[str, int] = {}
        # Per source: q (store, hour, instants, sum, max), c (store, hour, key, stays),
        # w and s: index rows (store, hour, key) and their seconds.
        self.q: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.w: list[tuple[np.ndarray, np.ndarray]] = []
        self.s: list[tuple[np.ndarray, np.ndarray]] = []

    def _store(self, store: str) -> int:
        return self.stores.setdefault(store, len(self.stores))

    def add_days(self, days: list[tuple[str, int, dict[str, Any]]]) -> None:
        if not days:
            return
        n_days = len(days)
        day_store = np.fromiter((self._store(s) for s, _, _ in days), np.int64, n_days)
        # A store's days mostly share one key list: each distinct list is mapped once.
        bases: dict[tuple[str, ...], int] = {}
        base, remap = [], []
        for _, _, value in days:
            keys = tuple(value["k"])
            at = bases.get(keys)
            if at is None:
                at = bases[keys] = len(remap)
                remap += [self.keys.setdefault(k, len(self.keys)) for k in keys]
            base.append(at)
        day_base = np.fromiter(base, np.int64, n_days)
        global_key = np.array(remap or [0], dtype=np.int64)
        of_days = np.arange(n_days)

        def joined(field: str, dtype: str, width: int) -> tuple[np.ndarray, np.ndarray]:
            parts = [value[field] for _, _, value in days]
            rows = np.frombuffer(b"".join(parts), dtype=dtype).reshape(-1, width)
            sizes = np.fromiter(map(len, parts), np.int64, n_days)
            return rows, np.repeat(of_days, sizes // (np.dtype(dtype).itemsize * width))

        q, of_day = joined("q", "<i8", 4)
        if len(q):
            self.q.append(np.column_stack([day_store[of_day], q]))
        for field in ("c", "w", "s"):
            rows, of_day = joined(field, "<i8" if field == "c" else "<f8", 3)
            if not len(rows):
                continue
            index = np.column_stack([
                day_store[of_day], rows[:, 0].astype(np.int64),
                global_key[day_base[of_day] + rows[:, 1].astype(np.int64)],
            ])  # fmt: skip
            if field == "c":
                self.c.append(np.column_stack([index, rows[:, 2]]))
            else:
                getattr(self, field).append((index, rows[:, 2].astype(np.float64)))

    def add_cells(self, cells: list[tuple[str, int, dict[str, Any]]]) -> None:
        q, c, w, s, wv, sv = [], [], [], [], [], []
        for store, h, value in cells:
            i = self._store(store)
            if value.get("q") and value["q"][0]:
                q.append((i, h, *value["q"]))
            for key, (stays, waits, services) in value["z"].items():
                k = self.keys.setdefault(key, len(self.keys))
                c.append((i, h, k, stays))
                w += [(i, h, k)] * len(waits)
                wv += waits
                s += [(i, h, k)] * len(services)
                sv += services
        if q:
            self.q.append(np.array(q, dtype=np.int64))
        if c:
            self.c.append(np.array(c, dtype=np.int64))
        for index, values, out in ((w, wv, self.w), (s, sv, self.s)):
            if index:
                out.append((np.array(index, dtype=np.int64),
                            np.array(values, dtype=np.float64)))  # fmt: skip


def _segments(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of the runs of equal values in sorted ``ids``."""
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return starts, np.diff(np.r_[starts, len(ids)])


def _quantiles(data: np.ndarray, starts: np.ndarray, sizes: np.ndarray, q: float) -> list:
    """The ``q`` percentile of every segment of ``data`` (each sorted, none empty), in one
    pass, as ``statistics.quantiles(segment, n=100, method="inclusive")`` gives it (a
    one-value segment: that value) rounded to 0.1 s: the same interpolation in the same
    float64 arithmetic, and Python's ``round`` per value. The stdlib computes all 99 cut
    points per call, and the chart asks for three per store-hour cell."""
    j, delta = np.divmod(int(q * 100) * (sizes - 1), 100)
    lo = starts + j
    hi = np.minimum(lo + 1, len(data) - 1)
    mixed = (data[lo] * (100 - delta) + data[hi] * delta) / 100
    values = np.where(sizes == 1, data[lo], mixed)
    return [round(v, 1) for v in values.tolist()]


def checkout_queue(db: Database, scope: Scope) -> Table:
    parts = _Parts()
    if scope.raw:
        parts.add_cells([(s, h, cell) for (s, h), cell in _raw_queue(db, scope).items()])
    else:
        days, cells = rollups.reader(db).checkout_parts(scope)
        parts.add_days(days)
        parts.add_cells(cells)
    named = zones_of_kind(db, "checkout")
    stores = sorted(parts.stores)
    n_stores = max(len(stores), 1)
    # Store index -> its rank by name, so that a cell's id (hour, store rank) sorts as rows do.
    rank = np.zeros(len(parts.stores), dtype=np.int64)
    for r, store in enumerate(stores):
        rank[parts.stores[store]] = r
    # A zone's stays count when the device calls it a checkout or the settings name it one.
    keep = np.zeros((len(parts.stores), max(len(parts.keys), 1)), dtype=bool)
    for key, k in parts.keys.items():
        zone, _, kind = key.partition(FLOW_SEP)
        for store, i in parts.stores.items():
            keep[i, k] = kind == "checkout" or (store, zone) in named

    def cell_of(index: np.ndarray) -> np.ndarray:
        return index[:, 1] * n_stores + rank[index[:, 0]]

    rows: dict[int, dict[str, Any]] = {}

    def row(cell: int) -> dict[str, Any]:
        out = rows.get(cell)
        if out is None:
            h, r = divmod(cell, n_stores)
            out = rows[cell] = {
                "hour_of_day": h, "store": stores[r], "snapshots": 0, "avg_queue": None,
                "max_queue": None, "checkouts": 0, "median_wait_s": None, "p90_wait_s": None,
                "median_service_s": None,
            }  # fmt: skip
        return out

    totals: dict[str, Any] = {"checkouts": 0, "median_wait_s": None, "avg_queue": None,
                              "max_queue": None}  # fmt: skip
    if parts.q:
        q = np.concatenate(parts.q)
        ids = cell_of(q)
        order = np.argsort(ids, kind="stable")
        ids, q = ids[order], q[order]
        starts, _ = _segments(ids)
        n = np.add.reduceat(q[:, 2], starts)
        total = np.add.reduceat(q[:, 3], starts)
        top = np.maximum.reduceat(q[:, 4], starts)
        for cell, n_i, t_i, m_i in zip(ids[starts].tolist(), n.tolist(), total.tolist(),
                                       top.tolist(), strict=True):  # fmt: skip
            out = row(cell)
            out["snapshots"], out["avg_queue"], out["max_queue"] = n_i, round(t_i / n_i, 2), m_i
        snapshots = int(n.sum())
        totals["avg_queue"] = round(int(total.sum()) / snapshots, 2)
        totals["max_queue"] = int(top.max())
    if parts.c:
        c = np.concatenate(parts.c)
        c = c[keep[c[:, 0], c[:, 2]]]
        if len(c):
            ids = cell_of(c)
            order = np.argsort(ids, kind="stable")
            ids, stays = ids[order], c[order, 3]
            starts, _ = _segments(ids)
            for cell, n_i in zip(ids[starts].tolist(), np.add.reduceat(stays, starts).tolist(),
                                 strict=True):  # fmt: skip
                row(cell)["checkouts"] = n_i
            totals["checkouts"] = int(stays.sum())
    for found, columns in ((parts.w, (("median_wait_s", 0.5), ("p90_wait_s", 0.9))),
                           (parts.s, (("median_service_s", 0.5),))):  # fmt: skip
        if not found:
            continue
        index = np.concatenate([i for i, _ in found])
        values = np.concatenate([v for _, v in found])
        kept = keep[index[:, 0], index[:, 2]]
        index, values = index[kept], values[kept]
        if not len(values):
            continue
        ids = cell_of(index)
        # By cell, then seconds (each cell's run sorted): a float sort, then a stable integer
        # one (radix), faster than np.lexsort's two merge sorts.
        order = np.argsort(values)
        order = order[np.argsort(ids[order], kind="stable")]
        ids, values = ids[order], values[order]
        starts, sizes = _segments(ids)
        cells = ids[starts].tolist()
        for column, p in columns:
            for cell, v in zip(cells, _quantiles(values, starts, sizes, p), strict=True):
                row(cell)[column] = v
        if found is parts.w:
            everything = np.sort(values)
            totals["median_wait_s"] = _quantiles(
                everything, np.array([0]), np.array([len(everything)]), 0.5)[0]  # fmt: skip
    return Table("checkout-queue", QUEUE_COLUMNS, [rows[k] for k in sorted(rows)],
                 {"totals": totals})  # fmt: skip


def _shopper_visits(db: Database, scope: Scope) -> dict[tuple[str, int], int]:
    """Shoppers' finished visits per store and local day (staff are not shoppers)."""
    if not scope.raw:
        return rollups.reader(db).ended_by_day(scope)
    vb, vb_params = scope.bucket(DAY_S)
    vwhere, vparams = scope.where()
    rows = db.query(
        f"SELECT store, {vb} AS b, COUNT(*) AS visits FROM events WHERE type = 'visit_ended'"
        f" AND {vwhere} AND {shoppers_only()} GROUP BY store, b",
        vb_params + vparams,
    )
    return {(r["store"], int(r["b"])): int(r["visits"]) for r in rows}


def entry_to_checkout(db: Database, scope: Scope) -> Table:
    visit_sales.link_pending(
        db, scope.stores, windows=scope.sale_link or visit_sales.DEFAULT_WINDOWS
    )
    bucket, bucket_params = scope.bucket(DAY_S, "s")
    where, params = scope.where("s")
    sales = db.query_tuples(
        f"SELECT s.store, {bucket} AS b, v.method, v.entry_to_checkout_s FROM pos_sales s"
        f" LEFT JOIN sale_visits v ON v.sale_id = s.id WHERE {where}",
        bucket_params + params,
    )
    # Days with visits but no sale are rows too (0 sales), as in the conversion chart.
    visits = _shopper_visits(db, scope)
    counts: dict[tuple[str, int], dict[str, int]] = {}
    timed: list[tuple[tuple[str, int], float]] = []
    for store, b, method, seconds in sales:
        key = (store, int(b))
        c = counts.setdefault(key, {})
        c[method or "pending"] = c.get(method or "pending", 0) + 1
        if seconds is not None:
            timed.append((key, float(seconds)))
    # The medians and p90s of every day at once (`_quantiles`), from one sort.
    medians: dict[tuple[str, int], tuple[float, float]] = {}
    median_all = None
    if timed:
        day_of = {key: i for i, key in enumerate({key for key, _ in timed})}
        ids = np.fromiter((day_of[key] for key, _ in timed), np.int64, len(timed))
        values = np.fromiter((v for _, v in timed), np.float64, len(timed))
        order = np.argsort(values)
        order = order[np.argsort(ids[order], kind="stable")]
        ids, ordered = ids[order], values[order]
        starts, sizes = _segments(ids)
        keys = list(day_of)
        medians = {keys[i]: pair for i, pair in zip(ids[starts].tolist(), zip(
            _quantiles(ordered, starts, sizes, 0.5), _quantiles(ordered, starts, sizes, 0.9),
            strict=True), strict=True)}  # fmt: skip
        everything = np.sort(values)
        median_all = _quantiles(everything, np.array([0]), np.array([len(everything)]), 0.5)[0]
    # one label per day, not per store-day
    labels = {b: local_label(b, daily=True) for b in {b for _, b in (*visits, *counts)}}
    none: dict[str, int] = {}
    rows = []
    for key in sorted({*visits, *counts}, key=lambda k: (k[1], k[0])):
        store, b = key
        c = counts.get(key, none)
        n = sum(c.values())
        member, time_linked = c.get("member", 0), c.get("time", 0)
        median, p90 = medians.get(key, (None, None))
        rows.append({
            "day": labels[b], "store": store, "visits": visits.get(key, 0), "sales": n,
            "linked_member": member, "linked_time": time_linked,
            "unmatched": c.get("unmatched", 0), "pending": c.get("pending", 0),
            "linked_share": ratio(member + time_linked, n),
            "median_entry_to_checkout_s": median, "p90_entry_to_checkout_s": p90,
        })  # fmt: skip
    totals: dict[str, Any] = {
        k: sum(r[k] for r in rows)
        for k in ("sales", "linked_member", "linked_time", "unmatched", "pending")
    }
    totals["median_entry_to_checkout_s"] = median_all
    return Table("entry-to-checkout", ENTRY_COLUMNS, rows, {"totals": totals})
