"""Multi-person tracking: a small interface over roboflow `trackers` (ByteTrack or OC-SORT).

Times are in seconds from the frame timestamps, so the lost-track buffer and the Kalman
steps stay right when the source drops frames or runs at a different rate than planned.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import supervision as sv
from storelens.edge.config import TrackerConfig
from storelens.edge.detect import Detections
from trackers import ByteTrackTracker, OCSORTTracker

# `trackers` counts its lost buffer in frames at 30 fps and converts with the real rate.
_TRACKERS_REFERENCE_FPS = 30.0


@dataclass(frozen=True)
class TrackedPerson:
    """A confirmed track seen in the current frame (box from the matched detection)."""

    track_id: int
    xyxy: np.ndarray  # float32 [x1, y1, x2, y2] in frame pixels
    confidence: float

    @property
    def anchor(self) -> tuple[float, float]:
        """Bottom-centre of the box: where the feet touch the floor."""
        x1, _, x2, y2 = self.xyxy
        return float((x1 + x2) / 2), float(y2)


def confirm_frames(confirm_s: float, fps: float) -> int:
    """Consecutive detections a new track needs before it counts (at least 2: no ghosts)."""
    return max(2, math.ceil(confirm_s * fps - 1e-9))


class PersonTracker:
    """Assigns persistent IDs to person detections; only confirmed tracks come out.

    A track is confirmed once it has been matched on ``confirm_s`` worth of consecutive frames;
    a confirmed track survives ``lost_track_buffer_s`` without detections (occlusions).
    """

    def __init__(self, config: TrackerConfig, fps: float) -> None:
        if not fps > 0:
            raise ValueError(f"tracker needs a positive frame rate, got {fps}")
        self.config = config
        self.fps = fps
        buffer = max(1, round(config.lost_track_buffer_s * _TRACKERS_REFERENCE_FPS))
        common = {
            "lost_track_buffer": buffer,
            "frame_rate": fps,
            "minimum_consecutive_frames": confirm_frames(config.confirm_s, fps),
            "minimum_iou_threshold": config.match_iou,
            "high_conf_det_threshold": config.high_confidence,
        }
        if config.type == "ocsort":
            self._tracker: ByteTrackTracker | OCSORTTracker = OCSORTTracker(**common)
        else:
            self._tracker = ByteTrackTracker(
                track_activation_threshold=config.high_confidence, **common
            )
        self._last_t: float | None = None

    def update(self, detections: Detections, t: float) -> list[TrackedPerson]:
        """Feed one frame's detections at time ``t`` (seconds, non-decreasing)."""
        if self._last_t is not None and t <= self._last_t:
            # Equal or backward timestamps would make the library skip or warn; nudge forward.
            t = self._last_t + 1e-3
        self._last_t = t
        sv_dets = sv.Detections(
            xyxy=detections.xyxy.astype(np.float32, copy=False),
            confidence=detections.confidence.astype(np.float32, copy=False),
            class_id=np.zeros(len(detections), dtype=int),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = self._tracker.update(sv_dets, timestamp=t)
        if out.tracker_id is None:
            return []
        conf = out.confidence if out.confidence is not None else np.ones(len(out))
        return [
            TrackedPerson(int(tid), out.xyxy[i].astype(np.float32), float(conf[i]))
            for i, tid in enumerate(out.tracker_id)
            if tid >= 0
        ]

    def alive_ids(self) -> set[int]:
        """Confirmed tracks the tracker still keeps (seen, or lost within the buffer)."""
        return {int(t.tracker_id) for t in self._tracker.tracks if t.tracker_id >= 0}

    def reset(self) -> None:
        self._tracker.reset()
        self._last_t = None
