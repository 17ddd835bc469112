"""Detection stride: run the detector on every k-th frame of a camera, staggered across cameras.

Frames in between are still decoded and go through tracking and the zone/line logic; the
tracker carries each person forward at its recent velocity (see ``PersonTracker.predict``).
With N cameras at stride k, camera i detects on its frames i, i+k, ... (phase ``i % k``), so
each loop turn detects about N/k frames instead of N at once every k-th turn.
"""

from __future__ import annotations


class DetectStride:
    """Says which of a camera's processed frames get a detection: every ``every``-th one."""

    def __init__(self, every: int = 1, phase: int = 0) -> None:
        if every < 1:
            raise ValueError(f"detect_every must be 1 or more, got {every}")
        self.every = every
        # Frames to skip before the first detection; a phase beyond the stride wraps around.
        self._wait = phase % every
        self.frames = 0
        self.detected = 0

    def due(self) -> bool:
        """Call once per processed frame: True when this frame gets a detection."""
        self.frames += 1
        if self._wait > 0:
            self._wait -= 1
            return False
        self._wait = self.every - 1
        self.detected += 1
        return True
