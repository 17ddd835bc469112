"""Health numbers of one camera's pipeline, published by the agent in its device status."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from storelens.contract.events import CameraStatus


@dataclass
class CameraStats:
    """Health numbers the agent publishes in its device status."""

    camera: str
    frames: int = 0
    fps: float = 0.0
    inference_ms: float = 0.0
    dropped_frames: int = 0
    _last_wall: float | None = field(default=None, repr=False)

    def note_frame(self) -> None:
        now = time.perf_counter()
        if self._last_wall is not None and now > self._last_wall:
            rate = 1.0 / (now - self._last_wall)
            self.fps = rate if self.fps == 0 else 0.9 * self.fps + 0.1 * rate
        self._last_wall = now
        self.frames += 1

    def note_inference(self, ms: float) -> None:
        """Inference time per frame (the caller times detection, which happens outside)."""
        self.inference_ms = ms if self.inference_ms == 0 else 0.9 * self.inference_ms + 0.1 * ms

    def note_dropped(self, frames: int = 1) -> None:
        self.dropped_frames += frames

    def status(self, online: bool = True) -> CameraStatus:
        return CameraStatus(
            camera=self.camera,
            online=online,
            fps=round(self.fps, 2),
            inference_ms=round(self.inference_ms, 2),
            dropped_frames=self.dropped_frames,
        )
