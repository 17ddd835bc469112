"""The floor plan: a homography from image pixels to floor metres."""

from __future__ import annotations

import cv2
import numpy as np

from storelens.edge.config import FloorConfig


class FloorPlanError(ValueError):
    pass


class FloorPlan:
    """Maps image points (feet anchors) to floor coordinates in metres."""

    def __init__(self, config: FloorConfig) -> None:
        self.config = config
        src = np.asarray(config.image_points, dtype=np.float64)
        dst = np.asarray(config.floor_points, dtype=np.float64)
        # Least squares over all pairs (method 0): a few hand-picked points, no outliers.
        matrix, _ = cv2.findHomography(src, dst, 0)
        if matrix is None or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-12:
            raise FloorPlanError(
                "floor points give no usable homography (are 3 of them on one line?)"
            )
        self.matrix = matrix

    def to_floor(self, points: np.ndarray) -> np.ndarray:
        """Nx2 image pixels -> Nx2 floor metres."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 1, 2)
        return cv2.perspectiveTransform(pts, self.matrix).reshape(-1, 2)

    def point(self, xy: tuple[float, float]) -> tuple[float, float]:
        x, y = self.to_floor(np.array([xy]))[0]
        return float(x), float(y)
