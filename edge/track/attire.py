"""Coarse clothing colour names (upper/lower body) computed on the device.

Only a colour *name* per body part ever leaves the function: no pixels, crops or
histograms. It helps staff pick the right person out of a crowd, nothing more.
"""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np

# Hue bands on OpenCV's 0-180 scale; the upper bound of each band, in order.
_HUES = (
    (8, "red"),
    (22, "orange"),
    (34, "yellow"),
    (85, "green"),
    (130, "blue"),
    (160, "purple"),
    (180, "red"),
)
MIN_BOX_HEIGHT = 48  # smaller people give colours of the background, not of the clothes


def colour_name(bgr: np.ndarray) -> str:
    """Name of the dominant colour of a BGR patch (median in HSV, then fixed bands)."""
    hsv = cv2.cvtColor(bgr.reshape(-1, 1, 3), cv2.COLOR_BGR2HSV).reshape(-1, 3)
    h, s, v = (float(np.median(hsv[:, i])) for i in range(3))
    if v < 50:
        return "black"
    if s < 40:
        return "white" if v > 190 else "grey"
    if 8 < h <= 22 and v < 150:
        return "brown"
    if h > 160 and v > 150 and s < 150:
        return "pink"
    return next(name for top, name in _HUES if h <= top)


def body_parts(
    frame: np.ndarray, xyxy: np.ndarray, min_height: int = MIN_BOX_HEIGHT
) -> tuple[np.ndarray, np.ndarray] | None:
    """Views (not copies) of the torso and legs of the person in ``xyxy``, or None if the
    box is smaller than ``min_height`` px or mostly outside the frame."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in xyxy)
    h_img, w_img = frame.shape[:2]
    x1, x2 = max(0, x1), min(w_img, x2)
    y1, y2 = max(0, y1), min(h_img, y2)
    h, w = y2 - y1, x2 - x1
    if h < min_height or w < 8:
        return None
    # Central half of the width: keeps background between the arms and legs out.
    cx1, cx2 = x1 + w // 4, x2 - w // 4
    upper = frame[y1 + int(0.22 * h) : y1 + int(0.48 * h), cx1:cx2]
    lower = frame[y1 + int(0.58 * h) : y1 + int(0.85 * h), cx1:cx2]
    if upper.size == 0 or lower.size == 0:
        return None
    return upper, lower


def attire_of(frame: np.ndarray, xyxy: np.ndarray) -> dict[str, str] | None:
    """Upper and lower body colour names of the person in ``xyxy``, or None if too small."""
    parts = body_parts(frame, xyxy)
    if parts is None:
        return None
    upper, lower = parts
    return {"upper": colour_name(upper), "lower": colour_name(lower)}


class AttireVotes:
    """Majority vote over a few samples of one visit: a single frame can be misleading."""

    def __init__(self, max_samples: int = 7) -> None:
        self.max_samples = max_samples
        self._upper: Counter[str] = Counter()
        self._lower: Counter[str] = Counter()

    @property
    def full(self) -> bool:
        return self._upper.total() >= self.max_samples

    def add(self, names: dict[str, str]) -> None:
        self._upper[names["upper"]] += 1
        self._lower[names["lower"]] += 1

    def result(self) -> dict[str, str] | None:
        if not self._upper:
            return None
        return {
            "upper": self._upper.most_common(1)[0][0],
            "lower": self._lower.most_common(1)[0][0],
        }
