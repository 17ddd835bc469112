"""Learned static objects: places where the detector sees a "person" that never moves."""

from __future__ import annotations

import numpy as np


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each row of ``boxes``."""
    if len(boxes) == 0:
        return np.empty((0,), np.float32)
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


class StaticObjects:
    """Places where the detector sees a "person" that never moves (sign, mannequin, poster).

    Learned online from tracks that stayed unmoved for ``AFTER_S``. A confirmed track that
    lands on one (a walker's ID taken over by the sign as they pass) is the object, not a
    person, while it sits there. A place nothing sat on for ``FORGET_S`` is forgotten.
    """

    AFTER_S = 10.0
    FORGET_S = 30.0  # short: a shopper standing where one was learned is hidden only briefly
    IOU = 0.5

    def __init__(self) -> None:
        self.boxes = np.empty((0, 4), np.float32)
        self._seen = np.empty((0,), np.float64)

    def learn(self, box: np.ndarray, t: float) -> None:
        if not self.touch(box, t):
            self.boxes = np.vstack((self.boxes, box[None]))
            self._seen = np.append(self._seen, t)

    def touch(self, box: np.ndarray, t: float) -> bool:
        """True if ``box`` sits on a known static object (and keeps that object remembered)."""
        overlap = box_iou(box, self.boxes) >= self.IOU
        self._seen[overlap] = t
        return bool(overlap.any())

    def forget_old(self, t: float) -> None:
        keep = t - self._seen <= self.FORGET_S
        self.boxes, self._seen = self.boxes[keep], self._seen[keep]
