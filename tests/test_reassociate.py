"""Re-association of a lost track with a new one: motion, in-memory appearance, the stitch
window, people who left the view, and ambiguity."""

from __future__ import annotations

import numpy as np

from storelens.edge.config import TrackerConfig
from storelens.edge.detect import Detections
from storelens.edge.track import appearance, reassociate
from storelens.edge.track.tracker import PersonTracker

FPS = 10.0
W, H = 640, 480
RED, BLUE = (40, 40, 200), (200, 60, 30)  # BGR shirts; trousers are dark grey


def draw(people: list[tuple[np.ndarray, tuple[int, int, int]]]) -> np.ndarray:
    frame = np.full((H, W, 3), 150, np.uint8)
    for box, shirt in people:
        x1, y1, x2, y2 = (int(v) for v in box)
        mid = y1 + (y2 - y1) // 2
        frame[y1:mid, x1:x2] = shirt
        frame[mid:y2, x1:x2] = (50, 50, 50)
        frame[y1 : y1 + (y2 - y1) // 6, x1 + 8 : x2 - 8] = (140, 170, 210)  # a face
    return frame


def box_at(t: float, x0: float = 60.0, speed: float = 60.0) -> np.ndarray:
    x = x0 + speed * t
    return np.array([x, 200, x + 40, 300], np.float32)


def run(config: TrackerConfig, hidden: range, shirt_after=RED, frames: int = 90):
    """One walker left to right, not detected (and behind a pillar) in ``hidden`` frames; the
    one who comes out wears ``shirt_after``. Returns the track IDs before and after."""
    tracker = PersonTracker(config, FPS)
    before, after = set(), set()
    for i in range(frames):
        t = i / FPS
        box = box_at(t)
        shirt = RED if i < hidden.start else shirt_after
        seen = i not in hidden
        frame = draw([(box, shirt)] if seen else [])
        dets = Detections(box[None], np.array([0.9], np.float32)) if seen else Detections.empty()
        for p in tracker.update(dets, t, frame):
            (before if i < hidden.start else after).add(p.track_id)
    return before, after, tracker


def test_a_person_hidden_longer_than_the_buffer_keeps_their_number() -> None:
    hidden = range(25, 45)  # 2 s, the library forgets after 1 s
    before, after, tracker = run(TrackerConfig(lost_track_buffer_s=1.0, stitch_s=4.0), hidden)
    assert len(before) == 1 and after == before and tracker.rejoined == 1
    before, after, _ = run(TrackerConfig(lost_track_buffer_s=1.0, stitch_s=0), hidden)
    assert len(before) == len(after) == 1 and after != before


def test_someone_else_coming_out_gets_a_new_number() -> None:
    config = TrackerConfig(lost_track_buffer_s=1.0, stitch_s=4.0)
    before, after, tracker = run(config, range(25, 45), shirt_after=BLUE)
    assert len(before) == len(after) == 1 and after != before and tracker.rejoined == 0


def test_beyond_the_stitch_window_a_new_visit_begins() -> None:
    config = TrackerConfig(lost_track_buffer_s=1.0, stitch_s=1.5)
    before, after, _ = run(config, range(25, 50))  # 2.5 s
    assert len(before) == len(after) == 1 and after != before


def test_a_person_who_left_the_view_is_not_continued() -> None:
    lost = reassociate.Lost(1, 0.0, np.array([600, 200, 640, 300], np.float32), None, None)
    tracker = PersonTracker(TrackerConfig(), FPS)
    tracker._frame_size = (W, H)
    assert tracker._left_view(lost.xyxy) and not tracker._left_view(box_at(1.0))


def test_an_ambiguous_pair_is_not_joined() -> None:
    looks = np.full(8, 1 / 8, np.float32)
    a = reassociate.Lost(1, 0.0, np.array([100, 200, 140, 300], np.float32), None, looks)
    b = reassociate.Lost(2, 0.0, np.array([104, 200, 144, 300], np.float32), None, looks)
    new = reassociate.Born(3, np.array([102, 200, 142, 300], np.float32), looks)
    assert reassociate.match([a], [new], 1.0) == {3: 1}
    assert reassociate.match([a, b], [new], 1.0) == {}  # two look-alikes side by side


def test_descriptors_tell_colours_apart_and_stay_small() -> None:
    box = np.array([100, 100, 160, 260], np.float32)
    red = appearance.describe(draw([(box, RED)]), box)
    red2 = appearance.describe(draw([(box + 3, RED)]), box + 3)
    blue = appearance.describe(draw([(box, BLUE)]), box)
    assert red is not None and red2 is not None and blue is not None
    assert red.size < 200  # a few coarse histograms, nothing like an image
    near, far = appearance.distance(red, red2), appearance.distance(red, blue)
    assert near is not None and far is not None and near < 0.15 < 0.4 < far
    tiny = np.array([0, 0, 10, 20], np.float32)
    assert appearance.describe(draw([]), tiny) is None
