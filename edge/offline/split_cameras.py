"""One camera's device config split into overlapping crops: several "cameras" of one store.

Used to test store visits on real video without a second camera: each crop of the sample
video becomes a camera with its own pixels (``crop``), its own homography onto the same floor
plan (the original image points moved by the crop's offset), the zones and lines that lie
inside it (each given to one camera only), and a hand-off area where two crops overlap.
`storelens edge split-cameras` writes the result; no video is written or committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from storelens.edge.config import CameraConfig, DeviceConfig
from storelens.edge.scene import FloorPlan

Crop = tuple[int, int, int, int]  # x, y, width, height


def _inside(points: Sequence[Sequence[float]], crop: Crop) -> float:
    """Smallest margin (px) of the points inside the crop; negative when one is outside."""
    x, y, w, h = crop
    return min(min(px - x, x + w - px, py - y, y + h - py) for px, py in points)


def _shift(points: Sequence[Sequence[float]], crop: Crop) -> list[list[float]]:
    return [[round(px - crop[0], 2), round(py - crop[1], 2)] for px, py in points]


def _owner(points: Sequence[Sequence[float]], crops: dict[str, Crop], what: str) -> str:
    margins = {cam: _inside(points, crop) for cam, crop in crops.items()}
    cam, margin = max(margins.items(), key=lambda kv: kv[1])
    if margin < 0:
        raise ValueError(f"{what} lies in no single crop; choose crops that contain it")
    return cam


def split(
    config: DeviceConfig, crops: dict[str, Crop], *, handoff_window_s: float = 3.0
) -> dict[str, Any]:
    """The device config (as YAML-ready data) of ``config``'s first camera cut into crops."""
    base: CameraConfig = config.cameras[0]
    if base.floor is None:
        raise ValueError(f"camera {base.id} needs a floor to be split")
    owners_z = {z.name: _owner(z.points, crops, f"zone {z.name}") for z in base.zones}
    owners_l = {ln.name: _owner([ln.a, ln.b], crops, f"line {ln.name}") for ln in base.lines}
    cameras = []
    for cam_id, crop in crops.items():
        cam = {"id": cam_id, "crop": list(crop)}
        cam.update(base.model_dump(mode="json", exclude_none=True, exclude_defaults=True))
        cam.update({"id": cam_id, "source": base.source})
        cam["zones"] = []
        for z in base.zones:
            if owners_z[z.name] == cam_id:
                zone = z.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
                zone["name"] = z.name
                zone["points"] = _shift(z.points, crop)
                if z.service_area is not None:
                    zone["service_area"] = _shift(z.service_area, crop)
                cam["zones"].append(zone)
        cam["lines"] = []
        for ln in base.lines:
            if owners_l[ln.name] == cam_id:
                line = ln.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
                line["name"] = ln.name
                line["a"], line["b"] = _shift([ln.a, ln.b], crop)
                cam["lines"].append(line)
        floor = base.floor.model_dump(mode="json", exclude_none=True)
        floor["image_points"] = _shift(base.floor.image_points, crop)
        cam["floor"] = floor
        cameras.append(cam)
    plan = FloorPlan(base.floor)
    handoffs = []
    ids = list(crops)
    for a, b in zip(ids, ids[1:], strict=False):
        (ax, ay, aw, ah), (bx, by, bw, bh) = crops[a], crops[b]
        # Above the floor points' horizon the homography maps nowhere sensible: start there.
        horizon = min(py for _, py in base.floor.image_points)
        x1, y1 = max(ax, bx), max(ay, by, horizon)
        x2, y2 = min(ax + aw, bx + bw), min(ay + ah, by + bh)
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"crops {a} and {b} do not overlap: give them a common strip")
        corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)
        area = [[round(float(x), 2), round(float(y), 2)] for x, y in plan.to_floor(corners)]
        handoffs.append(
            {"from_camera": a, "to_camera": b, "area": area, "window_s": handoff_window_s}
        )
    out = config.model_dump(
        mode="json",
        exclude_none=True,
        exclude_defaults=True,
        exclude={"cameras", "store_visits", "readers"},
    )
    out["device"] = f"{config.device}-split"
    out["cameras"] = cameras
    out["store_visits"] = {"handoffs": handoffs}
    return out


HEADER = """\
# Two overlapping crops of the sample video as two cameras of one store, fused into store
# visits on the floor plan. GENERATED, do not edit:
#   storelens edge split-cameras --config firmware_config/sample.yaml \\
#     --crop left=0,0,460,576 --crop right=300,0,468,576 --out firmware_config/two-cameras.yaml
# Each crop has its own pixels and its own homography (the sample's image points moved by the
# crop's offset) onto the same floor; zones and the entrance line each belong to the camera
# that sees them whole; the hand-off area is the floor under the 160 px the crops share.
# `storelens bench two-cameras` compares this store with the single camera.
"""
