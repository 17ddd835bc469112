"""The batch envelope: many events per MQTT message, one schema name and version."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from storelens.contract.events import Event, Identifier

SCHEMA_NAME = "storelens.events"
# 1.1: LineCrossing.entrance. 1.2: ZoneVisit.kind/queue_s/service_s (try-on sessions,
# checkout times), staff flags and counts, VisitEnded.cameras/handoffs (store visits).
# 1.3: DeviceStatus.outbox_age_s (age of the oldest unconfirmed outbox message).
SCHEMA_VERSION = "1.3"
SCHEMA_MAJOR = 1
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_EVENTS_PER_BATCH = 1000


class ContractError(ValueError):
    """A payload that does not satisfy the contract; ``reason`` is a short machine tag."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    schema_name: Literal["storelens.events"] = Field(default=SCHEMA_NAME, alias="schema")
    version: str = Field(default=SCHEMA_VERSION, pattern=r"^1\.\d+$")
    store: Identifier
    device: Identifier
    batch_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    sent_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    events: list[Event] = Field(max_length=MAX_EVENTS_PER_BATCH)


def encode_envelope(envelope: Envelope) -> bytes:
    return envelope.model_dump_json(by_alias=True, exclude_none=True).encode()


def parse_envelope(raw: bytes) -> Envelope:
    """Validate one MQTT payload. Raises ContractError with a reason tag for dead-lettering."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise ContractError("oversized", f"{len(raw)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        head = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError("bad_json", str(exc)) from None
    if not isinstance(head, dict):
        raise ContractError("bad_shape", "payload is not a JSON object")
    if head.get("schema") != SCHEMA_NAME:
        raise ContractError("unknown_schema", f"schema={head.get('schema')!r}")
    version = str(head.get("version", ""))
    if version.split(".")[0] != str(SCHEMA_MAJOR):
        raise ContractError("unknown_version", f"version={version!r}")
    try:
        envelope = Envelope.model_validate(head)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ContractError(
            "invalid", f"{where}: {first['msg']} ({exc.error_count()} errors)"
        ) from None
    for event in envelope.events:
        if event.device != envelope.device:
            raise ContractError("device_mismatch", f"event {event.id} from {event.device}")
    return envelope
