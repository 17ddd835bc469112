"""Scene state machines with synthetic tracks: zones, lines, floor homography, paths, occupancy."""

from __future__ import annotations

import numpy as np
import pytest

from storelens.edge.config import FloorConfig, LineConfig, ZoneConfig
from storelens.edge.scene import (
    CountingLine,
    FloorPath,
    FloorPlan,
    LineSide,
    OccupancyClock,
    Zone,
    ZonePresence,
    simplify,
)
from storelens.edge.scene.floor import FloorPlanError

SQUARE = [[100, 100], [200, 100], [200, 200], [100, 200]]


def zone_config(**kw) -> ZoneConfig:
    base = {"name": "shelf", "points": SQUARE, "enter_s": 0.5, "exit_grace_s": 2.0}
    return ZoneConfig(**{"min_dwell_s": 3.0, **base, **kw})


def feed(presence: ZonePresence, samples: list[tuple[float, bool | None]]) -> list:
    """Observations at 10 fps; None = person not observed (occluded) at that time."""
    stays = []
    for t, inside in samples:
        stay = presence.tick(t) if inside is None else presence.observe(t, inside)
        if stay is not None:
            stays.append(stay)
    return stays


def timeline(*spans: tuple[float, float, bool | None], fps: float = 10.0):
    return [
        (round(t0 + i / fps, 3), state)
        for t0, t1, state in spans
        for i in range(round((t1 - t0) * fps))
    ]


def test_zone_contains_is_inclusive_polygon() -> None:
    zone = Zone(zone_config())
    assert zone.contains((150, 150)) and zone.contains((100, 150))
    assert not zone.contains((99, 150)) and not zone.contains((150, 201))


def test_stay_with_occlusion_gap_is_one_visit() -> None:
    presence = ZonePresence(zone_config())
    stays = feed(
        presence,
        timeline(
            (0, 1, False),
            (1, 5, True),  # in the zone
            (5, 6.5, None),  # occluded 1.5 s: no observation at all
            (6.5, 8, True),
            (8, 8.5, False),  # seen outside briefly (less than the grace)
            (8.5, 10, True),
            (10, 13, False),  # really gone
        ),
    )
    assert len(stays) == 1
    stay = stays[0]
    assert stay.entered_t == pytest.approx(1.0)
    assert stay.exited_t == pytest.approx(9.9)  # last frame seen inside
    assert stay.dwell_s == pytest.approx(8.9)


def test_walk_through_is_not_a_visit() -> None:
    presence = ZonePresence(zone_config())
    assert feed(presence, timeline((0, 1, False), (1, 3, True), (3, 7, False))) == []
    assert presence.state.value == "outside"


def test_brush_past_edge_never_enters() -> None:
    presence = ZonePresence(zone_config(min_dwell_s=0.0))
    # in for 0.3 s (< enter_s 0.5), out, in for 0.3 s: never inside
    stays = feed(
        presence, timeline((0, 0.3, True), (0.3, 1, False), (1, 1.3, True), (1.3, 5, False))
    )
    assert stays == [] and not presence.is_inside


def test_leaving_for_longer_than_grace_splits_visits() -> None:
    presence = ZonePresence(zone_config())
    stays = feed(presence, timeline((0, 4, True), (4, 7, False), (7, 11, True), (11, 14, False)))
    assert [round(s.dwell_s, 1) for s in stays] == [3.9, 3.9]


def test_grace_expires_without_observations() -> None:
    presence = ZonePresence(zone_config())
    feed(presence, timeline((0, 4, True)))
    assert presence.observe(4.0, False) is None  # LEAVING
    stay = presence.tick(6.1)  # 2.1 s later, never seen again: the stay ends on time
    assert stay is not None and stay.exited_t == pytest.approx(3.9)


def test_close_ends_an_open_stay_at_last_inside_frame() -> None:
    presence = ZonePresence(zone_config())
    feed(presence, timeline((0, 5, True)))
    stay = presence.close()
    assert stay is not None and stay.entered_t == 0 and stay.exited_t == pytest.approx(4.9)
    assert presence.close() is None


def test_dwell_comes_from_timestamps_not_frame_counts() -> None:
    slow, fast = ZonePresence(zone_config()), ZonePresence(zone_config())
    slow_stays = feed(slow, timeline((0, 6, True), (6, 9, False), fps=2))
    fast_stays = feed(fast, timeline((0, 6, True), (6, 9, False), fps=30))
    assert slow_stays[0].dwell_s == pytest.approx(5.5)
    assert fast_stays[0].dwell_s == pytest.approx(5.967, abs=1e-3)


def door(**kw) -> CountingLine:
    # Horizontal line from x=100 to x=300 at y=200; "left" looking from a to b is above.
    return CountingLine(LineConfig(name="door", a=[100, 200], b=[300, 200], **kw))


def walk(side: LineSide, ys: list[float], x: float = 200) -> list[str]:
    return [d for y in ys if (d := side.observe((x, y))) is not None]


def test_line_crossing_direction_follows_in_side() -> None:
    above_is_in = LineSide(door(in_side="left"))
    assert walk(above_is_in, [260, 240, 220, 180, 160]) == ["in"]
    assert walk(above_is_in, [180, 215, 260]) == ["out"]
    below_is_in = LineSide(door(in_side="right"))
    assert walk(below_is_in, [150, 190, 230]) == ["in"]


def test_jitter_on_the_line_counts_once() -> None:
    side = LineSide(door(band_px=8))
    ys = [230, 215, 205, 195, 203, 197, 206, 194, 199, 201, 185, 204, 196, 170]
    assert walk(side, ys) == ["in"]
    # standing on the line never counts, however long
    assert walk(LineSide(door(band_px=8)), [201, 199, 205, 195, 207, 193] * 10) == []


def test_walking_around_the_end_of_a_line_is_not_a_crossing() -> None:
    side = LineSide(door())
    side.observe((290, 230))  # below, within the segment
    side.observe((330, 230))  # past the end
    side.observe((330, 170))  # above, still past the end
    assert side.observe((290, 170)) is None  # back over the segment, above: no crossing
    assert walk(side, [230]) == ["out"]


def test_floor_homography_maps_points() -> None:
    # A square on the image seen in perspective: a trapezoid maps to a 4 m x 10 m rectangle.
    cfg = FloorConfig(
        image_points=[[300, 100], [500, 100], [700, 500], [100, 500]],
        floor_points=[[0, 10], [4, 10], [4, 0], [0, 0]],
    )
    plan = FloorPlan(cfg)
    out = plan.to_floor(np.array(cfg.image_points, dtype=float))
    np.testing.assert_allclose(out, cfg.floor_points, atol=1e-6)
    x, y = plan.point((400, 500))  # middle of the near edge
    assert x == pytest.approx(2.0) and y == pytest.approx(0.0, abs=1e-9)
    # perspective: halfway up the image is only a quarter of the way on the floor, because
    # the far edge is drawn 3x smaller than the near one
    assert plan.point((400, 300)) == pytest.approx((2.0, 2.5))


def test_degenerate_floor_points_are_rejected() -> None:
    cfg = FloorConfig(
        image_points=[[0, 0], [1, 1], [2, 2], [3, 3]],
        floor_points=[[0, 0], [1, 1], [2, 2], [3, 3]],
    )
    with pytest.raises(FloorPlanError):
        FloorPlan(cfg)


def test_minute_of_walking_simplifies_to_a_few_dozen_points() -> None:
    rng = np.random.default_rng(7)
    path = FloorPath()
    t = np.arange(0, 60, 0.1)  # one minute at 10 fps: 600 points
    # walk 20 m east, turn, 10 m north, wander back; 3 cm detector jitter
    x = np.interp(t, [0, 20, 35, 60], [0, 20, 20, 5])
    y = np.interp(t, [0, 20, 35, 60], [0, 0, 10, 4])
    x += rng.normal(0, 0.03, t.size)
    y += rng.normal(0, 0.03, t.size)
    for xi, yi, ti in zip(x, y, t, strict=True):
        path.add(float(xi), float(yi), float(1000 + ti))
    points = path.simplified(0.25, start_t=1000.0)
    assert 3 <= len(points) <= 40
    assert points[0][2] == 0.0 and points[-1][2] == pytest.approx(59.9)
    ts = [p[2] for p in points]
    assert ts == sorted(ts)
    corners = {(round(p[0]), round(p[1])) for p in points}
    assert {(20, 0), (20, 10)} <= corners  # the turns survive


def test_simplify_keeps_ends_and_respects_limit() -> None:
    pts = np.c_[np.arange(100.0), np.zeros(100)]
    assert simplify(pts, 0.1).tolist() == [0, 99]
    zigzag = np.c_[np.arange(5000.0), np.tile([0.0, 1.0], 2500)]
    path = FloorPath()
    for i, (px, py) in enumerate(zigzag):
        path.add(px, py, float(i))
    assert len(path.simplified(0.1, 0.0, limit=2000)) <= 2000


def test_occupancy_clock_is_aligned_and_skips_gaps() -> None:
    clock = OccupancyClock(60.0)
    assert not clock.due(1005.0)  # first frame arms the clock
    assert not clock.due(1019.0)
    assert clock.due(1020.0)  # 17 x 60
    assert not clock.due(1079.0)
    assert clock.due(1300.0)  # after a gap: one snapshot, not a burst
    assert not clock.due(1301.0)


def test_path_memory_stays_bounded_over_hours() -> None:
    rng = np.random.default_rng(1)
    path = FloorPath(0.25, compact_at=1000)
    for i in range(20_000):  # ~30 min at 10 fps, standing and shuffling at a till
        path.add(5 + rng.normal(0, 0.05), 3 + rng.normal(0, 0.05), i / 10)
    assert len(path) < 1000
    points = path.simplified(0.25, 0.0)
    assert points[0][2] == 0.0 and points[-1][2] == pytest.approx(1999.9)
