"""MOTChallenge text output: one line per confirmed track per frame, scored by standard tools.

Line format: ``frame,id,x,y,w,h,conf,-1,-1,-1`` with frames counted from 1 and boxes in
pixels (top-left corner, width, height). IDs are tracker numbers + 1: MOT IDs start at 1.
These files stay on the analysing machine; they are never published.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from storelens.edge.track.tracker import TrackedPerson


def mot_row(frame: int, person: TrackedPerson) -> str:
    if frame < 1:
        raise ValueError("MOT frames are counted from 1")
    x1, y1, x2, y2 = (float(v) for v in person.xyxy)
    return (
        f"{frame},{person.track_id + 1},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
        f"{person.confidence:.4f},-1,-1,-1"
    )


class MotWriter:
    """Writes rows in frame order even when some arrive late (tracks confirmed afterwards).

    Rows are held for ``window`` frames, then written sorted by frame and ID. With
    ``fill_gaps`` > 0, a track missing for up to that many frames between two sightings gets
    linearly interpolated boxes for the frames in between (the standard offline treatment of
    short occlusions; the person was there, only hidden).
    """

    def __init__(self, path: str | Path, window: int = 256, fill_gaps: int = 0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = self.path.open("w")
        self.window = window
        self.fill_gaps = fill_gaps
        self._last: dict[int, tuple[int, TrackedPerson]] = {}  # track -> latest sighting
        self.filled = 0
        self._held: dict[int, list[tuple[int, str]]] = {}
        self._latest = 0
        self._written_up_to = 0
        self.rows = 0
        self.dropped = 0  # rows that came later than the window (not written)

    def write(self, frame: int, people: Iterable[TrackedPerson]) -> None:
        if frame <= self._written_up_to:
            self.dropped += sum(1 for _ in people)
            return
        rows = self._held.setdefault(frame, [])
        for person in people:
            rows.append((person.track_id, mot_row(frame, person)))
            self._fill(frame, person)
        if frame > self._latest:
            self._latest = frame
            self._flush(self._latest - self.window)

    def _fill(self, frame: int, person: TrackedPerson) -> None:
        last = self._last.get(person.track_id)
        if last is None or frame > last[0]:
            self._last[person.track_id] = (frame, person)
        if last is None or not 1 < frame - last[0] <= self.fill_gaps + 1:
            return
        before_frame, before = last
        for missing in range(before_frame + 1, frame):
            if missing <= self._written_up_to:
                continue
            w = (missing - before_frame) / (frame - before_frame)
            box = (1 - w) * before.xyxy + w * person.xyxy
            conf = min(before.confidence, person.confidence)
            filler = TrackedPerson(person.track_id, box, conf)
            self._held.setdefault(missing, []).append((person.track_id, mot_row(missing, filler)))
            self.filled += 1

    def _flush(self, up_to: int) -> None:
        for frame in sorted(f for f in self._held if f <= up_to):
            for _, row in sorted(self._held.pop(frame)):
                self._file.write(row + "\n")
                self.rows += 1
            self._written_up_to = max(self._written_up_to, frame)

    def close(self) -> None:
        self._flush(self._latest)
        self._file.close()

    def __enter__(self) -> MotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
