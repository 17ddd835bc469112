"""Event models of wire schema `storelens.events` major version 1.

Rules of evolution: a minor version may only add optional fields; readers ignore fields they
do not know (``extra="ignore"``) so an old cloud keeps accepting a newer device. Anything
incompatible is a new major version on a new topic root (``storelens/v2/...``).

Privacy by construction: there is no field for an image, a crop, an embedding, a raw card
number or a tracker's track number. People are identified only by a random ``visit_id`` and,
for members who swiped a card, a keyed pseudonym (``member``) with the ``key_id`` of the key
that made it.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from storelens.contract.bounds import MAX_STORED_INT

Identifier = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
Token = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="HMAC-SHA256 pseudonym, hex")]
Seconds = Annotated[float, Field(ge=0)]
# Every colour name `storelens.edge.track.attire.colour_name` can produce, and nothing else.
AttireColour = Literal[
    "black", "white", "grey", "brown", "pink", "red", "orange", "yellow", "green", "blue",
    "purple",
]  # fmt: skip
# Non-negative counts and sequence numbers, bounded to what a BIGINT column holds: beyond it
# the row insert fails (SQLite raises OverflowError) and the batch could never be stored.
Count = Annotated[int, Field(ge=0, le=MAX_STORED_INT)]
# What a zone is for (its `category` in the device config), where that gives events meaning.
# A try-on session is a stay in a `fitting_room` zone: the camera sees a person go in and come
# out, never garments, so a person entering empty-handed is a try-on session all the same.
ZoneKind = Literal["fitting_room", "checkout", "staff_only"]


# The fields that link an event to a person (a member's card pseudonym and the key that made
# it): the cloud stores them only while the member's consent allows, and never in the payload
# text of an unlinked event. The one list: the decoder and the row builder (cloud) use it.
PERSONAL_FIELDS: frozenset[str] = frozenset({"member", "key_id"})


def new_event_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then randomness.

    Time-ordered IDs keep database indexes append-mostly; Python 3.11 has no uuid7, and the
    layout is ten lines, so it is written here rather than pulling a dependency.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    return uuid.UUID(int=value)


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: uuid.UUID = Field(default_factory=new_event_id, description="Time-ordered UUIDv7.")
    device: Identifier = Field(description="Device that produced the event.")
    seq: Count = Field( description="Per-device sequence number, gap-free unless lost.")
    ts: AwareDatetime = Field(description="When the event happened (UTC, frame time).")


class _PersonEvent(_Event):
    camera: Identifier
    visit_id: uuid.UUID = Field(description="Random per visit; never a track number.")
    member: Token | None = Field(default=None, description="Pseudonym of a linked member.")
    key_id: Identifier | None = Field(default=None, description="Key that made `member`.")
    staff: bool | None = Field(
        default=None,
        description="Since 1.2: the person is staff (badge or staff-only zone), known from "
        "this event on; the cloud keeps the whole visit out of shopper analytics. Absent: no "
        "staff signal (a shopper, as before 1.2).",
    )


class VisitStarted(_PersonEvent):
    """A confirmed person appeared in a camera's view."""

    type: Literal["visit_started"] = "visit_started"


class VisitEnded(_PersonEvent):
    """The person left the view; carries the simplified floor path.

    ``path`` is a list of ``[x_m, y_m, t_s]``: floor metres and seconds since ``started_at``.
    """

    type: Literal["visit_ended"] = "visit_ended"
    started_at: AwareDatetime
    duration_s: Seconds
    path: list[Annotated[list[float], Field(min_length=3, max_length=3)]] = Field(
        default_factory=list, max_length=2000
    )
    zones: list[Identifier] = Field(default_factory=list, description="Zones visited, in order.")
    attire: dict[Literal["upper", "lower"], AttireColour] | None = Field(
        default=None,
        description="Optional coarse clothing colour names, computed on device: one of a "
        "closed list of words, so the field cannot carry anything else (an image, text).",
    )
    cameras: Annotated[list[Identifier], Field(max_length=64)] | None = Field(
        default=None,
        description="Since 1.2: every camera that saw this store visit, in order of first "
        "sight, when the device fuses several cameras into one visit (``camera`` is then the "
        "last one). ``path`` is then the one floor path across them.",
    )
    handoffs: Count | None = Field(
        default=None,
        description="Since 1.2: times the visit was handed from one camera's view to another's.",
    )


class ZoneVisit(_PersonEvent):
    """A stay in a zone that lasted at least the zone's minimum dwell."""

    type: Literal["zone_visit"] = "zone_visit"
    zone: Identifier
    entered_at: AwareDatetime
    exited_at: AwareDatetime
    dwell_s: Seconds
    kind: ZoneKind | None = Field(
        default=None,
        description="Since 1.2: what the zone is for. `fitting_room`: this stay is a try-on "
        "session (entered_at to exited_at, dwell_s long; the camera cannot see garments, so "
        "it means someone used the fitting room, not that anything was tried). `checkout`: "
        "see queue_s and service_s.",
    )
    queue_s: Seconds | None = Field(
        default=None,
        description="Since 1.2, checkout zones with a service area: seconds from entering the "
        "zone to reaching the till (the whole stay when never served).",
    )
    service_s: Seconds | None = Field(
        default=None,
        description="Since 1.2, checkout zones with a service area: seconds at the till.",
    )


class LineCrossing(_PersonEvent):
    """The person's feet crossed a counting line."""

    type: Literal["line_crossing"] = "line_crossing"
    line: Identifier
    direction: Literal["in", "out"]
    entrance: bool | None = Field(
        default=None,
        description="Whether the device config marks the line as a store entrance (counts "
        "footfall). Since 1.1; absent from older devices, whose entrance lines the cloud "
        "recognises by name (entrance*/door*).",
    )


class OccupancySnapshot(_Event):
    """People present per zone of a camera at ``ts`` (and in the whole view)."""

    type: Literal["occupancy"] = "occupancy"
    camera: Identifier
    total: Count = Field(
        description="People in view (without staff, since 1.2). A device fusing cameras into "
        "store visits counts each person in one camera's total only, so the totals of one "
        "instant add up to the people in the store.",
    )
    zones: dict[Identifier, Count] = Field(default_factory=dict)
    staff: Count | None = Field(
        default=None,
        description="Since 1.2: staff in view, not counted in `total` or `zones`; absent "
        "when the device has no staff signal.",
    )
    queues: dict[Identifier, Count] | None = Field(
        default=None,
        description="Since 1.2: per checkout zone, people waiting (in the zone, not at the "
        "till) at ``ts``.",
    )


class CardSwipe(_Event):
    """A member card read at a reader, as a pseudonym; linked to a visit when clear."""

    type: Literal["card_swipe"] = "card_swipe"
    reader: Identifier
    member: Token
    key_id: Identifier
    camera: Identifier | None = None
    visit_id: uuid.UUID | None = None
    reason: Literal["linked", "nobody_in_zone", "ambiguous", "no_camera", "opted_out"] = "linked"


class CameraStatus(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    camera: Identifier
    online: bool
    fps: float = Field(ge=0)
    inference_ms: float = Field(ge=0, default=0.0)
    dropped_frames: Count = Field(default=0)


class ReaderStatus(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    reader: Identifier
    online: bool
    error: str | None = None


class DeviceStatus(_Event):
    """Periodic health of the device (published on the status topic)."""

    type: Literal["device_status"] = "device_status"
    uptime_s: Seconds = 0.0
    cameras: list[CameraStatus] = Field(default_factory=list)
    readers: list[ReaderStatus] = Field(default_factory=list)
    outbox_depth: Count = Field(default=0)
    outbox_bytes: Count = Field(default=0)
    lost_events: Count = Field(default=0, description="Dropped by the outbox bound, ever.")
    outbox_age_s: Seconds | None = Field(
        default=None,
        description="Since 1.3: seconds since the oldest message still in the outbox (not yet "
        "confirmed by the cloud) was stored; 0 when the outbox is empty. A depth says how much "
        "waits, this says for how long: a stuck uplink shows here before the bound drops "
        "anything. Absent from older devices.",
    )
    ambiguous_handoffs: Count | None = Field(
        default=None,
        description="Since 1.2, devices fusing cameras into store visits: hand-offs between "
        "cameras too ambiguous to join (each started a new visit), since the agent started.",
    )


Event = Annotated[
    VisitStarted
    | VisitEnded
    | ZoneVisit
    | LineCrossing
    | OccupancySnapshot
    | CardSwipe
    | DeviceStatus,
    Field(discriminator="type"),
]

EVENT_TYPES: dict[str, type[_Event]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        VisitStarted,
        VisitEnded,
        ZoneVisit,
        LineCrossing,
        OccupancySnapshot,
        CardSwipe,
        DeviceStatus,
    )
}

__all__ = [
    "EVENT_TYPES",
    "CameraStatus",
    "CardSwipe",
    "DeviceStatus",
    "Event",
    "LineCrossing",
    "OccupancySnapshot",
    "ReaderStatus",
    "VisitEnded",
    "VisitStarted",
    "ZoneVisit",
    "new_event_id",
]
