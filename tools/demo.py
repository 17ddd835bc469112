"""`storelens demo`: the whole loop on one machine, nothing installed as a service.

A private Mosquitto on a free port (without Mosquitto, amqtt inside this process), the cloud
on SQLite seeded with a demo chain, the API (uvicorn) with an in-process ingest worker, and an
edge agent (its own process) playing the sample video in real time as the sample store's
camera, with a TCP card reader at the entrance that a simulator swipes seeded members' cards
into. After a short delay an online order arrives through the web-shop webhook and is routed
to the store as a ship-from-store task. The ops and POS URLs and their logins are printed;
Ctrl-C stops everything.
``--duration S`` runs headless for S seconds and prints what flowed as JSON, alone on stdout
(progress goes to stderr), then exits non-zero if a step of the story did not happen
(`storelens.tools.demo_story`), with its reason.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

SAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "firmware_config" / "sample.yaml"
STORE, DEVICE, CAMERA = "sample-store", "sample-edge", "plaza"
READER_ZONE = "west_walk"  # the card reader stands at the entrance walk
READER_WAIT_S = 30.0  # how long a swipe waits for the agent's reader to open
HTTP_TIMEOUT_S = 30.0  # a POS call on a loaded machine (the CI runner's 2 cores) may be slow
SWIPE_EVERY_S = 15.0
ORDER_AFTER_S = 20.0
INSTORE_DAYS = 28


class BrokerChoice(StrEnum):
    auto = "auto"
    mosquitto = "mosquitto"
    amqtt = "amqtt"


@dataclass
class DemoStats:
    events_published: int = 0
    events_ingested: int = 0
    device_statuses: int = 0
    dead_letters: int = 0
    outbox_pending: int = 0
    outbox_lost: int = 0
    footfall_in: int = 0
    zone_visits: int = 0
    swipes_sent: int = 0
    swipes_linked: int = 0
    recommendations_served: int = 0
    offers_served: int = 0
    orders_placed: int = 0
    fulfillment_tasks: int = 0
    tasks_pushed: int = 0
    ran_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class Demo:
    def __init__(
        self, workdir: Path, port: int, members: int, seed: int, broker: str = "auto"
    ) -> None:
        self.workdir = workdir
        self.broker_kind = broker
        self.port = port
        self.members = members
        self.seed = seed
        self.stats = DemoStats()
        self.stop = threading.Event()
        self.base = f"http://127.0.0.1:{port}"
        self.edge: subprocess.Popen | None = None
        self.server: Any = None
        self.builder: Any = None  # the recommendation builder's Services
        self.server_thread: threading.Thread | None = None
        self.broker: Any = None
        self.threads: list[threading.Thread] = []
        self.live_since = time.time()  # set again when the agent starts
        self.order_id: str | None = None
        self.pushed_orders: list[str] = []  # order IDs of the tasks pushed to the POS
        self.assets: dict[str, Path] = {}

    # -- setup ---------------------------------------------------------------------------
    def find_assets(self) -> None:
        """The sample model and video, before anything starts: without them (no
        STORELENS_ASSETS and no network) the demo stops here with the reason."""
        from storelens.assets import SAMPLE_MODEL, SAMPLE_VIDEO, find_asset

        self.assets = {name: find_asset(name) for name in (SAMPLE_MODEL, SAMPLE_VIDEO)}

    def prepare(self) -> None:
        from storelens.cloud.db import connect
        from storelens.pseudonym import generate_key_file, load_key
        from storelens.tools.brokers.local import open_broker
        from storelens.tools.seed import chain as seeding

        if self.workdir.exists():
            shutil.rmtree(self.workdir)  # a demo always starts from a fresh chain
        self.workdir.mkdir(parents=True)
        self.key_file = generate_key_file(self.workdir / "pseudonym.key")
        key = load_key("demo-k1", path=self.key_file)
        self.db_url = f"sqlite:///{self.workdir / 'storelens.db'}"
        db = connect(self.db_url)
        try:
            # Sales for 90 days and in-store traffic (visits, dwell, paths, device reports) for
            # the last INSTORE_DAYS: the ops page's default week and the week it compares with
            # have footfall beside the seeded sales, and the live device joins its history.
            result = seeding.seed(db, seed=self.seed, key=key, members=self.members, days=90,
                                  instore_days=INSTORE_DAYS)  # fmt: skip
        finally:
            db.close()
        self.credentials = result.credentials
        (self.workdir / "credentials.json").write_text(json.dumps(self.credentials, indent=2))
        (self.workdir / "credentials.json").chmod(0o600)
        self.broker = open_broker(self.broker_kind, self.workdir / "broker")
        self.broker.start()

    def start_cloud(self) -> None:
        import uvicorn

        from storelens.cloud.api.app import create_app
        from storelens.cloud.settings import Settings

        settings = Settings(
            db_url=self.db_url,
            mqtt_host=self.broker.host,
            mqtt_port=self.broker.port,
            mqtt_protocol=self.broker.protocol,
            ingest_in_process=True,
            pseudonym_key_id="demo-k1",
            pseudonym_key_file=self.key_file,
            mqtt_client_id=f"demo-ingest-{uuid.uuid4().hex[:8]}",
        )
        self.app = create_app(settings)
        # The recommendation builder, a process of its own in a deployment, here a thread on
        # its own connection: it builds and stores the model, the API loads it.
        from storelens.cloud.db import connect
        from storelens.cloud.services import Services

        self.builder = Services.for_builder(settings, connect(self.db_url))
        self.builder.recommendations()  # builds and stores now, then every 15 min
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.server_thread = threading.Thread(target=self.server.run, name="api", daemon=True)
        self.server_thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.server_thread.is_alive():
                raise RuntimeError(f"the API did not start on port {self.port}")
            time.sleep(0.1)

    def edge_config(self) -> Path:
        import yaml

        from storelens.assets import ASSET_PREFIX
        from storelens.edge.config import parse_config
        from storelens.tools.brokers.local import free_port

        doc = yaml.safe_load(SAMPLE_CONFIG.read_text())
        camera = doc["cameras"][0]
        camera.update(realtime=True, loop=True, occupancy_interval_s=15)
        # The files found up front, so the agent never tries a download of its own.
        for holder, key in ((doc["model"], "path"), (camera, "source")):
            ref = str(holder[key])
            if ref.startswith(ASSET_PREFIX):
                holder[key] = str(self.assets[ref[len(ASSET_PREFIX) :]])
        zone = next(z["points"] for z in camera["zones"] if z["name"] == READER_ZONE)
        self.reader_port = free_port()
        doc.update(
            mqtt={"host": self.broker.host, "port": self.broker.port},
            privacy={"key_id": "demo-k1", "key_file": str(self.key_file)},
            outbox={"path": str(self.workdir / "outbox.db"), "batch_interval_s": 1.0},
            status_interval_s=10,
            readers=[{
                "id": "entrance-reader", "type": "tcp", "host": "127.0.0.1",
                "port": self.reader_port, "mode": "listen", "camera": CAMERA, "zone": zone,
                "format": "digits", "dedupe_s": 5,
            }],
        )  # fmt: skip
        parse_config(doc, "demo device")  # fail here, clearly, rather than in the agent
        path = self.workdir / "device.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def start_edge(self) -> None:
        config = self.edge_config()
        self.live_since = time.time()
        log = (self.workdir / "edge.log").open("ab")
        self.edge = subprocess.Popen(
            [sys.executable, "-c", "from storelens.cli import app; app()", "edge", "run",
             "--config", str(config), "--drain-s", "5"],
            stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C comes to us; we stop the agent so it can drain
        )  # fmt: skip

    # -- the simulated store and web shop ---------------------------------------------------
    def _client(self) -> Any:
        import httpx

        return httpx.Client(base_url=self.base, timeout=HTTP_TIMEOUT_S)

    def _swipes(self) -> None:
        """Members walk in and swipe their card at the entrance reader."""
        import socket

        cards = self.credentials["demo_cards"]
        i = 0  # the first swipe at 8 s, then every SWIPE_EVERY_S (demo_story's schedule)
        while not self.stop.wait(SWIPE_EVERY_S if i else 8.0):
            card = cards[i % len(cards)]
            # The agent opens its reader port once its model has loaded, which on a busy
            # machine can be after the first swipe is due: a member waits at a reader that is
            # still starting rather than walking off (the demo counted an error).
            deadline = time.monotonic() + READER_WAIT_S
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", self.reader_port), 3) as s:
                        s.sendall(card.encode() + b"\n")
                    self.stats.swipes_sent += 1
                    break
                except OSError as exc:
                    if time.monotonic() > deadline or self.stop.wait(0.5):
                        self._error(f"card reader not reachable: {exc}")
                        break
            i += 1
            self._serve_recommendations(card)

    def _serve_recommendations(self, card: str) -> None:
        """What the POS does when the member comes to the till: look up, recommend."""
        token = self.credentials["pos_tokens"][STORE]
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with self._client() as http:
                found = http.post("/api/v1/pos/members/lookup", json={"card_number": card},
                                  headers=headers)  # fmt: skip
                if found.status_code != 200:
                    self._error(f"member lookup: HTTP {found.status_code}")
                    return
                member_id = found.json()["id"]
                recs = http.get(f"/api/v1/pos/members/{member_id}/recommendations",
                                headers=headers)  # fmt: skip
                if recs.status_code == 200:
                    self.stats.recommendations_served += len(recs.json()["items"])
                else:
                    self._error(f"recommendations: HTTP {recs.status_code}")
                offered = http.get(f"/api/v1/pos/members/{member_id}/offers", headers=headers)
                if offered.status_code == 200:
                    self.stats.offers_served += len(offered.json()["offers"])
                else:
                    self._error(f"offers: HTTP {offered.status_code}")
        except Exception as exc:  # the demo keeps going; the summary shows the error
            self._error(f"POS call failed: {exc}")

    def _order(self) -> None:
        """The web shop sends an online order; routing picks the store for ship-from-store."""
        if self.stop.wait(ORDER_AFTER_S):
            return
        from storelens.cloud.db import connect

        db = connect(self.db_url, migrate=False)
        try:
            rows = db.query(
                "SELECT sku FROM inventory WHERE store = ? AND on_hand - reserved > 5 "
                "ORDER BY on_hand DESC LIMIT 2",
                (STORE,),
            )
        finally:
            db.close()
        admin = self.credentials["admin"]
        order = {
            "external_id": f"DEMO-{uuid.uuid4().hex[:6].upper()}",
            "items": [{"sku": r["sku"], "qty": 1} for r in rows],
            "fulfillment_type": "ship",
            # A customer a few streets from the sample store, so routing picks it.
            "shipping": {"name": "Camille Martin", "address": "170 rue de Rivoli", "city": "Paris",
                         "postcode": "75001", "country": "FR", "lat": 48.8622, "lon": 2.3400},
        }  # fmt: skip
        try:
            with self._client() as http:
                login = http.post("/api/v1/auth/login", json=admin)
                headers = {"Authorization": f"Bearer {login.json()['token']}",
                           "Idempotency-Key": f"demo-{uuid.uuid4()}"}  # fmt: skip
                placed = http.post("/api/v1/orders", json=order, headers=headers)
                if placed.status_code in (200, 201):
                    self.order_id = placed.json()["id"]
                    self.stats.orders_placed += 1
                else:
                    self._error(f"order webhook: HTTP {placed.status_code} {placed.text[:200]}")
        except Exception as exc:
            self._error(f"order webhook failed: {exc}")

    def _pushes(self) -> None:
        """The store's POS push stream, as the web POS reads it: counts the tasks pushed for
        the demo's order (started before the order, so the push cannot be missed)."""
        token = self.credentials["pos_tokens"][STORE]
        headers = {"Authorization": f"Bearer {token}"}
        while not self.stop.is_set():
            try:
                with self._client() as http, http.stream(
                    "GET", "/api/v1/pos/stream", params={"keepalive_s": 1}, headers=headers,
                    timeout=10,
                ) as stream:  # fmt: skip
                    kind = ""
                    for line in stream.iter_lines():
                        if self.stop.is_set():
                            return
                        if line.startswith("event:"):
                            kind = line[6:].strip()
                        elif line.startswith("data:") and kind == "task":
                            task = json.loads(line[5:]).get("payload", {}).get("task", {})
                            # Matched to the demo's order later: the push goes out while
                            # the webhook call that tells us the order's ID is still open.
                            self.pushed_orders.append(str(task.get("order_id")))
            except Exception as exc:  # the stream ended or failed: reconnect, say so once
                if not self.stop.is_set():
                    self._error(f"POS push stream: {exc}")
                    self.stop.wait(1.0)

    def _error(self, message: str) -> None:
        if message not in self.stats.errors:
            self.stats.errors.append(message)

    # -- observing -------------------------------------------------------------------------
    def refresh_stats(self) -> DemoStats:
        from storelens.cloud.db import connect

        db = connect(self.db_url, migrate=False)
        try:
            s = self.stats
            # Live rows only: the seeded history of the same store and device came before.
            live = "store = ? AND device = ? AND received_at >= ?"
            args = (STORE, DEVICE, self.live_since)
            s.events_ingested = db.scalar(f"SELECT COUNT(*) FROM events WHERE {live}", args)
            s.footfall_in = db.scalar(
                f"SELECT COUNT(*) FROM events WHERE {live} AND type = 'line_crossing' "
                "AND direction = 'in'", args,
            )  # fmt: skip
            s.zone_visits = db.scalar(
                f"SELECT COUNT(*) FROM events WHERE {live} AND type = 'zone_visit'", args
            )
            s.swipes_linked = db.scalar(
                f"SELECT COUNT(*) FROM events WHERE {live} AND type = 'card_swipe' "
                "AND visit_id IS NOT NULL", args,
            )  # fmt: skip
            s.dead_letters = db.scalar("SELECT COUNT(*) FROM dead_letters")
            if self.order_id:  # the demo's order only: the seeded chain has tasks of its own
                s.fulfillment_tasks = db.scalar(
                    "SELECT COUNT(*) FROM fulfillment_tasks WHERE store_id = ? AND order_id = ?",
                    (STORE, self.order_id),
                )
        except Exception as exc:
            self._error(f"reading stats: {exc}")
        finally:
            db.close()
        if self.order_id:
            self.stats.tasks_pushed = self.pushed_orders.count(self.order_id)
        ingest = getattr(getattr(self, "app", None), "state", None)
        worker = getattr(ingest, "ingest", None)
        if worker is not None:  # what the cloud's ingest took in, not what the device queued
            self.stats.device_statuses = worker.totals.statuses
        self._read_outbox()
        return self.stats

    def _read_outbox(self) -> None:
        """Published = sequence numbers handed out - rows still in the outbox - rows dropped
        by its bound. Counts every device event, status reports included."""
        import sqlite3

        path = self.workdir / "outbox.db"
        if not path.exists():
            return
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2) as conn:
                tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
                if not {"meta", "outbox"} <= tables:
                    return  # the agent was stopped before it made its outbox: nothing sent
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                pending = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        except sqlite3.Error as exc:
            self._error(f"reading the outbox: {exc}")
            return
        s = self.stats
        s.outbox_pending = pending
        s.outbox_lost = int(meta.get("lost", 0))
        handed_out = max(0, int(meta.get("next_seq", 1)) - 1)
        s.events_published = max(0, handed_out - pending - s.outbox_lost)

    # -- lifecycle -------------------------------------------------------------------------
    def banner(self) -> str:
        admin = self.credentials["admin"]
        pos = self.credentials["pos_tokens"][STORE]
        cards = ", ".join(self.credentials["demo_cards"])
        return (
            f"\nstorelens demo is running (data in {self.workdir})\n"
            f"  Broker: {self.broker.name} on {self.broker.host}:{self.broker.port}\n"
            f"  Ops:  {self.base}/ops    login: {admin['username']} / {admin['password']}\n"
            f"  POS:  {self.base}/pos#token={pos}    (store {STORE}, device till-1)\n"
            f"  Member cards being swiped at the entrance: {cards}\n"
            f"  Footfall and dwell come from the sample video ({CAMERA} camera, real time);\n"
            f"  an online order arrives after {ORDER_AFTER_S:.0f} s as a ship-from-store task.\n"
            "  Ctrl-C stops everything.\n"
        )

    def run(self, duration: float | None, echo: Any) -> DemoStats:
        interrupted = threading.Event()
        # Ctrl-C, `kill` (make and supervisors send SIGTERM) and a closed terminal all stop
        # the demo the same way, from the first step on: the agent and the broker run in
        # sessions of their own, so a demo that died on a signal would leave them running.
        previous = {
            sig: signal.signal(sig, lambda *_: interrupted.set())
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        try:
            for step in (self.find_assets, self.prepare, self.start_cloud, self.start_edge):
                if interrupted.is_set():
                    return self.stats  # stopped while starting: nothing flowed yet
                step()
            for target in (self._pushes, self._swipes, self._order):
                t = threading.Thread(target=target, name=target.__name__, daemon=True)
                t.start()
                self.threads.append(t)
            echo(self.banner())
            self._watch(duration, echo, interrupted)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.shutdown()
        return self.refresh_stats()

    def _watch(self, duration: float | None, echo: Any, interrupted: threading.Event) -> None:
        """Print progress every 10 s until the duration is up, a signal, or the agent dies."""
        started = time.monotonic()
        while not interrupted.is_set():
            left = None if duration is None else duration - (time.monotonic() - started)
            if left is not None and left <= 0:
                return
            interrupted.wait(min(10.0, left) if left is not None else 10.0)
            self.stats.ran_s = round(time.monotonic() - started, 1)
            if self.edge is not None and self.edge.poll() is not None:
                self._error(f"edge agent exited with {self.edge.returncode} (see edge.log)")
                return
            s = self.refresh_stats()
            echo(
                f"[{time.monotonic() - started:5.0f} s] events stored {s.events_ingested}, "
                f"footfall in {s.footfall_in}, zone visits {s.zone_visits}, swipes "
                f"{s.swipes_sent} ({s.swipes_linked} linked), recommendations "
                f"{s.recommendations_served}, offers {s.offers_served}, ship-from-store tasks "
                f"{s.fulfillment_tasks} ({s.tasks_pushed} pushed)"
            )

    def shutdown(self) -> None:
        self.stop.set()
        if self.edge is not None and self.edge.poll() is None:
            self.edge.send_signal(signal.SIGINT)  # the agent drains its outbox, then exits
            try:
                self.edge.wait(30)
            except subprocess.TimeoutExpired:
                self.edge.kill()
                self.edge.wait(5)
        time.sleep(1.0)  # the in-process ingest commits the last batches
        if self.server is not None:
            self.server.should_exit = True
            if self.server_thread is not None:
                self.server_thread.join(30)
        for t in self.threads:
            t.join(15)
        if self.builder is not None:
            self.builder.close()
            self.builder.db.close()
        if self.broker is not None:
            self.broker.stop()


def demo(
    duration: float | None = typer.Option(
        None, min=5, help="Run headless for this many seconds, print what flowed, exit."
    ),
    port: int = typer.Option(8000, help="API port (a free one is picked if it is taken)."),
    workdir: Path = typer.Option(Path("var/demo"), help="Where the demo keeps its data."),
    members: int = typer.Option(1000, min=50, help="Members in the seeded chain."),
    seed: int = typer.Option(42, help="Seed of the generated chain."),
    broker: BrokerChoice = typer.Option(
        BrokerChoice.auto,
        case_sensitive=False,
        help="MQTT broker: auto = Mosquitto when installed, else amqtt inside this process.",
    ),
) -> None:
    """The whole loop on this machine: broker, cloud, API, edge agent on the sample video."""
    import socket

    from storelens.assets import AssetError
    from storelens.tools.brokers.local import BrokerUnavailable, free_port
    from storelens.tools.demo_story import problems

    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            port = free_port()
    runner = Demo(workdir.resolve(), port, members, seed, broker.value)
    # Headless, stdout carries the JSON summary alone (`| jq` works); the rest goes to stderr.
    progress = (lambda text: typer.echo(text, err=True)) if duration else typer.echo
    try:
        stats = runner.run(duration, progress)
    except AssetError as exc:
        typer.echo(f"error: the demo needs the sample model and video: {exc}", err=True)
        raise typer.Exit(2) from None
    except BrokerUnavailable as exc:
        typer.echo(f"error: the demo {exc}", err=True)
        raise typer.Exit(2) from None
    summary = {k: v for k, v in asdict(stats).items() if k != "errors"}
    failed = problems(summary, stats.ran_s)
    # Reasons first: the errors met on the way, then the steps of the story that did not happen.
    for message in stats.errors + failed:
        typer.echo(f"error: {message}", err=True)
    typer.echo(json.dumps({**summary, "errors": stats.errors, "failed_steps": failed}))
    if failed or stats.errors:  # a POS call that failed is a broken demo too, not a warning
        typer.echo(f"error: the demo did not do its whole job (data in {runner.workdir})", err=True)
        raise typer.Exit(1)
