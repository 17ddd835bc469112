"""An annotated copy of a video: boxes, track IDs, zones, lines and recent paths drawn.

For people setting up a camera (does the zone sit where shoppers stand?). It stays on the
machine that runs the analysis; nothing here is published.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import cv2
import numpy as np

from storelens.edge.config import CameraConfig
from storelens.edge.track.tracker import TrackedPerson

TRAIL = 40  # frames of path shown behind each person
_ZONE = (60, 200, 60)
_LINE = (220, 0, 220)


def _colour(track_id: int) -> tuple[int, int, int]:
    hue = (track_id * 47) % 180  # spread neighbouring IDs over the hue circle
    hsv = np.uint8([[[hue, 220, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


class VideoAnnotator:
    def __init__(self, path: str | Path, fps: float, camera: CameraConfig) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.camera = camera
        self._writer: cv2.VideoWriter | None = None
        self._trails: dict[int, deque[tuple[int, int]]] = {}

    def _open(self, frame: np.ndarray) -> cv2.VideoWriter:
        h, w = frame.shape[:2]
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        if not writer.isOpened():
            raise OSError(f"cannot write video {self.path}")
        return writer

    def write(self, frame: np.ndarray, people: list[TrackedPerson]) -> None:
        if self._writer is None:
            self._writer = self._open(frame)
        out = frame.copy()
        for zone in self.camera.zones:
            pts = np.asarray(zone.points, np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [pts], True, _ZONE, 2)
            cv2.putText(out, zone.name, tuple(pts[0, 0]), cv2.FONT_HERSHEY_SIMPLEX, 0.5, _ZONE, 2)
        for line in self.camera.lines:
            a, b = tuple(map(int, line.a)), tuple(map(int, line.b))
            cv2.line(out, a, b, _LINE, 3)
            cv2.putText(out, line.name, a, cv2.FONT_HERSHEY_SIMPLEX, 0.5, _LINE, 2)
        for person in people:
            colour = _colour(person.track_id)
            x1, y1, x2, y2 = (int(v) for v in person.xyxy)
            cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
            label = f"#{person.track_id + 1}"
            cv2.putText(out, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 2)
            ax, ay = person.anchor
            trail = self._trails.setdefault(person.track_id, deque(maxlen=TRAIL))
            trail.append((int(ax), int(ay)))
        live = {p.track_id for p in people}
        for track_id, trail in list(self._trails.items()):
            if track_id not in live and len(trail) > 0:
                trail.popleft()  # fade out the trail of someone no longer seen
            if not trail:
                del self._trails[track_id]
                continue
            pts = np.asarray(trail, np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [pts], False, _colour(track_id), 2)
        self._writer.write(out)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
