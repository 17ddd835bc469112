"""`storelens bench analytics`: how the ops dashboard's time grows with the chain.

For each size (a number of stores) and each backend, a fresh database is seeded with
``days`` of realistic in-store traffic *through the ingest path* (contract envelopes ->
`Ingestor.process`: decode, validate, store, mark rollup hours), the rollups are settled as
the ingest workers' settle thread would, and every chart is timed over the dashboard's
default period (the last 7 days, every store) and, separately, over the whole period. The
dashboard is the sum of its charts. Ingest throughput is timed with rollups on and off on
the same envelopes, into two fresh databases, in the same run; "on" includes settling those
events (building their rollups), not only marking their hours dirty.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from storelens.cloud import analytics
from storelens.cloud.analytics.rollups.settle import settle_all
from storelens.cloud.commerce import stores
from storelens.cloud.db import Database, connect
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest.worker import Incoming, Ingestor
from storelens.contract import topics
from storelens.tools.bench.ingest import envelopes, rollups_switched
from storelens.tools.scratch_db import scratch_postgres
from storelens.tools.seed import instore as analytics_seed

TIMEZONES = ("Europe/Paris", "Europe/Lisbon", "Europe/London", "Europe/Berlin")
DASHBOARD_DAYS = 7  # the ops page's and the API's default period
# Charts that do not read the event rollups (they read other tables: devices, per-member
# sales). Reported apart, so the rollups' part of the dashboard shows on its own.
NOT_ROLLED_UP = ("coupon-uplift", "devices")
PER_MESSAGE, PER_BATCH = 200, 50  # events per envelope, envelopes per ingest transaction
SALES_PER_VISITOR = 0.2  # paying visits added to the browsing ones (the seed's conversion)


class BenchError(ValueError):
    """Options that give the bench nothing to measure."""


def _ratio(a: float, b: float) -> float | None:
    return round(b / a, 2) if a else None


def _purchases(
    store: str,
    start: date,
    days: int,
    per_day: int,
    tz: str,
    members: list[tuple[str, str]],
    seed: int,
) -> list[analytics_seed.Purchase]:
    """Sales the seed builds paying visits for (till stays with queue and service times,
    try-ons that end in a purchase): ``per_day`` a day between 10:00 and 19:00 local, one in
    three a member's."""
    rng = random.Random(f"sales:{seed}:{store}")
    zone = ZoneInfo(tz)
    out = []
    for d in range(days):
        opening = datetime.combine(start + timedelta(days=d), dt_time(10), zone).timestamp()
        for k in range(per_day):
            member = members[rng.randrange(len(members))] if k % 3 == 0 else None
            at = opening + rng.uniform(0, 9 * 3600)
            out.append(analytics_seed.Purchase(f"{store}-{d}-{k}", at, member))
    return out


def _messages(store: str, days: int, visitors: int, until: float, seed: int) -> list[Incoming]:
    device = f"{store}-edge1"
    members = [(f"{seed:02x}{i:062x}", "k1") for i in range(40)]
    end = datetime.fromtimestamp(until, UTC).date()
    start = end - timedelta(days=days - 1)
    profile = analytics_seed.TrafficProfile(visitors_per_day=visitors)
    tz = TIMEZONES[seed % len(TIMEZONES)]
    info = {"id": store, "timezone": tz, "zones": None}
    sales = _purchases(store, start, days, round(visitors * SALES_PER_VISITOR), tz, members, seed)
    generated = list(analytics_seed.generate(info, members, start, days, seed, profile, until,
                                             purchases=sales))  # fmt: skip
    raws = envelopes(store, device, generated, PER_MESSAGE)
    return [Incoming(topics.events(store, device), raw, i + 1, 1) for i, raw in enumerate(raws)]


def _chain(n: int) -> list[str]:
    return [f"store-{i:03d}" for i in range(n)]


def _prepare(db: Database, names: list[str]) -> None:
    for i, store in enumerate(names):
        tz = TIMEZONES[i % len(TIMEZONES)]
        stores.upsert_store(db, stores.Store(id=store, name=store, lat=45.0, lon=2.0,
                                             timezone=tz, zones={}))  # fmt: skip
        device_registry.register_device(db, store, f"{store}-edge1")


def _ingest(db: Database, messages: list[Incoming]) -> float:
    """Seconds for `Ingestor.process` to store ``messages`` in batches, as a worker does."""
    ingestor = Ingestor(db)
    start = time.perf_counter()
    for i in range(0, len(messages), PER_BATCH):
        ingestor.process(messages[i : i + PER_BATCH])
    return time.perf_counter() - start


def _time_charts(
    db: Database, until: float, days: int, repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Per chart, the median wall and CPU milliseconds of ``repeats`` runs. CPU time is this
    process's (for SQLite the whole query; PostgreSQL's server time is not in it): on a shared
    machine it moves far less with the load than the wall time does."""
    end = datetime.fromtimestamp(until, UTC).date()
    scope = analytics.scope_for(db, end - timedelta(days=days - 1), end)
    wall, cpu = {}, {}
    for name, build in analytics.CHARTS.items():
        runs, cpus = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            build(db, scope)
            runs.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        wall[name] = round(1000 * statistics.median(runs), 1)
        cpu[name] = round(1000 * statistics.median(cpus), 1)
    return wall, cpu


@contextmanager
def _database(backend: str, tmp: Path, name: str, pg_url: str | None) -> Iterator[Database | None]:
    if backend == "sqlite":
        db = connect(f"sqlite:///{tmp / name}.db")
        try:
            yield db
        finally:
            db.close()
        return
    with scratch_postgres(pg_url) as url:
        if url is None:
            yield None
            return
        db = connect(url)
        try:
            yield db
        finally:
            db.close()


def _size(backend: str, tmp: Path, n: int, per_store: dict[str, list[Incoming]], days: int,
          until: float, repeats: int, pg_url: str | None) -> dict[str, Any] | None:  # fmt: skip
    names = _chain(n)
    with _database(backend, tmp, f"{backend}-{n}x{days}", pg_url) as db:
        if db is None:
            return None
        _prepare(db, names)
        seconds = sum(_ingest(db, per_store[s]) for s in names)
        t0 = time.perf_counter()
        settle_all(db)
        settle_s = time.perf_counter() - t0
        events = int(db.scalar("SELECT count(*) FROM events"))
        dashboard, dashboard_cpu = _time_charts(db, until, min(DASHBOARD_DAYS, days), repeats)
        whole, _ = _time_charts(db, until, days, 1)
    return {
        "stores": n,
        "days": days,
        "events": events,
        "ingest_eps": round(events / seconds) if seconds else None,
        "settle_us_per_event": round(settle_s / events * 1e6, 2) if events else None,
        "dashboard_ms": round(sum(dashboard.values()), 1),
        "rollup_charts_ms": round(
            sum(v for k, v in dashboard.items() if k not in NOT_ROLLED_UP), 1
        ),
        "chart_ms": dashboard,
        "dashboard_cpu_ms": round(sum(dashboard_cpu.values()), 1),
        "chart_cpu_ms": dashboard_cpu,
        "whole_period_dashboard_ms": round(sum(whole.values()), 1),
        "whole_period_chart_ms": whole,
    }


def _ingest_cost(backend: str, tmp: Path, messages: list[Incoming], names: list[str],
                 pg_url: str | None, rounds: int = 2) -> dict[str, Any] | None:  # fmt: skip
    """Events per second through `Ingestor.process` with rollups on and off, interleaved.

    Ingest with rollups on only marks hours dirty; the rollups are built by the settle step
    (`settle_all` here, the ingest worker's settle thread in production, in the same
    process), so the honest "rollups on" throughput is the events over ingest *plus* settle
    time (``rollups_on_eps``, ``rollup_cost``). ``marking_only_eps`` and ``marking_cost``
    are what this bench reported before (the dirty marks alone). CPU times are this
    process's (SQLite: all of it; PostgreSQL: the client's only)."""
    eps: dict[str, list[float]] = {"on": [], "off": [], "marking": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    settle_us: list[float] = []
    settle_cpu_us: list[float] = []
    events = 0
    for r in range(rounds):
        for mode in ("off", "on"):
            name = f"cost-{r}-{mode}"
            with rollups_switched(mode == "on"), _database(backend, tmp, name, pg_url) as db:
                if db is None:
                    return None
                _prepare(db, names)
                c0 = time.process_time()
                seconds = _ingest(db, messages)
                ingest_cpu = time.process_time() - c0
                events = int(db.scalar("SELECT count(*) FROM events"))
                if mode == "off":
                    eps["off"].append(events / seconds if seconds else 0.0)
                    cpu["off"].append(ingest_cpu)
                    continue
                c0, t0 = time.process_time(), time.perf_counter()
                settle_all(db)
                settle_s, settle_cpu = time.perf_counter() - t0, time.process_time() - c0
                eps["marking"].append(events / seconds if seconds else 0.0)
                eps["on"].append(events / (seconds + settle_s) if seconds else 0.0)
                cpu["on"].append(ingest_cpu + settle_cpu)
                if events:
                    settle_us.append(settle_s / events * 1e6)
                    settle_cpu_us.append(settle_cpu / events * 1e6)
    on, off, marking = max(eps["on"]), max(eps["off"]), max(eps["marking"])
    cpu_on, cpu_off = min(cpu["on"]), min(cpu["off"])
    return {"events": events, "rounds": rounds,
            "rollups_off_eps": round(off),
            "rollups_on_eps": round(on),  # ingest + settle of the same events
            "rollup_cost": round(1 - on / off, 3) if off else None,
            "rollup_cost_cpu": round(1 - cpu_off / cpu_on, 3) if cpu_on else None,
            "marking_only_eps": round(marking),  # ingest alone, hours marked dirty
            "marking_cost": round(1 - marking / off, 3) if off else None,
            "settle_us_per_event": round(min(settle_us), 2) if settle_us else None,
            "settle_cpu_us_per_event": round(min(settle_cpu_us), 2) if settle_cpu_us else None,
            "ingest_cpu_us_per_event": round(cpu_off / events * 1e6, 2) if events else None,
            }  # fmt: skip


def _compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """How the dashboard's time grew from size ``a`` to size ``b``."""
    return {
        "events_ratio": _ratio(a["events"], b["events"]),
        "dashboard_ratio": _ratio(a["dashboard_ms"], b["dashboard_ms"]),
        "dashboard_cpu_ratio": _ratio(a["dashboard_cpu_ms"], b["dashboard_cpu_ms"]),
        "rollup_charts_ratio": _ratio(a["rollup_charts_ms"], b["rollup_charts_ms"]),
        "chart_ratio": {k: _ratio(a["chart_ms"][k], b["chart_ms"][k]) for k in a["chart_ms"]},
    }


def run(*, stores_sizes: tuple[int, ...] = (5, 50), days: int = 90, visitors_per_day: int = 300,
        repeats: int = 3, backends: tuple[str, ...] = ("sqlite", "postgres"),
        pg_url: str | None = None, until: float | None = None,
        history_days: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Seed each size on each backend through ingest, time the dashboard; see module doc.
    The seed ends at ``until`` (default: the start of this hour). With ``history_days``, the
    smallest chain is also seeded with that many days, and its dashboard (the same last 7
    days) compared with the ``days`` one: the other way to have ten times the events."""
    if until is None:
        until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).timestamp()
    largest = _chain(max(stores_sizes))
    per_store = {s: _messages(s, days, visitors_per_day, until, i) for i, s in enumerate(largest)}
    if not any(per_store[s] for s in _chain(min(stores_sizes))):
        # The seed stops at `until` (this hour): one day seeded before the stores open has
        # no traffic, and every ratio would divide by nothing.
        raise BenchError(
            f"--days {days} seeds no events before {datetime.fromtimestamp(until, UTC):%H:%M}"
            " UTC today (the stores are not open yet): use --days 2 or more"
        )
    result: dict[str, Any] = {"days": days, "visitors_per_day": visitors_per_day,
                              "dashboard_days": min(DASHBOARD_DAYS, days), "repeats": repeats,
                              "cpu_count": os.cpu_count()}  # fmt: skip
    small, big = min(stores_sizes), max(stores_sizes)
    with tempfile.TemporaryDirectory(prefix="storelens-bench-") as tmp:
        for backend in backends:
            sizes = {n: _size(backend, Path(tmp), n, per_store, days, until, repeats, pg_url)
                     for n in sorted(set(stores_sizes))}  # fmt: skip
            if any(v is None for v in sizes.values()):
                result[backend] = None
                continue
            a, b = sizes[small], sizes[big]
            sample = [m for s in _chain(small) for m in per_store[s]]
            result[backend] = {
                "sizes": list(sizes.values()),
                **_compare(a, b),
                "ingest": _ingest_cost(backend, Path(tmp), sample, _chain(small), pg_url),
            }
            if history_days and history_days != days:
                longer = {s: _messages(s, history_days, visitors_per_day, until, i)
                          for i, s in enumerate(_chain(small))}  # fmt: skip
                h = _size(backend, Path(tmp), small, longer, history_days, until, repeats, pg_url)
                if h is not None:
                    first, second = (a, h) if history_days > days else (h, a)
                    result[backend]["history"] = {"sizes": [first, second],
                                                  **_compare(first, second)}  # fmt: skip
    return result
