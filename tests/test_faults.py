"""Fault suite: real processes on loopback, and after every fault the books balance exactly.

    published (device events + malformed messages) == stored + dead-lettered + reported lost

- "device": the real edge store-and-forward path (Outbox + Publisher) fed synthetic events,
  so a test controls exactly what was produced; the camera test runs the real agent.
- "cloud": `storelens cloud ingest` worker processes (MQTT 5 shared subscription).
- "reported lost": what the device told the cloud in its status (devices.lost_events).
- Malformed payloads are published among the events; each must become one dead letter and
  never stop a worker.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import free_port, wait_port

from storelens.cloud.db import Database, connect
from storelens.cloud.ingest.device_registry import register_device
from storelens.contract import topics
from storelens.contract.events import DeviceStatus, LineCrossing
from storelens.edge.config import CameraConfig, DeviceConfig, MqttConfig, OutboxConfig
from storelens.edge.outbox import Outbox
from storelens.edge.publish import Publisher
from storelens.tools.brokers.local import LocalBroker

STORE, DEVICE = "store-f", "box-f"
CLI = [sys.executable, "-c", "from storelens.cli import app; app()"]
_nonce = itertools.count()


# -- the pieces ---------------------------------------------------------------------------------
class SyntheticDevice:
    """The edge's real outbox and publisher, fed with events the test counts."""

    def __init__(
        self,
        workdir: Path,
        port: int,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        reconnect_min_s: float = 0.2,
        ack_timeout_s: float = 2.0,
    ) -> None:
        self.config = DeviceConfig(
            store=STORE,
            device=DEVICE,
            mqtt=MqttConfig(port=port, reconnect_min_s=reconnect_min_s, reconnect_max_s=5.0),
            cameras=[CameraConfig(id="door", source="0")],
            outbox=OutboxConfig(path=workdir / "outbox.db", max_bytes=max(max_bytes, 1024),
                                batch_interval_s=0.2, batch_max_events=100,
                                ack_timeout_s=ack_timeout_s),
        )  # fmt: skip
        self.outbox = Outbox(workdir / "outbox.db", max_bytes=max_bytes)
        self.publisher = Publisher(self.config, self.outbox)
        self.produced = 0
        self.malformed = 0
        self._raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fault-raw")
        self._raw.reconnect_delay_set(0.2, 1.0)
        self._raw.connect_async("127.0.0.1", port)
        self._raw.loop_start()

    def start(self) -> None:
        self.publisher.start()

    def produce(self, n: int) -> None:
        now = datetime.now(UTC)
        events = [
            LineCrossing(device=DEVICE, seq=self.outbox.next_seq(), ts=now, camera="door",
                         visit_id=uuid.uuid4(), line="entrance", direction="in")
            for _ in range(n)
        ]  # fmt: skip
        self.outbox.put(events)
        self.produced += n

    def publish_malformed(self) -> None:
        """A payload that breaks the contract, sent while the broker is up and acknowledged.

        Sent outside outage windows on purpose: a QoS 1 publish cut off by a broker restart may
        or may not have arrived, which would make the count, not the system, uncertain."""
        payload = json.dumps({"schema": "storelens.events", "version": "1.0",
                              "store": STORE, "nonce": next(_nonce)}).encode()  # fmt: skip
        deadline = time.monotonic() + 15
        while not self._raw.is_connected():  # e.g. just after the broker came up
            assert time.monotonic() < deadline, "raw client never connected"
            time.sleep(0.05)
        info = self._raw.publish(topics.events(STORE, DEVICE), payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), "the broker did not acknowledge a malformed message"
        self.malformed += 1

    def report_status(self) -> None:
        """What the agent does every status interval: tell the cloud what it dropped."""
        status = DeviceStatus(
            device=DEVICE, seq=self.outbox.next_seq(), ts=datetime.now(UTC),
            outbox_depth=self.outbox.depth, lost_events=self.outbox.lost,
        )  # fmt: skip
        self.outbox.put([status], kind="status")

    def drain(self, timeout: float = 30.0) -> None:
        self.report_status()
        assert self.publisher.drain(timeout), f"outbox still holds {self.outbox.depth}"

    def close(self) -> None:
        self.publisher.stop()
        self.outbox.close()
        self._raw.disconnect()
        self._raw.loop_stop()


class IngestWorkers:
    """`storelens cloud ingest` processes sharing one subscription."""

    def __init__(self, db_url: str, port: int, logdir: Path) -> None:
        self.db_url, self.port, self.logdir = db_url, port, logdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, broker: LocalBroker | None = None) -> None:
        """Start a worker; with ``broker``, wait until it holds its shared subscription."""
        log = (self.logdir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [*CLI, "cloud", "ingest", "--db", self.db_url, "--mqtt-host", "127.0.0.1",
             "--mqtt-port", str(self.port), "--client-id", f"fault-{name}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        if broker is not None:
            broker.wait_subscribed(f"fault-{name}", topics.shared(topics.EVENTS_ALL), 60)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    def log(self) -> str:
        return "\n".join(p.read_text()[-1500:] for p in self.logdir.glob("*.log"))


def books(db: Database) -> dict[str, int]:
    stored = db.scalar("SELECT COUNT(*) FROM events WHERE store = ? AND device = ?",
                       (STORE, DEVICE))  # fmt: skip
    # A redelivered malformed message is the same bytes; count each payload once.
    dead = db.scalar("SELECT COUNT(DISTINCT raw) FROM dead_letters")
    lost = db.scalar("SELECT lost_events FROM devices WHERE store = ? AND device = ?",
                     (STORE, DEVICE))  # fmt: skip
    return {"stored": int(stored), "dead": int(dead), "lost": int(lost or 0)}


def settle(
    db: Database, device: SyntheticDevice, workers: IngestWorkers, timeout: float = 45.0
) -> dict:
    """Wait until the cloud accounts for everything published; then check nothing extra comes."""
    published = device.produced + device.malformed
    deadline = time.monotonic() + timeout
    got = books(db)
    while time.monotonic() < deadline:
        got = books(db)
        if (
            got["stored"] + got["dead"] + got["lost"] >= published
            and got["lost"] == device.outbox.lost
        ):
            break
        time.sleep(0.3)
    time.sleep(1.0)  # anything duplicated or late would show now
    got = books(db)
    got["published"] = published
    assert got["stored"] + got["dead"] + got["lost"] == published, (got, workers.log())
    assert got["dead"] == device.malformed, got
    assert got["lost"] == device.outbox.lost, got
    return got


def run_traffic(device: SyntheticDevice, seconds: float, fault: Callable[[float], None]) -> None:
    """Produce ~200 events/s; call fault(t) each tick (faults start after 1.5 s). Malformed
    messages go out before the faults and after the traffic."""
    start = time.monotonic()
    tick = 0
    while (t := time.monotonic() - start) < seconds:
        device.produce(20)
        if tick in (2, 6):
            device.publish_malformed()
        fault(t)
        tick += 1
        time.sleep(0.1)
    device.publish_malformed()


def restart_once(
    stop: Callable[[], None], start: Callable[[], None], *, pause_s: float, after_s: float = 2.0
) -> Callable[[float], None]:
    """A `run_traffic` fault: the first tick after ``after_s`` stops a server, waits
    ``pause_s`` and starts it again."""
    done: list[float] = []

    def fault(t: float) -> None:
        if t > after_s and not done:
            done.append(t)
            stop()
            time.sleep(pause_s)
            start()

    return fault


@pytest.fixture
def cloud_db(tmp_path: Path) -> Iterator[tuple[str, Database]]:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    db = connect(url)
    register_device(db, STORE, DEVICE)
    yield url, db
    db.close()


# -- faults ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("persistence", [True, False], ids=["persistent", "amnesic"])
def test_broker_restart_during_ingest(
    tmp_path: Path, cloud_db: tuple[str, Database], persistence: bool
) -> None:
    """Mosquitto 2.0 restores no shared subscriptions after a restart (and, amnesic, nothing
    at all): what devices publish before the workers resubscribe is PUBACKed and dropped.
    Devices keep every envelope until the cloud's receipt, so those are sent again."""
    url, db = cloud_db
    broker = LocalBroker(tmp_path / "broker", persistence=persistence)
    broker.start()
    workers = IngestWorkers(url, broker.port, tmp_path)
    device = SyntheticDevice(tmp_path, broker.port)  # reconnects quickly, before the workers
    try:
        # A shared subscription gets nothing published before a member subscribes.
        workers.start("w1", broker)
        workers.start("w2", broker)
        device.start()
        # traffic keeps landing in the outbox meanwhile
        run_traffic(device, 6.0, restart_once(broker.stop, broker.start, pause_s=1.5))
        device.drain()
        got = settle(db, device, workers)
        assert got["lost"] == 0 and got["stored"] == device.produced
        assert workers.alive() == ["w1", "w2"]
    finally:
        device.close()
        workers.stop()
        broker.stop()


@pytest.mark.slow
def test_killed_worker_share_moves_to_the_other(
    tmp_path: Path, cloud_db: tuple[str, Database]
) -> None:
    """w1 is SIGKILLed and never comes back: w2 stores everything, including what w1 held
    unacknowledged when it died (the device sends it again for want of a receipt)."""
    url, db = cloud_db
    broker = LocalBroker(tmp_path / "broker", persistence=True)
    broker.start()
    workers = IngestWorkers(url, broker.port, tmp_path)
    device = SyntheticDevice(tmp_path, broker.port)
    try:
        workers.start("w1", broker)
        workers.start("w2", broker)
        device.start()
        marks: dict[str, float] = {}

        def kill(t: float) -> None:
            if t > 1.5 and "killed" not in marks:
                workers.kill("w1")
                marks["killed"] = time.monotonic()

        run_traffic(device, 5.0, kill)
        device.drain()
        got = settle(db, device, workers)
        assert got["lost"] == 0 and got["stored"] == device.produced
        assert workers.alive() == ["w2"]
        # Everything after the kill was stored without w1: its share moved at once, not only
        # after a resend timeout (the drain would otherwise have waited for resends).
        assert device.publisher.resent_envelopes <= 10, device.publisher.resent_envelopes
    finally:
        device.close()
        workers.stop()
        broker.stop()


def test_edge_outbox_bound_drops_oldest_and_reports_it(
    tmp_path: Path, cloud_db: tuple[str, Database]
) -> None:
    url, db = cloud_db
    port = free_port()
    broker = LocalBroker(tmp_path / "broker", port, persistence=True)
    workers = IngestWorkers(url, port, tmp_path)
    # Broker down: the device can only queue, and its outbox holds ~100 events.
    device = SyntheticDevice(tmp_path, port, max_bytes=30_000)
    try:
        for _ in range(40):
            device.produce(25)
        assert device.outbox.lost > 0, "the bound never dropped anything"
        assert device.outbox.size_bytes <= 30_000
        broker.start()
        workers.start("w1", broker)
        device.start()  # the device comes back online with its full outbox
        device.publish_malformed()
        device.drain()
        got = settle(db, device, workers)
        assert got["lost"] == device.outbox.lost > 0
        # What was dropped is the oldest: the stored events are the newest, without gaps.
        seqs = [r["seq"] for r in db.query("SELECT seq FROM events WHERE device = ? ORDER BY seq",
                                           (DEVICE,))]  # fmt: skip
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert seqs[-1] == device.produced  # event seqs 1..produced; the status came after
    finally:
        device.close()
        workers.stop()
        broker.stop()


# -- PostgreSQL restart: a private cluster, never the machine's shared server -------------------
def _pg_bin(name: str) -> str:
    for root in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (root / name).exists():
            return str(root / name)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"PostgreSQL server binaries ({name}) not installed")
    return found


class PrivatePostgres:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="storelens-pg-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as `postgres`
            shutil.chown(self.dir, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        initdb = [_pg_bin("initdb"), "-D", str(self.dir / "data"), "-U", "root", "--auth=trust"]
        subprocess.run([*self.as_user, *initdb], check=True, capture_output=True)
        self.url = f"postgresql://root@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
        subprocess.run([*self.as_user, _pg_bin("pg_ctl"), "-D", str(self.dir / "data"), "-o",
                        opts, "-l", str(self.dir / "log"), "-w", "-t", "30", *args],
                       check=True, capture_output=True)  # fmt: skip

    def start(self) -> None:
        self.ctl("start")
        wait_port(self.port)

    def stop(self) -> None:
        self.ctl("stop", "-m", "fast")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.slow
def test_postgres_restart_during_ingest(tmp_path: Path) -> None:
    pg = PrivatePostgres()
    broker = LocalBroker(tmp_path / "broker", persistence=True)
    try:
        pg.start()
        db = connect(pg.url)
        register_device(db, STORE, DEVICE)
        broker.start()
        workers = IngestWorkers(pg.url, broker.port, tmp_path)
        device = SyntheticDevice(tmp_path, broker.port)
        try:
            workers.start("w1", broker)
            workers.start("w2", broker)
            device.start()
            # workers' batches fail, stay unacknowledged, and are retried
            run_traffic(device, 6.0, restart_once(pg.stop, pg.start, pause_s=2.0))
            device.drain()
            db.close()
            db = connect(pg.url)  # this test's own connection died with the server too
            got = settle(db, device, workers, timeout=60)
            assert got["lost"] == 0 and got["stored"] == device.produced
            assert workers.alive() == ["w1", "w2"]
        finally:
            device.close()
            workers.stop()
            db.close()
    finally:
        broker.stop()
        pg.destroy()


# -- a camera stream cut, with the real agent ------------------------------------------------------
class MjpegCamera:
    """A network camera on loopback: MJPEG over HTTP at 10 fps, that the test can cut."""

    def __init__(self, video: Path, frames: int = 80, fps: float = 10.0) -> None:
        import cv2

        cap = cv2.VideoCapture(str(video))
        self.jpegs: list[bytes] = []
        for _ in range(frames):
            ok, frame = cap.read()
            if not ok:
                break
            self.jpegs.append(cv2.imencode(".jpg", frame)[1].tobytes())
        cap.release()
        self.port, self.fps = free_port(), fps
        self.cut = threading.Event()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        camera = self

        class Stream(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in itertools.count():
                    if camera.cut.is_set():
                        return
                    jpeg = camera.jpegs[i % len(camera.jpegs)]
                    head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                    try:
                        self.wfile.write(head % len(jpeg) + jpeg + b"\r\n")
                    except OSError:
                        return
                    time.sleep(1 / camera.fps)

        self.cut.clear()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Stream)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """The cut: open streams end, new connections are refused."""
        self.cut.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.mark.slow
def test_camera_stream_cut(
    tmp_path: Path, cloud_db: tuple[str, Database], sample_video: Path
) -> None:
    import yaml

    from storelens.contract import parse_envelope

    url, db = cloud_db
    register_device(db, "sample-store", "sample-edge")
    broker = LocalBroker(tmp_path / "broker", persistence=True)
    broker.start()
    workers = IngestWorkers(url, broker.port, tmp_path)
    camera = MjpegCamera(sample_video)
    camera.start()
    doc = yaml.safe_load((Path(__file__).parent.parent / "firmware_config/sample.yaml").read_text())
    doc["cameras"][0].update(source=camera.url, source_fps=10)
    doc.update(mqtt={"port": broker.port, "reconnect_min_s": 0.5},
               outbox={"path": str(tmp_path / "edge-outbox.db"), "batch_interval_s": 0.5},
               status_interval_s=1)  # fmt: skip
    config = tmp_path / "device.yaml"
    config.write_text(yaml.safe_dump(doc))

    statuses: dict[str, dict] = {}
    observer = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fault-observer")

    def on_status(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        for ev in parse_envelope(msg.payload).events:
            statuses[str(ev.id)] = {"seq": ev.seq, "online": [c.online for c in ev.cameras]}

    observer.on_message = on_status
    observer.connect("127.0.0.1", broker.port)
    observer.subscribe(topics.status("sample-store", "sample-edge"), qos=1)
    observer.loop_start()
    agent = None
    try:
        workers.start("w1", broker)
        log = (tmp_path / "agent.log").open("ab")
        agent = subprocess.Popen(
            [*CLI, "edge", "run", "--config", str(config), "--drain-s", "15"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not any(all(s["online"]) and s["online"] for s in statuses.values()):
            assert time.monotonic() < deadline and agent.poll() is None, "camera never online"
            time.sleep(0.2)
        time.sleep(4)  # events flow
        camera.stop()  # the cut
        while not any(s["online"] == [False] for s in statuses.values()):
            assert time.monotonic() < deadline + 30, "the cut camera was never reported offline"
            time.sleep(0.2)
        assert agent.poll() is None, "the agent died with its camera"
        offline_seen = len(statuses)
        camera.start()  # the stream comes back: the feed reopens it by itself
        deadline = time.monotonic() + 60
        while not any(s["online"] == [True] for s in list(statuses.values())[offline_seen:]):
            assert time.monotonic() < deadline, "the camera did not come back online"
            time.sleep(0.2)
        time.sleep(2)
        agent.send_signal(signal.SIGINT)  # closes open visits, drains the outbox, exits
        assert agent.wait(60) == 0, (tmp_path / "agent.log").read_text()[-2000:]

        with contextlib.closing(Outbox(tmp_path / "edge-outbox.db")) as outbox:
            handed_out, pending, lost = outbox.next_seq() - 1, outbox.depth, outbox.lost
        assert pending == 0 and lost == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = db.query("SELECT seq FROM events WHERE device = 'sample-edge'")
            stored = {r["seq"] for r in rows}
            status_seqs = {s["seq"] for s in statuses.values()}
            if len(stored) + len(status_seqs) >= handed_out:
                break
            time.sleep(0.3)
        # Every sequence number the device handed out is accounted for exactly once.
        assert stored.isdisjoint(status_seqs)
        assert stored | status_seqs == set(range(1, handed_out + 1)), (len(stored), handed_out)
        assert db.scalar("SELECT COUNT(*) FROM dead_letters") == 0
        assert any(r["type"] == "zone_visit" or r["type"] == "visit_ended" for r in db.query(
            "SELECT DISTINCT type FROM events WHERE device = 'sample-edge'"))  # fmt: skip
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
        observer.disconnect()
        observer.loop_stop()
        camera.stop()
        workers.stop()
        broker.stop()
