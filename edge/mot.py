"""MOTChallenge text output: one line per confirmed track per frame, scored by standard tools.

Line format: ``frame,id,x,y,w,h,conf,-1,-1,-1`` with frames counted from 1 and boxes in
pixels (top-left corner, width, height). IDs are tracker numbers + 1: MOT IDs start at 1.
These files stay on the analysing machine; they are never published.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from storelens.edge.track import TrackedPerson


def mot_row(frame: int, person: TrackedPerson) -> str:
    if frame < 1:
        raise ValueError("MOT frames are counted from 1")
    x1, y1, x2, y2 = (float(v) for v in person.xyxy)
    return (
        f"{frame},{person.track_id + 1},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
        f"{person.confidence:.4f},-1,-1,-1"
    )


class MotWriter:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = self.path.open("w")
        self.rows = 0

    def write(self, frame: int, people: Iterable[TrackedPerson]) -> None:
        for person in people:
            self._file.write(mot_row(frame, person) + "\n")
            self.rows += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> MotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
