"""Stored in-store visits for cloud tests: contract events in, ``events`` rows out (the same
row builder ingest uses)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

from storelens.cloud.ingest import events as event_store
from storelens.contract.events import (
    CardSwipe,
    OccupancySnapshot,
    VisitEnded,
    VisitStarted,
    ZoneVisit,
)

DEVICE = "box-1"
_SEQ = itertools.count(1)


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def visit(
    db,
    store: str,
    start: float,
    end: float | None,
    *,
    member: str | None = None,
    zones: list[tuple] = (),
    staff: bool | None = None,
    camera: str = "cam1",
) -> str:
    """Store one visit: started, an optional card swipe at the door, zone stays
    ``(zone, enter, exit, kind, queue_s, service_s)``, and ended unless ``end`` is None."""
    vid = uuid.uuid4()
    person = {"device": DEVICE, "camera": camera, "visit_id": vid}
    tagged = {**person, "member": member, "key_id": "k1" if member else None}
    evs: list = [VisitStarted(seq=next(_SEQ), ts=at(start), **person)]
    if member:
        evs.append(
            CardSwipe(device=DEVICE, seq=next(_SEQ), ts=at(start + 2), reader="door",
                      member=member, key_id="k1", camera=camera, visit_id=vid)
        )  # fmt: skip
    for zone, enter, leave, kind, queue_s, service_s in zones:
        evs.append(
            ZoneVisit(seq=next(_SEQ), ts=at(leave), zone=zone, entered_at=at(enter),
                      exited_at=at(leave), dwell_s=leave - enter, kind=kind, queue_s=queue_s,
                      service_s=service_s, staff=staff, **tagged)
        )  # fmt: skip
    if end is not None:
        evs.append(
            VisitEnded(seq=next(_SEQ), ts=at(end), started_at=at(start), duration_s=end - start,
                       zones=[z[0] for z in zones], staff=staff, **tagged)
        )  # fmt: skip
    rows = [event_store.event_row(store, e, end or start, member) for e in evs]
    event_store.store_events(db, rows)
    return str(vid)


def occupancy(db, store: str, t: float, zones: dict[str, int], queues: dict[str, int]) -> None:
    snap = OccupancySnapshot(device=DEVICE, seq=next(_SEQ), ts=at(t), camera="cam1",
                             total=sum(zones.values()), zones=zones, queues=queues)  # fmt: skip
    event_store.store_events(db, [event_store.event_row(store, snap, t, None)])
