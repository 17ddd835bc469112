"""CameraPipeline: synthetic detections in, contract events out."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from storelens.contract.events import (
    EVENT_TYPES,
    LineCrossing,
    OccupancySnapshot,
    VisitEnded,
    VisitStarted,
    ZoneVisit,
)
from storelens.edge.camera.pipeline import CameraPipeline
from storelens.edge.config import CameraConfig, TrackerConfig
from storelens.edge.detect import Detections

FPS = 10.0
T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)
TOKEN = "ab" * 32


def camera() -> CameraConfig:
    return CameraConfig.model_validate(
        {
            "id": "cam1",
            "source": "0",
            "occupancy_interval_s": 5,
            "zones": [
                {"name": "shelf", "points": [[300, 200], [500, 200], [500, 400], [300, 400]]},
                {"name": "till", "points": [[600, 200], [700, 200], [700, 400], [600, 400]]},
            ],
            "lines": [{"name": "door", "a": [200, 100], "b": [200, 500], "in_side": "left"}],
            "floor": {
                "image_points": [[0, 0], [800, 0], [800, 600], [0, 600]],
                "floor_points": [[0, 0], [8, 0], [8, 6], [0, 6]],
            },
        }
    )


def person_at(x: float, y2: float = 300.0) -> Detections:
    return Detections(np.array([[x - 20, y2 - 100, x + 20, y2]], np.float32), np.array([0.9]))


def shopper_positions() -> list[float | None]:
    """Walk in through the door, linger at the shelf 6 s (hidden 1 s), leave the view."""
    xs: list[float | None] = list(np.arange(100, 400, 15))  # 2 s walking in
    xs += [400 + 3 * np.sin(i) for i in range(60)]  # 6 s at the shelf, jittering
    xs[30:40] = [None] * 10  # occluded for a second while at the shelf
    xs += list(np.arange(400, 800, 20))  # walk off to the right (past the till, 1 s)
    return xs


def run(pipeline: CameraPipeline, xs: list[float | None], start: datetime = T0):
    events = []
    for i, x in enumerate(xs):
        dets = Detections.empty() if x is None else person_at(x)
        events += pipeline.process(None, start + timedelta(seconds=i / FPS), dets)
    return events


def make(**kw) -> CameraPipeline:
    seq = itertools.count()
    return CameraPipeline(
        camera(), TrackerConfig(), device="dev1", next_seq=lambda: next(seq), fps=FPS, **kw
    )


def test_shopper_visit_produces_contract_events() -> None:
    pipeline = make()
    events = run(pipeline, shopper_positions())
    events += run(pipeline, [None] * 40, start=T0 + timedelta(seconds=10))  # gone for 4 s
    kinds = [type(e) for e in events]
    assert kinds.count(VisitStarted) == 1 and kinds.count(VisitEnded) == 1
    started = next(e for e in events if isinstance(e, VisitStarted))
    ended = next(e for e in events if isinstance(e, VisitEnded))
    assert started.visit_id == ended.visit_id and started.visit_id.version == 4
    assert all(getattr(e, "visit_id", started.visit_id) == started.visit_id for e in events)

    crossings = [e for e in events if isinstance(e, LineCrossing)]
    assert [(c.line, c.direction) for c in crossings] == [("door", "in")]

    stays = [e for e in events if isinstance(e, ZoneVisit)]
    assert [s.zone for s in stays] == ["shelf"]  # the till was only walked through
    shelf = stays[0]
    assert 5.5 <= shelf.dwell_s <= 8.5  # one stay despite the occlusion
    assert shelf.exited_at - shelf.entered_at == timedelta(seconds=shelf.dwell_s)
    assert ended.zones == ["shelf"]
    assert 8.0 <= ended.duration_s <= 11.0

    # floor path in metres, simplified, with seconds since the start
    assert 2 <= len(ended.path) <= 20
    xs = [p[0] for p in ended.path]
    assert xs == sorted(xs) and 0.5 < xs[0] < 3 and xs[-1] > 7
    assert ended.path[0][2] == 0.0

    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for e in events:  # every event round-trips through its wire model
        assert EVENT_TYPES[e.type].model_validate_json(e.model_dump_json()) == e


def test_occupancy_snapshots_count_people_per_zone() -> None:
    pipeline = make()
    events = run(pipeline, shopper_positions()[:70])
    snaps = [e for e in events if isinstance(e, OccupancySnapshot)]
    assert snaps, "a snapshot every 5 s"
    at_shelf = [s for s in snaps if s.zones["shelf"] == 1]
    assert at_shelf and all(s.total == 1 and s.camera == "cam1" for s in snaps)


def test_member_link_tags_later_events_and_people_in_finds_the_person() -> None:
    pipeline = make()
    run(pipeline, shopper_positions()[:25])  # standing at the shelf now
    shelf = [[300, 200], [500, 200], [500, 400], [300, 400]]
    people = pipeline.people_in(shelf)
    assert len(people) == 1
    assert pipeline.people_in([[0, 0], [50, 0], [50, 50]]) == []
    assert pipeline.set_member(people[0].visit_id, TOKEN, "k1")
    assert not pipeline.set_member(uuid.uuid4(), TOKEN, "k1")
    events = run(pipeline, shopper_positions()[25:], start=T0 + timedelta(seconds=2.5))
    events += pipeline.flush(T0 + timedelta(seconds=20))
    tagged = [e for e in events if isinstance(e, ZoneVisit | VisitEnded)]
    assert tagged and all(e.member == TOKEN and e.key_id == "k1" for e in tagged)


def test_flush_closes_open_visits() -> None:
    pipeline = make()
    run(pipeline, shopper_positions()[:50])
    assert pipeline.visits_in_view() == 1
    events = pipeline.flush(T0 + timedelta(seconds=5))
    assert [type(e) for e in events] == [ZoneVisit, VisitEnded]
    assert pipeline.visits_in_view() == 0 and pipeline.flush(T0) == []


def test_stats_and_naive_timestamps() -> None:
    pipeline = make()
    pipeline.stats.note_inference(8.0)
    pipeline.stats.note_dropped(2)
    run(pipeline, shopper_positions()[:5])
    status = pipeline.stats.status()
    assert status.camera == "cam1" and status.dropped_frames == 2 and status.inference_ms == 8.0
    assert pipeline.stats.frames == 5
    with pytest.raises(ValueError, match="timezone"):
        pipeline.process(None, datetime(2026, 1, 1), Detections.empty())


def test_attire_names_only_colours() -> None:
    frame = np.zeros((600, 800, 3), np.uint8)
    frame[:, :] = (40, 140, 40)  # green background
    frame[200:260, :] = (200, 60, 20)  # blue band: upper body height
    frame[260:300, :] = (30, 30, 30)  # dark band: legs
    pipeline = make(attire=True)
    events = []
    for i, x in enumerate(shopper_positions()[:40]):
        dets = Detections.empty() if x is None else person_at(x)
        events += pipeline.process(frame, T0 + timedelta(seconds=i / FPS), dets)
    events += pipeline.flush(T0 + timedelta(seconds=5))
    ended = next(e for e in events if isinstance(e, VisitEnded))
    assert ended.attire == {"upper": "blue", "lower": "black"}


def test_unknown_rate_is_measured_from_the_first_frames() -> None:
    seq = itertools.count()
    pipeline = CameraPipeline(camera(), TrackerConfig(), device="d", next_seq=lambda: next(seq))
    assert pipeline.fps == 10.0  # a guess until frames arrive
    events = []
    for i in range(60):  # a 30 fps camera walking someone through the door
        ts = T0 + timedelta(seconds=i / 30)
        events += pipeline.process(None, ts, person_at(100 + 5 * i))
    assert pipeline.fps == pytest.approx(30.0, rel=1e-3)
    assert pipeline.tracker.fps == pytest.approx(30.0, rel=1e-3)
    assert [type(e) for e in events].count(VisitStarted) == 1


def test_visit_starts_at_first_sighting_when_motion_confirms_it_later() -> None:
    pipeline = make()
    xs: list[float | None] = [400.0 + (i % 2) for i in range(40)]  # 4 s still at the shelf
    xs += list(np.arange(400, 800, 20))  # then walks away
    events = run(pipeline, xs) + pipeline.flush(T0 + timedelta(seconds=10))
    started = next(e for e in events if isinstance(e, VisitStarted))
    assert started.ts <= T0 + timedelta(seconds=0.3)  # not when it started walking (4 s)
    shelf = next(e for e in events if isinstance(e, ZoneVisit))
    assert shelf.entered_at <= T0 + timedelta(seconds=0.3) and shelf.dwell_s >= 3.5


def test_every_colour_name_the_device_makes_is_in_the_contract() -> None:
    """The contract's `attire` is a closed vocabulary: whatever `colour_name` returns for any
    colour must be one of its words, or the device's visits would be dead-lettered."""
    from typing import get_args

    import numpy as np

    from storelens.contract.events import AttireColour
    from storelens.edge.track.attire import colour_name

    levels = np.arange(0, 256, 15, dtype=np.uint8)
    b, g, r = np.meshgrid(levels, levels, levels, indexing="ij")
    pixels = np.stack([b.ravel(), g.ravel(), r.ravel()], axis=1)
    names = {colour_name(p.reshape(1, 1, 3)) for p in pixels}
    assert names <= set(get_args(AttireColour)) and len(names) >= 8
