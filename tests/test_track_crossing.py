"""Association at close passes: direction consistency and confidence-scaled noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

from storelens.edge.track.crossing import CrossingTracker


def dets(boxes: list[list[float]], conf: list[float]) -> sv.Detections:
    return sv.Detections(
        xyxy=np.array(boxes, np.float32),
        confidence=np.array(conf, np.float32),
        class_id=np.zeros(len(conf), int),
    )


def walker(tracker: CrossingTracker, frames: int = 6, speed: float = 4.0) -> None:
    """One person walking right at ``speed`` px per frame, 30 fps timestamps."""
    for i in range(frames):
        tracker.update(dets([[100 + speed * i, 50, 140 + speed * i, 150]], [0.8]), timestamp=i / 30)


def test_a_detection_behind_the_walker_ranks_below_one_ahead_at_equal_iou() -> None:
    scores = {}
    for weight in (0.0, 0.3):
        tracker = CrossingTracker(direction_weight=weight, frame_rate=30.0)
        walker(tracker)
        track = tracker.tracks[0]
        for t in tracker.tracks:
            t.predict()
        pred = np.array([track.get_state_bbox()])
        shift = np.array([12.0, 0, 12.0, 0])  # > one step: the first box lies behind the last seen
        candidates = np.stack([pred[0] - shift, pred[0] + shift])
        iou = tracker.iou.base.compute(pred, candidates)
        assert iou[0, 0] == pytest.approx(iou[0, 1], abs=1e-6)
        scores[weight] = tracker.iou.compute(pred, candidates)[0]
    assert scores[0.0][0] == pytest.approx(scores[0.0][1], abs=1e-6)  # IoU alone: a tie
    assert scores[0.3][1] > scores[0.3][0] + 0.2  # walking on beats walking back


def test_the_iou_gate_still_decides_what_may_match() -> None:
    tracker = CrossingTracker(frame_rate=30.0, minimum_iou_threshold=0.3)
    walker(tracker)
    pred = np.array([tracker.tracks[0].get_state_bbox()])
    far_ahead = pred + np.array([35.0, 0, 35.0, 0])  # IoU ~0.07, in the walking direction
    assert tracker.iou.compute(pred, far_ahead)[0, 0] < 0.3


def test_a_low_confidence_box_moves_the_track_less() -> None:
    moved = {}
    for conf in (0.95, 0.3):
        tracker = CrossingTracker(frame_rate=30.0, direction_weight=0.0)
        walker(tracker, speed=0.0)
        off = [110, 50, 150, 150]  # the standing person's box, pulled 10 px by a passer-by
        tracker.update(dets([off], [conf]), timestamp=6 / 30)
        moved[conf] = float(tracker.tracks[0].get_state_bbox()[0]) - 100
    assert 0 < moved[0.3] < moved[0.95]


def test_a_negative_direction_weight_is_refused() -> None:
    with pytest.raises(ValueError, match="direction_weight"):
        CrossingTracker(direction_weight=-0.1)


def test_a_box_shared_with_a_missed_track_does_not_drag_the_winner_along() -> None:
    """Real boxes (tests/data/tracking/merged_pair.json): a person walking slowly right and
    one walking left are one box for five frames. The track that wins the box coasts on its
    own motion while the box also covers the missed one's prediction; taking the box, it
    followed the left-walker, and the two swapped identities."""
    data = json.loads((Path(__file__).parent / "data/tracking/merged_pair.json").read_text())
    ends = {}
    for hold in (False, True):
        tracker = CrossingTracker(
            frame_rate=10.0,
            hold=hold,
            high_conf_det_threshold=0.45,
            track_activation_threshold=0.45,
            minimum_iou_threshold=0.2,
            lost_track_buffer=90,
            minimum_consecutive_frames=3,
        )
        first = {}
        for f, rows in data["frames"].items():
            a = np.array(rows, np.float32).reshape(-1, 5)
            out = tracker.update(dets(a[:, :4].tolist(), a[:, 4].tolist()), timestamp=int(f) / 10)
            at = {int(t): float(x[0]) for x, t in zip(out.xyxy, out.tracker_id, strict=True)}
            if f == "150":
                first = at
        slow, fast = (min(first, key=lambda t: abs(first[t] - x)) for x in (635, 710))
        ends[hold] = (at.get(slow), at.get(fast))
    assert ends[True][0] == pytest.approx(679, abs=3)  # the slow walker, further right
    assert ends[True][1] == pytest.approx(568, abs=3)  # the left-walker, past the other
    assert ends[False][0] == pytest.approx(568, abs=3)  # without: swapped


def test_only_a_box_of_two_is_held() -> None:
    """A neighbour simply not detected does not make a person's own box the pair's: the box
    must be larger than the track's own prediction and cover most of the missed one's."""
    from storelens.edge.track.crossing import _holds_pair

    own = np.array([100.0, 50, 130, 130])
    missed = np.array([[115.0, 52, 145, 132]])  # half behind: IoU ~0.33 with ``own``
    assert not _holds_pair(own, own, missed)  # the person's own box, neighbour missed
    assert _holds_pair(np.array([100.0, 50, 145, 132]), own, missed)  # both in one box
    assert not _holds_pair(np.array([97.0, 48, 128, 134]), own, missed)  # a bit bigger only
