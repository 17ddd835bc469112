"""Zone kinds on the edge: fitting-room stays are try-on sessions, checkout stays are split
into queue and service time at the till's service area, and snapshots count the queue."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from storelens.contract.events import OccupancySnapshot, ZoneVisit
from storelens.edge.camera.pipeline import CameraPipeline
from storelens.edge.config import CameraConfig, ConfigError, TrackerConfig, parse_config
from storelens.edge.detect import Detections

FPS = 10.0
T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)


def camera() -> CameraConfig:
    return CameraConfig.model_validate(
        {
            "id": "cam1",
            "source": "0",
            "occupancy_interval_s": 1,
            "zones": [
                {
                    "name": "fitting",
                    "category": "fitting_room",
                    "points": [[200, 200], [400, 200], [400, 400], [200, 400]],
                },
                {
                    "name": "tills",
                    "category": "checkout",
                    "points": [[500, 200], [780, 200], [780, 400], [500, 400]],
                    "service_area": [[700, 200], [780, 200], [780, 400], [700, 400]],
                },
                {"name": "shelf", "category": "shoes", "points": [[0, 0], [100, 0], [100, 90]]},
            ],
        }
    )


def person_at(x: float, y2: float = 300.0) -> Detections:
    return Detections(np.array([[x - 20, y2 - 100, x + 20, y2]], np.float32), np.array([0.9]))


def walk(a: float, b: float, seconds: float) -> list[float]:
    return list(np.linspace(a, b, int(seconds * FPS)))


def stay(x: float, seconds: float) -> list[float]:
    return [x + 2 * np.sin(i) for i in range(int(seconds * FPS))]


def run(xs: list[float | None]) -> list:
    seq = itertools.count()
    pipe = CameraPipeline(
        camera(), TrackerConfig(), device="d1", next_seq=lambda: next(seq), fps=FPS
    )
    events = []
    for i, x in enumerate(xs + [None] * 50):
        dets = Detections.empty() if x is None else person_at(x)
        events += pipe.process(None, T0 + timedelta(seconds=i / FPS), dets)
    return events


def test_fitting_room_stay_is_a_try_on_session_and_checkout_is_split_at_the_till() -> None:
    xs = walk(60, 300, 2) + stay(300, 8) + walk(300, 560, 2) + stay(560, 5)
    xs += walk(560, 740, 1) + stay(740, 4) + walk(740, 900, 1)
    events = run(xs)
    visits = {e.zone: e for e in events if isinstance(e, ZoneVisit)}
    tryon = visits["fitting"]
    assert tryon.kind == "fitting_room"
    assert tryon.queue_s is None and tryon.service_s is None
    assert 8 <= tryon.dwell_s <= 10.5
    till = visits["tills"]
    assert till.kind == "checkout"
    assert till.queue_s is not None and till.service_s is not None
    assert 5 <= till.queue_s <= 7.5, till
    assert 3.5 <= till.service_s <= 5.5, till
    assert till.queue_s + till.service_s == pytest.approx(till.dwell_s, abs=0.01)
    snaps = [e for e in events if isinstance(e, OccupancySnapshot)]
    assert all(s.queues is not None and set(s.queues) == {"tills"} for s in snaps)
    waiting = [s.ts for s in snaps if s.queues["tills"] == 1]
    at_till = [s.ts for s in snaps if s.zones["tills"] == 1 and s.queues["tills"] == 0]
    assert waiting and at_till and max(waiting) < min(at_till)


def test_a_checkout_stay_that_never_reaches_the_till_is_all_queue() -> None:
    xs = walk(300, 560, 2) + stay(560, 6) + walk(560, 420, 1) + walk(420, 420, 4)
    till = next(e for e in run(xs) if isinstance(e, ZoneVisit) and e.zone == "tills")
    assert till.service_s == 0.0 and till.queue_s == pytest.approx(till.dwell_s)


def test_zones_without_a_kind_carry_none() -> None:
    cam = camera()
    assert [z.kind for z in cam.zones] == ["fitting_room", "checkout", None]


def test_service_area_only_on_checkout_zones() -> None:
    bad = {
        "store": "s",
        "device": "d",
        "cameras": [
            {
                "id": "c",
                "source": "0",
                "zones": [
                    {
                        "name": "z",
                        "category": "fitting_room",
                        "points": [[0, 0], [9, 0], [9, 9]],
                        "service_area": [[0, 0], [1, 0], [1, 1]],
                    }
                ],
            }
        ],
    }
    with pytest.raises(ConfigError, match="service_area is for zones of category checkout"):
        parse_config(bad)
