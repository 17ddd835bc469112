"""Contract 1.2 through real MQTT ingest on both databases: a device's try-on session,
checkout times, queue snapshot and staff visit arrive, are stored with their new fields, the
staff visit is recorded (also on PostgreSQL's COPY path) and the try-on shows in its chart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import paho.mqtt.client as mqtt
import pytest
from conftest import wait_for

from storelens.cloud import analytics
from storelens.cloud.commerce import stores
from storelens.cloud.ingest import device_registry
from storelens.contract import Envelope, encode_envelope, topics
from storelens.contract.schema import example_events

STORE, DEVICE = "store-001", "cam-box-1"


@pytest.fixture
def chain(db):
    stores.upsert_store(db, stores.Store(id=STORE, name="One", lat=48.85, lon=2.35))
    device_registry.register_device(db, STORE, DEVICE)
    return db


@pytest.fixture
def publish(broker) -> Iterator:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-pub-visits")
    client.connect(broker.host, broker.port)
    client.loop_start()
    yield lambda raw: client.publish(topics.events(STORE, DEVICE), raw, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def test_new_fields_survive_ingest_and_staff_visits_are_recorded(chain, worker, publish) -> None:
    evs = [e for e in example_events() if e.type != "device_status"]  # statuses: devices table
    publish(encode_envelope(Envelope(store=STORE, device=DEVICE, events=evs)))
    wait_for(lambda: chain.scalar("SELECT count(*) FROM events") == len(evs))
    rows = {
        r["id"]: json.loads(r["payload"]) for r in chain.query("SELECT id, payload FROM events")
    }
    by_type: dict[str, list] = {}
    for e in evs:
        by_type.setdefault(e.type, []).append(rows[str(e.id)])
    zone_kinds = {p["zone"]: p.get("kind") for p in by_type["zone_visit"]}
    assert zone_kinds == {"handbags": None, "fitting-rooms": "fitting_room", "tills": "checkout"}
    till = next(p for p in by_type["zone_visit"] if p["zone"] == "tills")
    assert (till["queue_s"], till["service_s"]) == (20.0, 15.0)
    [snap] = by_type["occupancy"]
    assert snap["staff"] == 1 and snap["queues"] == {"tills": 0}
    ended = {p["visit_id"]: p for p in by_type["visit_ended"]}
    staff_id = next(v for v, p in ended.items() if p.get("staff"))
    assert [r["visit_id"] for r in chain.query("SELECT visit_id FROM staff_visits")] == [staff_id]
    shopper = next(p for p in ended.values() if not p.get("staff"))
    assert shopper["cameras"] == ["entrance", "womenswear"] and shopper["handoffs"] == 2
    scope = analytics.scope_for(chain, date(2026, 11, 21), date(2026, 11, 21))
    [row] = analytics.CHARTS["try-ons"](chain, scope).rows
    assert row["sessions"] == 1 and row["tryon_visits"] == 1 and row["median_tryon_s"] == 120.0
    [staff_row] = analytics.CHARTS["staff"](chain, scope).rows
    assert staff_row["staff_visits"] == 1
