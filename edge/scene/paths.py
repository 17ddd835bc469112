"""Walking paths on the floor, simplified to the points that carry their shape."""

from __future__ import annotations

import numpy as np

MAX_PATH_POINTS = 2000  # the wire contract's limit for VisitEnded.path


def simplify(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Indices of the Ramer-Douglas-Peucker simplification of Nx2 ``points``.

    Hand-written rather than cv2.approxPolyDP because we need the kept *indices* (to keep
    each point's timestamp), which approxPolyDP does not return. Iterative: no recursion
    limit on long visits.
    """
    n = len(points)
    if n <= 2:
        return np.arange(n)
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, n - 1)]
    while stack:
        first, last = stack.pop()
        if last - first < 2:
            continue
        a, b = points[first], points[last]
        seg = points[first + 1 : last]
        ab = b - a
        norm = float(np.hypot(*ab))
        if norm < 1e-12:  # closed loop: distance to the end point
            dist = np.hypot(*(seg - a).T)
        else:
            dist = np.abs(ab[0] * (seg[:, 1] - a[1]) - ab[1] * (seg[:, 0] - a[0])) / norm
        i = int(np.argmax(dist))
        if dist[i] > tolerance:
            mid = first + 1 + i
            keep[mid] = True
            stack += [(first, mid), (mid, last)]
    return np.flatnonzero(keep)


class FloorPath:
    """Floor positions of one visit over time; ``simplified`` gives ``[[x, y, t], ...]``.

    Memory stays bounded for people in view for hours (staff): past ``compact_at`` raw
    points, the path is simplified at a tenth of ``tolerance``, far below what the final
    simplification removes anyway; a path too jittery for that is thinned evenly.
    """

    def __init__(self, tolerance: float = 0.25, compact_at: int = 4096) -> None:
        self.tolerance = tolerance
        self.compact_at = compact_at
        self._xy: list[tuple[float, float]] = []
        self._t: list[float] = []

    def __len__(self) -> int:
        return len(self._t)

    def add(self, x: float, y: float, t: float) -> None:
        self._xy.append((x, y))
        self._t.append(t)
        if len(self._t) >= self.compact_at:
            self._compact()

    def _compact(self) -> None:
        keep = simplify(np.asarray(self._xy, dtype=np.float64), self.tolerance / 10)
        half = self.compact_at // 2
        if len(keep) > half:
            # Too jittery to simplify away: thin evenly (ends kept) so compaction stays rare.
            step = -(-len(keep) // half)
            keep = np.unique(np.append(keep[::step], keep[-1]))
        self._xy = [self._xy[i] for i in keep]
        self._t = [self._t[i] for i in keep]

    def simplified(
        self, tolerance: float, start_t: float, limit: int = MAX_PATH_POINTS
    ) -> list[list[float]]:
        if not self._t:
            return []
        xy = np.asarray(self._xy, dtype=np.float64)
        t = np.asarray(self._t, dtype=np.float64)
        keep = simplify(xy, tolerance)
        while len(keep) > limit:  # hours in view: coarsen until it fits the message
            tolerance *= 2
            keep = simplify(xy, tolerance)
        return [
            [round(float(xy[i, 0]), 3), round(float(xy[i, 1]), 3), round(float(t[i] - start_t), 2)]
            for i in keep
        ]
