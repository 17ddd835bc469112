"""`storelens bench ingest`: how fast ingest stores events compared with a bare subscriber.

Realistic traffic (zone visits, line crossings, visits with floor paths, occupancy, card
swipes) is published in envelopes of ``per_message`` events through a private Mosquitto. The
same messages are then drained three times from a persistent session queued at the broker:
by a bare subscriber (receive + JSON decode), by the ingest worker on SQLite and by the
ingest worker on PostgreSQL. Rates are events per second of draining.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from storelens.contract import (
    CardSwipe,
    Envelope,
    LineCrossing,
    OccupancySnapshot,
    VisitEnded,
    VisitStarted,
    ZoneVisit,
    encode_envelope,
)

ZONES = ("entrance_area", "shoes", "handbags", "menswear", "womenswear", "accessories")


def _uuid7(rng: random.Random, ts: float) -> uuid.UUID:
    value = (int(ts * 1000) & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | rng.getrandbits(12) << 64 | 0b10 << 62 | rng.getrandbits(62)
    return uuid.UUID(int=value)


def realistic_events(
    device: str,
    count: int,
    *,
    seed: int = 1,
    start: datetime | None = None,
    members: list[str] | None = None,
    key_id: str = "k1",
    first_seq: int = 0,
) -> list:
    """``count`` contract events as one camera box produces them, in time order."""
    rng = random.Random(seed)
    t = start or datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    tokens = members or [f"{rng.getrandbits(256):064x}" for _ in range(50)]
    out: list = []
    seq = first_seq
    while len(out) < count:
        t += timedelta(seconds=rng.expovariate(1 / 4))
        visit = _uuid7(rng, t.timestamp())
        member = rng.choice(tokens) if rng.random() < 0.2 else None
        kid = key_id if member else None
        person = {
            "device": device,
            "camera": "cam1",
            "visit_id": visit,
            "member": member,
            "key_id": kid,
        }
        batch: list = [VisitStarted(**person, seq=0, ts=t)]
        batch.append(
            LineCrossing(
                **person, seq=0, ts=t + timedelta(seconds=1), line="entrance", direction="in"
            )
        )
        if member:
            batch.append(
                CardSwipe(
                    device=device,
                    seq=0,
                    ts=t + timedelta(seconds=2),
                    reader="door",
                    member=member,
                    key_id=key_id,
                    camera="cam1",
                    visit_id=visit,
                )
            )
        clock = t + timedelta(seconds=3)
        visited = rng.sample(ZONES, rng.randint(1, 4))
        for zone in visited:
            dwell = rng.uniform(3, 240)
            batch.append(
                ZoneVisit(
                    **person,
                    seq=0,
                    ts=clock + timedelta(seconds=dwell),
                    zone=zone,
                    entered_at=clock,
                    exited_at=clock + timedelta(seconds=dwell),
                    dwell_s=dwell,
                )
            )
            clock += timedelta(seconds=dwell + rng.uniform(2, 20))
        duration = (clock - t).total_seconds()
        path = [
            [
                round(rng.uniform(0, 24), 2),
                round(rng.uniform(0, 14), 2),
                round(duration * i / 19, 1),
            ]
            for i in range(20)
        ]
        batch.append(LineCrossing(**person, seq=0, ts=clock, line="entrance", direction="out"))
        batch.append(
            VisitEnded(
                **person,
                seq=0,
                ts=clock,
                started_at=t,
                duration_s=duration,
                path=path,
                zones=visited,
            )
        )
        if rng.random() < 0.3:
            batch.append(
                OccupancySnapshot(
                    device=device,
                    seq=0,
                    ts=t,
                    camera="cam1",
                    total=rng.randint(0, 30),
                    zones={z: rng.randint(0, 6) for z in ZONES},
                )
            )
        for event in batch:
            ts = event.ts.timestamp()
            out.append(event.model_copy(update={"seq": seq, "id": _uuid7(rng, ts)}))
            seq += 1
    out = out[:count]
    out.sort(key=lambda e: e.seq)
    return out


def envelopes(store: str, device: str, events: list, per_message: int) -> list[bytes]:
    """Encode events as contract envelopes of ``per_message`` events each."""
    return [
        encode_envelope(Envelope(store=store, device=device, events=events[i : i + per_message]))
        for i in range(0, len(events), per_message)
    ]
