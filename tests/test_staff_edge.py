"""Staff on the device: badges told apart at the reader (prefix/range, or any card at a staff
reader) mark the person at the reader as staff and send no member swipe; a stay in a
staff-only zone marks the person too; staff are counted apart in snapshots and flagged on
their events; with no staff signal nothing changes."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from storelens.contract.events import OccupancySnapshot, VisitEnded, ZoneVisit
from storelens.edge.camera.pipeline import CameraPipeline
from storelens.edge.cards.reader import CardReader, Swipe
from storelens.edge.config import (
    CameraConfig,
    ConfigError,
    StaffConfig,
    TcpReader,
    TrackerConfig,
    parse_config,
)
from storelens.edge.detect import Detections
from storelens.edge.fusion.swipes import CardFusion, OptOutRegistry
from storelens.pseudonym import PseudonymKey

KEY = PseudonymKey("k1", b"0123456789abcdef0123456789abcdef")
FPS = 10.0
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
READER_ZONE = [[0, 0], [800, 0], [800, 600], [0, 600]]


def test_badge_prefixes_and_ranges() -> None:
    staff = StaffConfig(badge_prefixes=["9990"], badge_ranges=[[5000, 5999]])
    assert staff.is_badge("99901234") and staff.is_badge("5000") and staff.is_badge("5999")
    assert not staff.is_badge("6012345678901234") and not staff.is_badge("6000")
    with pytest.raises(ConfigError, match="staff.readers names unknown readers"):
        parse_config({"store": "s", "device": "d", "cameras": [{"id": "c", "source": "0"}],
                      "staff": {"readers": ["backdoor"]}})  # fmt: skip


class ScriptedReader(CardReader):
    def __init__(self, reads: list[str], out: list, staff: StaffConfig) -> None:
        super().__init__("door", KEY, out.append, dedupe_s=0, staff_badge=staff.is_badge)
        self.reads = reads

    def _serve(self) -> None:
        for raw in self.reads:
            self._accept(raw)


def test_the_reader_flags_badges_and_still_passes_only_a_pseudonym() -> None:
    out: list[Swipe] = []
    ScriptedReader(
        ["99901234", "6012345678901234"], out, StaffConfig(badge_prefixes=["9990"])
    )._serve()
    assert [s.staff for s in out] == [True, False]
    assert out[0].member == KEY.token("99901234") and "99901234" not in repr(out[0])


def camera(staff_zone: bool = True) -> CameraConfig:
    zones = [{"name": "shop", "points": [[0, 0], [500, 0], [500, 600], [0, 600]]}]
    if staff_zone:
        zones.append({"name": "stockroom", "category": "staff_only",
                      "points": [[600, 0], [800, 0], [800, 600], [600, 600]]})  # fmt: skip
    return CameraConfig.model_validate({"id": "cam1", "source": "0", "occupancy_interval_s": 1,
                                        "zones": zones})  # fmt: skip


def pipeline(cam: CameraConfig, **kw) -> CameraPipeline:
    seq = itertools.count()
    return CameraPipeline(cam, TrackerConfig(), device="d", next_seq=lambda: next(seq), fps=FPS,
                          **kw)  # fmt: skip


def run(pipe: CameraPipeline, tracks: list[list[float]], frames: range, events: list) -> None:
    """``tracks``: per person, x per frame (None: not there)."""
    for i in frames:
        boxes = [[x - 20, 200, x + 20, 300] for xs in tracks if (x := xs[i]) is not None]
        dets = Detections(np.array(boxes, np.float32).reshape(-1, 4),
                          np.full(len(boxes), 0.9, np.float32))  # fmt: skip
        events += pipe.process(None, T0 + timedelta(seconds=i / FPS), dets)


def walker(a: float, b: float, n: int, total: int) -> list:
    xs: list = list(np.linspace(a, b, n)) + [b + 2 * np.sin(k) for k in range(total - n)]
    return xs[:total]


def test_a_stay_in_a_staff_only_zone_marks_staff_and_snapshots_count_them_apart() -> None:
    pipe = pipeline(camera(), learn_staff_zones=True)
    events: list = []
    shopper, clerk = walker(50, 300, 30, 150), walker(300, 700, 30, 150)
    run(pipe, [shopper, clerk], range(150), events)
    events += pipe.flush()
    stock = [e for e in events if isinstance(e, ZoneVisit) and e.zone == "stockroom"]
    assert stock and all(e.staff for e in stock)
    ended = {e.staff for e in events if isinstance(e, VisitEnded)}
    assert ended == {True, None}
    snaps = [e for e in events if isinstance(e, OccupancySnapshot)]
    late = snaps[-1]
    assert late.staff == 1 and late.total == 1 and "stockroom" in late.zones
    assert late.zones["stockroom"] == 0  # counted apart, not in the zone counts


def test_without_a_staff_signal_nothing_changes() -> None:
    pipe = pipeline(camera(staff_zone=True))  # a staff_only zone, but learning is off
    events: list = []
    run(pipe, [walker(300, 700, 30, 150)], range(150), events)
    events += pipe.flush()
    assert all(getattr(e, "staff", None) is None for e in events)
    assert all(s.total == 1 for s in events if isinstance(s, OccupancySnapshot) and s.total)


def test_a_staff_badge_marks_the_person_at_the_reader_and_sends_no_swipe(tmp_path: Path) -> None:
    pipe = pipeline(camera(staff_zone=False), staff_signal=True)
    events: list = []
    run(pipe, [walker(50, 300, 30, 80)], range(40), events)
    reader = TcpReader(type="tcp", id="door", port=0, camera="cam1", zone=READER_ZONE)
    fusion = CardFusion("d", [reader], OptOutRegistry(tmp_path / "o.json"))
    badge = Swipe("door", KEY.token("99901234"), "k1", T0.timestamp(), staff=True)
    assert fusion.resolve(badge, {"cam1": pipe}, lambda: 0) is None
    assert fusion.staff_marked == 1
    run(pipe, [walker(50, 300, 30, 80)], range(40, 80), events)
    events += pipe.flush()
    [ended] = [e for e in events if isinstance(e, VisitEnded)]
    assert ended.staff is True and ended.member is None  # never a member link
    # The same card at a reader listed as a staff reader: also staff, whatever its number.
    fusion = CardFusion("d", [reader], OptOutRegistry(tmp_path / "o.json"), staff_readers=["door"])
    assert fusion.resolve(Swipe("door", "ab" * 32, "k1", 0.0), {"cam1": pipe}, lambda: 0) is None
