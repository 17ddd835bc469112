"""Ops analytics over stored events, sales and offers: every chart is a `Table`.

`CHARTS` maps a chart name (as used in ``/api/v1/analytics/<chart>``) to a function of the
database and a `Scope`; `scope_for` builds a scope with the stores' time-zone offsets.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from datetime import date, datetime, timedelta

from storelens.cloud.analytics import (
    checkout_times,
    commerce,
    devices,
    dwell,
    floor,
    footfall,
    rollups,
    staff,
    tryons,
)
from storelens.cloud.analytics.scope import Scope, ScopeError, local_today, utc_offsets
from storelens.cloud.analytics.table import Table
from storelens.cloud.commerce import visit_sales
from storelens.cloud.db import Database

DEFAULT_DAYS = 7


def scope_for(db: Database, start: date | None, end: date | None, stores: tuple[str, ...] = (),
              hour_from: int = 0, hour_to: int = 24, now: datetime | None = None,
              sale_link: visit_sales.LinkWindows | None = None,
              ) -> Scope:  # fmt: skip
    """A scope whose local time follows each store's time zone (unknown stores: error).

    Without ``end`` the period ends today on the selected stores' own clocks (`local_today`);
    without ``start`` it spans `DEFAULT_DAYS` days."""
    rows = db.query("SELECT id, timezone FROM stores")
    known = {r["id"]: r["timezone"] for r in rows}
    unknown = sorted(set(stores) - set(known))
    if unknown:
        raise ScopeError(f"unknown store(s): {', '.join(unknown)}")
    if end is None:
        end = local_today([known[s] for s in stores] or list(known.values()), now)
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    middle = date.fromordinal((start.toordinal() + end.toordinal()) // 2)
    offsets = utc_offsets(known, middle)
    zones = {s: tz or "" for s, tz in known.items()}
    return Scope(start, end, tuple(stores), hour_from, hour_to, offsets, sale_link=sale_link,
                 zones=zones)  # fmt: skip


def _heatmap(db: Database, scope: Scope) -> Table:
    # Floor plans differ per store: the heatmap shows one store, the selected one, else the
    # selected (or any) store with the most finished visits in the period, so the chart opens
    # on a floor with data rather than on the alphabetically first store.
    store = scope.stores[0] if len(scope.stores) == 1 else _busiest_store(db, scope)
    if store is None:
        return Table("heatmap", ["x_m", "y_m", "presence_s"], [], {"store": None})
    return floor.heatmap(db, scope, store)


def _busiest_store(db: Database, scope: Scope) -> str | None:
    if scope.raw:
        where, params = scope.where()
        busiest = db.query(
            f"SELECT store, COUNT(*) AS n FROM events WHERE type = 'visit_ended' AND {where}"
            " GROUP BY store ORDER BY n DESC, store LIMIT 1",
            params,
        )
    else:
        ended = rollups.reader(db).ended_visits(scope)
        busiest = [{"store": s} for s, _ in sorted(ended.items(), key=lambda kv: (-kv[1], kv[0]))]
    if busiest:
        return busiest[0]["store"]
    return scope.stores[0] if scope.stores else db.scalar("SELECT MIN(id) FROM stores")


def _dwell(db: Database, scope: Scope) -> Table:
    rows = db.query("SELECT store, zone, category FROM store_zones")
    categories = {
        r["zone"]: r["category"] for r in rows if not scope.stores or r["store"] in scope.stores
    }
    return dwell.zone_dwell(db, scope, categories)


def _gc_paused(build: Callable[[Database, Scope], Table]) -> Callable[[Database, Scope], Table]:
    """``build`` with CPython's cyclic garbage collector paused while it runs.

    A chart decodes thousands of rollup values into ~100k small lists and dicts that stay
    alive until it returns and are in no reference cycle; each time enough new containers
    are made the collector rescans all that survive, which cost 3-10x the decoding itself
    (the dwell chart: 0.38 s to decode 2,000 store-hours with collection, 0.04 s without).
    Nothing cyclic is freed later than the end of the chart. gc is process-wide: a chart
    that finds it paused (another thread's) leaves re-enabling it to that one."""

    @functools.wraps(build)
    def paused(db: Database, scope: Scope) -> Table:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            with db.pinned():  # the chart's reads on one connection (`Database.pinned`)
                return build(db, scope)
        finally:
            if was_enabled:
                gc.enable()

    return paused


_CHARTS: dict[str, Callable[[Database, Scope], Table]] = {
    "footfall-hourly": footfall.hourly,
    "footfall-daily": footfall.daily,
    "peak-hours": footfall.peak_hours,
    "dwell": _dwell,
    "heatmap": _heatmap,
    "flows": floor.flows,
    "paths": floor.paths,
    "conversion": commerce.conversion,
    "conversion-hourly": commerce.conversion_hourly,
    "member-share": commerce.member_share,
    "coupon-uplift": commerce.coupon_uplift,
    "staff": staff.staff,
    "try-ons": tryons.tryons,
    "checkout-queue": checkout_times.checkout_queue,
    "entry-to-checkout": checkout_times.entry_to_checkout,
    "devices": lambda db, scope: devices.device_health(db, scope.stores),
}
CHARTS = {name: _gc_paused(build) for name, build in _CHARTS.items()}

__all__ = ["CHARTS", "DEFAULT_DAYS", "Scope", "ScopeError", "Table", "scope_for"]
