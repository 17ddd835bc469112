"""The agent end to end, as a subprocess against a real Mosquitto.

1. A short clip played live with a simulated card swipe (TCP reader); the broker is stopped
   for a few seconds mid-run and restarted: every event arrives exactly once after
   de-duplication by ID, with gap-free sequence numbers. The same run feeds the privacy test.
2. An agent killed with SIGKILL while the broker is down, then restarted: nothing that was in
   its outbox is lost.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import Broker, free_port

from storelens.contract import parse_envelope, topics
from storelens.contract.commands import Ack, OptOutList
from storelens.edge.outbox import Outbox
from storelens.pseudonym import generate_key_file, load_key

pytestmark = pytest.mark.slow
CARD = "6012345678901234"
CLIP_FRAMES = 70
AGENT = [sys.executable, "-c", "from storelens.cli import app; app()", "edge", "run"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, sample_video: Path) -> Path:
    """The first 70 frames (7 s at 10 fps) of the sample video."""
    import cv2

    out = tmp_path_factory.mktemp("clip") / "clip.avi"
    cap = cv2.VideoCapture(str(sample_video))
    writer = None
    for _ in range(CLIP_FRAMES):
        ok, frame = cap.read()
        assert ok
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
        writer.write(frame)
    assert writer is not None
    writer.release()
    cap.release()
    return out


@dataclass
class Collector:
    """A persistent-session QoS 1 subscriber to everything under storelens/v1/, playing the
    cloud: it records each envelope, then sends the device its receipt (`Ack`)."""

    port: int
    receipts: bool = True
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    subscribed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"collector-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{topics.ROOT}/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload))
        where = topics.parse(msg.topic)
        if self.receipts and where and where.kind in ("events", "status"):
            batch = parse_envelope(msg.payload).batch_id
            client.publish(
                topics.ack(where.store, where.device), Ack(batch_ids=[batch]).model_dump_json(), 1
            )

    def start(self) -> None:
        self.client.connect_async("127.0.0.1", self.port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self.lock:
            return list(self.messages)

    def events(self) -> dict[uuid.UUID, object]:
        """Every event received on events/status topics, de-duplicated by event ID."""
        out = {}
        for topic, payload in self.snapshot():
            where = topics.parse(topic)
            if where and where.kind in ("events", "status"):
                for ev in parse_envelope(payload).events:
                    out[ev.id] = ev
        return out

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return predicate()


def write_config(tmp: Path, port: int, clip: Path, reader_port: int, *, realtime: bool) -> Path:
    key = tmp / "pseudonym.key"
    if not key.exists():
        generate_key_file(key)
    cfg = {
        "store": "store-e2e",
        "device": "box-1",
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.2, "reconnect_max_s": 1},
        "model": {"path": "asset:models/yolox_nano.onnx", "confidence": 0.2, "threads": 1},
        "cameras": [
            {
                "id": "plaza",
                "source": str(clip),
                "source_fps": 10,
                "realtime": realtime,
                "occupancy_interval_s": 2,
                "zones": [
                    {
                        "name": "plaza",
                        "min_dwell_s": 1,
                        "points": [
                            [335, 205],
                            [560, 192],
                            [700, 330],
                            [700, 430],
                            [560, 400],
                            [335, 318],
                        ],
                    }
                ],
            }
        ],
        "readers": [
            {
                "type": "tcp",
                "id": "till",
                "port": reader_port,
                "camera": "plaza",
                "zone": [[0, 0], [768, 0], [768, 576], [0, 576]],
                "clear_ratio": 0.9,
            }
        ],
        "privacy": {"key_id": "k1", "key_file": str(key)},
        # Receipts sent while the broker was down are lost: resend soon, within the drain.
        "outbox": {"path": str(tmp / "outbox.db"), "batch_interval_s": 0.3, "ack_timeout_s": 2},
        "status_interval_s": 1,
    }
    path = tmp / "device.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def start_agent(config: Path, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*AGENT, "--config", str(config), "--drain-s", "10", *extra],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def swipe(port: int, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(text.encode() + b"\n")
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def gap_free(events: dict) -> bool:
    seqs = sorted(ev.seq for ev in events.values())
    return bool(seqs) and seqs == list(range(1, seqs[-1] + 1))


@dataclass
class OutageRun:
    messages: list[tuple[str, bytes]]
    events: dict
    outage: tuple[float, float]
    returncode: int
    workdir: Path
    token: str
    raw_count: int


@pytest.fixture(scope="module")
def outage_run(tmp_path_factory: pytest.TempPathFactory, clip: Path) -> Iterator[OutageRun]:
    tmp = tmp_path_factory.mktemp("outage")
    broker = Broker(
        free_port(),
        tmp,
        extra_conf=f"persistence true\npersistence_location {tmp}/\nautosave_interval 1\n",
    )
    broker.start()
    collector = Collector(broker.port)
    collector.start()
    reader_port = free_port()
    config = write_config(tmp, broker.port, clip, reader_port, realtime=True)
    agent = start_agent(config, tmp / "agent.log")
    try:
        assert collector.wait_for(
            lambda: (
                (topics.availability("store-e2e", "box-1"), topics.ONLINE) in collector.snapshot()
            ),
            30,
        ), (tmp / "agent.log").read_text()
        swipe(reader_port, f";{CARD}=29121010000?")
        # a malformed command must not hurt the agent
        collector.client.publish(topics.cmd("store-e2e", "box-1"), b"{not json", qos=1)
        time.sleep(1.5)
        broker.stop()
        down = time.time()
        time.sleep(2.5)
        broker.start()
        up = time.time()
        rc = agent.wait(60)
        collector.wait_for(
            lambda: (
                (topics.availability("store-e2e", "box-1"), topics.OFFLINE) in collector.snapshot()
                and gap_free(collector.events())
            ),
            20,
        )
        yield OutageRun(
            collector.snapshot(),
            collector.events(),
            (down, up),
            rc,
            tmp,
            load_key("k1", path=tmp / "pseudonym.key").token(CARD),
            sum(1 for t, _ in collector.snapshot() if not t.endswith("availability")),
        )
    finally:
        if agent.poll() is None:
            agent.kill()
        collector.stop()
        broker.stop()


def test_broker_outage_delivers_every_event_exactly_once(outage_run: OutageRun) -> None:
    run = outage_run
    log = (run.workdir / "agent.log").read_text()
    assert run.returncode == 0, log
    events = run.events
    assert gap_free(events), sorted(ev.seq for ev in events.values())
    types = {ev.type for ev in events.values()}
    assert {"visit_started", "visit_ended", "occupancy", "device_status", "card_swipe"} <= types
    down, up = run.outage
    during = [ev for ev in events.values() if down + 0.5 < ev.ts.timestamp() < up - 0.5]
    assert any(ev.type == "device_status" for ev in during)  # produced while the broker was down
    statuses = [ev for ev in events.values() if ev.type == "device_status"]
    assert any(s.outbox_depth > 0 for s in statuses)  # the backlog was visible in the status
    assert statuses[-1].readers[0].reader == "till"
    # everything was delivered: the outbox is empty after the agent's drain
    assert Outbox(run.workdir / "outbox.db").depth == 0


def test_card_swipe_is_pseudonymized_and_linked_visit_carries_member(
    outage_run: OutageRun,
) -> None:
    swipes = [ev for ev in outage_run.events.values() if ev.type == "card_swipe"]
    assert len(swipes) == 1
    sw = swipes[0]
    assert sw.member == outage_run.token and sw.key_id == "k1" and sw.reader == "till"
    assert sw.reason in {"linked", "ambiguous", "nobody_in_zone"}
    if sw.reason == "linked":
        later = [
            ev
            for ev in outage_run.events.values()
            if getattr(ev, "visit_id", None) == sw.visit_id and ev.type == "visit_ended"
        ]
        assert later and all(ev.member == sw.member for ev in later)


BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{120,}={0,2}")
FORBIDDEN_KEYS = {"track", "track_id", "tracker_id", "image", "crop", "embedding", "face", "card"}


def _keys(obj: object) -> Iterator[tuple[str, object]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k, v
            yield from _keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _keys(v)


def test_privacy_nothing_identifying_leaves_the_device(outage_run: OutageRun) -> None:
    """Every payload on every topic: no card number, no image data, no track numbers."""
    assert outage_run.messages
    for topic, payload in outage_run.messages:
        assert CARD.encode() not in payload, topic
        assert b"\xff\xd8\xff" not in payload and b"\x89PNG" not in payload, topic
        assert not BASE64_RUN.search(payload), topic
        if topic.endswith("availability"):
            assert payload in (topics.ONLINE, topics.OFFLINE)
            continue
        if topic.endswith(("/cmd", "/ack")):
            continue  # the test's own malformed command and receipts
        for key, value in _keys(json.loads(payload)):
            assert key.lower() not in FORBIDDEN_KEYS, (topic, key)
            if key == "visit_id" and value is not None:
                assert uuid.UUID(value).version == 4  # random, not derived from a track
    # nor is it written to the device's disk or log
    for path in outage_run.workdir.iterdir():
        if path.is_file() and path.suffix != ".avi":
            assert CARD.encode() not in path.read_bytes(), path


def test_sigkill_then_restart_loses_nothing_from_the_outbox(
    broker: Broker, tmp_path: Path, clip: Path
) -> None:
    broker.stop()  # offline from the start: everything stays in the outbox
    config = write_config(tmp_path, broker.port, clip, free_port(), realtime=False)
    db = tmp_path / "outbox.db"
    agent = start_agent(config, tmp_path / "agent.log")
    try:
        deadline = time.monotonic() + 60
        stored: list[tuple[int, str]] = []
        while time.monotonic() < deadline and len(stored) < 20:
            time.sleep(0.2)
            if db.exists():
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                    try:
                        stored = conn.execute("SELECT seq, body FROM outbox").fetchall()
                    except sqlite3.OperationalError:
                        stored = []
        assert len(stored) >= 20, (tmp_path / "agent.log").read_text()
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
    with sqlite3.connect(db) as conn:
        killed = {json.loads(b)["id"] for _, b in conn.execute("SELECT seq, body FROM outbox")}
    assert len(killed) >= 20

    broker.start()
    retained = OptOutList(key_id="k1", tokens=["ab" * 32]).model_dump_json().encode()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    publisher.publish(
        topics.cmd("store-e2e", "box-1"), retained, qos=1, retain=True
    ).wait_for_publish(5)
    publisher.disconnect()
    publisher.loop_stop()
    collector = Collector(broker.port)
    collector.start()
    try:
        agent = start_agent(config, tmp_path / "agent2.log", "--max-frames", "10")
        assert agent.wait(60) == 0, (tmp_path / "agent2.log").read_text()
        collector.wait_for(lambda: killed <= {str(i) for i in collector.events()}, 10)
        received = {str(i) for i in collector.events()}
    finally:
        collector.stop()
    assert killed <= received
    assert gap_free(collector.events())
    assert Outbox(db).depth == 0
    # the retained opt-out list reached the agent and was kept for offline restarts
    saved = json.loads((tmp_path / "outbox.optout.json").read_text())
    assert saved == {"k1": ["ab" * 32]}
