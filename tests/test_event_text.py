"""Stored payloads cut from the envelope bytes: only contract fields ever reach storage (a
message whose events hold anything else gets the models' canonical text instead)."""

from __future__ import annotations

import json

import pytest

from storelens.cloud.commerce import stores
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest.worker import Incoming, Ingestor
from storelens.contract import decode_envelope, parse_envelope, topics
from storelens.tools.bench.ingest import envelopes, realistic_event_dicts

STORE, DEVICE = "s1", "box-1"


def _envelope(dicts: list[dict]) -> bytes:
    return envelopes(STORE, DEVICE, dicts, len(dicts))[0]


def test_clean_events_keep_their_own_text() -> None:
    dicts = realistic_event_dicts(DEVICE, 40, seed=2)
    raw = _envelope(dicts)
    texts = decode_envelope(raw).texts
    assert [json.loads(t) for t in texts] == dicts
    assert texts[0] in raw.decode()  # cut out, not written again


@pytest.mark.parametrize(
    "change",
    [{"crop": "aGVsbG8="}, {"member": None}, {"key_id": None}],
    ids=["unknown field", "null member", "null key_id"],
)
def test_a_message_with_keys_its_models_do_not_have_is_not_sliced(change: dict) -> None:
    dicts = realistic_event_dicts(DEVICE, 3, seed=2)
    dicts[0] = {**dicts[0], **change}  # an anonymous visit_started
    raw = _envelope(dicts)
    texts = decode_envelope(raw).texts
    assert texts == [e.model_dump_json(exclude_none=True) for e in parse_envelope(raw).events]
    assert not any(t in raw.decode() for t in texts)  # none of them sliced
    assert "crop" not in texts[0] and "null" not in texts[0]


def test_a_repeated_events_key_is_never_sliced() -> None:
    dicts = realistic_event_dicts(DEVICE, 2, seed=2)
    raw = _envelope(dicts[:1])
    doubled = raw[:-1] + b',"events":' + json.dumps(dicts[1:]).encode() + b"}"
    texts = decode_envelope(doubled).texts
    # The models keep the last `events` key; the text is theirs, never a slice of either list.
    assert texts == [e.model_dump_json(exclude_none=True) for e in parse_envelope(doubled).events]
    assert not any(t in doubled.decode() for t in texts)


def test_ingest_stores_contract_fields_only(db) -> None:
    stores.upsert_store(db, stores.Store(id=STORE, name="One", lat=0, lon=0))
    device_registry.register_device(db, STORE, DEVICE)
    dicts = realistic_event_dicts(DEVICE, 20, seed=4)
    dicts[3]["crop"] = "aGVsbG8="
    result = Ingestor(db).process([Incoming(topics.events(STORE, DEVICE), _envelope(dicts))])
    assert result.stored == 20 and not result.dead
    rows = {r["id"]: json.loads(r["payload"]) for r in db.query("SELECT id, payload FROM events")}
    assert "crop" not in rows[dicts[3]["id"]]
    assert rows[dicts[3]["id"]]["type"] == dicts[3]["type"]
    assert rows[dicts[5]["id"]] == dicts[5]
