"""Output layouts of the YOLO families we run, and how each is decoded to person boxes.

Every decoder takes one image's raw output and returns ``(xyxy, scores)`` for the person
class in model-input pixels, already filtered by the confidence threshold and before NMS.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

YOLOX_STRIDES = (8, 16, 32)


class Layout(StrEnum):
    ULTRALYTICS = "ultralytics"  # 1 x (4+nc) x N: cx, cy, w, h, class scores
    END_TO_END = "end2end"  # 1 x K x 6: x1, y1, x2, y2, score, class (NMS inside the model)
    YOLOX = "yolox"  # 1 x N x (5+nc): grid offsets, log sizes, objectness, class scores

    @property
    def needs_nms(self) -> bool:
        return self is not Layout.END_TO_END

    @property
    def centered_letterbox(self) -> bool:
        return self is not Layout.YOLOX

    @property
    def rgb_unit_scale(self) -> bool:
        """ultralytics models take RGB in [0, 1]; YOLOX takes BGR in [0, 255]."""
        return self is not Layout.YOLOX


def anchor_count(width: int, height: int, strides: tuple[int, ...] = YOLOX_STRIDES) -> int:
    return sum((width // s) * (height // s) for s in strides)


@dataclass(frozen=True)
class LayoutGuess:
    layout: Layout
    classes: int  # number of classes the output carries (end-to-end: unknown, 0)


def identify_layout(
    shape: tuple[int, ...], width: int, height: int, *, end2end_hint: bool
) -> LayoutGuess | None:
    """Tell the layout from the output shape of one inference at ``width`` x ``height``.

    Anchor-based heads have one row per grid cell over strides 8/16/32, which separates the
    channel-first ultralytics head from the row-major YOLOX head even when they have the same
    number of classes. ``end2end_hint`` comes from ultralytics metadata (``end2end: True``).
    """
    if len(shape) != 3:
        return None
    _, d1, d2 = shape
    anchors = anchor_count(width, height)
    if end2end_hint and d2 == 6:
        return LayoutGuess(Layout.END_TO_END, 0)
    if d2 == anchors and d1 >= 5:
        return LayoutGuess(Layout.ULTRALYTICS, d1 - 4)
    if d1 == anchors and d2 >= 6:
        return LayoutGuess(Layout.YOLOX, d2 - 5)
    if d2 == 6:
        return LayoutGuess(Layout.END_TO_END, 0)
    return None


class YoloxGrid:
    """Grid cell offsets and strides of a YOLOX head, computed once per input size."""

    def __init__(self, width: int, height: int, strides: tuple[int, ...] = YOLOX_STRIDES) -> None:
        cells, scale = [], []
        for s in strides:
            gy, gx = np.meshgrid(np.arange(height // s), np.arange(width // s), indexing="ij")
            cells.append(np.stack((gx, gy), axis=-1).reshape(-1, 2))
            scale.append(np.full((cells[-1].shape[0], 1), s))
        self.cells = np.concatenate(cells).astype(np.float32)
        self.strides = np.concatenate(scale).astype(np.float32)


def decode_yolox(
    out: np.ndarray, grid: YoloxGrid, person: int, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    scores = out[:, 4] * out[:, 5 + person]
    keep = np.flatnonzero(scores >= confidence)
    rows = out[keep]
    centre = (rows[:, 0:2] + grid.cells[keep]) * grid.strides[keep]
    size = np.exp(np.minimum(rows[:, 2:4], 20.0)) * grid.strides[keep]  # clamp: exp overflow
    return np.concatenate((centre - size / 2, centre + size / 2), axis=1), scores[keep]


def decode_ultralytics(
    out: np.ndarray, person: int, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    scores = out[4 + person]
    keep = np.flatnonzero(scores >= confidence)
    cx, cy, w, h = out[0:4, keep]
    xyxy = np.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), axis=1)
    return xyxy, scores[keep]


def decode_end_to_end(
    out: np.ndarray, person: int, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    keep = np.flatnonzero((out[:, 4] >= confidence) & (np.rint(out[:, 5]) == person))
    return out[keep, 0:4], out[keep, 4]
