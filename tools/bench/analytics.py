"""`storelens bench analytics`: how long each ops chart takes over weeks of seeded traffic,
on SQLite and on PostgreSQL, in the same run."""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from storelens.cloud import analytics, stores
from storelens.cloud.store import Database, connect
from storelens.tools.scratch_db import scratch_postgres
from storelens.tools.seed import instore as analytics_seed

BENCH_STORES = (("paris", "Europe/Paris"), ("lyon", "Europe/Paris"), ("lille", "Europe/Paris"),
                ("lisbon", "Europe/Lisbon"), ("london", "Europe/London"))  # fmt: skip


def _fill(db: Database, days: int, visitors_per_day: int, until: float) -> int:
    for sid, tz in BENCH_STORES:
        stores.upsert_store(db, stores.Store(id=sid, name=sid.title(), lat=45.0, lon=2.0,
                                             timezone=tz, zones={}))  # fmt: skip
    profile = analytics_seed.TrafficProfile(visitors_per_day=visitors_per_day)
    analytics_seed.seed_instore(db, days=days, until=until, profile=profile)
    return int(db.scalar("SELECT count(*) FROM events"))


def _time_charts(db: Database, days: int, until: float, repeats: int) -> dict[str, float]:
    end = datetime.fromtimestamp(until, UTC).date()
    scope = analytics.scope_for(db, end - timedelta(days=days - 1), end)
    out = {}
    for name, build in analytics.CHARTS.items():
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            build(db, scope)
            runs.append(time.perf_counter() - t0)
        out[name] = round(1000 * statistics.median(runs), 1)
    return out


def run(*, days: int = 28, visitors_per_day: int = 300, repeats: int = 3) -> dict[str, Any]:
    """Seed the same traffic into both backends, then time every chart over the whole period
    (each chart also reads the previous period of equal length). Milliseconds, median."""
    until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).timestamp()
    result: dict[str, Any] = {"days": days, "stores": len(BENCH_STORES), "repeats": repeats}
    with tempfile.TemporaryDirectory(prefix="storelens-bench-") as tmp:
        db = connect(f"sqlite:///{Path(tmp) / 'bench.db'}")
        result["events"] = _fill(db, days, visitors_per_day, until)
        result["sqlite_ms"] = _time_charts(db, days, until, repeats)
        db.close()
    with scratch_postgres() as url:
        if url is None:
            result["postgres_ms"] = None
        else:
            db = connect(url)
            try:
                _fill(db, days, visitors_per_day, until)
                result["postgres_ms"] = _time_charts(db, days, until, repeats)
            finally:
                db.close()
    for backend in ("sqlite", "postgres"):
        ms = result.get(f"{backend}_ms")
        result[f"{backend}_dashboard_ms"] = round(sum(ms.values()), 1) if ms else None
    return result
