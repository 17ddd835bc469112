"""Zones: named image polygons, and one person's presence in one zone as a state machine.

Zone presence (times are frame timestamps in seconds, never frame counts)::

    OUTSIDE --anchor inside--> ENTERING --still inside after enter_s--> INSIDE
    ENTERING --anchor outside--> OUTSIDE                 (a brush past the edge: nothing)
    INSIDE --anchor outside--> LEAVING
    LEAVING --anchor inside again--> INSIDE              (same stay resumes: occlusion, jitter)
    LEAVING --outside for exit_grace_s--> OUTSIDE        emits a ZoneStay if dwell >= min_dwell_s

The stay starts when the person first stepped in (the start of ENTERING) and ends at the last
frame they were seen inside. Frames where the person is not observed at all (occluded, missed
by the detector) change nothing; ``close`` ends an open stay when the visit itself ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from storelens.edge.config import ZoneConfig


class Presence(Enum):
    OUTSIDE = "outside"
    ENTERING = "entering"
    INSIDE = "inside"
    LEAVING = "leaving"


@dataclass(frozen=True)
class ZoneStay:
    zone: str
    entered_t: float
    exited_t: float

    @property
    def dwell_s(self) -> float:
        return self.exited_t - self.entered_t


def as_polygon(points: object) -> np.ndarray:
    """Image points in the shape OpenCV's polygon functions take."""
    return np.asarray(points, dtype=np.float32).reshape(-1, 1, 2)


def in_polygon(polygon: np.ndarray, point: tuple[float, float]) -> bool:
    """Inside or on the edge."""
    return cv2.pointPolygonTest(polygon, (float(point[0]), float(point[1])), False) >= 0


class Zone:
    def __init__(self, config: ZoneConfig) -> None:
        self.config = config
        self.name = config.name
        self.polygon = as_polygon(config.points)

    def contains(self, point: tuple[float, float]) -> bool:
        return in_polygon(self.polygon, point)


class ZonePresence:
    """One person's presence in one zone (see the module docstring for the states)."""

    def __init__(self, config: ZoneConfig) -> None:
        self.config = config
        self.state = Presence.OUTSIDE
        self._since = 0.0  # ENTERING: first inside frame; INSIDE/LEAVING: stay start
        self._last_inside = 0.0
        self._left_at = 0.0

    @property
    def is_inside(self) -> bool:
        """Counted as present (for occupancy): inside, or briefly out within the grace."""
        return self.state in (Presence.INSIDE, Presence.LEAVING)

    def stayed_s(self, t: float) -> float:
        """How long the current stay has lasted at ``t`` (0 when not in the zone)."""
        if self.state in (Presence.INSIDE, Presence.LEAVING):
            return t - self._since
        return 0.0

    def observe(self, t: float, inside: bool) -> ZoneStay | None:
        cfg = self.config
        if inside:
            if self.state is Presence.OUTSIDE:
                self.state, self._since = Presence.ENTERING, t
            elif self.state is Presence.LEAVING:
                self.state = Presence.INSIDE
            self._last_inside = t
            if self.state is Presence.ENTERING and t - self._since >= cfg.enter_s:
                self.state = Presence.INSIDE
            return None
        if self.state is Presence.ENTERING:
            self.state = Presence.OUTSIDE
        elif self.state is Presence.INSIDE:
            self.state, self._left_at = Presence.LEAVING, t
        return self.tick(t)

    def tick(self, t: float) -> ZoneStay | None:
        """Advance time without an observation: a LEAVING past its grace ends the stay."""
        if self.state is Presence.LEAVING and t - self._left_at >= self.config.exit_grace_s:
            return self._end()
        return None

    def close(self) -> ZoneStay | None:
        """The visit ended (person gone): end any open stay at the last inside frame."""
        if self.state in (Presence.INSIDE, Presence.LEAVING):
            return self._end()
        self.state = Presence.OUTSIDE
        return None

    def _end(self) -> ZoneStay | None:
        self.state = Presence.OUTSIDE
        stay = ZoneStay(self.config.name, self._since, self._last_inside)
        return stay if stay.dwell_s >= self.config.min_dwell_s else None
