"""Counting a card once when a reader reports it several times in a row."""

from __future__ import annotations

import time
from collections.abc import Callable


class SwipeDeduper:
    """Repeated reads of the same member token within ``window_s`` count once.

    The window slides from the first read: a card held on a reader for a long time is
    reported again every ``window_s`` seconds, which is what a new swipe looks like anyway.
    """

    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._last: dict[str, float] = {}

    def is_repeat(self, token: str) -> bool:
        now = self._clock()
        for old in [t for t, at in self._last.items() if now - at >= self.window_s]:
            del self._last[old]
        if token in self._last:
            return True
        self._last[token] = now
        return False
