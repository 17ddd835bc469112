"""Store visits across cameras, through real camera pipelines on synthetic detections: one
person seen by two overlapping cameras is one visit; a walk through a gap between cameras is
handed off; alike candidates at a hand-off start new visits (counted) unless appearance tells
them apart; a door swipe's member token covers the whole store visit."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from storelens.contract.events import EVENT_TYPES, CardSwipe, VisitEnded, VisitStarted, ZoneVisit
from storelens.edge.camera.pipeline import CameraPipeline
from storelens.edge.config import ConfigError, parse_config
from storelens.edge.detect import Detections
from storelens.edge.fusion.store_visits import StoreVisits

FPS = 10.0
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PX_PER_M = 100.0
TOKEN = "cd" * 32


def config(views: dict[str, float], handoffs: list | None = None, zones: dict | None = None,
           occupancy_s: float = 60.0):  # fmt: skip
    """Cameras over a 4 m x 4 m floor strip each, starting at floor x = ``views[id]``."""
    cameras = []
    for cam, x0 in views.items():
        cameras.append({
            "id": cam, "source": "0", "occupancy_interval_s": occupancy_s,
            "zones": (zones or {}).get(cam, []),
            "floor": {"image_points": [[0, 0], [400, 0], [400, 400], [0, 400]],
                      "floor_points": [[x0, 0], [x0 + 4, 0], [x0 + 4, 4], [x0, 4]]},
        })  # fmt: skip
    return parse_config({"store": "s", "device": "d", "cameras": cameras,
                         "store_visits": {"handoffs": handoffs or []}})  # fmt: skip


class Store:
    def __init__(self, cfg, colours: bool = False) -> None:
        self.cfg = cfg
        self.colours = colours
        seq = itertools.count()
        part_seq = itertools.count()
        self.fused = StoreVisits(cfg, lambda: next(seq))
        self.pipes = {
            c.id: CameraPipeline(c, cfg.tracker, device="d", next_seq=lambda: next(part_seq),
                                 fps=FPS)
            for c in cfg.cameras
        }  # fmt: skip
        self.x0 = {c.id: c.floor.floor_points[0][0] for c in cfg.cameras}
        self.events: list = []

    def frame(self, i: int, people: list[tuple[float, float, tuple[int, int, int]]]) -> None:
        ts = T0 + timedelta(seconds=i / FPS)
        for cam, pipe in self.pipes.items():
            boxes, image = [], np.full((400, 400, 3), 90, np.uint8) if self.colours else None
            for x, y, colour in people:
                px, py = (x - self.x0[cam]) * PX_PER_M, y * PX_PER_M
                if 20 <= px <= 380:
                    boxes.append([px - 20, py - 100, px + 20, py])
                    if image is not None:
                        image[max(0, int(py) - 100) : int(py), int(px) - 20 : int(px) + 20] = colour
            dets = Detections(np.array(boxes, np.float32).reshape(-1, 4),
                              np.full(len(boxes), 0.9, np.float32))  # fmt: skip
            events = pipe.process(image, ts, dets)
            self.events += self.fused.push(cam, ts.timestamp(), events, pipe.sightings(), image)

    def finish(self) -> list:
        self.events += self.fused.drain()
        for cam, pipe in self.pipes.items():
            self.events += self.fused.route(cam, pipe.flush())
        self.events += self.fused.flush()
        return self.events


def walk(store: Store, frames: int, people) -> None:
    """``people(i)`` -> [(x, y, colour)] per frame; then everyone is gone for 5 s."""
    for i in range(frames):
        store.frame(i, people(i))
    for i in range(frames, frames + 50):
        store.frame(i, [])


def of(events, cls):
    return [e for e in events if isinstance(e, cls)]


def test_overlapping_cameras_see_one_person_as_one_visit() -> None:
    store = Store(config({"a": 0.0, "b": 3.0}, zones={
        "a": [{"name": "shoes", "points": [[50, 100], [250, 100], [250, 300], [50, 300]]}],
        "b": [{"name": "bags", "points": [[150, 100], [350, 100], [350, 300], [150, 300]]}],
    }))  # fmt: skip
    # 0.5 m -> 6.5 m at 0.5 m/s, lingering in each zone on the way.
    walk(store, 120, lambda i: [(0.5 + i * 0.05, 2.0, (0, 0, 200))])
    events = store.finish()
    [started], [ended] = of(events, VisitStarted), of(events, VisitEnded)
    assert ended.visit_id == started.visit_id
    assert ended.cameras == ["a", "b"] and ended.handoffs == 0
    assert ended.zones == ["shoes", "bags"]
    assert {z.visit_id for z in of(events, ZoneVisit)} == {started.visit_id}
    xs = [p[0] for p in ended.path]
    assert xs[0] == pytest.approx(0.5, abs=0.4) and xs[-1] == pytest.approx(6.5, abs=0.4)
    assert 11 <= ended.duration_s <= 12.5
    seqs = [e.seq for e in events]
    assert seqs == list(range(len(events)))  # renumbered: no gaps from held or replaced events
    assert store.fused.joined_overlap == 1 and store.fused.open_visits == 0


def test_walk_through_a_gap_is_handed_off() -> None:
    area = [[2.5, 0], [4.5, 0], [4.5, 4], [2.5, 4]]
    cfg = config({"a": 0.0, "b": 4.2}, handoffs=[{"from_camera": "a", "to_camera": "b",
                                                   "area": area, "window_s": 3}])  # fmt: skip
    store = Store(cfg)
    walk(store, 140, lambda i: [(0.5 + i * 0.05, 2.0, (0, 0, 200))])
    [ended] = of(store.finish(), VisitEnded)
    assert ended.cameras == ["a", "b"] and ended.handoffs == 1
    # Without a hand-off area, the same walk is two visits.
    store = Store(config({"a": 0.0, "b": 4.2}))
    walk(store, 140, lambda i: [(0.5 + i * 0.05, 2.0, (0, 0, 200))])
    assert len(of(store.finish(), VisitStarted)) == 2


def two_walkers(i: int):
    return [(0.5 + i * 0.05, 1.4, (0, 0, 220)), (0.5 + i * 0.05, 2.6, (220, 60, 0))]


@pytest.mark.parametrize("colours", [False, True])
def test_alike_candidates_are_ambiguous_unless_appearance_decides(colours: bool) -> None:
    area = [[2.5, 0], [4.5, 0], [4.5, 4], [2.5, 4]]
    cfg = config({"a": 0.0, "b": 4.2}, handoffs=[{"from_camera": "a", "to_camera": "b",
                                                   "area": area, "window_s": 3}])  # fmt: skip
    store = Store(cfg, colours=colours)
    walk(store, 140, two_walkers)
    events = store.finish()
    ended = of(events, VisitEnded)
    if colours:  # red and blue: each arrival continues the walker of its colour
        assert len(ended) == 2 and all(e.cameras == ["a", "b"] for e in ended)
        assert store.fused.ambiguous_handoffs == 0
        for e in ended:  # and the right one: each keeps its lane
            assert max(p[1] for p in e.path) - min(p[1] for p in e.path) < 0.6
    else:
        assert len(ended) == 4 and store.fused.ambiguous_handoffs == 2


def test_the_door_swipe_member_covers_every_camera() -> None:
    store = Store(config({"a": 0.0, "b": 3.0}))
    for i in range(20):
        store.frame(i, [(0.5 + i * 0.05, 2.0, (0, 0, 200))])
    [person] = store.pipes["a"].people_in([[0, 0], [400, 0], [400, 400], [0, 400]])
    assert store.fused.set_member(person.visit_id, TOKEN, "k1")
    read = CardSwipe(device="d", seq=0, ts=T0, reader="door", member=TOKEN, key_id="k1",
                     camera="a", visit_id=person.visit_id)  # fmt: skip
    swipe = store.fused.swipe(read)
    for i in range(20, 120):
        store.frame(i, [(0.5 + i * 0.05, 2.0, (0, 0, 200))])
    for i in range(120, 170):
        store.frame(i, [])
    events = store.finish()
    [ended] = of(events, VisitEnded)
    assert swipe.visit_id == ended.visit_id != person.visit_id
    assert ended.member == TOKEN and ended.cameras == ["a", "b"]
    later = [e for e in events if getattr(e, "visit_id", None) and e.ts > T0 + timedelta(seconds=3)]
    assert later and all(e.member == TOKEN for e in later)
    store.fused.forget_members({TOKEN}, "k1")  # nothing open any more: nothing to clear


def test_nothing_but_contract_fields_leaves_and_memory_is_freed() -> None:
    store = Store(config({"a": 0.0, "b": 3.0}), colours=True)
    walk(store, 120, two_walkers)
    events = store.finish()
    for e in events:
        body = json.loads(e.model_dump_json())
        assert set(body) <= set(EVENT_TYPES[body["type"]].model_fields)
        assert EVENT_TYPES[body["type"]].model_validate(body) is not None
        assert isinstance(e.visit_id if hasattr(e, "visit_id") else uuid.uuid4(), uuid.UUID)
    assert store.fused._parts == {} and store.fused._visits == {}


def test_store_visits_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="each zone/line belongs to one camera"):
        config({"a": 0.0, "b": 3.0}, zones={
            "a": [{"name": "z", "points": [[0, 0], [9, 0], [9, 9]]}],
            "b": [{"name": "z", "points": [[0, 0], [9, 0], [9, 9]]}],
        })  # fmt: skip
    with pytest.raises(ConfigError, match="unknown camera"):
        config({"a": 0.0}, handoffs=[{"from_camera": "a", "to_camera": "zz",
                                       "area": [[0, 0], [1, 0], [1, 1]]}])  # fmt: skip
    with pytest.raises(ConfigError, match="needs a floor on every camera"):
        parse_config({"store": "s", "device": "d", "store_visits": {},
                      "cameras": [{"id": "a", "source": "0"}]})  # fmt: skip


def test_a_glimpse_at_the_edge_of_a_view_joins_the_person_seen_there() -> None:
    # Camera b sees floor x >= 3.2 m: the walker reaches it in the last few frames before
    # leaving both views, too few sightings of b's track to judge by the median alone.
    store = Store(config({"a": 0.0, "b": 3.0}))
    walk(store, 60, lambda i: [(0.5 + i * 0.05, 2.0, (0, 0, 200))])
    events = store.finish()
    assert len(of(events, VisitStarted)) == 1
    [ended] = of(events, VisitEnded)
    assert ended.cameras == ["a", "b"] and store.fused.joined_overlap == 1


def test_a_glimpse_of_someone_a_swapped_track_follows_is_not_one_more_visitor() -> None:
    """Camera b lost Q (their visit ended), and its track of P swapped onto Q (crowds do
    that) while a still tracks P: that store visit has a's track on P and b's on Q. A
    glimpse of Q at the edge of a's view, right where b sees them, is someone already
    counted; before, a's own track of P kept the glimpse out of that visit and it counted
    as a third visitor of two."""
    from storelens.edge.camera.pipeline import Sighting

    seq = itertools.count()
    fused = StoreVisits(config({"a": 0.0, "b": 3.0}), lambda: next(seq))
    a1, b0, b1, a2 = (uuid.uuid4() for _ in range(4))
    out: list = []

    def started(cam: str, vid: uuid.UUID, t: float) -> VisitStarted:
        ts = T0 + timedelta(seconds=t)
        return VisitStarted(device="d", seq=0, ts=ts, camera=cam, visit_id=vid)

    def ended(cam: str, vid: uuid.UUID, t0: float, t: float) -> VisitEnded:
        ts = T0 + timedelta(seconds=t)
        return VisitEnded(device="d", seq=0, ts=ts, camera=cam, visit_id=vid,
                          started_at=T0 + timedelta(seconds=t0), duration_s=t - t0)  # fmt: skip

    def at(vid: uuid.UUID, cam_x0: float, x: float, y: float) -> Sighting:
        px, py = (x - cam_x0) * PX_PER_M, y * PX_PER_M
        return Sighting(vid, (px, py), (px - 20, py - 100, px + 20, py))

    for i in range(100):  # 10 s at 10 fps
        t = i / FPS
        p_x = 3.6 - 0.03 * (i - 20) if i >= 20 else 3.6  # P walks out of b's view
        q_x = max(3.7, 5.0 - 0.04 * (i - 20)) if i >= 20 else 5.0  # Q walks up, stays
        a_events = [started("a", a1, t)] if i == 0 else []
        b_events = [started("b", b0, t), started("b", b1, t)] if i == 0 else []
        a_seen = [at(a1, 0.0, p_x, 2.0)]
        b_seen = [at(b0, 3.0, q_x, 0.8)] if i < 30 else []  # b loses Q at 3 s
        if i == 30:
            b_events.append(ended("b", b0, 0.0, 2.9))
        # b's track of P, once P left its view, jumps onto Q.
        b_seen.append(at(b1, 3.0, q_x, 0.8) if p_x < 3.2 else at(b1, 3.0, p_x, 2.0))
        if i in (60, 61):  # a glimpse of Q at the edge of a's view
            a_seen.append(at(a2, 0.0, q_x, 0.8))
            if i == 60:
                a_events.append(started("a", a2, t))
        if i == 62:
            a_events.append(ended("a", a2, 6.0, 6.1))
        ts = (T0 + timedelta(seconds=t)).timestamp()
        out += fused.push("a", ts, a_events, a_seen, None)
        out += fused.push("b", ts, b_events, b_seen, None)
    out += fused.drain()
    out += fused.route("a", [ended("a", a1, 0.0, 9.9)])
    out += fused.route("b", [ended("b", b1, 0.0, 9.9)])
    out += fused.flush()
    assert len(of(out, VisitStarted)) == 2  # P's (with the swapped track) and Q's
    assert fused.joined_overlap == 2  # b's track of P, then the glimpse


def test_snapshot_totals_count_each_person_once_per_store() -> None:
    from storelens.contract.events import OccupancySnapshot

    store = Store(config({"a": 0.0, "b": 3.0}, occupancy_s=0.5))
    for i in range(80):  # one walker through the overlap: both cameras see them for a while
        store.frame(i, [(1.5 + i * 0.05, 2.0, (0, 0, 200))])
    snaps = [e for e in store.events if isinstance(e, OccupancySnapshot)]
    by_instant: dict = {}
    for s in snaps:
        by_instant.setdefault(s.ts, []).append(s.total)
    both = [totals for totals in by_instant.values() if len(totals) == 2]
    assert both and all(sum(t) <= 1 for t in both)
    assert any(sum(t) == 1 for t in both)


def _live_store(
    reorder_s: float,
    walkers,
    lag_s: float,
    seconds: float = 16.0,
    views: dict | None = None,
    handoffs: list | None = None,
    end_x: float = 6.5,
    clock_late_s: float = 0.12,
    learn_clocks: bool = True,
):
    """Two live cameras on their own clocks: a at 10 fps, b at 6 fps with its frames stamped
    0.12 s late (capture latency) and handed over ``lag_s`` (+ up to 0.2 s) after a's (a
    stream that lags, a busy box), so the fusion sees b's frames out of order with a's.
    ``walkers``: (start s, lane y, m/s[, start x m, default 0.5])."""
    import random

    views = views or {"a": 0.0, "b": 3.0}
    cfg = config(views, handoffs=handoffs)
    fusing = {"reorder_s": reorder_s, "max_clock_skew_s": 1.0 if learn_clocks else 0.0}
    cfg = cfg.model_copy(update={"store_visits": cfg.store_visits.model_copy(update=fusing)})
    seq, part_seq = itertools.count(), itertools.count()
    fused = StoreVisits(cfg, lambda: next(seq))
    rates = {"a": 10.0, "b": 6.0}
    stamp_late, handed_late = {"a": 0.0, "b": clock_late_s}, {"a": 0.0, "b": lag_s}
    pipes = {c.id: CameraPipeline(c, cfg.tracker, device="d", next_seq=lambda: next(part_seq),
                                  fps=rates[c.id]) for c in cfg.cameras}  # fmt: skip
    x0 = views
    rng = random.Random(5)
    frames = []  # (handed over at, camera, true time)
    for cam, fps in rates.items():
        handed = 0.0
        for k in range(int(seconds * fps)):
            t = k / fps + (0.05 if cam == "b" else 0.0)  # b's shutter is not a's
            handed = max(handed, t + handed_late[cam] + rng.uniform(0, 0.2))  # a feed is FIFO
            frames.append((handed, cam, t))
    events = []
    for _, cam, t in sorted(frames):
        boxes = []
        for start, lane, speed, *x_start in walkers:
            x = (x_start[0] if x_start else 0.5) + (t - start) * speed
            if t < start or x > end_x:
                continue
            px = (x - x0[cam]) * PX_PER_M
            if 20 <= px <= 380:
                boxes.append([px - 20, lane * PX_PER_M - 100, px + 20, lane * PX_PER_M])
        dets = Detections(np.array(boxes, np.float32).reshape(-1, 4),
                          np.full(len(boxes), 0.9, np.float32))  # fmt: skip
        ts = T0 + timedelta(seconds=t + stamp_late[cam])
        out = pipes[cam].process(None, ts, dets)
        events += fused.push(cam, ts.timestamp(), out, pipes[cam].sightings(), None)
    events += fused.drain()
    for cam, pipe in pipes.items():
        events += fused.route(cam, pipe.flush())
    return fused, events + fused.flush()


WALKERS = [(0.0, 1.2, 0.6), (1.5, 2.8, 0.8), (4.0, 1.6, 0.7), (4.2, 3.2, 0.5)]


def test_live_cameras_on_their_own_clocks_and_rates_see_one_visit_per_person() -> None:
    """Four people walk through the overlap of two live cameras that run at different rates,
    are stamped with different capture delays and reach the fusion out of order (b up to
    1.5 s behind a): still one store visit each, seen by both cameras (tolerance: exact, the
    scene is synthetic)."""
    fused, events = _live_store(2.0, WALKERS, lag_s=1.3)
    ended = of(events, VisitEnded)
    assert len(of(events, VisitStarted)) == len(ended) == len(WALKERS)
    assert all(e.cameras == ["a", "b"] for e in ended)
    # At most a frame or two is late: when b's learned clock moves its times back.
    assert fused.joined_overlap == len(WALKERS) and fused.late_frames <= 2
    for e in ended:  # one person each: the path keeps to one lane and crosses both views
        ys = [p[1] for p in e.path]
        assert max(ys) - min(ys) < 0.5 and e.path[-1][0] - e.path[0][0] > 4.5
    assert fused.open_visits == 0 and not fused._early and not fused._describe_next


GAP = {"views": {"a": 0.0, "b": 4.2}, "end_x": 8.0, "seconds": 22.0,
       "handoffs": [{"from_camera": "a", "to_camera": "b", "window_s": 3,
                     "area": [[2.5, 0], [4.5, 0], [4.5, 4], [2.5, 4]]}]}  # fmt: skip
GAP_WALKERS = [(0.0, 1.0, 0.8), (3.0, 3.0, 0.7), (7.0, 2.0, 0.9)]


def test_a_walk_between_live_cameras_is_handed_off_in_frame_time() -> None:
    """Three people walk from a's view through a gap into b's, b's stream 2.5 s behind a's:
    fused by frame time (a reorder buffer of 3 s), each walk is one visit, handed off; fused
    in arrival order (no buffer), some of b's arrivals come after a's visit closed and count
    as more people."""
    fused, events = _live_store(3.0, GAP_WALKERS, lag_s=2.5, **GAP)
    ended = of(events, VisitEnded)
    assert len(of(events, VisitStarted)) == len(ended) == len(GAP_WALKERS)
    assert all(e.cameras == ["a", "b"] and e.handoffs == 1 for e in ended)
    assert fused.joined_handoff == 3 and fused.ambiguous_handoffs == 0
    unordered, events = _live_store(0.0, GAP_WALKERS, lag_s=2.5, **GAP)
    assert len(of(events, VisitStarted)) > len(GAP_WALKERS)


def test_a_swipe_for_someone_still_in_the_reorder_buffer_waits_for_them() -> None:
    """Camera b lags: a's frames wait for it. A card swiped meanwhile for a's person is held
    and leaves with the person's store visit ID, and their visit carries the member."""
    store = Store(config({"a": 0.0, "b": 3.0}))
    for i in range(5):  # both cameras, nobody in view
        store.frame(i, [])
    pipe_a, pipe_b = store.pipes["a"], store.pipes["b"]
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    for i in range(5, 25):  # only a delivers: someone walks in
        ts = T0 + timedelta(seconds=i / FPS)
        px = (0.5 + (i - 5) * 0.05) * PX_PER_M
        dets = Detections(np.array([[px - 20, 100, px + 20, 200]], np.float32),
                          np.full(1, 0.9, np.float32))  # fmt: skip
        out = pipe_a.process(None, ts, dets)
        store.events += store.fused.push("a", ts.timestamp(), out, pipe_a.sightings(), None)
    assert not of(store.events, VisitStarted)  # held: b has not reached these frames
    [person] = pipe_a.people_in([[0, 0], [400, 0], [400, 400], [0, 400]])
    assert store.fused.set_member(person.visit_id, TOKEN, "k1")
    read = CardSwipe(device="d", seq=0, ts=T0 + timedelta(seconds=2.4), reader="door",
                     member=TOKEN, key_id="k1", camera="a", visit_id=person.visit_id)  # fmt: skip
    assert store.fused.swipe(read) is None
    for i in range(5, 25):  # b catches up
        ts = T0 + timedelta(seconds=i / FPS)
        out = pipe_b.process(None, ts, empty)
        store.events += store.fused.push("b", ts.timestamp(), out, pipe_b.sightings(), None)
    [swipe] = of(store.events, CardSwipe)
    [started] = of(store.events, VisitStarted)
    assert swipe.visit_id == started.visit_id != person.visit_id and swipe.member == TOKEN
    [ended] = of(store.finish(), VisitEnded)
    assert ended.visit_id == started.visit_id and ended.member == TOKEN


def test_a_camera_clock_that_runs_ahead_is_learned_from_people_both_see() -> None:
    """Camera b stamps its frames 0.8 s ahead: the device learns that from the people both
    cameras see walking (the shift that lays one floor track over the other) and fuses b on
    a's clock; one visit per person either way."""
    walkers = WALKERS + [(8.0, 2.0, 0.9), (9.0, 1.0, 0.6), (11.0, 3.0, 0.8)]
    wide = {"views": {"a": 0.0, "b": 2.0}, "seconds": 24.0, "lag_s": 1.3, "clock_late_s": 0.8}
    fused, events = _live_store(2.0, walkers, **wide)
    assert fused.clock_offsets["b"] == pytest.approx(0.8, abs=0.051)
    assert len(of(events, VisitStarted)) == len(walkers) == fused.joined_overlap
    trusting, events = _live_store(2.0, walkers, learn_clocks=False, **wide)
    assert trusting.clock_offsets == {} and len(of(events, VisitStarted)) == len(walkers)


def test_a_visit_first_seen_by_a_camera_whose_clock_runs_ahead_starts_on_the_store_clock() -> None:
    """Once b's clock (0.8 s ahead) is learned, someone who walks in on b's side starts their
    store visit when they came in on a's clock, as its path and end are: before, it started
    0.8 s late (and lasted 0.8 s less)."""
    walkers = WALKERS + [(8.0, 2.0, 0.9), (9.0, 1.0, 0.6), (11.0, 3.0, 0.8)]
    back = (16.0, 2.0, -0.7, 5.5)  # from b's side of the floor into a's view
    wide = {"views": {"a": 0.0, "b": 2.0}, "seconds": 30.0, "lag_s": 1.3, "clock_late_s": 0.8}
    fused, events = _live_store(2.0, [*walkers, back], **wide)
    assert fused.clock_offsets["b"] == pytest.approx(0.8, abs=0.051)
    [started] = [e for e in of(events, VisitStarted) if e.camera == "b"]
    came_in = T0 + timedelta(seconds=back[0])
    assert timedelta(0) <= started.ts - came_in <= timedelta(seconds=0.4)
    [ended] = [e for e in of(events, VisitEnded) if e.visit_id == started.visit_id]
    assert ended.started_at == started.ts
