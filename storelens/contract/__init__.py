"""The wire contract between edge devices and the cloud.

This package is the single owner of event models, topic names, the schema version and the
generated JSON Schema. Both `storelens.edge` and `storelens.cloud` import it; it imports
neither, and it needs nothing beyond pydantic. `decode_envelope` (`decoder`: raw envelope
bytes to msgspec structs, the one decode ingest uses for every message; pydantic only names
why a payload is refused) and `event_struct` (an in-process model as those structs) also need
msgspec (the cloud extra), so they load on first use: a device never imports them.
"""

from typing import Any

from storelens.contract import topics
from storelens.contract.envelope import (
    MAX_EVENTS_PER_BATCH,
    MAX_PAYLOAD_BYTES,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    ContractError,
    Envelope,
    encode_envelope,
    parse_envelope,
)
from storelens.contract.events import (
    CameraStatus,
    CardSwipe,
    DeviceStatus,
    Event,
    LineCrossing,
    OccupancySnapshot,
    ReaderStatus,
    VisitEnded,
    VisitStarted,
    ZoneVisit,
    new_event_id,
)

__all__ = [
    "MAX_EVENTS_PER_BATCH",
    "MAX_PAYLOAD_BYTES",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "CameraStatus",
    "CardSwipe",
    "ContractError",
    "DeviceStatus",
    "Envelope",
    "Event",
    "LineCrossing",
    "OccupancySnapshot",
    "ReaderStatus",
    "VisitEnded",
    "VisitStarted",
    "ZoneVisit",
    "Decoded",
    "decode_envelope",
    "encode_envelope",
    "event_struct",
    "new_event_id",
    "parse_envelope",
    "topics",
]


_DECODER_NAMES = frozenset({"Decoded", "decode_envelope", "event_struct"})


def __getattr__(name: str) -> Any:
    if name in _DECODER_NAMES:
        from storelens.contract import decoder

        return getattr(decoder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
