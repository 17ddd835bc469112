"""Frame sources: video files, RTSP/HTTP streams and USB cameras, with frame timestamps.

Files get timestamps from their frame rate (the container's, or ``source_fps``), counted from
the moment the file was opened, so analysis is reproducible and time-true even when it runs
faster than real time. Live sources are stamped with the wall clock at capture.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from storelens.assets import AssetError, resolve
from storelens.edge.config import CameraConfig

FALLBACK_FPS = 10.0  # containers that report no rate (0 or nonsense)


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message names the source."""


def _is_live(source: str) -> bool:
    return source.isdigit() or "://" in source


class FrameSource:
    """Iterates ``(frame_bgr, ts)``; ``ts`` is a timezone-aware UTC datetime."""

    def __init__(
        self,
        source: str,
        *,
        source_fps: float | None = None,
        target_fps: float | None = None,
        loop: bool = False,
        realtime: bool = False,
        start: datetime | None = None,
        crop: Sequence[int] | None = None,
    ) -> None:
        self.source = source
        self.crop = tuple(crop) if crop is not None else None
        self.live = _is_live(source)
        self.loop = loop and not self.live
        self.realtime = realtime and not self.live
        self._path = self._locate(source)
        self._cap = self._open()
        container_fps = self._cap.get(cv2.CAP_PROP_FPS)
        if not (0 < container_fps < 1000):
            container_fps = FALLBACK_FPS
        self.fps = source_fps or container_fps
        self.target_fps = target_fps if target_fps and target_fps < self.fps else None
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if self.crop is not None:
            x, y, w, h = self.crop
            if self.width and self.height and (x + w > self.width or y + h > self.height):
                self._cap.release()
                raise SourceError(
                    f"video source {source}: crop {list(self.crop)} exceeds the "
                    f"{self.width}x{self.height} frame"
                )
            self.width, self.height = w, h
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 and not self.live else None
        self.start = start or datetime.now(UTC)
        self.frames_read = 0  # decoded frames since opening (across loops)
        self.frames_skipped = 0  # left out to hold target_fps

    @staticmethod
    def _locate(source: str) -> str | int:
        if source.isdigit():
            return int(source)
        if "://" in source:
            return source
        try:
            path = resolve(source)
        except AssetError as exc:
            raise SourceError(f"video source {source}: {exc}") from None
        if not Path(path).is_file():
            raise SourceError(f"video source {source}: file not found ({path})")
        return str(path)

    def _open(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self._path)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"video source {self.source}: cannot open (not a video or offline)")
        return cap

    @property
    def frame_period(self) -> float:
        return 1.0 / self.fps

    def __iter__(self) -> Iterator[tuple[np.ndarray, datetime]]:
        index = 0  # frame position on the source's own clock, across loops
        next_keep = 0.0
        wall0 = time.monotonic()
        while True:
            ok, frame = self._cap.read()
            if not ok:
                if self.loop and index > 0:
                    self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, frame = self._cap.read()
                if not ok:
                    if self.live:
                        raise SourceError(f"video source {self.source}: stream stopped")
                    return
            self.frames_read += 1
            offset = index / self.fps
            index += 1
            if self.target_fps is not None:
                if offset + 1e-9 < next_keep:
                    self.frames_skipped += 1
                    continue
                next_keep += 1.0 / self.target_fps
            if self.live:
                ts = datetime.now(UTC)
            else:
                ts = self.start + timedelta(seconds=offset)
                if self.realtime:
                    delay = wall0 + offset - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            if self.crop is not None:
                x, y, w, h = self.crop
                frame = np.ascontiguousarray(frame[y : y + h, x : x + w])
            yield frame, ts

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(camera: CameraConfig, *, start: datetime | None = None) -> FrameSource:
    """Open a camera's source as configured (``source_fps``, ``fps``, ``loop``, ``realtime``)."""
    return FrameSource(
        camera.source,
        source_fps=camera.source_fps,
        target_fps=camera.fps,
        loop=camera.loop,
        realtime=camera.realtime,
        start=start,
        crop=camera.crop,
    )


__all__ = ["FrameSource", "SourceError", "open_source"]
