"""ByteTrack association that keeps identities apart when people pass close.

IoU alone cannot tell two overlapping walkers apart: at a crossing both tracks' predicted
boxes overlap both detections, and the box of a half-hidden person (low confidence, the
wrong size) pulls the Kalman filter's velocity off course. Two published remedies are added
to the library's ByteTrack:

- direction consistency (OC-SORT's OCM, Cao et al. 2023): inside the IoU gate, a match
  gains when the step from the track's last observed box to the detection points the way the
  track was observed to walk, and loses when it points back;
- confidence-scaled measurement noise (NSA Kalman, GIAOTracker / StrongSORT): a less
  confident box is a noisier measurement, so an occluded or merged box moves the filter less.

And one guard of our own against a track sliding onto a passer-by: when two people overlap
the detector often gives one box for both. The track that wins that box keeps it (it is
still matched and shown), but while the box is larger than its own prediction and covers
most of that of a confirmed track left without a detection, it is the pair's box, not this
person's: the winner's filter
coasts on its own motion instead of taking it (at most ``HOLD_MAX_S``), so when the two
part, each prediction is where its own person went. (On the sample video the merged box
of a pair walking opposite ways dragged one track onto the other person.)

Measured on the sample video (tests/data/tracking, dev / held-out halves), see the README.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker
from trackers.core.bytetrack.tracklet import ByteTrackTracklet
from trackers.utils.iou import BaseIoU, IoU
from trackers.utils.predict_timing import FIXED_RATE_TIMING, PredictTiming

# OC-SORT's angle term spans +-1/2; its weight against IoU (OC-SORT uses 0.2 times the
# detection score). 0.3 to 0.8 scored the same on the sample video; 0.2 lost the gain.
DIRECTION_WEIGHT = 0.3
DIRECTION_SPAN_FRAMES = 3.0  # direction between observations this many camera frames apart
HISTORY = 8  # observations kept per track (covers the span at detect_every 1-3)
# NSA: measurement noise scales with (1 - confidence), equal to the library's own at this
# confidence (about the detector's median on people, 0.78 on the sample video).
NSA_REFERENCE_CONFIDENCE = 0.8
NSA_MIN = 0.05  # (1 - confidence) floor: no box is a perfect measurement
HOLD_MAX_S = 1.0  # a track coasts through a shared box at most this long, then takes it
PAIR_COVER = 0.5  # a shared box covers more than this share of the missed track's box


class ObservedTracklet(ByteTrackTracklet):
    """A ByteTrack tracklet that remembers its recent observations (camera-frame clock)."""

    def __init__(self, initial_bbox: np.ndarray, noise: Callable[[np.ndarray], float]) -> None:
        super().__init__(initial_bbox)
        self._noise = noise
        self._base_noise = self.state_estimator.kf.measurement_noise.copy()
        self.clock = 0.0  # motion-model steps since birth
        self.observations: deque[tuple[float, np.ndarray]] = deque(maxlen=HISTORY)
        self.observations.append((0.0, np.asarray(initial_bbox, np.float64)))
        # The box matched in this update, applied to the filter once every track's match is
        # known (``settle``): the filter is not read between matching and then.
        self.matched: np.ndarray | None = None
        self.held_since: float | None = None  # clock when it began coasting through a box

    def predict(self, timing: PredictTiming = FIXED_RATE_TIMING) -> np.ndarray:
        self.clock += timing.frame_step
        return super().predict(timing)

    def update(self, bbox: np.ndarray) -> None:
        """Matched: count it as the library does; the filter takes the box in ``settle``."""
        self.time_since_update = 0
        self.time_since_update_seconds = 0.0
        self.number_of_successful_consecutive_updates += 1
        self.matched = np.asarray(bbox)

    def settle(self, hold: bool) -> None:
        """Apply this update's box to the filter, or coast through it (``hold``)."""
        if self.matched is None:
            return
        bbox, self.matched = self.matched, None
        if hold:
            if self.held_since is None:
                self.held_since = self.clock
            return
        self.held_since = None
        self.state_estimator.kf.measurement_noise = self._base_noise * self._noise(bbox)
        self.state_estimator.update(bbox)
        self.observations.append((self.clock, np.asarray(bbox, np.float64)))

    def direction(self) -> np.ndarray | None:
        """Unit vector of the box centre's observed motion over about
        ``DIRECTION_SPAN_FRAMES``, or None while the track has not moved."""
        if len(self.observations) < 2:
            return None
        t_last, last = self.observations[-1]
        old = self.observations[0][1]
        for t, box in self.observations:
            if t_last - t < DIRECTION_SPAN_FRAMES - 1e-6:
                break
            old = box
        d = _centre(last) - _centre(old)
        norm = float(np.hypot(*d))
        return d / norm if norm > 1e-6 else None


def _area(box: np.ndarray) -> np.ndarray:
    return np.maximum(box[..., 2] - box[..., 0], 0) * np.maximum(box[..., 3] - box[..., 1], 0)


def _holds_pair(box: np.ndarray, own: np.ndarray, missed: np.ndarray) -> bool:
    """A box of two people: larger than the track's own prediction and covering most of a
    missed track's. (A person's own box next to a missed neighbour covers at most about
    half of the neighbour's: that one is simply not detected, and the box is taken.)"""
    b = np.asarray(box, np.float64)
    if _area(b) <= _area(np.asarray(own, np.float64)):
        return False
    iw = np.minimum(b[2], missed[:, 2]) - np.maximum(b[0], missed[:, 0])
    ih = np.minimum(b[3], missed[:, 3]) - np.maximum(b[1], missed[:, 1])
    covered = np.maximum(iw, 0) * np.maximum(ih, 0) / np.maximum(_area(missed), 1e-6)
    return bool(covered.max() > PAIR_COVER)


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)


class _DirectionIoU(BaseIoU):
    """IoU gate, and inside it IoU plus the direction term, for ByteTrack's assignment.

    The library hands only predicted boxes to the similarity; rows are mapped back to their
    tracks by the exact predicted box (computed the same way just before).
    """

    def __init__(self, tracker: CrossingTracker) -> None:
        self.tracker = tracker
        self.base = IoU()

    def _compute(self, boxes_1: np.ndarray, boxes_2: np.ndarray) -> np.ndarray:
        return self.compute(boxes_1, boxes_2)

    def compute(self, boxes_1: np.ndarray, boxes_2: np.ndarray) -> np.ndarray:
        iou = self.base.compute(boxes_1, boxes_2)
        if iou.size == 0:
            return iou
        score = iou.copy()
        weight = self.tracker.direction_weight
        if weight > 0:
            centres = np.stack(
                [(boxes_2[:, 0] + boxes_2[:, 2]) / 2, (boxes_2[:, 1] + boxes_2[:, 3]) / 2], 1
            )
            for i, track in enumerate(self.tracker.rows_for(boxes_1)):
                v = track.direction() if track is not None else None
                if v is None:
                    continue
                step = centres - _centre(track.observations[-1][1])
                norm = np.hypot(step[:, 0], step[:, 1])
                cos = np.where(norm > 1e-6, (step @ v) / np.maximum(norm, 1e-6), 1.0)
                angle = np.arccos(np.clip(cos, -1.0, 1.0))
                score[i] += weight * (math.pi / 2 - angle) / math.pi
        # The library gates on the returned value: keep its gate on IoU alone (inside the
        # gate every pair scores above it, outside below it; the +1 only ranks).
        gate = self.tracker.minimum_iou_threshold
        return np.where(iou >= gate, 1.0 + score, np.minimum(iou, gate - 1e-6))


class CrossingTracker(ByteTrackTracker):
    """ByteTrack with OC-SORT's direction consistency, NSA measurement noise and coasting
    through a box shared with a missed track (``hold``)."""

    tracker_id = "bytetrack_crossing"
    search_space: ClassVar[dict[str, dict]] = {}  # not for the library's tuner

    def __init__(
        self,
        *,
        direction_weight: float = DIRECTION_WEIGHT,
        nsa: bool = True,
        hold: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if direction_weight < 0:
            raise ValueError(f"direction_weight must be >= 0, got {direction_weight}")
        self.direction_weight = direction_weight
        self.nsa = nsa
        self.hold = hold
        self.iou = _DirectionIoU(self)
        self.base_iou = IoU()
        self._confidence: dict[bytes, float] = {}

    def update(
        self,
        detections: sv.Detections,
        frame: np.ndarray | None = None,
        timestamp: float | None = None,
    ) -> sv.Detections:
        # The library passes tracklets a detection's box only; find its confidence by box.
        if detections.confidence is None:
            self._confidence = {}
        else:
            self._confidence = {
                np.asarray(b).tobytes(): float(c)
                for b, c in zip(detections.xyxy, detections.confidence, strict=True)
            }
        out = super().update(detections, frame, timestamp)
        self._settle()
        return out

    def _settle(self) -> None:
        """Each matched track takes its box, unless the box also covers the prediction of a
        confirmed track that got none: then it is the pair's, and the track coasts."""
        tracks = [t for t in self.tracks if isinstance(t, ObservedTracklet)]
        missed = [
            t for t in tracks if t.matched is None and t.tracker_id >= 0 and t.time_since_update
        ]
        missed_boxes = (
            np.array([t.get_state_bbox() for t in missed], np.float64).reshape(-1, 4)
            if missed
            else np.empty((0, 4))
        )
        limit = HOLD_MAX_S * self._frame_rate
        for track in tracks:
            if track.matched is None:
                continue
            hold = False
            if len(missed_boxes) and self.hold:
                within = track.held_since is None or track.clock - track.held_since < limit
                hold = within and _holds_pair(track.matched, track.get_state_bbox(), missed_boxes)
            track.settle(hold)

    def _noise(self, box: np.ndarray) -> float:
        if not self.nsa:
            return 1.0
        c = self._confidence.get(np.asarray(box).tobytes(), NSA_REFERENCE_CONFIDENCE)
        return max(1.0 - c, NSA_MIN) / (1.0 - NSA_REFERENCE_CONFIDENCE)

    def rows_for(self, boxes: np.ndarray) -> list[ObservedTracklet | None]:
        """The tracks whose current predicted boxes are ``boxes`` (None: not ours)."""
        lookup = {np.asarray(t.get_state_bbox(), np.float64).tobytes(): t for t in self.tracks}
        return [lookup.get(np.asarray(b, np.float64).tobytes()) for b in boxes]

    def _spawn_new_tracks(
        self,
        detection_boxes: np.ndarray,
        confidences: np.ndarray,
        unmatched_high_local: list[int],
        high_indices: np.ndarray,
        out_det_indices: list[int],
        out_tracker_ids: list[int],
    ) -> None:
        """The library's, with tracklets that keep their observations."""
        for det_local_idx in unmatched_high_local:
            global_idx = int(high_indices[det_local_idx])
            out_det_indices.append(global_idx)
            out_tracker_ids.append(-1)
            if float(confidences[global_idx]) >= self.track_activation_threshold:
                tracklet = ObservedTracklet(detection_boxes[global_idx], self._noise)
                self.tracks.append(tracklet)
