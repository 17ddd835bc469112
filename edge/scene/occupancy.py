"""When occupancy snapshots are due: a clock aligned to wall-time multiples of the interval."""

from __future__ import annotations

import math


class OccupancyClock:
    """Due at every multiple of ``interval_s`` (aligned to the epoch, so cameras agree)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next: float | None = None

    def due(self, t: float) -> bool:
        if self._next is None:
            self._next = math.floor(t / self.interval_s) * self.interval_s + self.interval_s
            return False
        if t < self._next:
            return False
        self._next = (math.floor(t / self.interval_s) + 1) * self.interval_s
        return True
