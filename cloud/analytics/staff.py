"""Staff are not shoppers: visits a device flagged as staff (contract 1.2, recorded in
``staff_visits`` at ingest) are left out of footfall, dwell, heatmaps, flows, paths and
conversion, and counted apart in the ``staff`` chart. Without a staff signal on the devices
the table stays empty and every chart is what it was."""

from __future__ import annotations

import statistics
from collections import defaultdict

from storelens.cloud.analytics.scope import DAY_S, Scope, local_label
from storelens.cloud.analytics.table import Table
from storelens.cloud.db import Database


def shoppers_only(alias: str = "") -> str:
    """SQL condition on an ``events`` row (table alias ``alias``): not of a staff visit."""
    outer = alias or "events"  # qualified: staff_visits has a visit_id column too
    return f"NOT EXISTS (SELECT 1 FROM staff_visits sv WHERE sv.visit_id = {outer}.visit_id)"


def staff(db: Database, scope: Scope) -> Table:
    """Per store and day: staff visits and their length (what the other charts leave out)."""
    lengths: dict[tuple[str, int], list[float]] = defaultdict(list)
    if scope.raw:
        bucket, bucket_params = scope.bucket(DAY_S)
        where, params = scope.where()
        for r in db.query(
            f"SELECT store, {bucket} AS b, dwell_s FROM events WHERE type = 'visit_ended'"
            f" AND {where} AND NOT ({shoppers_only()})",
            bucket_params + params,
        ):
            lengths[(r["store"], int(r["b"]))].append(float(r["dwell_s"] or 0.0))
    else:
        from storelens.cloud.analytics import rollups  # rollups import this module (shoppers_only)

        lengths.update(rollups.reader(db).staff(scope))
    # one label per day, not per store-day
    labels = {b: local_label(b, daily=True) for b in {b for _, b in lengths}}
    out = [
        {
            "day": labels[b],
            "store": store,
            "staff_visits": len(v),
            "staff_hours": round(sum(v) / 3600, 2),
            "median_staff_visit_min": round(statistics.median(v) / 60, 1),
        }
        for (store, b), v in sorted(lengths.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]
    columns = ["day", "store", "staff_visits", "staff_hours", "median_staff_visit_min"]
    return Table(
        "staff", columns, out, {"totals": {"staff_visits": sum(len(v) for v in lengths.values())}}
    )
