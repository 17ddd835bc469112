"""One camera's frames on a thread, handed to the shared inference loop one at a time.

The feed keeps a one-frame mailbox. Live cameras (and files paced in real time) overwrite an
unconsumed frame and count it as dropped, so a slow box sheds frames instead of building a
backlog and falling behind the present. Files played as fast as possible block instead, so
no frame is lost when analysing a recording.

A source that fails to open or stops delivering is reopened with exponential back-off; the
feed reports itself offline meanwhile and never takes the agent down.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

import numpy as np

from storelens.edge.config import CameraConfig

log = logging.getLogger(__name__)
Frame = tuple[np.ndarray, datetime]
REOPEN_MIN_S = 1.0
REOPEN_MAX_S = 30.0


def _is_live(source: str) -> bool:
    return source.isdigit() or "://" in source


class CameraFeed(threading.Thread):
    def __init__(
        self,
        camera: CameraConfig,
        ready: threading.Event,
        *,
        max_frames: int | None = None,
        opener: Callable[[CameraConfig], object] | None = None,
        reopen_min_s: float = REOPEN_MIN_S,
        reopen_max_s: float = REOPEN_MAX_S,
    ) -> None:
        super().__init__(name=f"camera-{camera.id}", daemon=True)
        self.camera = camera
        self.drop_when_busy = camera.realtime or _is_live(camera.source)
        self.max_frames = max_frames
        self._opener = opener
        self._ready = ready
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._stopping = threading.Event()
        self.reopen_min_s, self.reopen_max_s = reopen_min_s, reopen_max_s
        self.online = False
        self.error: str | None = None
        self.finished = False  # a file source reached its end (or max_frames)
        self.frames = 0
        self.dropped = 0
        self.reopens = 0

    def _open(self):
        if self._opener is not None:
            return self._opener(self.camera)
        from storelens.edge.sources.frames import open_source

        return open_source(self.camera)

    def run(self) -> None:
        delay = self.reopen_min_s
        while not self._stopping.is_set():
            source = None
            try:
                source = self._open()
                self.online, self.error = True, None
                for frame, ts in source:  # type: ignore[attr-defined]
                    delay = self.reopen_min_s  # it delivers: back to quick retries
                    if not self._put((frame, ts)) or self._stopping.is_set():
                        return
                    self.frames += 1
                    if self.max_frames is not None and self.frames >= self.max_frames:
                        break
                if not _is_live(self.camera.source):
                    self.finished = True
                    self.online = False
                    self._ready.set()
                    return
                raise RuntimeError("stream ended")
            except Exception as exc:  # any source failure: offline, reopen later
                self.online = False
                self.error = (str(exc) or type(exc).__name__)[:200]
                log.warning(
                    "camera %s offline (%s); reopening in %.0fs", self.camera.id, self.error, delay
                )
            finally:
                if source is not None and hasattr(source, "close"):
                    source.close()
            self.reopens += 1
            self._stopping.wait(delay)
            delay = min(delay * 2, self.reopen_max_s)

    def _put(self, item: Frame) -> bool:
        with self._cond:
            if self._slot is not None:
                if self.drop_when_busy:
                    self.dropped += 1
                else:
                    while self._slot is not None and not self._stopping.is_set():
                        self._cond.wait(0.5)
                    if self._stopping.is_set():
                        return False
            self._slot = item
        self._ready.set()
        return True

    def take(self) -> Frame | None:
        with self._cond:
            item, self._slot = self._slot, None
            if item is not None:
                self._cond.notify()
            return item

    @property
    def exhausted(self) -> bool:
        """Finished and its last frame taken."""
        return self.finished and self._slot is None

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self.is_alive():
            self.join(timeout)
