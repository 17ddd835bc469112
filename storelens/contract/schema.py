"""JSON Schema and example payloads generated from the contract models."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from storelens.contract.envelope import SCHEMA_VERSION, Envelope, encode_envelope
from storelens.contract.events import (
    CameraStatus,
    CardSwipe,
    DeviceStatus,
    LineCrossing,
    OccupancySnapshot,
    ReaderStatus,
    VisitEnded,
    VisitStarted,
    ZoneVisit,
)

SCHEMA_DIR = Path(__file__).parent / "schema"
SCHEMA_FILE = SCHEMA_DIR / f"envelope.v{SCHEMA_VERSION.split('.')[0]}.json"


def envelope_schema() -> dict:
    schema = Envelope.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://storelens.dev/schema/envelope.v{SCHEMA_VERSION}.json"
    return schema


def render_schema() -> str:
    return json.dumps(envelope_schema(), indent=2, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_FILE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_schema())
    return path


def example_events() -> list:
    """One example of every event type (used by the docs and the tests)."""
    t0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    visit = uuid.UUID("0192f1a0-0000-7000-8000-000000000001")
    token = "9f" * 32
    common = {"device": "cam-box-1"}
    return [
        VisitStarted(**common, seq=1, ts=t0, camera="entrance", visit_id=visit),
        CardSwipe(
            **common,
            seq=2,
            ts=t0 + timedelta(seconds=3),
            reader="door-reader",
            member=token,
            key_id="k2026",
            camera="entrance",
            visit_id=visit,
        ),
        LineCrossing(
            **common,
            seq=3,
            ts=t0 + timedelta(seconds=5),
            camera="entrance",
            visit_id=visit,
            member=token,
            key_id="k2026",
            line="door",
            direction="in",
            entrance=True,
        ),
        ZoneVisit(
            **common,
            seq=4,
            ts=t0 + timedelta(seconds=250),
            camera="entrance",
            visit_id=visit,
            member=token,
            key_id="k2026",
            zone="handbags",
            entered_at=t0 + timedelta(seconds=10),
            exited_at=t0 + timedelta(seconds=250),
            dwell_s=240.0,
        ),
        OccupancySnapshot(
            **common,
            seq=5,
            ts=t0 + timedelta(seconds=60),
            camera="entrance",
            total=4,
            zones={"handbags": 2, "shoes": 1, "tills": 1},
            staff=1,
            queues={"tills": 0},
        ),
        ZoneVisit(
            **common,
            seq=8,
            ts=t0 + timedelta(seconds=200),
            camera="womenswear",
            visit_id=visit,
            member=token,
            key_id="k2026",
            zone="fitting-rooms",
            entered_at=t0 + timedelta(seconds=80),
            exited_at=t0 + timedelta(seconds=200),
            dwell_s=120.0,
            kind="fitting_room",
        ),
        ZoneVisit(
            **common,
            seq=9,
            ts=t0 + timedelta(seconds=290),
            camera="entrance",
            visit_id=visit,
            member=token,
            key_id="k2026",
            zone="tills",
            entered_at=t0 + timedelta(seconds=255),
            exited_at=t0 + timedelta(seconds=290),
            dwell_s=35.0,
            kind="checkout",
            queue_s=20.0,
            service_s=15.0,
        ),
        VisitEnded(
            **common,
            seq=6,
            ts=t0 + timedelta(seconds=300),
            camera="entrance",
            visit_id=visit,
            member=token,
            key_id="k2026",
            started_at=t0,
            duration_s=300.0,
            path=[[1.0, 0.5, 0.0], [3.2, 4.1, 120.0], [1.1, 0.4, 300.0]],
            zones=["handbags", "fitting-rooms", "tills"],
            attire={"upper": "red", "lower": "blue"},
            cameras=["entrance", "womenswear"],
            handoffs=2,
        ),
        VisitEnded(
            **common,
            seq=10,
            ts=t0 + timedelta(seconds=300),
            camera="entrance",
            visit_id=uuid.UUID("0192f1a0-0000-7000-8000-000000000002"),
            started_at=t0,
            duration_s=300.0,
            zones=["stockroom"],
            staff=True,
        ),
        DeviceStatus(
            **common,
            seq=7,
            ts=t0 + timedelta(seconds=300),
            uptime_s=3600,
            cameras=[CameraStatus(camera="entrance", online=True, fps=10.0, inference_ms=7.9)],
            readers=[ReaderStatus(reader="door-reader", online=True)],
            outbox_depth=0,
            lost_events=0,
            outbox_age_s=0.0,
            ambiguous_handoffs=1,
        ),
    ]


def example_envelope() -> Envelope:
    return Envelope(
        store="store-001",
        device="cam-box-1",
        batch_id=uuid.UUID("0192f1a0-0000-4000-8000-0000000000aa"),
        sent_at=datetime(2026, 11, 21, 10, 5, tzinfo=UTC),
        events=example_events(),
    )


def example_payload() -> str:
    """The example envelope as indented JSON (`storelens contract example`); event IDs are
    fresh on every call, everything else is fixed."""
    return json.dumps(json.loads(encode_envelope(example_envelope())), indent=2) + "\n"
