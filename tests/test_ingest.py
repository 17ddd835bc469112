"""Ingest with a real Mosquitto and both databases: duplicates, dead letters, unregistered
devices, device status, consent, shared subscriptions and acknowledgement after commit."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import pytest
from conftest import ingest_settings, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storelens.cloud.commerce import members, stores
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest import rows as ingest_rows
from storelens.cloud.ingest.worker import Incoming, Ingestor, IngestWorker
from storelens.contract import (
    MAX_PAYLOAD_BYTES,
    CameraStatus,
    DeviceStatus,
    Envelope,
    encode_envelope,
    topics,
)
from storelens.contract.commands import OptOutList
from storelens.pseudonym import PseudonymKey
from storelens.tools.bench.ingest import envelopes, realistic_events

STORE, DEVICE = "s1", "cam-box-1"
KEY = PseudonymKey("k1", b"k" * 32)


@pytest.fixture
def chain(db):
    stores.upsert_store(db, stores.Store(id=STORE, name="One", lat=48.85, lon=2.35))
    device_registry.register_device(db, STORE, DEVICE)
    return db


@pytest.fixture
def publisher(broker) -> Iterator[Callable[[str, bytes], None]]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-pub")
    client.connect(broker.host, broker.port)
    client.loop_start()

    def publish(topic: str, payload: bytes, retain: bool = False) -> None:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    yield publish
    client.disconnect()
    client.loop_stop()


def count(db, sql: str = "SELECT count(*) FROM events", params: tuple = ()) -> int:
    return db.scalar(sql, params)


def test_duplicates_and_out_of_order_are_stored_once(chain, worker, publisher) -> None:
    evs = realistic_events(DEVICE, 300, seed=3)
    msgs = envelopes(STORE, DEVICE, evs, 100)
    for raw in reversed(msgs):  # out of order
        publisher(topics.events(STORE, DEVICE), raw)
    for raw in msgs[:2]:  # re-delivered batches
        publisher(topics.events(STORE, DEVICE), raw)
    wait_for(lambda: worker.totals.messages == 5)
    assert count(chain) == 300
    assert worker.totals.duplicates == 200
    row = chain.query_one("SELECT * FROM events WHERE id = ?", (str(evs[0].id),))
    assert row["store"] == STORE and row["seq"] == evs[0].seq
    assert json.loads(row["payload"])["type"] == evs[0].type
    device = device_registry.get_device(chain, STORE, DEVICE)
    # Health counts from when the cloud heard the device, not from the events' own times.
    assert time.time() - 60 < device["last_seen"] <= time.time()


def _bad_payloads() -> dict[str, tuple[str, bytes]]:
    good = json.loads(
        encode_envelope(Envelope(store=STORE, device=DEVICE, events=realistic_events(DEVICE, 3)))
    )
    ev_topic = topics.events(STORE, DEVICE)

    def variant(**changes: object) -> bytes:
        return json.dumps({**good, **changes}).encode()

    wrong_type = dict(good["events"][0], seq="many")
    other_device = dict(good["events"][0], device="other")
    missing = {k: v for k, v in good.items() if k != "version"}
    return {
        "bad_json": (ev_topic, b"{not json"),
        "bad_shape": (ev_topic, b"[1, 2]"),
        "unknown_schema": (ev_topic, variant(schema="other.events")),
        "unknown_version": (ev_topic, variant(version="2.0")),
        "invalid": (ev_topic, variant(events=[wrong_type])),
        "oversized": (ev_topic, b" " * (MAX_PAYLOAD_BYTES + 1)),
        "device_mismatch": (ev_topic, variant(events=[other_device])),
        "topic_mismatch": (topics.events(STORE, "cam-box-2"), variant()),
        "missing_version": (ev_topic, json.dumps(missing).encode()),
    }


def test_each_malformed_input_is_dead_lettered_with_its_reason(chain, worker, publisher) -> None:
    cases = _bad_payloads()
    device_registry.register_device(chain, STORE, "cam-box-2")
    for topic, raw in cases.values():
        publisher(topic, raw)
    publisher(topics.availability(STORE, DEVICE), b"maybe")
    wait_for(lambda: worker.totals.messages == len(cases) + 1)
    assert count(chain) == 0
    rows = chain.query("SELECT reason, raw FROM dead_letters ORDER BY id")
    reasons = [r["reason"] for r in rows]
    expected = [k if k != "missing_version" else "unknown_version" for k in cases]
    assert sorted(reasons) == sorted([*expected, "bad_availability"])
    # The raw bytes are kept for replay.
    assert {bytes(r["raw"]) for r in rows} >= {raw for _, raw in cases.values()}
    assert worker.healthy()


def test_unregistered_and_retired_devices_are_rejected(chain, worker, publisher) -> None:
    raw = envelopes(STORE, "ghost", realistic_events("ghost", 10), 10)[0]
    publisher(topics.events(STORE, "ghost"), raw)
    wait_for(lambda: worker.totals.messages == 1)
    assert worker.totals.dead == {"unregistered_device": 1}
    assert count(chain) == 0
    device_registry.unregister_device(chain, STORE, DEVICE)
    worker.ingestor._devices_at = 0  # skip the cache TTL in the test
    publisher(
        topics.events(STORE, DEVICE), envelopes(STORE, DEVICE, realistic_events(DEVICE, 5), 5)[0]
    )
    wait_for(lambda: worker.totals.messages == 2)
    assert worker.totals.dead == {"unregistered_device": 2}
    assert count(chain) == 0


def test_device_status_and_availability_update_devices(chain, worker, publisher) -> None:
    ts = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    status = DeviceStatus(
        device=DEVICE,
        seq=1,
        ts=ts,
        outbox_depth=12,
        lost_events=3,
        cameras=[CameraStatus(camera="c1", online=True, fps=9.5)],
    )
    publisher(
        topics.status(STORE, DEVICE),
        encode_envelope(Envelope(store=STORE, device=DEVICE, events=[status])),
    )
    publisher(topics.availability(STORE, DEVICE), topics.OFFLINE)
    wait_for(lambda: worker.totals.messages == 2)
    device = device_registry.get_device(chain, STORE, DEVICE)
    assert device["outbox_depth"] == 12 and device["lost_events"] == 3 and device["fps"] == 9.5
    assert time.time() - 60 < device["last_seen"] <= time.time() and device["online"] == 0
    assert device["status"]["cameras"][0]["camera"] == "c1"
    assert count(chain) == 0  # status lives in devices, not in the event history


def test_consent_opt_out_unlinks_and_is_published_to_devices(
    chain, worker, publisher, broker
) -> None:
    ann = members.enroll(chain, KEY, members.Enrollment(card_number="1111-2222"))
    bob = members.enroll(chain, KEY, members.Enrollment(card_number="3333-4444", tracking=False))
    ann_token, bob_token = KEY.token("1111-2222"), KEY.token("3333-4444")
    retained: list[OptOutList] = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-device")
    sub.on_message = lambda c, u, m: retained.append(OptOutList.model_validate_json(m.payload))
    sub.connect(broker.host, broker.port)
    sub.subscribe(topics.cmd(STORE, DEVICE), qos=1)
    sub.loop_start()
    try:
        wait_for(lambda: bool(retained) and retained[-1].tokens == [bob_token])
        evs = realistic_events(DEVICE, 200, seed=5, members=[ann_token, bob_token], key_id="k1")
        publisher(topics.events(STORE, DEVICE), envelopes(STORE, DEVICE, evs, 200)[0])
        wait_for(lambda: worker.totals.messages == 1)
        linked = {r["member"] for r in chain.query("SELECT DISTINCT member FROM events")}
        assert linked == {ann_token, None}
        assert bob_token not in str(chain.query("SELECT payload FROM events"))
        # Ann opts out: her past events are unlinked and devices get the new list.
        members.set_consent(chain, ann["id"], members.Consent(tracking=False))
        assert count(chain, "SELECT count(*) FROM events WHERE member IS NOT NULL") == 0
        wait_for(lambda: sorted(retained[-1].tokens) == sorted([ann_token, bob_token]))
        # Bob is forgotten: late events from the device outbox stay unlinked too.
        members.forget(chain, bob["id"])
        late = realistic_events(DEVICE, 50, seed=6, members=[bob_token], first_seq=1000)
        publisher(topics.events(STORE, DEVICE), envelopes(STORE, DEVICE, late, 50)[0])
        wait_for(lambda: worker.totals.messages == 2)
        assert count(chain, "SELECT count(*) FROM events WHERE member IS NOT NULL") == 0
        assert bob_token not in str(chain.query("SELECT payload FROM events"))
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_two_workers_share_the_subscription_exactly_once(chain, broker, publisher) -> None:
    settings = ingest_settings(broker, ingest_batch_messages=5)
    workers = [IngestWorker(settings, chain, client_id=f"share-{i}") for i in range(2)]
    for w in workers:
        w.start()
        assert w.wait_ready()
    try:
        evs = realistic_events(DEVICE, 2000, seed=9)
        msgs = envelopes(STORE, DEVICE, evs, 20)
        for raw in msgs:
            publisher(topics.events(STORE, DEVICE), raw)
        wait_for(lambda: sum(w.totals.messages for w in workers) >= len(msgs))
        time.sleep(0.3)  # any duplicate delivery would show up now
        assert count(chain) == 2000
        handled = [w.totals.messages for w in workers]
        assert sum(handled) == len(msgs) and min(handled) > 0, handled
        assert sum(w.totals.duplicates for w in workers) == 0
    finally:
        for w in workers:
            w.stop()


def test_ack_only_after_commit_so_a_failed_worker_loses_nothing(chain, broker, publisher) -> None:
    # Persistent sessions (for devices that do not wait for receipts): the broker keeps what
    # the worker never acknowledged. With the default clean sessions the devices resend it
    # instead (tests/test_ingest_receipts.py).
    settings = ingest_settings(broker, mqtt_session_expiry_s=60)
    failing = IngestWorker(settings, chain, client_id="crashy")

    attempts: list[int] = []

    def database_down(prepared: object) -> None:
        attempts.append(1)
        raise ConnectionError("database is down")

    failing.ingestor.write = database_down  # type: ignore[method-assign]
    failing.start()
    assert failing.wait_ready()
    evs = realistic_events(DEVICE, 100, seed=11)
    for raw in envelopes(STORE, DEVICE, evs, 25):
        publisher(topics.events(STORE, DEVICE), raw)
    # Received and parsed, but never committed, so never acknowledged.
    wait_for(lambda: len(attempts) >= 2, timeout=10)
    failing.stop()
    assert failing.totals.messages == 0 and count(chain) == 0
    # The same session reconnects with a working database: the broker redelivers.
    healthy = IngestWorker(settings, chain, client_id="crashy")
    healthy.start()
    try:
        wait_for(lambda: count(chain) == 100)
    finally:
        healthy.stop()


def test_ingestor_survives_any_bytes_and_internal_errors(chain, monkeypatch) -> None:
    ingestor = Ingestor(chain)
    batch = [
        Incoming(topics.events(STORE, DEVICE), bytes(range(256)) * 3),
        Incoming("storelens/v1/s1/cam-box-1/cmd", b"{}"),
        Incoming("not/a/device/topic", b"{}"),
    ]
    good = envelopes(STORE, DEVICE, realistic_events(DEVICE, 10), 10)[0]

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(ingest_rows, "message_rows", boom)
    result = ingestor.process([*batch, Incoming(topics.events(STORE, DEVICE), good)])
    assert result.dead == {"bad_json": 1, "bad_topic": 2, "internal_error": 1}
    assert chain.scalar("SELECT count(*) FROM dead_letters") == 4


def test_worker_reconnects_after_a_broker_restart(chain, worker, broker) -> None:
    broker.stop()
    wait_for(lambda: not worker.healthy(), timeout=10)
    broker.start()  # a fresh broker on the same port: no session, so the worker resubscribes
    assert worker.wait_ready(30)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="after-restart")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    raw = envelopes(STORE, DEVICE, realistic_events(DEVICE, 20, seed=21), 20)[0]
    pub.publish(topics.events(STORE, DEVICE), raw, qos=1).wait_for_publish(10)
    pub.disconnect()
    pub.loop_stop()
    wait_for(lambda: count(chain) == 20)


def test_database_errors_while_preparing_are_retried_not_dead_lettered(chain, monkeypatch) -> None:
    ingestor = Ingestor(chain)
    good = Incoming(
        topics.events(STORE, DEVICE), envelopes(STORE, DEVICE, realistic_events(DEVICE, 5), 5)[0]
    )

    def down(db: object) -> set:
        raise ConnectionError("database is down")

    monkeypatch.setattr(device_registry, "registered_devices", down)
    with pytest.raises(ConnectionError):
        ingestor.process([good])
    monkeypatch.undo()
    assert ingestor.process([good]).stored == 5
    assert chain.scalar("SELECT count(*) FROM dead_letters") == 0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda d: json.dumps(d).encode(),
            st.dictionaries(
                st.text(max_size=8),
                st.one_of(st.none(), st.integers(), st.text(max_size=20)),
                max_size=6,
            ),
        ),
    ),
    kind=st.sampled_from(["events", "status", "availability", "cmd", "other"]),
)
def test_any_input_is_stored_or_dead_lettered_never_raised(
    chain, payload: bytes, kind: str
) -> None:
    ingestor = Ingestor(chain)
    result = ingestor.process([Incoming(f"storelens/v1/{STORE}/{DEVICE}/{kind}", payload)])
    dead = sum(result.dead.values())
    if kind in ("cmd", "other"):
        assert result.dead == {"bad_topic": 1}
    elif kind == "availability":
        assert dead == (0 if payload in (b"online", b"offline") else 1)
    else:  # nothing random is a valid envelope, and no input reaches a bug
        assert dead == 1 and "internal_error" not in result.dead
