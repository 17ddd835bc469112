"""`storelens bench ingest`: how fast ingest stores events compared with a bare subscriber.

Realistic traffic (visits with floor paths, zone visits, line crossings, occupancy, card
swipes) is published once, in envelopes of ``per_message`` events, through a private
Mosquitto to three persistent sessions, each in its own share group. Each session is then
drained in turn: by a bare subscriber (receive + JSON decode), by the ingest worker on SQLite
and by the ingest worker on PostgreSQL (validate, de-duplicate, store, publish the devices'
receipts, acknowledge). A rate is events / seconds of draining, so publishing speed does not
enter any of them. A subscriber's MQTT connection is inside it; process start-up is not (the
bare subscriber's imports, the SQLite writer process's start), as for a running service.

With ``rollups_off`` each backend is drained twice, by a worker that maintains the analytics
rollups (as in production) and by one with ``STORELENS_ROLLUPS=0``, into separate databases,
interleaved in one run: ``rollup_cost`` is the throughput lost to the rollups' dirty marks
(the settle step that builds them is not drained here: `bench analytics` counts it).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from storelens.contract import SCHEMA_NAME, SCHEMA_VERSION
from storelens.contract.events import EVENT_TYPES

ZONES = ("entrance_area", "shoes", "handbags", "menswear", "womenswear", "accessories")
SESSION_EXPIRY_S = 3600


def _uuid7(rng: random.Random, ts: float) -> str:
    value = (int(ts * 1000) & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | rng.getrandbits(12) << 64 | 0b10 << 62 | rng.getrandbits(62)
    return str(uuid.UUID(int=value))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def realistic_event_dicts(
    device: str,
    count: int,
    *,
    seed: int = 1,
    start: datetime | None = None,
    members: list[str] | None = None,
    key_id: str = "k1",
    first_seq: int = 0,
) -> list[dict[str, Any]]:
    """``count`` events as one camera box sends them (JSON-ready dicts), in time order.

    Each visit: started, door crossing in, maybe a card swipe, 1-4 zone visits, crossing out,
    ended with a 20-point floor path; occupancy snapshots now and then. One visit in five is
    by a member (a pseudonym from ``members``).
    """
    rng = random.Random(seed)
    t = (start or datetime(2026, 11, 20, 9, 0, tzinfo=UTC)).timestamp()
    tokens = members or [f"{rng.getrandbits(256):064x}" for _ in range(50)]
    out: list[dict[str, Any]] = []
    while len(out) < count:
        t += rng.expovariate(1 / 4)
        member = rng.choice(tokens) if rng.random() < 0.2 else None
        person: dict[str, Any] = {"device": device, "camera": "cam1", "visit_id": _uuid7(rng, t)}
        if member:
            person.update(member=member, key_id=key_id)
        visit = [
            {**person, "type": "visit_started", "ts": t},
            {**person, "type": "line_crossing", "ts": t + 1, "line": "entrance", "direction": "in"},
        ]
        if member:
            visit.append(
                {
                    "type": "card_swipe",
                    "device": device,
                    "ts": t + 2,
                    "reader": "door",
                    "member": member,
                    "key_id": key_id,
                    "camera": "cam1",
                    "visit_id": person["visit_id"],
                    "reason": "linked",
                }
            )
        clock = t + 3
        zones = rng.sample(ZONES, rng.randint(1, 4))
        for zone in zones:
            dwell = round(rng.uniform(3, 240), 2)
            visit.append(
                {
                    **person,
                    "type": "zone_visit",
                    "ts": clock + dwell,
                    "zone": zone,
                    "entered_at": _iso(clock),
                    "exited_at": _iso(clock + dwell),
                    "dwell_s": dwell,
                }
            )
            clock += dwell + rng.uniform(2, 20)
        duration = round(clock - t, 2)
        path = [
            [
                round(rng.uniform(0, 24), 2),
                round(rng.uniform(0, 14), 2),
                round(duration * i / 19, 1),
            ]
            for i in range(20)
        ]
        visit.append(
            {**person, "type": "line_crossing", "ts": clock, "line": "entrance", "direction": "out"}
        )
        visit.append(
            {
                **person,
                "type": "visit_ended",
                "ts": clock,
                "started_at": _iso(t),
                "duration_s": duration,
                "path": path,
                "zones": zones,
            }
        )
        if rng.random() < 0.3:
            visit.append(
                {
                    "type": "occupancy",
                    "device": device,
                    "ts": t,
                    "camera": "cam1",
                    "total": rng.randint(0, 30),
                    "zones": {z: rng.randint(0, 6) for z in ZONES},
                }
            )
        out.extend(visit)
    out = out[:count]
    for i, event in enumerate(out):
        event["id"] = _uuid7(rng, event["ts"])
        event["seq"] = first_seq + i
        event["ts"] = _iso(event["ts"])
    return out


def realistic_events(device: str, count: int, **kw: Any) -> list:
    """The same traffic as contract models (for tests)."""
    return [
        EVENT_TYPES[d["type"]].model_validate(d) for d in realistic_event_dicts(device, count, **kw)
    ]


def envelopes(store: str, device: str, events: list, per_message: int) -> list[bytes]:
    """Encode events (models or dicts) as contract envelopes of ``per_message`` events."""
    dicts = [
        e if isinstance(e, dict) else e.model_dump(mode="json", exclude_none=True) for e in events
    ]
    return [
        json.dumps(
            {
                "schema": SCHEMA_NAME,
                "version": SCHEMA_VERSION,
                "store": store,
                "device": device,
                "batch_id": str(uuid.uuid4()),
                "sent_at": _iso(time.time()),
                "events": dicts[i : i + per_message],
            },
            separators=(",", ":"),
        ).encode()
        for i in range(0, len(dicts), per_message)
    ]


# -- the run -------------------------------------------------------------------------------


def machine_cpu_seconds() -> float | None:
    """CPU seconds used by every process on this machine so far (Linux ``/proc/stat``:
    user, nice, system, irq, softirq), or None elsewhere. A drain's delta over its events is
    what one event costs in all (subscriber, writer process, broker, database server)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = sum(int(fields[i]) for i in (1, 2, 3, 6, 7))
    return ticks / os.sysconf("SC_CLK_TCK")


def _since(before: float | None) -> float | None:
    after = machine_cpu_seconds()
    return None if before is None or after is None else after - before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def private_broker(workdir: Path) -> Iterator[int]:
    """A Mosquitto on a free port that queues without limit for offline sessions."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_queued_bytes 0\nmessage_size_limit 0\n"
    )
    log = (workdir / "mosquitto.log").open("ab")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _connect_props() -> Any:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = 1000
    return props


class BareSubscriber:
    """Receives and JSON-decodes, nothing else: the ceiling for any subscriber in Python."""

    def __init__(self, port: int, group: str, expected: int) -> None:
        import paho.mqtt.client as mqtt

        self.port, self.group, self.expected = port, group, expected
        self.events = 0
        self.done = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{group}", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self.subscribed.set()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        from storelens.contract import topics

        client.subscribe(topics.shared(topics.EVENTS_ALL, self.group), qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        self.events += len(json.loads(msg.payload)["events"])
        if self.events >= self.expected:
            self.done.set()

    def connect(self) -> None:
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=_connect_props())
        self.client.loop_start()

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(200)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, raw, qos=1) for topic, raw in messages]
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def _ingest_worker(port: int, group: str, client_id: str, db: Any) -> Any:
    from storelens.cloud.ingest.worker import IngestWorker
    from storelens.cloud.settings import Settings

    # Persistent sessions: the bench queues for each worker while it is offline. Receipts
    # are published as in production (nobody subscribes to them here).
    settings = Settings(
        db_url="unused",
        mqtt_host="127.0.0.1",
        mqtt_port=port,
        share_group=group,
        mqtt_session_expiry_s=SESSION_EXPIRY_S,
    )
    return IngestWorker(settings, db, client_id=client_id, subscribe_status=False)


def _client_ids(group: str, workers: int) -> list[str]:
    return [f"bench-{group}-{i}" for i in range(workers)]


def _create_sessions(port: int, group: str, workers: int, db: Any) -> None:
    """Subscribe each worker's persistent session, then go offline: the broker queues."""
    for client_id in _client_ids(group, workers):
        worker = _ingest_worker(port, group, client_id, db)
        worker.start()
        if not worker.wait_ready(10):
            raise RuntimeError("ingest worker could not subscribe")
        worker.stop()


def _drain_ingest(
    port: int,
    group: str,
    db: Any,
    db_url: str,
    expected: int,
    workers: int,
    timeout: float,
    cpu: dict[str, float | None],
) -> float:
    """Seconds for ``workers`` ingest workers to store every queued event. One worker runs
    in this process; more run as processes, as a deployment scales out on one box. The
    machine's CPU seconds over the same window go to ``cpu[group]``."""
    deadline = time.monotonic() + timeout
    if workers == 1:
        worker = _ingest_worker(port, group, _client_ids(group, 1)[0], db)
        if not worker.wait_writer():
            raise RuntimeError("the SQLite writer process did not start")
        cpu0 = machine_cpu_seconds()
        start = time.perf_counter()
        worker.start()
        try:
            while worker.totals.stored < expected:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{group}: {worker.totals.stored}/{expected} stored")
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
            cpu[group] = _since(cpu0)
        finally:
            worker.stop()
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        ready, go, stop = ctx.Queue(), ctx.Event(), ctx.Event()
        procs = [
            ctx.Process(target=_worker_process, args=(port, group, cid, db_url, ready, go, stop))
            for cid in _client_ids(group, workers)
        ]
        for proc in procs:
            proc.start()
        try:
            for _ in procs:
                ready.get(timeout=120)  # imported and connected to the database
            cpu0 = machine_cpu_seconds()
            start = time.perf_counter()
            go.set()
            while db.scalar("SELECT count(*) FROM events") < expected:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{group}: fewer than {expected} events stored")
                time.sleep(0.02)
            elapsed = time.perf_counter() - start
            cpu[group] = _since(cpu0)
        finally:
            stop.set()
            for proc in procs:
                proc.join(60)
    stored = db.scalar("SELECT count(*) FROM events")
    if stored != expected:
        raise RuntimeError(f"{group}: {stored} rows for {expected} events")
    return elapsed


@contextmanager
def rollups_switched(on: bool) -> Iterator[None]:
    """Rollups on or off for the workers (and SQLite writer processes) started inside."""
    before = os.environ.get("STORELENS_ROLLUPS")
    os.environ["STORELENS_ROLLUPS"] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("STORELENS_ROLLUPS", None)
        else:
            os.environ["STORELENS_ROLLUPS"] = before


def _worker_process(
    port: int, group: str, client_id: str, db_url: str, ready: Any, go: Any, stop: Any
) -> None:
    from storelens.cloud.db import connect

    db = connect(db_url, migrate=False)
    worker = _ingest_worker(port, group, client_id, db)
    worker.wait_writer()
    ready.put(client_id)
    go.wait()
    worker.start()
    stop.wait()
    worker.stop()
    db.close()


def run(
    *,
    events: int = 200_000,
    per_message: int = 200,
    pg_url: str | None = None,
    stores: int = 4,
    workers: int = 1,
    timeout: float = 600.0,
    rollups_off: bool = True,
) -> dict[str, Any]:
    """Publish ``events`` once and drain them three ways; returns the result dict.
    ``workers`` ingest workers share each backend's subscription (the bare subscriber is
    always one)."""
    from storelens.cloud.commerce import stores as store_registry
    from storelens.cloud.db import connect
    from storelens.cloud.ingest import device_registry
    from storelens.contract import topics
    from storelens.tools.scratch_db import scratch_postgres

    devices = [(f"bench-store-{i}", f"box-{i}") for i in range(stores)]
    per_device = events // len(devices)
    total = per_device * len(devices)
    messages: list[tuple[str, bytes]] = []
    for n, (store, device) in enumerate(devices):
        dicts = realistic_event_dicts(device, per_device, seed=n + 1)
        messages += [
            (topics.events(store, device), raw)
            for raw in envelopes(store, device, dicts, per_message)
        ]
    payload_mb = sum(len(raw) for _, raw in messages) / 1e6

    def prepare(db: Any) -> None:
        for store, device in devices:
            store_registry.upsert_store(
                db, store_registry.Store(id=store, name=store, lat=0, lon=0)
            )
            device_registry.register_device(db, store, device)

    result: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="storelens-bench-") as tmp,
        private_broker(Path(tmp)) as port,
        scratch_postgres(pg_url) as pg,
        scratch_postgres(pg_url) if rollups_off else nullcontext(None) as pg_off,
    ):
        # group -> (database URL, rollups on); the "-off" groups store without rollups.
        urls: dict[str, tuple[str, bool]] = {"sqlite": (f"sqlite:///{tmp}/bench.db", True)}
        if rollups_off:
            urls["sqlite-off"] = (f"sqlite:///{tmp}/bench-off.db", False)
        if pg is not None:
            urls["postgres"] = (pg, True)
            if pg_off is not None:
                urls["postgres-off"] = (pg_off, False)
        dbs = {group: connect(url) for group, (url, _) in urls.items()}
        for db in dbs.values():
            prepare(db)
        # 1. Create the sessions, then go offline so the broker queues for each.
        bare = BareSubscriber(port, "bare", total)
        bare.connect()
        bare.subscribed.wait(10)
        bare.disconnect()
        for group, db in dbs.items():
            _create_sessions(port, group, workers, db)
        # 2. Publish once.
        t0 = time.perf_counter()
        _publish(port, messages)
        publish_s = time.perf_counter() - t0
        # 3. Drain each session.
        cpu: dict[str, float | None] = {}
        bare = BareSubscriber(port, "bare", total)
        cpu0 = machine_cpu_seconds()
        t0 = time.perf_counter()
        bare.connect()
        if not bare.done.wait(timeout):
            raise TimeoutError(f"bare subscriber got {bare.events}/{total} events")
        bare_s = time.perf_counter() - t0
        cpu["bare"] = _since(cpu0)
        bare.disconnect()
        seconds: dict[str, float] = {}
        for group, db in dbs.items():  # on and off interleaved per backend
            with rollups_switched(urls[group][1]):
                seconds[group] = _drain_ingest(
                    port, group, db, urls[group][0], total, workers, timeout, cpu
                )
        for db in dbs.values():
            db.close()
    sqlite_s, pg_s = seconds["sqlite"], seconds.get("postgres")
    bare_eps = total / bare_s
    result = {
        "bare_eps": round(bare_eps),
        "sqlite_eps": round(total / sqlite_s),
        "postgres_eps": round(total / pg_s) if pg_s else None,
        "ratio_sqlite": round(total / sqlite_s / bare_eps, 3),
        "ratio_postgres": round(total / pg_s / bare_eps, 3) if pg_s else None,
        "rollups_off_eps": {
            g.removesuffix("-off"): round(total / v)
            for g, v in seconds.items()
            if g.endswith("-off")
        },
        # 1 - (events/s with rollups) / (events/s without): the share of throughput they cost.
        "rollup_cost": {
            g.removesuffix("-off"): round(1 - v / seconds[g.removesuffix("-off")], 3)
            for g, v in seconds.items()
            if g.endswith("-off")
        },
        "events": total,
        "events_per_message": per_message,
        "messages": len(messages),
        "payload_mb": round(payload_mb, 1),
        "publish_eps": round(total / publish_s),
        "ingest_workers": workers,
        "cpu_count": os.cpu_count(),
        # Machine-wide CPU per event while each drain ran (all processes, broker and database
        # server included); cpu_count / this is the most any design of that shape could reach.
        "cpu_us_per_event": {
            k: None if v is None else round(v / total * 1e6, 2) for k, v in cpu.items()
        },
    }
    return result
