"""Checkout zones: when a person in the queue reaches the till.

A checkout zone's stay (see `zones`) is split in two by its service area, the polygon at the
till: the queue runs from stepping into the zone until the person's feet first enter the
service area, the service from then until the stay ends. A stay that never reaches the till
(someone gave up, or walked through slowly) is all queue.
"""

from __future__ import annotations

from storelens.edge.config import ZoneConfig
from storelens.edge.scene.zones import ZoneStay, as_polygon, in_polygon


class TillTimer:
    """One person's way to the till in one checkout zone, for the current stay."""

    def __init__(self, config: ZoneConfig) -> None:
        if config.service_area is None:
            raise ValueError(f"zone {config.name} has no service_area")
        self._area = as_polygon(config.service_area)
        self.served_t: float | None = None  # first frame at the till in this stay

    @property
    def waiting(self) -> bool:
        return self.served_t is None

    def observe(self, t: float, anchor: tuple[float, float]) -> None:
        """A frame while the person's stay in the zone is open (entering, inside, leaving)."""
        if self.served_t is None and in_polygon(self._area, anchor):
            self.served_t = t

    def split(self, stay: ZoneStay) -> tuple[float, float]:
        """(queue seconds, service seconds) of a finished stay; resets for the next one."""
        served, self.served_t = self.served_t, None
        if served is None or served > stay.exited_t:
            return stay.dwell_s, 0.0
        served = max(served, stay.entered_t)
        return served - stay.entered_t, stay.exited_t - served

    def reset(self) -> None:
        self.served_t = None
