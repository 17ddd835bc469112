"""One decoder: the contract's msgspec structs and its pydantic models take and refuse the
same payloads (events and device statuses alike), on one corpus of good and bad envelopes.

Envelopes spelled as devices send them are decided by the structs alone (bounds, enums,
schema and version rules, the extra-field policy all enforced by msgspec, no model involved);
lax spellings the models accept reach `decode_envelope`'s structs through the models'
canonical text. Ingest gives each payload the same verdict, and the same dead-letter reason,
as the models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from test_contract_decoder import assert_same

from storelens.cloud.commerce import stores
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest.worker import Incoming, Ingestor
from storelens.contract import (
    ContractError,
    decode_envelope,
    encode_envelope,
    parse_envelope,
    topics,
)
from storelens.contract.decoder import accept
from storelens.contract.schema import example_envelope
from storelens.tools.bench.ingest import envelopes, realistic_event_dicts

STORE, DEVICE = "s1", "cam-box-1"
BASE: dict[str, Any] = json.loads(encode_envelope(example_envelope()))
BASE["store"] = STORE
TYPES = [e["type"] for e in BASE["events"]]
STATUS = TYPES.index("device_status")
VISIT_ENDED, OCCUPANCY = TYPES.index("visit_ended"), TYPES.index("occupancy")
ZONE_VISIT, LINE, SWIPE = (
    TYPES.index("zone_visit"),
    TYPES.index("line_crossing"),
    TYPES.index("card_swipe"),
)
STARTED = TYPES.index("visit_started")


def env(change: Callable[[dict], object] | None = None) -> bytes:
    doc = json.loads(json.dumps(BASE))
    if change is not None:
        change(doc)
    return json.dumps(doc).encode()


def ev(i: int, **fields: Any) -> Callable[[dict], None]:
    return lambda doc: doc["events"][i].update(fields)


def drop(i: int, key: str) -> Callable[[dict], None]:
    return lambda doc: doc["events"][i].pop(key)


def status(**fields: Any) -> Callable[[dict], None]:
    return ev(STATUS, **fields)


def only_status(doc: dict) -> None:  # what a device publishes on its status topic
    doc["events"] = [doc["events"][STATUS]]


def camera(**fields: Any) -> Callable[[dict], None]:
    return lambda doc: doc["events"][STATUS]["cameras"][0].update(fields)


# Spelled as a device sends them: the structs must decide exactly as the models do.
AS_SENT: dict[str, bytes] = {
    "example of every type": env(),
    "status only": env(only_status),
    "realistic": envelopes(STORE, DEVICE, realistic_event_dicts(DEVICE, 50, seed=3), 50)[0],
    "newer minor version": env(lambda d: d.update(version="1.10")),
    "oldest minor version": env(lambda d: d.update(version="1.0")),
    "unknown envelope key (ignored)": env(lambda d: d.update(gateway="x")),
    "status without optional fields": env(lambda d: d["events"].__setitem__(STATUS, {
        k: d["events"][STATUS][k] for k in ("type", "id", "device", "seq", "ts")})),
    "status with a reader error": env(lambda d: d["events"][STATUS]["readers"][0].update(
        error="jammed")),
    "empty batch": env(lambda d: d.update(events=[])),
    # refused:
    "negative seq": env(ev(0, seq=-1)),
    # Beyond a BIGINT: the row insert would fail and the batch be retried forever.
    "seq beyond a bigint": env(ev(0, seq=2**63)),
    "zone count beyond a bigint": env(ev(OCCUPANCY, zones={"a": 2**63})),
    "status depth beyond a bigint": env(status(outbox_depth=2**63)),
    "negative duration": env(ev(VISIT_ENDED, duration_s=-0.5)),
    "negative total": env(ev(OCCUPANCY, total=-1)),
    "negative zone count": env(ev(OCCUPANCY, zones={"a": -1})),
    "path point of two": env(ev(VISIT_ENDED, path=[[1.0, 2.0]])),
    "path too long": env(ev(VISIT_ENDED, path=[[1.0, 2.0, 3.0]] * 2001)),
    "too many cameras": env(ev(VISIT_ENDED, cameras=["c"] * 65)),
    "negative handoffs": env(ev(VISIT_ENDED, handoffs=-1)),
    "attire colour not in the list": env(ev(VISIT_ENDED, attire={"upper": "beige"})),
    "attire part not in the list": env(ev(VISIT_ENDED, attire={"hat": "red"})),
    "direction not in the list": env(ev(LINE, direction="up")),
    "swipe reason not in the list": env(ev(SWIPE, reason="maybe")),
    "zone kind not in the list": env(ev(ZONE_VISIT, kind="stockroom")),
    "uppercase token": env(ev(SWIPE, member="9F" * 32)),
    "short token": env(ev(SWIPE, member="9f" * 31)),
    "swipe without member": env(drop(SWIPE, "member")),
    "identifier with a space": env(ev(0, camera="a b")),
    "identifier too long": env(ev(0, camera="x" * 65)),
    "identifier with a newline": env(ev(0, camera="cam\n")),
    "time without zone": env(ev(0, ts="2026-11-21T10:00:00")),
    "time not a time": env(ev(0, ts="soon")),
    "unknown event type": env(ev(0, type="visit_paused")),
    "no event type": env(drop(0, "type")),
    "no visit id": env(drop(0, "visit_id")),
    "status negative depth": env(status(outbox_depth=-1)),
    "status negative lost": env(status(lost_events=-5)),
    "status negative uptime": env(status(uptime_s=-1.0)),
    "status negative age": env(status(outbox_age_s=-1.0)),
    "status camera negative fps": env(camera(fps=-1.0)),
    "status camera without fps": env(lambda d: d["events"][STATUS]["cameras"][0].pop("fps")),
    "status camera bad name": env(camera(camera="-lead")),
    "status of another device": env(status(device="other-box")),
    "status seq a string of words": env(status(seq="seven")),
    "device mismatch": env(ev(0, device="other-box")),
    "major version 2": env(lambda d: d.update(version="2.0")),
    "version without minor": env(lambda d: d.update(version="1")),
    "version with a newline": env(lambda d: d.update(version="1.0\n")),
    "no version": env(lambda d: d.pop("version")),
    "other schema": env(lambda d: d.update(schema="acme.events")),
    "no schema": env(lambda d: d.pop("schema")),
    "no store": env(lambda d: d.pop("store")),
    "bad store": env(lambda d: d.update(store="s 1")),
    "too many events": env(lambda d: d.update(events=[d["events"][OCCUPANCY]] * 1001)),
    "oversized": env(lambda d: d.update(pad="x" * 300_000)),
    "events not a list": env(lambda d: d.update(events={})),
    "not JSON": b"{not json",
    "a JSON array": b"[]",
    "not UTF-8": b'{"schema": "\xff"}',
}  # fmt: skip

# Spellings the models accept (lax, or fields they ignore or generate) and the structs do not
# take as sent: `decode_envelope` gives them the models' values all the same.
LAX: dict[str, bytes] = {
    "unknown event key": env(ev(0, crop="aGVsbG8=")),
    "unknown status key": env(status(temperature_c=41.5)),
    "unknown camera status key": env(camera(gpu="on")),
    "null member": env(ev(STARTED, member=None)),
    "uppercase event id": env(lambda d: d["events"][0].update(id=d["events"][0]["id"].upper())),
    "no event id": env(drop(0, "id")),
    "no status id": env(drop(STATUS, "id")),
    "no batch id": env(lambda d: d.pop("batch_id")),
    "string seq": env(ev(0, seq="5")),
    "status string depth": env(status(outbox_depth="3")),
    "numeric time": env(ev(0, ts=1_795_000_000)),
    "string bool": env(ev(LINE, entrance="true")),
}  # fmt: skip


def verdict(decode: Callable[[bytes], object], raw: bytes) -> str:
    try:
        decode(raw)
    except ContractError as exc:
        return exc.reason
    return "accepted"


def model_verdict(raw: bytes) -> str:
    return verdict(parse_envelope, raw)


def test_the_corpus_has_both_verdicts_and_statuses() -> None:
    verdicts = {name: model_verdict(raw) for name, raw in AS_SENT.items()}
    assert sum(v == "accepted" for v in verdicts.values()) >= 9
    assert sum(v != "accepted" for v in verdicts.values()) >= 40
    assert verdicts["status only"] == "accepted" and verdicts["status negative depth"] == "invalid"
    assert {v for v in verdicts.values()} >= {
        "invalid", "unknown_version", "unknown_schema", "device_mismatch", "oversized",
        "bad_json", "bad_shape",
    }  # fmt: skip


@pytest.mark.parametrize("name", list(AS_SENT))
def test_the_structs_decide_as_the_models_do(name: str) -> None:
    raw = AS_SENT[name]
    models = model_verdict(raw)
    assert ("accepted" if accept(raw) is not None else "refused") == (
        "accepted" if models == "accepted" else "refused"
    ), models
    assert verdict(decode_envelope, raw) == models
    assert_same(raw)  # accepted: the structs hold the models' values


@pytest.mark.parametrize("name", list(LAX))
def test_lax_spellings_reach_the_structs_through_the_models(name: str) -> None:
    raw = LAX[name]
    assert model_verdict(raw) == "accepted"
    assert accept(raw) is None
    envelope, texts = decode_envelope(raw)
    model = parse_envelope(raw)
    generated = {"id"} if "id" in name else set()
    for event, text, expected in zip(envelope.events, texts, model.events, strict=True):
        want = json.loads(expected.model_dump_json(exclude_none=True))
        got = json.loads(text)
        assert {k: v for k, v in got.items() if k not in generated} == {
            k: v for k, v in want.items() if k not in generated
        }
        assert event.seq == expected.seq and event.ts == expected.ts


def test_what_the_models_take_but_cannot_write_back_is_refused() -> None:
    # `Infinity` is not JSON: pydantic's parser takes it, and its canonical text says null,
    # so the one decoder refuses it by name (the only payload the two decide differently).
    raw = env(ev(VISIT_ENDED, duration_s=float("inf")))
    assert b"Infinity" in raw and model_verdict(raw) == "accepted"
    with pytest.raises(ContractError) as refused:
        decode_envelope(raw)
    assert refused.value.reason == "invalid"


@pytest.fixture
def chain(db):
    stores.upsert_store(db, stores.Store(id=STORE, name="One", lat=0, lon=0))
    device_registry.register_device(db, STORE, DEVICE)
    return db


def test_ingest_gives_every_payload_the_models_verdict(chain) -> None:
    corpus = {**AS_SENT, **LAX}
    batch = [
        Incoming(topics.status(STORE, DEVICE) if "status" in name else topics.events(STORE, DEVICE),
                 raw)
        for name, raw in corpus.items()
    ]  # fmt: skip
    expected: dict[str, int] = {}
    accepted = 0
    for raw in corpus.values():
        v = model_verdict(raw)
        if v == "accepted":
            accepted += 1
        else:
            expected[v] = expected.get(v, 0) + 1
    # Accepted envelopes of the same example share event IDs: duplicates, not dead letters.
    result = Ingestor(chain).process(batch)
    assert result.dead == expected
    assert result.messages - sum(result.dead.values()) == accepted
    assert result.statuses > 0
    row = chain.query_one("SELECT status FROM devices WHERE device = ?", (DEVICE,))
    assert json.loads(row["status"])["device"] == DEVICE
