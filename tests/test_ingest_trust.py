"""What ingest trusts from a device, through a real broker on both backends: event times
beyond the stated skew are dead-lettered (`clock_skew`) and health counts from when the cloud
heard the device; `attire` is a closed vocabulary; duplicate detection is a device's own,
and another device reusing an event ID is dead-lettered, not dropped as a duplicate."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from conftest import wait_for
from prometheus_client import REGISTRY

from storelens.cloud.commerce import stores
from storelens.cloud.ingest import device_registry
from storelens.contract import topics
from storelens.contract.bounds import MAX_FUTURE_SKEW_S
from storelens.tools.bench.ingest import envelopes, realistic_events

STORE, DEVICE, OTHER = "s1", "cam-box-1", "cam-box-2"


@pytest.fixture
def chain(db):
    stores.upsert_store(db, stores.Store(id=STORE, name="One", lat=48.85, lon=2.35))
    device_registry.register_device(db, STORE, DEVICE)
    device_registry.register_device(db, STORE, OTHER)
    return db


@pytest.fixture
def publisher(broker) -> Iterator[Callable[[str, bytes], None]]:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="trust-pub")
    client.connect(broker.host, broker.port)
    client.loop_start()
    yield lambda topic, payload: client.publish(topic, payload, qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


def _events(device: str, n: int, start: datetime) -> list:
    return realistic_events(device, n, seed=5, start=start)


def test_events_from_the_future_or_before_2000_are_dead_lettered(chain, worker, publisher) -> None:
    now = datetime.now(UTC)
    future = now + timedelta(seconds=MAX_FUTURE_SKEW_S + 3600)
    cases = [
        envelopes(STORE, DEVICE, _events(DEVICE, 5, future), 5)[0],
        envelopes(STORE, DEVICE, _events(DEVICE, 5, datetime(9999, 12, 31, tzinfo=UTC)
                                         - timedelta(days=1)), 5)[0],
        envelopes(STORE, DEVICE, _events(DEVICE, 5, datetime(1, 1, 2, tzinfo=UTC)), 5)[0],
    ]  # fmt: skip
    for raw in cases:
        publisher(topics.events(STORE, DEVICE), raw)
    ok = envelopes(STORE, DEVICE, _events(DEVICE, 5, now - timedelta(hours=2)), 5)[0]
    publisher(topics.events(STORE, DEVICE), ok)
    wait_for(lambda: worker.totals.messages == 4)
    assert worker.totals.dead == {"clock_skew": 3}
    assert chain.scalar("SELECT count(*) FROM events") == 5
    assert chain.scalar("SELECT count(*) FROM events WHERE ts > ?", (time.time(),)) == 0
    # The device was heard now: its health is from the receipt, never a claimed 9999.
    seen = device_registry.get_device(chain, STORE, DEVICE)["last_seen"]
    assert time.time() - 60 < seen <= time.time()


def test_attire_is_only_colour_names(chain, worker, publisher) -> None:
    events = [e.model_dump(mode="json", exclude_none=True)
              for e in _events(DEVICE, 40, datetime.now(UTC) - timedelta(hours=1))]  # fmt: skip
    ended = next(e for e in events if e["type"] == "visit_ended")
    smuggled = [dict(ended, attire={"upper": "iVBORw0KGgo" + "A" * 200_000})]
    named = [dict(ended, attire={"upper": "blue", "lower": "black"})]
    base = json.loads(envelopes(STORE, DEVICE, events[:1], 1)[0])
    for evs in (smuggled, named):
        publisher(topics.events(STORE, DEVICE), json.dumps({**base, "events": evs}).encode())
    wait_for(lambda: worker.totals.messages == 2)
    assert worker.totals.dead == {"invalid": 1}
    payloads = [r["payload"] for r in chain.query("SELECT payload FROM events")]
    assert len(payloads) == 1 and json.loads(payloads[0])["attire"]["upper"] == "blue"


def test_an_event_id_reused_by_another_device_is_dead_lettered(chain, worker, publisher) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    collisions_before = REGISTRY.get_sample_value("storelens_ingest_id_collisions_total")
    mine = _events(DEVICE, 10, start)
    publisher(topics.events(STORE, DEVICE), envelopes(STORE, DEVICE, mine, 10)[0])
    wait_for(lambda: worker.totals.messages == 1)
    # The same device redelivers: duplicates. Another device reuses the IDs: collisions,
    # with the same times or with others (PostgreSQL's partitioned events are unique on
    # (id, ts) only: a reuse dated another day went in as a new row there).
    publisher(topics.events(STORE, DEVICE), envelopes(STORE, DEVICE, mine, 10)[0])
    theirs = [e.model_copy(update={"device": OTHER}) for e in mine[:4]]
    theirs += [e.model_copy(update={"device": OTHER, "ts": e.ts - timedelta(days=2, seconds=n)})
               for n, e in enumerate(mine[4:7])]  # fmt: skip
    publisher(topics.events(STORE, OTHER), envelopes(STORE, OTHER, theirs, 7)[0])
    wait_for(lambda: worker.totals.messages == 3)
    assert chain.scalar("SELECT count(*) FROM events") == 10
    assert chain.scalar("SELECT count(*) FROM events WHERE device = ?", (OTHER,)) == 0
    rows = chain.query("SELECT reason, topic, raw FROM dead_letters")
    assert [r["reason"] for r in rows] == ["event_id_collision"] * 7
    assert {r["topic"] for r in rows} == {topics.events(STORE, OTHER)}
    assert {json.loads(bytes(r["raw"]))["id"] for r in rows} == {str(e.id) for e in mine[:7]}
    # Counted apart: a collision is not a duplicate.
    assert (worker.totals.duplicates, worker.totals.collisions) == (10, 7)
    assert worker.totals.stored == 10
    after = REGISTRY.get_sample_value("storelens_ingest_id_collisions_total")
    assert after - collisions_before == 7  # /metrics


def test_a_device_reusing_its_own_event_id_at_another_time_is_a_duplicate(
    chain, worker, publisher
) -> None:
    # PostgreSQL's partitioned events are unique on (id, ts): without the owner check such a
    # reuse went in as a second row there, while SQLite dropped it.
    start = datetime.now(UTC) - timedelta(hours=1)
    mine = _events(DEVICE, 10, start)
    publisher(topics.events(STORE, DEVICE), envelopes(STORE, DEVICE, mine, 10)[0])
    wait_for(lambda: worker.totals.messages == 1)
    again = [e.model_copy(update={"ts": e.ts - timedelta(days=2, seconds=n)})
             for n, e in enumerate(mine[:3])]  # fmt: skip
    fresh = _events(DEVICE, 2, start + timedelta(minutes=5))
    twice = [fresh[0], fresh[0].model_copy(update={"ts": fresh[0].ts + timedelta(seconds=3)})]
    publisher(topics.events(STORE, DEVICE), envelopes(STORE, DEVICE, again + twice, 5)[0])
    wait_for(lambda: worker.totals.messages == 2)
    assert chain.scalar("SELECT count(*) FROM events") == 11
    assert chain.scalar("SELECT count(*) FROM dead_letters") == 0
    assert worker.totals.stored == 11
    assert (worker.totals.duplicates, worker.totals.collisions) == (4, 0)
