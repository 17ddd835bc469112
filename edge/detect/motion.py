"""Motion gating: skip person detection on frames where nothing in the view moved.

When the scene is still, the people in it are where they were, so the last detections are
reused instead of running the model. A detection still runs at least every ``refresh_s`` so
a slow drift or a lighting change cannot freeze the picture.
"""

from __future__ import annotations

import cv2
import numpy as np

GATE_WIDTH = 160  # a thumbnail is enough to see people move and costs ~0.1 ms


class MotionGate:
    def __init__(
        self, *, pixel_delta: int = 18, changed_fraction: float = 0.002, refresh_s: float = 1.0
    ) -> None:
        self.pixel_delta = pixel_delta
        self.changed_fraction = changed_fraction
        self.refresh_s = refresh_s
        self._reference: np.ndarray | None = None
        self._detected_t = -np.inf
        self.skipped = 0
        self.checked = 0

    def _thumb(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (GATE_WIDTH, max(1, h * GATE_WIDTH // w)))
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(grey, (5, 5), 0)

    def needs_detection(self, frame: np.ndarray, t: float) -> bool:
        """True when the frame differs from the last detected one, or the refresh is due."""
        self.checked += 1
        thumb = self._thumb(frame)
        moved = True
        if self._reference is not None and t - self._detected_t < self.refresh_s:
            diff = cv2.absdiff(thumb, self._reference)
            moved = np.count_nonzero(diff > self.pixel_delta) > self.changed_fraction * diff.size
        if moved:
            # Compare later frames with the one detections came from, not with the previous
            # frame: slow movement adds up instead of slipping under the threshold.
            self._reference = thumb
            self._detected_t = t
        else:
            self.skipped += 1
        return moved
