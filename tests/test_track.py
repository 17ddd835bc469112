"""Tracker: confirmation by persistence and motion, occlusion buffer in seconds, static objects."""

from __future__ import annotations

import numpy as np
import pytest

from storelens.edge.config import TrackerConfig
from storelens.edge.detect import Detections
from storelens.edge.track.tracker import PersonTracker, StaticObjects, confirm_frames

FPS = 10.0


def boxes(*xyxy: tuple[float, float, float, float], conf: float = 0.9) -> Detections:
    arr = np.array(xyxy, np.float32).reshape(-1, 4)
    return Detections(arr, np.full(len(arr), conf, np.float32))


def walker(t: float, x0: float = 50.0, speed_px_s: float = 60.0, y2: float = 300.0):
    x = x0 + speed_px_s * t
    return (x, y2 - 100, x + 40, y2)


def run(tracker: PersonTracker, frames: list[Detections], t0: float = 0.0):
    return [tracker.update(d, t0 + i / FPS) for i, d in enumerate(frames)]


@pytest.mark.parametrize("kind", ["bytetrack", "ocsort"])
def test_walker_keeps_one_id_through_an_occlusion(kind: str) -> None:
    tracker = PersonTracker(TrackerConfig(type=kind, lost_track_buffer_s=2.0), FPS)
    frames = []
    for i in range(80):
        t = i / FPS
        occluded = 30 <= i < 40  # one second behind a pillar
        frames.append(Detections.empty() if occluded else boxes(walker(t)))
    out = run(tracker, frames)
    ids = {p.track_id for frame in out for p in frame}
    assert len(ids) == 1
    seen = [i for i, frame in enumerate(out) if frame]
    # confirmed after confirm_s (3 frames) and a quarter of its height walked (6 px a frame)
    assert seen[0] <= 8
    assert all(out[i] for i in range(43, 80))  # picked up again after the gap
    assert all(not out[i] for i in range(30, 40))  # nothing invented while occluded


def test_one_frame_ghosts_are_never_output() -> None:
    tracker = PersonTracker(TrackerConfig(), FPS)
    frames = []
    for i in range(60):
        # a flicker in a new place every other frame, never twice in the same spot
        frames.append(boxes((10 * i, 50, 10 * i + 30, 130)) if i % 2 == 0 else Detections.empty())
    assert all(frame == [] for frame in run(tracker, frames))
    assert tracker.alive_ids() == set()


def test_confirmation_needs_persistence() -> None:
    assert confirm_frames(0.3, 10) == 3
    assert confirm_frames(0.3, 30) == 9
    assert confirm_frames(0.0, 10) == 2  # never a single frame
    tracker = PersonTracker(TrackerConfig(confirm_s=0.5, confirm_move=0), FPS)
    out = run(tracker, [boxes(walker(i / FPS)) for i in range(10)])
    assert [bool(f) for f in out] == [False] * 4 + [True] * 6


def test_track_lost_longer_than_buffer_gets_new_id() -> None:
    tracker = PersonTracker(TrackerConfig(lost_track_buffer_s=1.0), FPS)
    frames = [boxes(walker(i / FPS, speed_px_s=30)) for i in range(20)]
    frames += [Detections.empty()] * 25  # 2.5 s gone
    frames += [boxes(walker(4.5 + i / FPS, speed_px_s=30)) for i in range(20)]
    out = run(tracker, frames)
    first = {p.track_id for f in out[:20] for p in f}
    last = {p.track_id for f in out[45:] for p in f}
    assert len(first) == len(last) == 1 and first != last


def test_buffer_is_seconds_not_frames() -> None:
    # At 5 fps a 1.5 s gap is 7 frames; at 30 fps it is 45. Both stay within a 2 s buffer.
    for fps in (5.0, 30.0):
        tracker = PersonTracker(TrackerConfig(lost_track_buffer_s=2.0), fps)
        ids = set()
        n = int(fps * 6)
        for i in range(n):
            t = i / fps
            gone = 2.0 <= t < 3.5
            found = tracker.update(Detections.empty() if gone else boxes(walker(t)), t)
            ids |= {p.track_id for p in found}
        assert len(ids) == 1, fps


def test_static_person_like_object_is_never_confirmed() -> None:
    tracker = PersonTracker(TrackerConfig(), FPS)
    sign = (30, 100, 50, 140)
    frames = [boxes(sign, (400 + i * 0.1, 200, 440, 300)) for i in range(150)]
    out = run(tracker, frames)
    assert all(f == [] for f in out)  # 15 s: the sign never moved, nor did the mannequin
    assert len(tracker.static.boxes) == 2  # both learned as static after 10 s
    # someone walking in still counts, and standing still after walking in keeps counting
    walk = [boxes(sign, walker(i / FPS, x0=150)) for i in range(30)]
    stand = [boxes(sign, walker(3.0, x0=150)) for _ in range(50)]
    out = run(tracker, walk + stand, t0=15.0)
    assert all(len(f) == 1 for f in out[8:])


def test_walker_stops_counting_while_sitting_on_a_learned_static_object() -> None:
    static = StaticObjects()
    sign = np.array([30, 100, 50, 140], np.float32)
    static.learn(sign, 0.0)
    static.learn(sign + 1, 5.0)  # same object: not a second one
    assert len(static.boxes) == 1
    assert static.touch(np.array([31, 101, 51, 141], np.float32), 100.0)
    assert not static.touch(np.array([80, 100, 100, 140], np.float32), 100.0)
    static.forget_old(100.0 + StaticObjects.FORGET_S + 1)
    assert len(static.boxes) == 0


def test_backward_timestamps_do_not_break_tracking() -> None:
    tracker = PersonTracker(TrackerConfig(), FPS)
    for i in range(20):
        tracker.update(boxes(walker(i / FPS)), i / FPS)
    out = tracker.update(boxes(walker(2.0)), 1.0)  # clock stepped back
    assert len(out) == 1


def test_sightings_before_motion_confirmation_are_reported_late() -> None:
    tracker = PersonTracker(TrackerConfig(), FPS)
    late = []
    for i in range(15):
        tracker.update(boxes(walker(i / FPS)), i / FPS)
        late += tracker.confirmed_late
    times = [t for t, _ in late]
    assert times and times == sorted(times)
    assert times[0] == 0.0  # traced back to the very first, still unnumbered, frame
    assert len({p.track_id for _, p in late}) == 1


def test_unnumbered_first_frames_are_traced_back() -> None:
    tracker = PersonTracker(TrackerConfig(confirm_s=0.3, confirm_move=0), FPS)
    out = []
    for i in range(6):
        shown = tracker.update(boxes(walker(i / FPS), (600, 0, 640, 100)), i / FPS)
        out.append((shown, tracker.confirmed_late))
    first = next(i for i, (shown, _) in enumerate(out) if shown)
    assert first == 2  # numbered on the third consecutive frame
    late = out[first][1]
    assert sorted(round(t, 3) for t, _ in late) == [0.0, 0.0, 0.1, 0.1]  # both, frames 0-1
    walker_late = sorted((t, p.xyxy[0]) for t, p in late if p.xyxy[0] < 500)
    assert [x for _, x in walker_late] == pytest.approx([50.0, 56.0])


def test_broken_boxes_are_ignored() -> None:
    tracker = PersonTracker(TrackerConfig(), FPS)
    bad = Detections(
        np.array([[np.nan, 0, 10, 10], [50, 50, 40, 90], [0, 0, 10, 20]], np.float32),
        np.array([0.9, 0.9, np.inf], np.float32),
    )
    for i in range(20):
        assert tracker.update(bad, i / FPS) == []
    out = run(tracker, [boxes(walker(i / FPS)) for i in range(20)], t0=2.0)
    assert out[-1] and np.isfinite(out[-1][0].xyxy).all()


def test_a_track_that_walked_out_is_not_taken_by_one_walking_in() -> None:
    """At 30 fps the next person through a doorway at the image border comes while the
    leaver's lost track is still predicted there: they are two people, not one."""
    fps, width = 30.0, 640
    tracker = PersonTracker(TrackerConfig(), fps, frame_size=(width, 480))

    def clipped(x: float) -> tuple[float, float, float, float]:
        return (max(x, 0.0), 200.0, x + 40.0, 300.0)

    out: list[list] = []
    t = 0.0
    x = 200.0
    while x >= -20:  # walks out through the left border (boxes clipped there)
        out.append(tracker.update(boxes(clipped(x)), t))
        t += 1 / fps
        x -= 60.0 / fps
    leaver = {p.track_id for frame in out for p in frame}
    for _ in range(4):  # 0.13 s with nobody in view
        out.append(tracker.update(Detections.empty(), t))
        t += 1 / fps
    x = -20.0
    arrived = []
    while x <= 200:  # the next one walks in at the same spot
        arrived.append(tracker.update(boxes(clipped(x)), t))
        t += 1 / fps
        x += 60.0 / fps
    newcomer = {p.track_id for frame in arrived for p in frame}
    assert len(leaver) == 1 and len(newcomer) == 1
    assert leaver != newcomer
    assert tracker.walked_out == 1


def test_someone_standing_at_the_border_keeps_their_track_through_a_miss() -> None:
    """Only walking out drops a lost track at the border: a person waiting there (a queue
    at the edge of the view), missed by the detector for a moment, is the same person."""
    fps = 30.0
    tracker = PersonTracker(TrackerConfig(), fps, frame_size=(640, 480))
    rng = np.random.default_rng(0)  # jitter that leaves its velocity pointing out, slowly
    out = []
    for i in range(150):  # walks to the left border, then waits there, jittering
        x = max(200.0 - 60.0 * i / fps, 0.0)
        box = np.array([x, 200.0, x + 40.0, 300.0]) + rng.normal(0, 1.5, 4) * (x == 0.0)
        missed = i in (120, 121)
        out.append(tracker.update(Detections.empty() if missed else boxes(tuple(box)), i / fps))
    ids = {p.track_id for frame in out for p in frame}
    assert len(ids) == 1 and out[-1]
    assert tracker.walked_out == 0
