"""`storelens bench load`: how many stores one broker and two ingest workers keep up with.

Simulated stores publish into a private Mosquitto the way edge agents do: one device per
store with a few cameras, events at a realistic rate (Poisson, ~0.9 events/s per store by
default: footfall crossings, zone visits, visits, occupancy snapshots), batched once per
``batch_interval_s`` per device, QoS 1. Two ingest workers (separate processes, the real
`IngestWorker`) share the subscription and write to the database.

The load ramps up in steps. A step is *held* when the simulators really offered (90% of) the
step's nominal load, the 99th percentile ingest lag (the time from an event's creation to
its write, measured from the stored rows) stays under ``max_lag_s``, and every event of the
step is stored within ``max_lag_s`` after the step ends.
The result is the largest held step. ``lost`` counts events published (acknowledged by the
broker) that never reached the database once everything drained.

Stores are multiplexed over a few MQTT connections per publisher process (each store still
has its own topic and sequence): thousands of sockets would measure the OS, not storelens.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from storelens.contract import SCHEMA_NAME, SCHEMA_VERSION, new_event_id, topics
from storelens.tools.brokers.local import BrokerUnavailable, LocalBroker

CAMERAS = ("door", "aisle", "checkout")
OFFERED_SHARE = 0.9  # a held step must have published at least this share of its nominal load
ZONES = ("fresh", "bakery", "drinks", "household")


@dataclass
class LoadConfig:
    stores: int = 5000
    step_s: float = 15.0
    steps: int = 6
    events_per_store_s: float = 0.9
    batch_interval_s: float = 1.0
    max_lag_s: float = 5.0
    publishers: int = 2
    connections_per_publisher: int = 8
    ingest_workers: int = 2
    ingest_batch_messages: int = 500
    db_url: str | None = None
    seed: int = 7


@dataclass
class StepResult:
    stores: int
    published: int
    stored: int
    nominal_events_per_s: float  # what that many stores generate at the configured rate
    offered_events_per_s: float  # what the simulators managed to publish (CPU permitting)
    events_per_s: float
    lag_p50_s: float
    lag_p99_s: float
    drained_s: float | None
    held: bool


@dataclass
class LoadResult:
    max_stores: int
    lost: int
    events_per_s: float
    lag_p99_s: float
    published: int = 0
    stored: int = 0
    dead_letters: int = 0
    cpu_cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    steps: list[StepResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def store_id(i: int) -> str:
    return f"store-{i:05d}"


# -- simulated stores ------------------------------------------------------------------------
class SimulatedStore:
    """One store's device: produces event dicts (already contract-shaped) and batches them."""

    def __init__(self, index: int, rng: random.Random) -> None:
        self.store = store_id(index)
        self.device = "box-1"
        self.topic = topics.events(self.store, self.device)
        self.seq = 0
        self.rng = rng
        self.pending: list[dict[str, Any]] = []
        self.next_batch = time.monotonic() + rng.random()  # stagger the devices

    def _event(self, now: datetime) -> dict[str, Any]:
        self.seq += 1
        ts = now.isoformat()
        base = {"id": str(new_event_id()), "device": self.device, "seq": self.seq, "ts": ts}
        kind = self.rng.random()
        camera = self.rng.choice(CAMERAS)
        visit = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if kind < 0.35:
            return base | {
                "type": "line_crossing",
                "camera": "door",
                "visit_id": visit,
                "line": "entrance",
                "direction": self.rng.choice(("in", "out")),
            }
        if kind < 0.65:
            dwell = round(self.rng.expovariate(1 / 40), 1)
            return base | {
                "type": "zone_visit",
                "camera": camera,
                "visit_id": visit,
                "zone": self.rng.choice(ZONES),
                "entered_at": ts,
                "exited_at": ts,
                "dwell_s": dwell,
            }
        if kind < 0.8:
            return base | {"type": "visit_started", "camera": camera, "visit_id": visit}
        if kind < 0.95:
            return base | {
                "type": "visit_ended",
                "camera": camera,
                "visit_id": visit,
                "started_at": ts,
                "duration_s": round(self.rng.expovariate(1 / 300), 1),
                "path": [[1.0, 2.0, 0.0], [3.5, 4.0, 12.0]],
                "zones": ["fresh"],
            }
        return base | {"type": "occupancy", "camera": camera, "total": self.rng.randint(0, 30),
                       "zones": {"fresh": self.rng.randint(0, 5)}}  # fmt: skip

    def tick(
        self, now_mono: float, now: datetime, rate: float, interval: float
    ) -> tuple[bytes, int] | None:
        """Generate this interval's events; returns (envelope, event count) when one is due."""
        if now_mono < self.next_batch:
            return None
        self.next_batch += interval
        if self.next_batch < now_mono:  # fell behind (CPU starved): do not burst to catch up
            self.next_batch = now_mono + interval
        n = _poisson(self.rng, rate * interval)
        if n == 0:
            return None
        events = [self._event(now) for _ in range(n)]
        envelope = {
            "schema": SCHEMA_NAME, "version": SCHEMA_VERSION, "store": self.store,
            "device": self.device, "batch_id": str(uuid.uuid4()), "sent_at": now.isoformat(),
            "events": events,
        }  # fmt: skip
        return json.dumps(envelope, separators=(",", ":")).encode(), n


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method: lam is ~1 per batch, so this is a handful of iterations.
    limit, k, p = pow(2.718281828459045, -lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _publisher(
    wid: int,
    cfg: LoadConfig,
    port: int,
    first: int,
    count: int,
    active: Any,
    stop: Any,
    published: Any,
    acked: Any,
    ready: Any,
) -> None:
    """One publisher process: stores ``first .. first+count-1``; only the first
    ``active.value`` (global index) of them publish."""
    import threading

    import paho.mqtt.client as mqtt

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rng = random.Random(cfg.seed * 1000 + wid)
    stores = [SimulatedStore(first + i, rng) for i in range(count)]
    clients = []
    pending: dict[tuple[int, int], int] = {}
    lock = threading.Lock()
    acked_local = [0]

    early: set[tuple[int, int]] = set()  # acks that arrived before we recorded the publish

    def on_publish(client: mqtt.Client, userdata: int, mid: int, reason: Any, props: Any) -> None:
        with lock:
            if (userdata, mid) in pending:
                acked_local[0] += pending.pop((userdata, mid))
            else:
                early.add((userdata, mid))

    for c in range(cfg.connections_per_publisher):
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"bench-pub-{wid}-{c}",
            userdata=c,
            protocol=mqtt.MQTTv311,
        )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.on_publish = on_publish
        client.connect("127.0.0.1", port)
        client.loop_start()
        clients.append(client)
    with ready.get_lock():
        ready.value += 1
    sent = 0
    while not stop.is_set():
        now_mono = time.monotonic()
        now = datetime.now(UTC)
        limit = active.value
        for i, st in enumerate(stores):
            if first + i >= limit:
                break
            out = st.tick(now_mono, now, cfg.events_per_store_s, cfg.batch_interval_s)
            if out is None:
                continue
            payload, n = out
            c = i % len(clients)
            # Never hold `lock` across publish(): paho may run on_publish under its own locks.
            info = clients[c].publish(st.topic, payload, qos=1)
            with lock:
                if (c, info.mid) in early:
                    early.discard((c, info.mid))
                    acked_local[0] += n
                else:
                    pending[(c, info.mid)] = n
            sent += n
        with lock:
            acked_total = acked_local[0]
        published[wid] = sent
        acked[wid] = acked_total
        time.sleep(0.05)
    # Let in-flight publishes finish so the counts are final.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with lock:
            if not pending:
                break
        time.sleep(0.1)
    with lock:
        acked[wid] = acked_local[0]
    published[wid] = sent
    for client in clients:
        client.disconnect()
        client.loop_stop()


def _ingest_worker(index: int, settings_doc: dict[str, Any], stop: Any, ready: Any) -> None:
    from storelens.cloud.db import connect
    from storelens.cloud.ingest.worker import IngestWorker
    from storelens.cloud.settings import Settings

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = Settings.model_validate(settings_doc)
    db = connect(settings.db_url, migrate=False)
    worker = IngestWorker(settings, db, client_id=f"bench-ingest-{index}", subscribe_status=False)
    worker.start()
    if worker.wait_ready(60):
        with ready.get_lock():
            ready.value += 1
    stop.wait()
    worker.stop()
    db.close()


# -- measuring ---------------------------------------------------------------------------------
def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _step_counts(counts: int, total: int) -> list[int]:
    fractions = [i / counts for i in range(1, counts + 1)]
    return sorted({max(1, round(total * f)) for f in fractions})


def run_load_bench(cfg: LoadConfig, *, log: Any = print) -> LoadResult:
    from storelens.cloud.db import connect
    from storelens.cloud.ingest.device_registry import register_device

    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="storelens-load-") as tmp:
        workdir = Path(tmp)
        db_url = cfg.db_url or f"sqlite:///{workdir / 'load.db'}"
        db = connect(db_url)
        with db.transaction():
            for i in range(cfg.stores):
                register_device(db, store_id(i), "box-1", "load bench")
        broker = LocalBroker(workdir / "broker")
        broker.start()
        port = broker.port
        stop_workers, stop_pubs = ctx.Event(), ctx.Event()
        active, ready = ctx.Value("i", 0), ctx.Value("i", 0)
        settings_doc = {
            "db_url": db_url, "mqtt_host": "127.0.0.1", "mqtt_port": port,
            "ingest_batch_messages": cfg.ingest_batch_messages, "ingest_batch_seconds": 0.2,
            "share_group": "ingest",
        }  # fmt: skip
        workers = [
            ctx.Process(
                target=_ingest_worker, args=(i, settings_doc, stop_workers, ready), daemon=True
            )
            for i in range(cfg.ingest_workers)
        ]
        published = ctx.Array("q", cfg.publishers)
        acked = ctx.Array("q", cfg.publishers)
        per = -(-cfg.stores // cfg.publishers)
        pubs = [
            ctx.Process(
                target=_publisher,
                args=(
                    w,
                    cfg,
                    port,
                    w * per,
                    min(per, cfg.stores - w * per),
                    active,
                    stop_pubs,
                    published,
                    acked,
                    ready,
                ),
                daemon=True,
            )  # fmt: skip
            for w in range(cfg.publishers)
            if w * per < cfg.stores
        ]
        result = LoadResult(0, 0, 0.0, 0.0)
        try:
            for p in workers:
                p.start()
            # Workers subscribe before anyone publishes (a shared subscription that does not
            # exist yet receives nothing), then publishers connect.
            _wait_for(ready, len(workers), workers)
            for p in pubs:
                p.start()
            _wait_for(ready, len(workers) + len(pubs), pubs)
            for n in _step_counts(cfg.steps, cfg.stores):
                dead = [p for p in [*workers, *pubs] if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"bench process exited early: {[p.name for p in dead]}")
                step = _run_step(db, cfg, n, active, published)
                result.steps.append(step)
                log(
                    f"{n:>6} stores: offered {step.offered_events_per_s:6.0f} of "
                    f"{step.nominal_events_per_s:6.0f} events/s, stored "
                    f"{step.events_per_s:6.0f}/s, lag p99 "
                    f"{step.lag_p99_s:6.2f} s, drained in {step.drained_s} s -> "
                    f"{'held' if step.held else 'NOT held'}"
                )
                if not step.held:
                    break
                result.max_stores = n
                result.events_per_s = step.events_per_s
                result.lag_p99_s = step.lag_p99_s
            active.value = 0
            stop_pubs.set()
            for p in pubs:
                p.join(60)
            total_acked = sum(acked[:])
            result.published = total_acked
            # Drain: everything the broker acknowledged must end up stored.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                stored = db.scalar("SELECT COUNT(*) FROM events")
                if stored >= total_acked:
                    break
                time.sleep(0.5)
            result.stored = int(db.scalar("SELECT COUNT(*) FROM events"))
            result.dead_letters = int(db.scalar("SELECT COUNT(*) FROM dead_letters"))
            result.lost = max(0, total_acked - result.stored)
        finally:
            stop_pubs.set()
            stop_workers.set()
            for p in [*pubs, *workers]:
                p.join(30)
                if p.is_alive():
                    p.kill()
            broker.stop()
            db.close()
        return result


def _wait_for(counter: Any, target: int, procs: list[Any], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while counter.value < target:
        if any(not p.is_alive() for p in procs) or time.monotonic() > deadline:
            raise RuntimeError("bench processes failed to start (see the log above)")
        time.sleep(0.1)


def _run_step(db: Any, cfg: LoadConfig, stores: int, active: Any, published: Any) -> StepResult:
    before = sum(published[:])
    start = time.time()
    active.value = stores
    time.sleep(cfg.step_s)
    end = time.time()
    sent_by_end = sum(published[:])  # every event counted here has ts <= end
    # The step holds only if everything created by its end is written within max_lag_s.
    drained = None
    while time.time() - end <= cfg.max_lag_s:
        if db.scalar("SELECT COUNT(*) FROM events WHERE ts <= ?", (end,)) >= sent_by_end:
            drained = round(time.time() - end, 2)
            break
        time.sleep(0.25)
    rows = db.query(
        "SELECT received_at - ts AS lag FROM events WHERE ts >= ? AND ts <= ?", (start, end)
    )
    lags = [r["lag"] for r in rows]
    p99 = _percentile(lags, 0.99)
    nominal = stores * cfg.events_per_store_s
    offered = (sent_by_end - before) / (end - start)
    return StepResult(
        stores=stores,
        published=sent_by_end - before,
        stored=len(lags),
        nominal_events_per_s=round(nominal, 1),
        offered_events_per_s=round(offered, 1),
        events_per_s=round(len(lags) / (end - start), 1),
        lag_p50_s=round(_percentile(lags, 0.5), 3),
        lag_p99_s=round(p99, 3),
        drained_s=drained,
        # A step counts only if its load was really offered: simulators starved of CPU
        # publish less than the stores would, which would flatter the result.
        held=bool(lags)
        and drained is not None
        and p99 <= cfg.max_lag_s
        and offered >= OFFERED_SHARE * nominal,
    )


def write_result(result: LoadResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n")


def command(
    stores: int = typer.Option(5000, min=1, help="Largest number of simulated stores."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result here."),
    steps: int = typer.Option(6, min=1, help="Ramp steps up to --stores."),
    step_s: float = typer.Option(15.0, min=1, help="Seconds each step runs."),
    events_per_store_s: float = typer.Option(0.9, min=0.001, help="Mean events/s per store."),
    batch_interval_s: float = typer.Option(1.0, min=0.05, help="Device batching interval."),
    max_lag_s: float = typer.Option(5.0, min=0.1, help="Ingest lag bound for a held step."),
    db: str | None = typer.Option(None, help="Database URL; default a temporary SQLite file."),
) -> None:
    """Ramp simulated stores into one broker and two ingest workers; report the most held."""
    cfg = LoadConfig(
        stores=stores, step_s=step_s, steps=steps, events_per_store_s=events_per_store_s,
        batch_interval_s=batch_interval_s, max_lag_s=max_lag_s, db_url=db,
    )  # fmt: skip
    try:
        result = run_load_bench(cfg, log=lambda line: typer.echo(line, err=True))
    except (RuntimeError, BrokerUnavailable) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    summary = {k: getattr(result, k) for k in ("max_stores", "lost", "events_per_s", "lag_p99_s")}
    typer.echo(json.dumps(summary))
    if json_out is not None:
        write_result(result, json_out)
