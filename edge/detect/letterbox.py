"""Letterbox pre-processing: fit a frame into the model's square input without distortion."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114  # grey used by both YOLOX and ultralytics training pipelines


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed in the model input, to map boxes back to frame pixels."""

    scale: float
    pad_x: float
    pad_y: float

    def to_frame(self, xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
        out = xyxy.astype(np.float32, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
        return out


def letterbox(
    frame: np.ndarray, size: tuple[int, int], *, centered: bool
) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to ``size`` (width, height).

    YOLOX pads at the bottom/right (image at the top-left corner); ultralytics centres the
    image. Using the wrong placement shifts every box, so the layout decides.
    """
    in_w, in_h = size
    h, w = frame.shape[:2]
    scale = min(in_w / w, in_h / h)
    new_w, new_h = round(w * scale), round(h * scale)
    resized = (
        frame
        if (new_w, new_h) == (w, h)
        else cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    dx, dy = in_w - new_w, in_h - new_h
    left, top = (dx // 2, dy // 2) if centered else (0, 0)
    padded = cv2.copyMakeBorder(
        resized, top, dy - top, left, dx - left, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    return padded, Letterbox(scale, float(left), float(top))
