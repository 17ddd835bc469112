"""Each event's own JSON text, cut out of the envelope bytes, for the ``payload`` column.

Serialising every validated event again cost ingest about as much as validating it. msgspec
cuts the raw text of each element of ``events`` out of the bytes in C instead (well under a
microsecond an event). A text is only used when it holds nothing but fields of its contract
model, so a device can never get an unknown field (an image, say) into storage through it;
for any other event the caller serialises the validated model, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from pydantic import BaseModel

from storelens.contract.events import EVENT_TYPES

_PERSONAL = frozenset({"member", "key_id"})


class _Texts(msgspec.Struct):
    events: list[msgspec.Raw]


class _Keys(msgspec.Struct):
    events: list[dict[str, msgspec.Raw]]


_TEXTS = msgspec.json.Decoder(_Texts)
_KEYS = msgspec.json.Decoder(_Keys)


def _field_names(model: type[BaseModel]) -> frozenset[str]:
    names = set(model.model_fields)
    names.update(f.alias for f in model.model_fields.values() if f.alias)
    return frozenset(names)


_ALLOWED: dict[type[BaseModel], frozenset[str]] = {
    model: _field_names(model) for model in EVENT_TYPES.values()
}


def event_texts(raw: bytes, events: Sequence[BaseModel]) -> list[str | None]:
    """The JSON text of each of ``events`` (the validated ``events`` of envelope ``raw``), or
    None where it must not be stored as sent: unknown fields, or ``member``/``key_id`` keys
    on an event whose validated ``member`` is empty (a null, or a duplicated key)."""
    if raw.count(b'"events"') != 1:  # a repeated key: the parsers might keep different ones
        return [None] * len(events)
    try:
        texts = _TEXTS.decode(raw).events
        keys = _KEYS.decode(raw).events
    except msgspec.DecodeError:  # pydantic accepted it: differing parsers, serialise instead
        return [None] * len(events)
    if len(texts) != len(events):
        return [None] * len(events)
    out: list[str | None] = []
    for event, text, names in zip(events, texts, keys, strict=True):
        allowed = _ALLOWED.get(type(event))
        unknown = allowed is None or not names.keys() <= allowed
        stray = getattr(event, "member", None) is None and not _PERSONAL.isdisjoint(names)
        out.append(None if unknown or stray else bytes(text).decode())
    return out
