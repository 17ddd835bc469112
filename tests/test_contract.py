"""The wire contract: round trips, rejection reasons, committed schema, topic layout."""

from __future__ import annotations

import json

import pytest

from storelens.contract import ContractError, encode_envelope, parse_envelope, topics
from storelens.contract.schema import SCHEMA_FILE, example_envelope, render_schema


def test_round_trip_every_event_type() -> None:
    env = example_envelope()
    assert parse_envelope(encode_envelope(env)) == env
    assert {e.type for e in env.events} == {
        "visit_started",
        "visit_ended",
        "zone_visit",
        "line_crossing",
        "occupancy",
        "card_swipe",
        "device_status",
    }


def test_committed_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text() == render_schema(), "run `storelens contract schema`"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "bad_json"),
        (b"[1,2]", "bad_shape"),
        (b'{"schema": "other"}', "unknown_schema"),
        (b'{"schema": "storelens.events", "version": "2.0"}', "unknown_version"),
        (b'{"schema": "storelens.events", "version": "1.0", "store": "s"}', "invalid"),
        (b"x" * (300 * 1024), "oversized"),
    ],
)
def test_rejections_have_reasons(payload: bytes, reason: str) -> None:
    with pytest.raises(ContractError) as err:
        parse_envelope(payload)
    assert err.value.reason == reason


def test_wrong_types_and_newer_minor_fields() -> None:
    doc = json.loads(encode_envelope(example_envelope()))
    doc["version"] = "1.7"
    doc["events"][0]["some_future_field"] = 1  # minor versions only add optional fields
    assert parse_envelope(json.dumps(doc).encode()).version == "1.7"
    doc["events"][0]["seq"] = "many"
    with pytest.raises(ContractError, match="invalid"):
        parse_envelope(json.dumps(doc).encode())


def test_event_from_other_device_is_rejected() -> None:
    doc = json.loads(encode_envelope(example_envelope()))
    doc["events"][1]["device"] = "someone-else"
    with pytest.raises(ContractError) as err:
        parse_envelope(json.dumps(doc).encode())
    assert err.value.reason == "device_mismatch"


def test_topics() -> None:
    assert topics.events("s1", "d1") == "storelens/v1/s1/d1/events"
    assert topics.parse("storelens/v1/s1/d1/status") == ("s1", "d1", "status")
    assert topics.parse("storelens/v1/s1/pos/tasks") is None
    assert topics.parse("other/v1/s1/d1/events") is None
    assert topics.shared(topics.EVENTS_ALL) == "$share/ingest/storelens/v1/+/+/events"


def test_event_ids_are_time_ordered() -> None:
    from storelens.contract import new_event_id

    ids = [new_event_id() for _ in range(50)]
    assert all(i.version == 7 for i in ids)
    assert [i.int >> 80 for i in ids] == sorted(i.int >> 80 for i in ids)
