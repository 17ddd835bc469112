"""Each event's own JSON text, cut out of the envelope bytes, for the ``payload`` column.

Serialising every validated event again cost ingest about as much as validating it. msgspec
cuts the raw text of each element of ``events`` out of the bytes in C instead (under a
microsecond an event). The texts of a message are only used when every event holds nothing
but fields of its contract model, so a device can never get an unknown field (an image, say)
into storage this way; otherwise the caller serialises the validated models, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import msgspec
from pydantic import BaseModel

from storelens.contract.decoder import raw_event_texts
from storelens.contract.events import EVENT_TYPES, PERSONAL_FIELDS


def _key_struct(tag: str, model: type[BaseModel]) -> type[msgspec.Struct]:
    """A struct naming exactly ``model``'s fields, so unknown keys fail the decode. Values
    stay raw (pydantic validates them); ``member``/``key_id`` must be strings, because a
    null (or a repeated key) there would keep text the validated model does not have."""
    fields: list[tuple[str, Any, Any]] = [
        (f.alias or name, (str if name in PERSONAL_FIELDS else msgspec.Raw) | msgspec.UnsetType,
         msgspec.UNSET)
        for name, f in model.model_fields.items() if name != "type"
    ]  # fmt: skip
    return msgspec.defstruct(
        f"{model.__name__}Keys", fields, tag_field="type", tag=tag, forbid_unknown_fields=True
    )


_KeyedEvent = Union[tuple(_key_struct(tag, model) for tag, model in EVENT_TYPES.items())]  # noqa: UP007


class _Keys(msgspec.Struct):
    events: list[_KeyedEvent]


_KEYS = msgspec.json.Decoder(_Keys)


def event_texts(raw: bytes, events: Sequence[BaseModel]) -> list[str | None]:
    """The JSON text of each of ``events`` (the validated ``events`` of envelope ``raw``);
    all None when any event of the message has a key its contract model does not name."""
    texts = raw_event_texts(raw)
    if texts is None or len(texts) != len(events):
        return [None] * len(events)
    try:
        _KEYS.decode(raw)
    except msgspec.DecodeError:
        return [None] * len(events)
    return list(texts)
