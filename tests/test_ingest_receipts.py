"""The cloud's receipts (`Ack` on storelens/v1/{store}/{device}/ack) with a real Mosquitto and
both databases: sent only after the batch commits, again for a resend, for dead letters too
(with the batch ID of the raw bytes when the envelope did not parse), to the publishing
topic's device only; and clean sessions: a killed worker's share moves to the other at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import ingest_settings, wait_for

from storelens.cloud.commerce import stores
from storelens.cloud.db import connect
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest.worker import IngestWorker, raw_batch_id
from storelens.contract import topics
from storelens.contract.commands import Ack
from storelens.tools.bench.ingest import envelopes, realistic_events

STORE, DEVICE = "s1", "cam-box-1"
ACK_ALL = f"{topics.ROOT}/+/+/ack"


@pytest.fixture
def chain(db):
    stores.upsert_store(db, stores.Store(id=STORE, name="One", lat=48.85, lon=2.35))
    device_registry.register_device(db, STORE, DEVICE)
    return db


class Client:
    """A test MQTT client: publishes, and collects every receipt as (topic, Ack)."""

    def __init__(self, broker) -> None:
        self.receipts: list[tuple[str, Ack]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.mqtt = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uuid.uuid4().hex)
        self.mqtt.on_message = self._on_message
        self.mqtt.on_subscribe = lambda *a: self._subscribed.set()
        self.mqtt.connect(broker.host, broker.port)
        self.mqtt.loop_start()
        self.mqtt.subscribe(ACK_ALL, qos=1)
        assert self._subscribed.wait(10)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.receipts.append((msg.topic, Ack.model_validate_json(msg.payload)))

    def publish(self, topic: str, payload: bytes) -> None:
        self.mqtt.publish(topic, payload, qos=1).wait_for_publish(10)

    def acked(self, topic: str | None = None) -> list[uuid.UUID]:
        with self._lock:
            return [i for t, a in self.receipts if topic in (None, t) for i in a.batch_ids]

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def device(broker) -> Iterator[Client]:
    client = Client(broker)
    yield client
    client.close()


def batch_id(raw: bytes) -> uuid.UUID:
    return uuid.UUID(json.loads(raw)["batch_id"])


def test_receipt_names_each_batch_only_once_its_events_are_committed(
    chain, broker, device, db_url
) -> None:
    w = IngestWorker(ingest_settings(broker, ingest_batch_messages=2), chain, client_id="audited")
    msgs = envelopes(STORE, DEVICE, realistic_events(DEVICE, 300, seed=31), 50)
    event_ids = {batch_id(raw): [e["id"] for e in json.loads(raw)["events"]] for raw in msgs}
    early: list[uuid.UUID] = []
    audit_db: list[Any] = []  # a second connection: it sees committed rows only
    publish = w.client.publish

    def audited_publish(topic: str, payload: Any = None, *a: Any, **k: Any) -> Any:
        if topic.endswith("/ack"):
            if not audit_db:
                audit_db.append(connect(db_url, migrate=False))
            for bid in Ack.model_validate_json(payload).batch_ids:
                ids = event_ids[bid]
                marks = ", ".join("?" * len(ids))
                stored = audit_db[0].scalar(
                    f"SELECT count(*) FROM events WHERE id IN ({marks})", ids
                )
                if stored != len(ids):
                    early.append(bid)
        return publish(topic, payload, *a, **k)

    w.client.publish = audited_publish  # type: ignore[method-assign]
    w.start()
    assert w.wait_ready()
    try:
        for raw in msgs:
            device.publish(topics.events(STORE, DEVICE), raw)
        ack_topic = topics.ack(STORE, DEVICE)
        wait_for(lambda: set(device.acked(ack_topic)) == set(event_ids))
    finally:
        w.stop()
        for extra in audit_db:
            extra.close()
    assert early == []
    assert sorted(device.acked()) == sorted(event_ids)  # each batch named once, nothing else
    assert chain.scalar("SELECT count(*) FROM events") == 300


def test_a_resend_is_receipted_again(chain, worker, device) -> None:
    raw = envelopes(STORE, DEVICE, realistic_events(DEVICE, 20, seed=32), 20)[0]
    device.publish(topics.events(STORE, DEVICE), raw)
    wait_for(lambda: device.acked() == [batch_id(raw)])
    device.publish(topics.events(STORE, DEVICE), raw)  # the receipt was lost: resent
    wait_for(lambda: device.acked() == [batch_id(raw)] * 2)
    assert worker.totals.duplicates == 20
    assert chain.scalar("SELECT count(*) FROM events") == 20


def test_dead_letters_are_receipted_when_a_batch_id_can_be_found(chain, worker, device) -> None:
    ev_topic = topics.events(STORE, DEVICE)
    good = json.loads(envelopes(STORE, DEVICE, realistic_events(DEVICE, 3, seed=33), 3)[0])
    invalid = {**good, "batch_id": str(uuid.uuid4())}
    invalid["events"] = [dict(invalid["events"][0], seq="many")]
    truncated_id = uuid.uuid4()
    ghost = envelopes(STORE, "ghost", realistic_events("ghost", 5, seed=34), 5)[0]
    status = json.dumps(
        {**good, "batch_id": str(uuid.uuid4()), "events": [
            {"type": "device_status", "device": DEVICE, "seq": 9, "ts": good["sent_at"]}
        ]}
    ).encode()  # fmt: skip
    sent = [
        (ev_topic, json.dumps(invalid).encode()),  # parses as JSON, fails the contract
        (ev_topic, f'{{"batch_id": "{truncated_id}", "events": [oops'.encode()),  # bad JSON
        (ev_topic, b"{not json, no batch id"),  # nothing to name: no receipt
        (topics.events(STORE, "ghost"), ghost),  # unregistered device: a dead letter
        (topics.status(STORE, DEVICE), status),  # status envelopes are receipted too
        (topics.availability(STORE, DEVICE), b"maybe"),  # not an envelope: no receipt
    ]
    for topic, raw in sent:
        device.publish(topic, raw)
    wait_for(lambda: worker.totals.messages == len(sent))
    wait_for(lambda: len(device.acked()) >= 4)
    time.sleep(0.3)  # a stray receipt would show up now
    assert sorted(device.acked(topics.ack(STORE, DEVICE))) == sorted(
        [uuid.UUID(invalid["batch_id"]), truncated_id, batch_id(status)]
    )
    assert device.acked(topics.ack(STORE, "ghost")) == [batch_id(ghost)]
    assert len(device.acked()) == 4
    assert chain.scalar("SELECT count(*) FROM dead_letters") == 5
    assert worker.totals.dead == {
        "invalid": 1, "bad_json": 2, "unregistered_device": 1, "bad_availability": 1
    }  # fmt: skip


def test_receipts_go_to_the_publishing_topic_only(chain, worker, device) -> None:
    """A device can publish only under its own topic (ACLs): an envelope naming another
    device is dead-lettered and receipted to the publisher, never to the named device."""
    device_registry.register_device(chain, STORE, "cam-box-2")
    raw = envelopes(STORE, DEVICE, realistic_events(DEVICE, 5, seed=35), 5)[0]
    device.publish(topics.events(STORE, "cam-box-2"), raw)
    wait_for(lambda: bool(device.acked()))
    assert device.receipts[0][0] == topics.ack(STORE, "cam-box-2")
    assert worker.totals.dead == {"topic_mismatch": 1}


def test_raw_batch_id_is_best_effort() -> None:
    bid = uuid.uuid4()
    assert raw_batch_id(f'{{"batch_id" : "{bid}",'.encode()) == bid
    assert raw_batch_id(f'{{"batch_id":"{bid.hex}"'.encode()) == bid
    assert raw_batch_id(b'{"batch_id":"not-a-uuid-----------------------------"}') is None
    twice = f'{{"batch_id":"{bid}","batch_id":"{uuid.uuid4()}"}}'.encode()
    assert raw_batch_id(twice) is None  # ambiguous: which one would the device mean?
    assert raw_batch_id(b"") is None


def test_no_receipt_while_the_database_is_down(chain, broker, device) -> None:
    failing = IngestWorker(ingest_settings(broker), chain, client_id="crashy")
    attempts: list[int] = []

    def database_down(prepared: object) -> None:
        attempts.append(1)
        raise ConnectionError("database is down")

    failing.ingestor.write = database_down  # type: ignore[method-assign]
    failing.ingestor.process = database_down  # type: ignore[method-assign]
    failing.start()
    assert failing.wait_ready()
    try:
        device.publish(
            topics.events(STORE, DEVICE),
            envelopes(STORE, DEVICE, realistic_events(DEVICE, 10, seed=36), 10)[0],
        )
        wait_for(lambda: len(attempts) >= 2, timeout=10)
    finally:
        failing.stop()
    assert device.acked() == [] and chain.scalar("SELECT count(*) FROM events") == 0


_WORKER_SCRIPT = """
import sys, time
from storelens.cloud.ingest.worker import IngestWorker
from storelens.cloud.settings import Settings
from storelens.cloud.db import connect
db = connect(sys.argv[1], migrate=False)
s = Settings(db_url="unused", mqtt_host="127.0.0.1", mqtt_port=int(sys.argv[2]),
             ingest_batch_seconds=0.02, ingest_batch_messages=2)
w = IngestWorker(s, db, client_id="doomed")
w.start()
assert w.wait_ready(20)
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def test_a_killed_workers_share_moves_to_the_other_at_once(chain, broker, device, db_url) -> None:
    """Clean sessions: when a worker dies without disconnecting, the broker drops its session
    and every new message goes to the surviving member of the shared subscription."""
    doomed = subprocess.Popen(
        [sys.executable, "-c", _WORKER_SCRIPT, db_url, str(broker.port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    survivor = IngestWorker(
        ingest_settings(broker, ingest_batch_messages=2), chain, client_id="survivor"
    )
    survivor.start()
    try:
        assert survivor.wait_ready()
        assert doomed.stdout is not None and doomed.stdout.readline().strip() == "ready"
        evs = realistic_events(DEVICE, 1200, seed=37)
        before, after = (
            envelopes(STORE, DEVICE, evs[:400], 10),
            envelopes(STORE, DEVICE, evs[400:], 10),
        )
        for raw in before:
            device.publish(topics.events(STORE, DEVICE), raw)
        wait_for(lambda: chain.scalar("SELECT count(*) FROM events") == 400)
        wait_for(lambda: set(device.acked()) == {batch_id(r) for r in before})
        assert 0 < survivor.totals.messages < len(before)  # both had a share
        doomed.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker sees the socket close
        doomed.wait(10)
        time.sleep(0.5)
        handled = survivor.totals.messages
        for raw in after:
            device.publish(topics.events(STORE, DEVICE), raw)
        wait_for(lambda: chain.scalar("SELECT count(*) FROM events") == 1200)
        # The worker adds a batch to its totals after committing and receipting it.
        wait_for(lambda: survivor.totals.messages - handled >= len(after), timeout=10)
        assert survivor.totals.messages - handled == len(after)
        wait_for(lambda: set(device.acked()) >= {batch_id(r) for r in after})
    finally:
        if doomed.poll() is None:
            doomed.kill()
        survivor.stop()


def test_a_dead_sqlite_writer_process_is_replaced_and_nothing_is_lost(
    chain, worker, device
) -> None:
    if chain.dialect != "sqlite":
        pytest.skip("the writer process is SQLite's")
    writer = worker.ingestor.writer
    assert writer is not None
    raw = envelopes(STORE, DEVICE, realistic_events(DEVICE, 20, seed=38), 20)[0]
    device.publish(topics.events(STORE, DEVICE), raw)
    wait_for(lambda: device.acked() == [batch_id(raw)])
    first = writer._proc.pid
    os.kill(first, signal.SIGKILL)
    msgs = envelopes(STORE, DEVICE, realistic_events(DEVICE, 60, seed=39, first_seq=100), 20)
    for raw in msgs:
        device.publish(topics.events(STORE, DEVICE), raw)
    wait_for(lambda: chain.scalar("SELECT count(*) FROM events") == 80, timeout=60)
    wait_for(lambda: set(device.acked()) >= {batch_id(r) for r in msgs})
    assert writer._proc.pid != first and worker.healthy()


def test_ctrl_c_leaves_the_sqlite_writer_process_to_its_worker(chain, worker, device) -> None:
    """Ctrl-C reaches the whole process group; the writer keeps serving until the worker
    stops it (no traceback, no restart, nothing lost)."""
    if chain.dialect != "sqlite":
        pytest.skip("the writer process is SQLite's")
    writer = worker.ingestor.writer
    assert writer is not None
    first = envelopes(STORE, DEVICE, realistic_events(DEVICE, 20, seed=40), 20)[0]
    device.publish(topics.events(STORE, DEVICE), first)
    wait_for(lambda: device.acked() == [batch_id(first)])
    pid = writer._proc.pid
    os.kill(pid, signal.SIGINT)
    second = envelopes(STORE, DEVICE, realistic_events(DEVICE, 20, seed=41, first_seq=100), 20)[0]
    device.publish(topics.events(STORE, DEVICE), second)
    wait_for(lambda: batch_id(second) in device.acked())
    assert chain.scalar("SELECT count(*) FROM events") == 40
    assert writer._proc.pid == pid and writer._proc.is_alive()
