"""Counting lines: which side of a segment a person's feet are on, with a dead band.

Line side of one person (``d`` = signed distance of the anchor from the line, pixels)::

    UNKNOWN --d beyond +band or -band--> that SIDE
    SIDE --d beyond the band on the other side--> other SIDE   counts a crossing
    SIDE --inside the band--> SIDE (no change: jitter on the line never counts)
    any --anchor beyond the segment's ends--> UNKNOWN    (walking around the end is no crossing)

Sides are named as seen on the image looking from ``a`` to ``b`` with y pointing down: with
``a`` left of ``b`` on a horizontal line, "left" is above it. A crossing into the line's
``in_side`` is direction "in", the other way "out".
"""

from __future__ import annotations

import math
from typing import Literal

from storelens.edge.config import LineConfig

Side = Literal["left", "right"]
Direction = Literal["in", "out"]


class CountingLine:
    def __init__(self, config: LineConfig) -> None:
        self.config = config
        self.name = config.name
        (ax, ay), (bx, by) = config.a, config.b
        self._a = (ax, ay)
        self._d = (bx - ax, by - ay)
        self._len = math.hypot(*self._d)

    def measure(self, point: tuple[float, float]) -> tuple[float, float]:
        """(signed distance in pixels, negative = left; position along the segment 0..1)."""
        px, py = point[0] - self._a[0], point[1] - self._a[1]
        dx, dy = self._d
        cross = dx * py - dy * px
        along = (dx * px + dy * py) / (self._len * self._len)
        return cross / self._len, along

    def side_of(self, point: tuple[float, float]) -> Side | None:
        """The side beyond the dead band, or None inside the band or past the segment's ends."""
        dist, along = self.measure(point)
        if not 0.0 <= along <= 1.0:
            return None
        if dist < -self.config.band_px:
            return "left"
        if dist > self.config.band_px:
            return "right"
        return None


class LineSide:
    """One person's side of one line (see the module docstring)."""

    def __init__(self, line: CountingLine) -> None:
        self.line = line
        self.side: Side | None = None

    def observe(self, point: tuple[float, float]) -> Direction | None:
        dist, along = self.line.measure(point)
        if not 0.0 <= along <= 1.0:
            self.side = None
            return None
        new = self.line.side_of(point)
        if new is None:
            return None  # in the dead band: keep the last side
        old, self.side = self.side, new
        if old is None or old == new:
            return None
        return "in" if new == self.line.config.in_side else "out"
