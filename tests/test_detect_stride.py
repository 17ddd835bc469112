"""Detection stride: which frames get a detection, tracks carried between them, config."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import write_moving_box_clip
from pydantic import ValidationError

from storelens.contract.events import LineCrossing, VisitEnded, VisitStarted, ZoneVisit
from storelens.edge.camera.pipeline import CameraPipeline
from storelens.edge.config import CameraConfig, TrackerConfig, parse_config
from storelens.edge.detect import Detections
from storelens.edge.detect.stride import DetectStride
from storelens.edge.track.tracker import PersonTracker
from tests.test_track_pipeline import FPS, T0, camera, person_at


def pattern(stride: DetectStride, n: int) -> str:
    return "".join("D" if stride.due() else "." for _ in range(n))


def test_stride_detects_every_kth_frame_from_its_phase() -> None:
    assert pattern(DetectStride(1), 5) == "DDDDD"
    assert pattern(DetectStride(3), 7) == "D..D..D"
    assert pattern(DetectStride(3, phase=1), 7) == ".D..D.."
    assert pattern(DetectStride(3, phase=5), 7) == "..D..D."  # phase wraps around k
    s = DetectStride(2)
    pattern(s, 10)
    assert (s.frames, s.detected) == (10, 5)
    with pytest.raises(ValueError, match="detect_every"):
        DetectStride(0)


def test_staggered_cameras_share_the_detector_evenly() -> None:
    strides = [DetectStride(2, phase=i) for i in range(6)]
    per_turn = [sum(s.due() for s in strides) for _ in range(10)]
    assert per_turn == [3] * 10  # never all six at once, then none


def test_config_field_defaults_to_every_frame_and_is_bounded() -> None:
    base = {"id": "c1", "source": "0"}
    assert CameraConfig.model_validate(base).detect_every == 1
    assert CameraConfig.model_validate({**base, "detect_every": 2}).detect_every == 2
    for bad in (0, -1, 11, 1.5, "two"):
        with pytest.raises(ValidationError, match="detect_every"):
            CameraConfig.model_validate({**base, "detect_every": bad})


def walker_box(t: float, speed: float = 50.0) -> tuple[float, float, float, float]:
    x = 100 + speed * t
    return (x, 200.0, x + 40, 300.0)


def test_predict_moves_people_on_and_leaves_the_tracker_alone() -> None:
    tracker = PersonTracker(TrackerConfig(), FPS / 2)
    for i in range(10):  # detections at 5 fps, walking 50 px/s
        t = i * 0.2
        box = np.array([walker_box(t)], np.float32)
        out = tracker.update(Detections(box, np.array([0.9], np.float32)), t)
    assert len(out) == 1
    track_id, last = out[0].track_id, out[0].xyxy
    ahead = tracker.predict(1.8 + 0.1)
    assert [p.track_id for p in ahead] == [track_id]
    assert ahead[0].xyxy[0] - last[0] == pytest.approx(5.0, abs=1.0)  # 50 px/s for 0.1 s
    assert ahead[0].xyxy[1] == pytest.approx(last[1], abs=1.0)
    # Capped: a long gap does not fling a box across the view.
    assert tracker.predict(60.0)[0].xyxy[0] - last[0] == pytest.approx(50.0, abs=10.0)
    # The next real detection keeps the same id (predict changed no tracker state).
    box = np.array([walker_box(2.0)], np.float32)
    assert [p.track_id for p in tracker.update(Detections(box, np.ones(1, np.float32)), 2.0)] == [
        track_id
    ]
    tracker.reset()
    assert tracker.predict(3.0) == []


def test_kalman_filter_steps_in_camera_frames_at_a_stride() -> None:
    """At detect_every 2 the library's filter runs at the camera's rate and steps two frames
    per update (as on every frame), and its velocity comes out in px/s all the same."""
    tracker = PersonTracker(TrackerConfig(), FPS / 2, detect_every=2)
    assert tracker._tracker._frame_rate == pytest.approx(FPS)
    for i in range(10):  # detections at 5 fps of one walking 50 px/s
        t = i * 0.2
        box = np.array([walker_box(t)], np.float32)
        out = tracker.update(Detections(box, np.array([0.9], np.float32)), t)
    ahead = tracker.predict(1.8 + 0.1)
    assert ahead[0].xyxy[0] - out[0].xyxy[0] == pytest.approx(5.0, abs=1.0)
    with pytest.raises(ValueError, match="detect_every"):
        PersonTracker(TrackerConfig(), FPS, detect_every=0)


def make(every: int) -> CameraPipeline:
    seq = itertools.count()
    cam = camera().model_copy(update={"detect_every": every})
    return CameraPipeline(cam, TrackerConfig(), device="dev1", next_seq=lambda: next(seq), fps=FPS)


def run_strided(pipeline: CameraPipeline, xs: list, every: int):
    events, shown = [], []
    stride = DetectStride(every)
    for i, x in enumerate(xs):
        due = stride.due()
        dets = (Detections.empty() if x is None else person_at(x)) if due else None
        events += pipeline.process(None, T0 + timedelta(seconds=i / FPS), dets)
        shown.append((due, len(pipeline.last_tracked)))
    return events, shown


def stroller_positions() -> list[float | None]:
    """Like ``shopper_positions`` at walking pace: at 5 detections a second a box moves a
    third of its width between detections (IoU matching holds; a runner would not)."""
    xs: list[float | None] = list(np.arange(100, 400, 6))  # 5 s walking in
    xs += [400 + 3 * np.sin(i) for i in range(60)]  # 6 s at the shelf, jittering
    xs[60:70] = [None] * 10  # occluded for a second while at the shelf
    xs += list(np.arange(400, 800, 8))  # walk off to the right, past the till
    return xs


def summary(events: list) -> tuple:
    kinds = [type(e) for e in events]
    crossings = [(c.line, c.direction) for c in events if isinstance(c, LineCrossing)]
    stays = [(e.zone, e.dwell_s) for e in events if isinstance(e, ZoneVisit)]
    return kinds.count(VisitStarted), kinds.count(VisitEnded), crossings, stays


def test_visit_zone_and_line_hold_with_detection_on_every_other_frame() -> None:
    xs = stroller_positions() + [None] * 40  # then gone for 4 s
    full, _ = run_strided(make(1), xs, 1)
    strided, shown = run_strided(make(2), xs, 2)
    visits, ended, crossings, stays = summary(full)
    assert (visits, ended, crossings) == (1, 1, [("door", "in")])
    assert [z for z, _ in stays] == ["shelf"]
    s_visits, s_ended, s_crossings, s_stays = summary(strided)
    assert (s_visits, s_ended, s_crossings) == (visits, ended, crossings)
    assert [z for z, _ in s_stays] == ["shelf"]
    assert s_stays[0][1] == pytest.approx(stays[0][1], abs=0.3)  # dwell within 3 frames
    # Tracks persist on the frames without a detection: once confirmed while walking in,
    # every frame shows the person, detected or not.
    walking = shown[10:45]
    assert all(n == 1 for _, n in walking)
    assert sum(not due for due, _ in walking) >= 17


class CountingDetector:
    dynamic_batch = False

    def __init__(self) -> None:
        self.frames = 0

    def detect_many(self, frames):
        self.frames += len(frames)
        return [Detections.empty() for _ in frames]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_moving_box_clip(tmp_path_factory.mktemp("stride") / "clip.avi", 30)


def test_agent_detects_only_on_each_cameras_stride(tmp_path: Path, clip: Path) -> None:
    from storelens.edge.agent import Agent

    cams = [
        {"id": f"c{i}", "source": str(clip), "source_fps": 10, "detect_every": every}
        for i, every in enumerate((1, 3))
    ]
    cfg = parse_config(
        {
            "store": "s1",
            "device": "d1",
            "cameras": cams,
            "outbox": {"path": str(tmp_path / "outbox.db")},
        }
    )
    detector = CountingDetector()
    agent = Agent(cfg, publish=False, detector=detector, drain_s=0)
    runner = threading.Thread(target=agent.run)
    runner.start()
    runner.join(30)
    assert not runner.is_alive()
    assert agent.frames == 60  # every frame of both cameras processed
    # camera c0: all 30; camera c1 (phase 1): frames 2, 5, ..., 29 -> 10
    assert detector.frames == 30 + 10  # the detector saw only the due frames
    assert agent.pipelines["c1"].tracker.fps == pytest.approx(FPS / 3)


def test_strided_tracker_widens_its_iou_gate() -> None:
    from storelens.edge.track.tracker import for_stride

    base = TrackerConfig(match_iou=0.2)
    assert for_stride(base, 1) is base
    assert for_stride(base, 4).match_iou == pytest.approx(0.1)
    assert make(2).tracker_config.match_iou == pytest.approx(0.2 / 2**0.5)
    assert make(1).tracker_config.match_iou == pytest.approx(0.2)


def test_half_rate_camera_tracks_as_a_stride_of_two() -> None:
    """The motion model runs on real time: a camera at 5 fps with a detection on every frame
    gets the IoU gate and Kalman steps of a 10 fps camera detecting every 2nd frame, and the
    same detections give the same boxes (it once stepped the filter one 10 fps-tuned frame
    per update and kept the narrow gate, which fragmented people on the slower camera)."""
    from storelens.edge.track.tracker import MOTION_REFERENCE_FPS, for_rate

    base = TrackerConfig(match_iou=0.2)
    assert for_rate(base, MOTION_REFERENCE_FPS / 2).match_iou == pytest.approx(0.2 / 2**0.5)
    assert for_rate(base, 3 * MOTION_REFERENCE_FPS) is base  # never tightened
    seq = itertools.count()
    slow = CameraPipeline(
        camera().model_copy(update={"fps": FPS / 2}),
        TrackerConfig(),
        device="dev1",
        next_seq=lambda: next(seq),
        fps=FPS / 2,
    )
    assert slow.tracker_config.match_iou == pytest.approx(make(2).tracker_config.match_iou)
    a = PersonTracker(slow.tracker_config, FPS / 2)
    b = PersonTracker(make(2).tracker_config, FPS / 2, detect_every=2)
    # Two walkers passing at 40 px per update with detector jitter.
    rng = np.random.default_rng(3)
    for i in range(40):
        t = i * 2 / FPS
        boxes = [walker_box(t, 200.0), (700 - 200 * t, 190.0, 740 - 200 * t, 290.0)]
        xyxy = np.array(boxes, np.float32) + rng.normal(0, 2, (2, 4)).astype(np.float32)
        dets = Detections(xyxy, np.array([0.9, 0.8], np.float32))
        out_a, out_b = a.update(dets, t), b.update(dets, t)
        assert [(p.track_id, p.xyxy.tolist()) for p in out_a] == [
            (p.track_id, p.xyxy.tolist()) for p in out_b
        ]
    assert a._tracker._frame_rate == pytest.approx(MOTION_REFERENCE_FPS)
