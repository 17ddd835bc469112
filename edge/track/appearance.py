"""What a person looks like, for telling two candidates apart at a camera hand-off.

Colour histograms (hue x saturation, HSV) of the upper and lower half of the person's box,
compared by Bhattacharyya distance (0: identical, 1: nothing in common). Deliberately coarse:
clothing colours, not a face or an identity, and it lives only in memory on the device: no
event field can hold it, nothing writes it to disk, and it is dropped when the visit ends.
"""

from __future__ import annotations

import cv2
import numpy as np

HUE_BINS, SAT_BINS = 12, 4
MIN_SIDE_PX = 12  # boxes smaller than this carry no usable colour
BLEND = 0.3  # weight of a new sample in the running descriptor


def describe(frame: np.ndarray, xyxy: tuple[float, float, float, float]) -> np.ndarray | None:
    """A normalised descriptor of the box's two halves, or None for a box too small to tell."""
    h, w = frame.shape[:2]
    x1, y1 = max(0, int(xyxy[0])), max(0, int(xyxy[1]))
    x2, y2 = min(w, int(xyxy[2])), min(h, int(xyxy[3]))
    if x2 - x1 < MIN_SIDE_PX or y2 - y1 < 2 * MIN_SIDE_PX:
        return None
    hsv = cv2.cvtColor(frame[y1:y2, x1:x2], cv2.COLOR_BGR2HSV)
    mid = (y2 - y1) // 2
    parts = []
    for half in (hsv[:mid], hsv[mid:]):
        hist = cv2.calcHist([half], [0, 1], None, [HUE_BINS, SAT_BINS], [0, 180, 0, 256])
        parts.append(cv2.normalize(hist, None, 1.0, 0.0, cv2.NORM_L1).ravel())
    return np.concatenate(parts).astype(np.float32)


def blend(old: np.ndarray | None, new: np.ndarray | None) -> np.ndarray | None:
    if new is None:
        return old
    if old is None:
        return new
    return ((1 - BLEND) * old + BLEND * new).astype(np.float32)


def distance(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Bhattacharyya distance of two descriptors (mean of the halves), None when unknown."""
    if a is None or b is None:
        return None
    half = len(a) // 2
    return float(
        (
            cv2.compareHist(a[:half], b[:half], cv2.HISTCMP_BHATTACHARYYA)
            + cv2.compareHist(a[half:], b[half:], cv2.HISTCMP_BHATTACHARYYA)
        )
        / 2
    )
