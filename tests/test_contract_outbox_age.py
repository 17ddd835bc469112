"""Contract 1.3: a device reports how old the oldest message in its outbox is (optional, so
1.2 payloads still parse), and the cloud shows it on /metrics and in the device table."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from storelens.cloud.analytics import devices
from storelens.cloud.commerce import stores
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest.device_metrics import DeviceCollector
from storelens.contract import SCHEMA_VERSION, encode_envelope, parse_envelope
from storelens.contract.events import DeviceStatus
from storelens.contract.schema import example_envelope
from storelens.edge.outbox import Outbox


def test_version_is_1_3_and_the_field_is_optional() -> None:
    assert SCHEMA_VERSION == "1.3"
    field = DeviceStatus.model_fields["outbox_age_s"]
    assert not field.is_required() and field.default is None
    assert "1.3" in (field.description or "")


def test_a_1_2_status_without_the_age_still_parses() -> None:
    doc = json.loads(encode_envelope(example_envelope()))
    status = next(e for e in doc["events"] if e["type"] == "device_status")
    assert "outbox_age_s" in status  # the example shows the new field
    doc["version"] = "1.2"
    status.pop("outbox_age_s")
    parsed = next(e for e in parse_envelope(json.dumps(doc).encode()).events
                  if e.type == "device_status")  # fmt: skip
    assert parsed.outbox_age_s is None


def test_the_outbox_age_is_its_oldest_unconfirmed_message(tmp_path) -> None:
    now = [1000.0]
    ob = Outbox(tmp_path / "o.db", clock=lambda: now[0])
    assert ob.oldest_age_s() == 0.0
    first = DeviceStatus(device="d", seq=ob.next_seq(), ts=datetime.now(UTC))
    ob.put([first], kind="status")
    now[0] = 1030.0
    ob.put([DeviceStatus(device="d", seq=ob.next_seq(), ts=datetime.now(UTC))], kind="status")
    now[0] = 1042.5
    assert ob.oldest_age_s() == 42.5
    ob.close()


def test_the_cloud_shows_the_age_a_device_reported(db) -> None:
    stores.upsert_store(db, stores.Store(id="paris", name="Paris", lat=48.8, lon=2.3))
    for box in ("new", "old"):
        device_registry.register_device(db, "paris", box)
    at = datetime.now(UTC)
    statuses = [DeviceStatus(device="new", seq=1, ts=at, outbox_age_s=61.0),
                DeviceStatus(device="old", seq=1, ts=at)]  # fmt: skip
    device_registry.apply_status(db, "paris", statuses)
    gauges = {m.name: {s.labels["device"]: s.value for s in m.samples}
              for m in DeviceCollector(db).collect()}  # fmt: skip
    assert gauges["storelens_device_outbox_age_seconds"] == {"new": 61.0}  # 1.2: no series
    rows = {r["device"]: r for r in devices.device_health(db).rows}
    assert rows["new"]["outbox_age_s"] == 61.0 and rows["old"]["outbox_age_s"] is None
