"""Contract 1.2 (store visits, try-on, checkout, staff): every new field is optional, so a
1.1 device's payload still parses and a 1.1 cloud (extra="ignore") skips the new fields."""

from __future__ import annotations

import json

from storelens.contract import SCHEMA_VERSION, encode_envelope, parse_envelope
from storelens.contract.events import EVENT_TYPES
from storelens.contract.schema import example_envelope

NEW_IN_1_2 = {
    "visit_started": {"staff"},
    "visit_ended": {"staff", "cameras", "handoffs"},
    "zone_visit": {"staff", "kind", "queue_s", "service_s"},
    "line_crossing": {"staff"},
    "occupancy": {"staff", "queues"},
    "device_status": {"ambiguous_handoffs"},
}


def test_version_is_1_2_or_a_later_minor() -> None:
    assert SCHEMA_VERSION.split(".")[0] == "1" and int(SCHEMA_VERSION.split(".")[1]) >= 2


def test_new_fields_are_optional_and_default_to_absent() -> None:
    for tag, names in NEW_IN_1_2.items():
        fields = EVENT_TYPES[tag].model_fields
        for name in names:
            assert not fields[name].is_required(), (tag, name)
            assert fields[name].default is None, (tag, name)
            assert fields[name].description and "1.2" in fields[name].description


def test_a_1_1_payload_still_parses() -> None:
    doc = json.loads(encode_envelope(example_envelope()))
    doc["version"] = "1.1"
    for event in doc["events"]:
        for name in NEW_IN_1_2.get(event["type"], ()):
            event.pop(name, None)
    env = parse_envelope(json.dumps(doc).encode())
    kinds = [e.kind for e in env.events if e.type == "zone_visit"]
    assert kinds and all(k is None for k in kinds)
    assert all(getattr(e, "staff", None) is None for e in env.events)


def test_the_example_shows_every_new_field() -> None:
    doc = json.loads(encode_envelope(example_envelope()))
    shown: dict[str, set[str]] = {}
    for event in doc["events"]:
        shown.setdefault(event["type"], set()).update(event)
    for tag, names in NEW_IN_1_2.items():
        if tag != "visit_ended":
            names = names - {"staff"}  # the same flag on every person event: shown once
        assert names <= shown[tag], (tag, names - shown[tag])


def test_try_on_docs_say_the_camera_cannot_see_garments() -> None:
    kind = EVENT_TYPES["zone_visit"].model_fields["kind"].description or ""
    assert "cannot see garments" in kind
