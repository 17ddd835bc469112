"""The wire contract between edge devices and the cloud.

This package is the single owner of event models, topic names, the schema version and the
generated JSON Schema. Both `storelens.edge` and `storelens.cloud` import it; it imports
neither, and it needs nothing beyond pydantic. `decode_envelope` (`decoder`: raw envelope
bytes to msgspec structs, what ingest decodes with) also needs msgspec (the cloud extra), so
it loads on first use: a device never imports it.
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
    "decode_envelope",
    "encode_envelope",
    "new_event_id",
    "parse_envelope",
    "topics",
]


def __getattr__(name: str) -> Any:
    if name == "decode_envelope":
        from storelens.contract.decoder import decode_envelope

        return decode_envelope
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
