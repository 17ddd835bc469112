"""The contract's structs (msgspec, generated from the models) may only accept what the
pydantic contract accepts, with equal values: a hypothesis differential test over mutated
realistic envelopes, plus the cases the structs leave to the models (which `decode_envelope`
then decodes through their canonical text)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from storelens.contract import ContractError, parse_envelope
from storelens.contract.decoder import EVENT_STRUCT_TYPES, accept, decode_envelope
from storelens.contract.events import EVENT_TYPES
from storelens.tools.bench.ingest import envelopes, realistic_event_dicts

STORE, DEVICE = "s1", "box-1"
BASE = json.loads(envelopes(STORE, DEVICE, realistic_event_dicts(DEVICE, 60, seed=7), 60)[0])
# A device status too (statuses take the same structs), with a camera and a reader.
BASE["events"].append({
    "type": "device_status", "id": str(uuid.uuid4()), "device": DEVICE, "seq": 61,
    "ts": "2026-11-20T10:00:00Z", "uptime_s": 3600.0, "outbox_depth": 2, "outbox_bytes": 900,
    "lost_events": 0, "outbox_age_s": 4.5,
    "cameras": [{"camera": "cam1", "online": True, "fps": 9.8, "inference_ms": 7.1}],
    "readers": [{"reader": "door", "online": False, "error": "no card field"}],
})  # fmt: skip

UUID = str(uuid.uuid4())
odd_strings = st.sampled_from([
    "", " ", "a", "A-1", "x" * 64, "x" * 65, "-lead", "tr\n", "ok\n", "1.0\n", "1.٣", "1.10",
    "2.0", "1", "é", "a b", "cam1", UUID, UUID.upper(), UUID.replace("-", ""), "{" + UUID + "}",
    f"urn:uuid:{UUID}", UUID + "\n", "9f" * 32, "9F" * 32, "9f" * 32 + "\n", "9f" * 31,
    "2026-11-20T09:00:00Z", "2026-11-20T09:00:00+05:30", "2026-11-20T09:00:00",
    "2026-11-20 09:00:00Z", "2026-11-20t09:00:00z", "2026-11-20T09:00:00.1234567Z",
    "2026-11-20T09:00:00.123456789+00:00", "2026-11-20T24:00:00Z", "2026-02-30T09:00:00Z",
    "2026-11-20T09:00Z", "2026-11-20T09:00:00-00:00", "2026-11-20T09:00:00+14:00",
    "2026-11-20T09:00:00+23:59", "20261120T090000Z", "2026-11-20T09:00:60Z",
    "linked", "ambiguous", "in", "out", "upper", "true", "5", "1e3", "NaN",
])  # fmt: skip
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        odd_strings,
        st.text(max_size=6),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(odd_strings, inner, max_size=3)
    ),
    max_leaves=6,
)
ENVELOPE_KEYS = ["schema", "version", "store", "device", "batch_id", "sent_at", "extra"]
EVENT_KEYS = sorted({k for e in BASE["events"] for k in e} | {"reason", "reader", "total"})
STATUS_PARTS = ["camera", "online", "fps", "inference_ms", "dropped_frames", "error", "x"]


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> bytes:
    env = json.loads(json.dumps(BASE))
    status = env["events"][-1]  # drawn about as often as all the others together
    env["events"] = draw(
        st.lists(st.sampled_from(env["events"] + [status] * 60), min_size=0, max_size=4)
    )
    for _ in range(draw(st.integers(0, 3))):
        where = draw(st.sampled_from(["envelope", "event", "event", "event", "status part"]))
        target = env
        keys = ENVELOPE_KEYS
        if where == "event" and env["events"]:
            i = draw(st.integers(0, len(env["events"]) - 1))
            env["events"][i] = target = dict(env["events"][i])
            keys = EVENT_KEYS
        elif where == "status part" and status in env["events"]:
            i = env["events"].index(status)
            env["events"][i] = copy = json.loads(json.dumps(status))
            target = copy[draw(st.sampled_from(["cameras", "readers"]))][0]
            keys = STATUS_PARTS
        key = draw(st.sampled_from(keys))
        action = draw(st.sampled_from(["set", "set", "drop"]))
        if action == "drop":
            target.pop(key, None)
        else:
            target[key] = draw(json_values)
    return json.dumps(env).encode()


def _equal(fast: Any, slow: Any) -> bool:
    """A fast struct value equals the pydantic value."""
    if isinstance(slow, uuid.UUID):
        return fast == str(slow)
    if isinstance(slow, datetime):
        return fast == slow and fast.utcoffset() == slow.utcoffset()
    if isinstance(slow, list):
        return len(fast) == len(slow) and all(_equal(a, b) for a, b in zip(fast, slow, strict=True))
    if isinstance(slow, dict):
        return fast.keys() == slow.keys() and all(_equal(fast[k], slow[k]) for k in slow)
    if isinstance(slow, BaseModel):  # a nested model (a device status's cameras, readers)
        return all(_equal(getattr(fast, k), getattr(slow, k)) for k in type(slow).model_fields)
    return type(fast) is type(slow) and fast == slow


def assert_same(raw: bytes) -> None:
    fast = accept(raw)
    if fast is None:
        return  # pydantic decides
    envelope, texts = fast
    slow = parse_envelope(raw)  # must not raise: fast-accept implies contract-accept
    assert decode_envelope(raw) == fast
    for name in ("store", "device", "batch_id", "sent_at", "version", "schema_name"):
        assert _equal(getattr(envelope, name), getattr(slow, name)), name
    assert len(envelope.events) == len(slow.events) == len(texts)
    for event, model, text in zip(envelope.events, slow.events, texts, strict=True):
        tag = type(event).__struct_config__.tag
        assert tag == model.type
        for name in msgspec.structs.fields(event):
            assert _equal(getattr(event, name.name), getattr(model, name.name)), name.name
        # The text is the event itself, with nothing the model does not know.
        assert EVENT_TYPES[tag].model_validate_json(text) == model
        assert set(json.loads(text)) <= set(type(model).model_fields) | {"type"}


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=mutated_envelopes())
def test_fast_accept_implies_contract_accept_with_equal_values(raw: bytes) -> None:
    assert_same(raw)


def test_realistic_traffic_takes_the_fast_path() -> None:
    raw = json.dumps(BASE).encode()
    assert accept(raw) is not None
    assert_same(raw)


def _variant(path: tuple, value: Any, drop: bool = False) -> bytes:
    env = json.loads(json.dumps(BASE))
    target = env
    for key in path[:-1]:
        target = target[key]
    if drop:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(env).encode()


def test_what_the_fast_path_leaves_to_pydantic() -> None:
    member_event = next(i for i, e in enumerate(BASE["events"]) if "member" in e)
    cases = {
        "uppercase uuid": _variant(("events", 0, "id"), UUID.upper()),
        "no event id": _variant(("events", 0, "id"), None, drop=True),
        "no batch id": _variant(("batch_id",), None, drop=True),
        "no version": _variant(("version",), None, drop=True),
        "null member": _variant(("events", member_event, "member"), None),
        "unknown event key": _variant(("events", 0, "image"), "..."),
        "string seq": _variant(("events", 0, "seq"), "5"),
        "numeric ts": _variant(("events", 0, "ts"), 1_700_000_000),
        "version newline": _variant(("version",), "1.0\n"),
    }
    for name, raw in cases.items():
        assert accept(raw) is None, name
    # The contract still accepts most of them (pydantic is lax); none of them is lost.
    accepted = set()
    for name, raw in cases.items():
        try:
            parse_envelope(raw)
            accepted.add(name)
        except ContractError:
            pass
    assert {"uppercase uuid", "no event id", "string seq"} <= accepted
    assert "version newline" not in accepted

    # What the models accept, `decode_envelope` gives as structs of their canonical text
    # (IDs the models generate differ from one parse to the next).
    def canonical(texts: list[str]) -> list[dict]:
        return [{k: v for k, v in json.loads(t).items() if k != "id"} for t in texts]

    for name in accepted:
        envelope, texts = decode_envelope(cases[name])
        model = parse_envelope(cases[name])
        assert canonical(texts) == canonical(
            [e.model_dump_json(exclude_none=True) for e in model.events]
        ), name
        assert [str(uuid.UUID(e.id)) for e in envelope.events] == [e.id for e in envelope.events]


def test_device_statuses_take_the_structs() -> None:
    status = {"type": "device_status", "device": DEVICE, "seq": 1, "ts": "2026-11-20T09:00:00Z",
              "id": UUID, "cameras": [{"camera": "cam1", "online": True, "fps": 9.5}]}  # fmt: skip
    raw = _variant(("events",), [status])
    decoded = accept(raw)
    assert decoded is not None and type(decoded.envelope.events[0]).__name__.startswith("Device")
    assert_same(raw)


def test_every_event_type_has_a_struct() -> None:
    assert set(EVENT_STRUCT_TYPES) == set(EVENT_TYPES)
