"""Ingest and the edge publisher over the embedded amqtt broker (MQTT 3.1.1), as the demo runs
them when Mosquitto is not installed: events stored exactly once, acknowledged and receipted
only after their commit, kept on the device while the worker is away, the retained opt-out
list and the device's availability, and `open_broker`'s choice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for

from storelens.cloud.commerce import members, stores
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest.worker import IngestWorker, Prepared
from storelens.cloud.settings import Settings
from storelens.contract.commands import OptOutList
from storelens.edge.config import parse_config
from storelens.edge.outbox import Outbox
from storelens.edge.publish import Publisher
from storelens.pseudonym import PseudonymKey, generate_key_file
from storelens.tools.bench.ingest import realistic_events
from storelens.tools.brokers.embedded import EmbeddedBroker
from storelens.tools.brokers.local import LocalBroker, open_broker

STORE, DEVICE = "s1", "d1"
KEY = PseudonymKey("k1", b"k" * 32)


@pytest.fixture
def amqtt_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path / "broker") as broker:
        yield broker


@pytest.fixture
def chain(db):
    stores.upsert_store(db, stores.Store(id=STORE, name="One", lat=48.85, lon=2.35))
    device_registry.register_device(db, STORE, DEVICE)
    return db


def worker_for(
    broker: EmbeddedBroker, db, client_id: str = "amqtt-ingest", **kw: object
) -> IngestWorker:
    settings = Settings(
        db_url="unused",
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_protocol=broker.protocol,
        ingest_batch_seconds=0.02,
        ingest_batch_messages=5,
        **kw,
    )
    return IngestWorker(settings, db, client_id=client_id)


class AckAudit:
    """Wraps a worker so every acknowledgement is checked against what was committed."""

    def __init__(self, worker: IngestWorker) -> None:
        self.committed: set[tuple[int, int]] = set()
        self.acked: list[int] = []
        self.early: list[int] = []
        write, ack = worker.ingestor.write, worker.client.ack

        def audited_write(prepared: Prepared):
            result = write(prepared)
            self.committed |= {(m.connection, m.mid) for m in prepared.batch}
            return result

        def audited_ack(mid: int, qos: int) -> None:
            if (worker._connection, mid) not in self.committed:
                self.early.append(mid)
            self.acked.append(mid)
            ack(mid, qos)

        worker.ingestor.write = audited_write  # type: ignore[method-assign]
        worker.client.ack = audited_ack  # type: ignore[method-assign]


def edge_publisher(
    tmp_path: Path, broker: EmbeddedBroker, got: list, ack_timeout_s: float = 30.0
) -> Publisher:
    key = tmp_path / "k.key"
    generate_key_file(key)
    cfg = parse_config({
        "store": STORE, "device": DEVICE,
        "cameras": [{"id": "c", "source": "0"}],
        "mqtt": {"host": broker.host, "port": broker.port},
        "privacy": {"key_id": "k1", "key_file": str(key)},
        "outbox": {"path": str(tmp_path / "outbox.db"), "batch_interval_s": 0.05,
                   "batch_max_events": 20, "ack_timeout_s": ack_timeout_s},
    })  # fmt: skip
    return Publisher(cfg, Outbox(cfg.outbox.path), on_command=got.append)


def stored(db) -> int:
    return db.scalar("SELECT count(*) FROM events")


def test_edge_to_ingest_over_amqtt_stores_once_and_acks_after_commit(
    tmp_path: Path, amqtt_broker: EmbeddedBroker, chain
) -> None:
    members.enroll(chain, KEY, members.Enrollment(card_number="3333-4444", tracking=False))
    worker = worker_for(amqtt_broker, chain)
    audit = AckAudit(worker)
    worker.start()
    assert worker.wait_ready()
    commands: list = []
    publisher = edge_publisher(tmp_path, amqtt_broker, commands)
    publisher.start()
    try:
        events = realistic_events(DEVICE, 200, seed=21)
        publisher.outbox.put(events)
        assert publisher.drain(20), "the broker did not acknowledge every batch"
        wait_for(lambda: stored(chain) == 200)
        # The device got the retained opt-out list from the worker's cmd topic.
        wait_for(lambda: any(isinstance(c, OptOutList) for c in commands))
        assert commands[-1].tokens == [KEY.token("3333-4444")]
        wait_for(lambda: device_registry.get_device(chain, STORE, DEVICE)["online"] == 1)
        time.sleep(0.3)  # a duplicate delivery would show up now
    finally:
        publisher.stop()
        worker.stop()
    assert stored(chain) == 200
    assert worker.totals.duplicates == 0 and worker.totals.dead == {}
    assert publisher.sent_messages >= 10  # 200 events in batches of at most 20
    # Every envelope was acknowledged, and only once its transaction had committed.
    assert len(audit.acked) >= publisher.sent_messages and audit.early == []
    ids = {r["id"] for r in chain.query("SELECT id FROM events")}
    assert ids == {str(e.id) for e in events}


def test_events_sent_while_the_worker_is_away_stay_on_the_device_until_receipted(
    tmp_path: Path, amqtt_broker: EmbeddedBroker, chain
) -> None:
    """Clean session (the default): what the device publishes while the only worker is away
    is dropped by the broker, but the device never got a receipt for it, so it keeps it in
    its outbox and sends it again once the worker is back; each event is stored once."""
    first = worker_for(amqtt_broker, chain)
    first.start()
    assert first.wait_ready()
    publisher = edge_publisher(tmp_path, amqtt_broker, [], ack_timeout_s=0.5)
    publisher.start()
    try:
        events = realistic_events(DEVICE, 100, seed=22)
        publisher.outbox.put(events[:40])
        assert publisher.drain(20)
        wait_for(lambda: stored(chain) == 40)
        first.stop()
        publisher.outbox.put(events[40:])
        assert not publisher.drain(1.5)  # the broker took them, but no receipt came
        assert publisher.outbox.depth == 60 and stored(chain) == 40
        back = worker_for(amqtt_broker, chain)
        back.start()
        try:
            assert publisher.drain(30)  # resent after ack_timeout_s, stored, receipted
            publisher.stop()  # says goodbye: availability offline
            wait_for(lambda: device_registry.get_device(chain, STORE, DEVICE)["online"] == 0)
        finally:
            back.stop()
    finally:
        publisher.stop()  # idempotent
    assert stored(chain) == 100
    assert back.totals.stored == 60
    ids = {r["id"] for r in chain.query("SELECT id FROM events")}
    assert ids == {str(e.id) for e in events}
    # amqtt also replays the device's retained cmd topic to the reconnecting worker; it is
    # ignored, not dead-lettered.
    assert back.totals.dead == {} and chain.scalar("SELECT count(*) FROM dead_letters") == 0


def test_open_broker_prefers_mosquitto_and_falls_back_to_amqtt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(open_broker("amqtt", tmp_path), EmbeddedBroker)
    assert isinstance(open_broker("auto", tmp_path), LocalBroker)  # installed on CI
    assert open_broker("auto", tmp_path).protocol == "5"
    monkeypatch.setattr("storelens.tools.brokers.local.shutil.which", lambda name: None)
    monkeypatch.setattr("storelens.tools.brokers.local._SBIN", ())
    fallback = open_broker("auto", tmp_path)
    assert isinstance(fallback, EmbeddedBroker) and fallback.protocol == "3.1.1"
    from storelens.tools.brokers.local import BrokerUnavailable

    with pytest.raises(BrokerUnavailable, match="Mosquitto"):
        open_broker("mosquitto", tmp_path)
    with pytest.raises(ValueError, match="unknown broker"):
        open_broker("rabbit", tmp_path)  # type: ignore[arg-type]


def test_pos_pushes_cross_api_replicas_over_amqtt(amqtt_broker: EmbeddedBroker) -> None:
    """`push_mqtt` (off in the demo) works on the embedded broker too."""
    import asyncio

    from storelens.cloud import push

    replica_a, replica_b = push.PushHub(), push.PushHub()
    for hub in (replica_a, replica_b):
        hub.connect_mqtt(amqtt_broker.host, amqtt_broker.port)
        assert hub.wait_connected(10)
    time.sleep(0.3)  # the hubs' subscriptions settle

    async def scenario() -> tuple[push.PushMessage, object, object]:
        sub_b, _ = replica_b.subscribe("paris")
        sent = replica_a.publish("paris", "task", {"task_id": "t-1"})
        got = await sub_b.next(10)
        extra = await sub_b.next(0.5)
        sub_b.close()
        return sent, got, extra

    try:
        sent, got, extra = asyncio.run(scenario())
    finally:
        for hub in (replica_a, replica_b):
            hub.close()
    assert got is not None and got.id == sent.id and got.payload == {"task_id": "t-1"}
    assert extra is None


def test_receipts_over_amqtt_after_commit(amqtt_broker: EmbeddedBroker, chain) -> None:
    """MQTT 3.1.1 (no shared subscriptions, clean session by default): each stored envelope
    is receipted on the device's ack topic once committed."""
    import json
    import threading

    import paho.mqtt.client as mqtt

    from storelens.contract import topics
    from storelens.contract.commands import Ack
    from storelens.tools.bench.ingest import envelopes

    worker = worker_for(amqtt_broker, chain)
    audit = AckAudit(worker)
    receipts: list[tuple[str, Ack]] = []
    subscribed = threading.Event()
    device = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="amqtt-device", protocol=mqtt.MQTTv311
    )
    device.on_subscribe = lambda *a: subscribed.set()
    device.on_message = lambda c, u, m: receipts.append(
        (m.topic, Ack.model_validate_json(m.payload))
    )
    device.connect(amqtt_broker.host, amqtt_broker.port)
    device.loop_start()
    device.subscribe(topics.ack(STORE, DEVICE), qos=1)
    worker.start()
    try:
        assert subscribed.wait(10) and worker.wait_ready()
        msgs = envelopes(STORE, DEVICE, realistic_events(DEVICE, 60, seed=23), 20)
        for raw in msgs:
            device.publish(topics.events(STORE, DEVICE), raw, qos=1).wait_for_publish(10)
        ids = {json.loads(raw)["batch_id"] for raw in msgs}
        wait_for(lambda: {str(i) for _, a in receipts for i in a.batch_ids} == ids)
    finally:
        worker.stop()
        device.disconnect()
        device.loop_stop()
    assert stored(chain) == 60
    assert all(t == topics.ack(STORE, DEVICE) for t, _ in receipts)
    assert audit.early == [] and len(audit.acked) == len(msgs)
