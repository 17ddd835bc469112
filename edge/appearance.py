"""What a person looks like, for telling them from others after an occlusion: in memory only.

A descriptor is a colour histogram (hue-saturation, plus value for the greys) of the torso and
of the legs, the body parts ``attire.body_parts`` finds, and a histogram of edge orientations
of the whole box (texture: stripes, checks, a plain coat). It never leaves the process: no
event, outbox row, log line or file carries it (tests/test_privacy.py checks every payload),
and the tracker drops it with the track. A few hundred floats, a few tens of microseconds.
"""

from __future__ import annotations

import cv2
import numpy as np

from storelens.edge.attire import body_parts

MIN_HEIGHT = 32  # px: smaller boxes show more background than clothes
_HS_BINS = (8, 4)  # hue x saturation
_V_BINS = 4  # value (brightness): tells black, grey and white apart
_ORIENT_BINS = 8
_PARTS_WEIGHT = 0.8  # colour of the two parts vs texture of the whole box


def describe(frame: np.ndarray, xyxy: np.ndarray) -> np.ndarray | None:
    """The descriptor of the person in ``xyxy`` (float32, sums to 1), None if too small."""
    parts = body_parts(frame, xyxy, MIN_HEIGHT)
    if parts is None:
        return None
    pieces = [_colour(part) * (_PARTS_WEIGHT / 2) for part in parts]
    pieces.append(_texture(np.vstack(parts)) * (1 - _PARTS_WEIGHT))
    return np.concatenate(pieces).astype(np.float32)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Hellinger distance of two descriptors: 0 identical, 1 nothing in common."""
    return float(np.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(a * b))))))


def blend(old: np.ndarray | None, new: np.ndarray, weight: float = 0.3) -> np.ndarray:
    """Running mean of a track's descriptors (light changes, pose)."""
    return new if old is None else ((1 - weight) * old + weight * new).astype(np.float32)


def _colour(bgr: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2HSV)
    hs = cv2.calcHist([hsv], [0, 1], None, list(_HS_BINS), [0, 180, 0, 256]).ravel()
    v = cv2.calcHist([hsv], [2], None, [_V_BINS], [0, 256]).ravel()
    hist = np.concatenate((hs, v))
    return hist / max(float(hist.sum()), 1.0)


def _texture(bgr: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2GRAY)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    magnitude, angle = cv2.cartToPolar(gx, gy)
    bins = (angle.ravel() % np.pi) / np.pi * _ORIENT_BINS
    hist = np.bincount(
        np.minimum(bins.astype(int), _ORIENT_BINS - 1),
        weights=magnitude.ravel(),
        minlength=_ORIENT_BINS,
    )
    return hist / max(float(hist.sum()), 1e-6)
