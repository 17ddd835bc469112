"""Storage rows from decoded messages: the one builder, and the privacy rule it applies.

Every event and device status the cloud stores becomes its row here, whether a device sent it
(the structs of `storelens.contract.decode_envelope`, with each event's JSON text) or it was
built in-process as a contract model (seeds, tests: `model_row` and `status_row`, which go
through `storelens.contract.event_struct` first, so there is no second way to make a row).

The privacy rule: an event keeps the fields of `PERSONAL_FIELDS` (the contract's one list: a
member's pseudonym and the key that made it) only while that member's consent allows it
(``linkable(token)`` returns the token). Otherwise its row has no member and no key, and its
payload is its text without those fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import msgspec
from pydantic import BaseModel

from storelens.contract import event_struct
from storelens.contract.decoder import EVENT_STRUCT_TYPES
from storelens.contract.events import PERSONAL_FIELDS

# One ``events`` row, in the table's column order. A plain tuple, typed: COPY, executemany and
# msgpack take it as is, and building a NamedTuple instead costs 0.3 us an event (measured:
# tuple.__new__ on a subclass copies), a quarter of building the whole row.
EventRow = tuple[
    str,  # id
    str,  # store
    str,  # device
    int,  # seq
    str,  # type
    float,  # ts: epoch seconds, as every time column
    str | None,  # camera
    str | None,  # visit_id
    str | None,  # member: the consent-checked pseudonym; None when it must stay unlinked
    str | None,  # key_id
    str | None,  # zone
    str | None,  # line
    str | None,  # direction
    float | None,  # dwell_s
    float | None,  # t_start
    float,  # received_at
    str,  # payload: the event's JSON
]
EVENT_COLUMNS: tuple[str, ...] = (
    "id", "store", "device", "seq", "type", "ts", "camera", "visit_id", "member", "key_id",
    "zone", "line", "direction", "dwell_s", "t_start", "received_at", "payload",
)  # fmt: skip


class StatusRow(NamedTuple):
    """A device status as the ``devices`` table records it."""

    store: str
    device: str
    ts: float  # the device's own time of it: orders a batch's statuses
    status: str  # the status's JSON
    fps: float | None  # mean over its cameras
    outbox_depth: int
    lost_events: int


Linkable = Callable[[str | None], str | None]

# Typed columns per event type: (zone, line, direction, dwell_s, t_start).
_NOTHING = (None, None, None, None, None)


def _zone_visit(e: Any) -> tuple:
    return e.zone, None, None, e.dwell_s, e.entered_at.timestamp()


def _line_crossing(e: Any) -> tuple:
    return None, e.line, e.direction, None, None


def _visit_ended(e: Any) -> tuple:
    return None, None, None, e.duration_s, e.started_at.timestamp()


_TYPED = {
    EVENT_STRUCT_TYPES["zone_visit"]: _zone_visit,
    EVENT_STRUCT_TYPES["line_crossing"]: _line_crossing,
    EVENT_STRUCT_TYPES["visit_ended"]: _visit_ended,
}
_TAGS = {struct: tag for tag, struct in EVENT_STRUCT_TYPES.items()}
_STATUS = EVENT_STRUCT_TYPES["device_status"]


def without_personal(text: str) -> str:
    """An event's JSON without its personal fields (and, as a model dump excluding None
    would, without nulls): the payload of an event whose member must stay unlinked."""
    doc = msgspec.json.decode(text)
    return msgspec.json.encode(
        {k: v for k, v in doc.items() if k not in PERSONAL_FIELDS and v is not None}
    ).decode()


def message_rows(
    store: str,
    events: Sequence[Any],
    texts: Sequence[str],
    received_at: float,
    linkable: Linkable,
    *,
    ask_anonymous: bool = False,
) -> tuple[list[EventRow], list[StatusRow]]:
    """The rows of one decoded message (the ingest hot path): an `EventRow` per event and a
    `StatusRow` per device status. ``texts`` are the events' JSON texts (`Decoded.texts`);
    ``linkable(token)`` is the consent check, asked only for events that carry a member
    unless ``ask_anonymous`` (then its answer is the row's member whatever the event holds)."""
    rows: list[EventRow] = []
    statuses: list[StatusRow] = []
    typed_of, tags = _TYPED, _TAGS
    for event, text in zip(events, texts, strict=True):
        cls = type(event)
        if cls is _STATUS:
            statuses.append(_status(store, event, text))
            continue
        token = getattr(event, "member", None)
        member = linkable(token) if token is not None or ask_anonymous else None
        if member != token:
            text = without_personal(text)
        typed = typed_of.get(cls)
        rows.append((
            event.id, store, event.device, event.seq, tags[cls], event.ts.timestamp(),
            getattr(event, "camera", None), getattr(event, "visit_id", None), member,
            event.key_id if member is not None else None,
            *(typed(event) if typed else _NOTHING), received_at, text,
        ))  # fmt: skip
    return rows, statuses


def _status(store: str, status: Any, text: str) -> StatusRow:
    cameras = status.cameras
    fps = sum(c.fps for c in cameras) / len(cameras) if cameras else None
    return StatusRow(store, status.device, status.ts.timestamp(), text, fps,
                     status.outbox_depth, status.lost_events)  # fmt: skip


def model_row(store: str, event: BaseModel, received_at: float, member: str | None) -> EventRow:
    """The row of a contract event model built in-process (seeds, tests), stored with
    ``member`` (the consent-checked token, None for unlinked) through the same builder."""
    struct, text = event_struct(event)
    rows, _ = message_rows(store, [struct], [text], received_at, lambda _: member,
                           ask_anonymous=True)  # fmt: skip
    if not rows:
        raise ValueError(f"{type(event).__name__} is not stored as an event row")
    return rows[0]


def event_row(store: str, event: BaseModel, received_at: float, member: str | None) -> dict:
    """`model_row` as a dict keyed by column."""
    return dict(zip(EVENT_COLUMNS, model_row(store, event, received_at, member), strict=True))


def status_row(store: str, status: BaseModel) -> StatusRow:
    """The row of a device status model built in-process, through the same builder."""
    struct, text = event_struct(status)
    if type(struct) is not _STATUS:
        raise ValueError(f"{type(status).__name__} is not a device status")
    return _status(store, struct, text)
