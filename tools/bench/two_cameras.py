"""Does a store seen by two overlapping cameras report what one camera reports?

Runs the single-camera config and its split into crops (`storelens edge split-cameras`) over
the same video with the same detector, and compares: visits (people), entrance crossings,
zone visits and dwell, visit length, and floor paths (visits paired by start time, then the
mean distance between the two paths at common times). Tolerances are stated in `TOLERANCE`
and judged per number; they are about the fusion, not about tracking quality, which both
layouts share. ``--camera-fps right=5 --clock-offset right=0.2`` plays the split's cameras as
live cameras would run: at their own frame rates, on clocks that disagree.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from storelens.edge.config import DeviceConfig
from storelens.edge.offline.store_analysis import StoreSummary, analyze_store

TOLERANCE = {
    "visits_rel": 0.15,  # visits within 15 % of the single camera's
    "crossings_abs": 1,  # each entrance direction within 1 crossing
    "zone_visits_rel": 0.2,  # zone visits per zone within 20 % (or 1)
    "paired_share": 0.8,  # at least 80 % of single-camera visits find their two-camera visit
    "path_m": 1.0,  # paired paths at most 1 m apart (median over pairs)
}
PAIR_START_S = 2.0


def _path_at(path: list[list[float]], start: float, times: np.ndarray) -> np.ndarray:
    p = np.asarray(path, dtype=np.float64)
    t = start + p[:, 2]
    return np.stack([np.interp(times, t, p[:, 0]), np.interp(times, t, p[:, 1])], axis=1)


def _visits(summary: StoreSummary) -> list[tuple[float, float, list[list[float]]]]:
    out = []
    for e in summary.events:
        if e.type == "visit_ended" and e.path:
            out.append((e.started_at.timestamp(), e.started_at.timestamp() + e.duration_s, e.path))
    return sorted(out)


def compare_paths(one: StoreSummary, two: StoreSummary) -> dict[str, Any]:
    """Pair visits by start time (greedy, nearest first) and measure their paths' distance."""
    a, b = _visits(one), _visits(two)
    t0 = min([v[0] for v in a + b], default=0.0)
    pairs = sorted(
        (abs(va[0] - vb[0]), i, j)
        for i, va in enumerate(a)
        for j, vb in enumerate(b)
        if abs(va[0] - vb[0]) <= PAIR_START_S
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    dists = []
    for _, i, j in pairs:
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi - lo < 0.5:
            continue
        times = np.linspace(lo, hi, 20)
        pa, pb = _path_at(a[i][2], a[i][0], times), _path_at(b[j][2], b[j][0], times)
        dists.append(float(np.mean(np.hypot(*(pa - pb).T))))
    return {
        "single_visits_with_path": len(a),
        "paired": len(used_a),
        "paired_share": round(len(used_a) / len(a), 3) if a else None,
        "median_path_distance_m": round(statistics.median(dists), 3) if dists else None,
        "_t0": t0,
    }


def _within(one: float, two: float, rel: float) -> bool:
    return abs(one - two) <= max(1.0, rel * one)


def judge(one: StoreSummary, two: StoreSummary) -> dict[str, Any]:
    paths = compare_paths(one, two)
    paths.pop("_t0")
    checks: dict[str, bool] = {
        "visits": _within(one.visits, two.visits, TOLERANCE["visits_rel"]),
    }
    for key in set(one.crossings) | set(two.crossings):
        checks[f"crossings {key[0]}:{key[1]}"] = (
            abs(one.crossings[key] - two.crossings[key]) <= TOLERANCE["crossings_abs"]
        )
    for zone in set(one.zone_dwell) | set(two.zone_dwell):
        n1, n2 = len(one.zone_dwell.get(zone, [])), len(two.zone_dwell.get(zone, []))
        checks[f"zone {zone}"] = _within(n1, n2, TOLERANCE["zone_visits_rel"])
    share = paths["paired_share"]
    checks["paths paired"] = share is not None and share >= TOLERANCE["paired_share"]
    dist = paths["median_path_distance_m"]
    checks["paths distance"] = dist is not None and dist <= TOLERANCE["path_m"]
    return {"paths": paths, "checks": checks, "equivalent": all(checks.values())}


def live_like(split: DeviceConfig, camera_fps: Mapping[str, float] | None = None) -> DeviceConfig:
    """The split store with some cameras playing at a lower frame rate (as live cameras of
    different models do); unknown cameras are an error."""
    rates = dict(camera_fps or {})
    unknown = sorted(set(rates) - {c.id for c in split.cameras})
    if unknown:
        raise ValueError(f"frame rate for unknown camera(s): {', '.join(unknown)}")
    cameras = [c.model_copy(update={"fps": rates[c.id]}) if c.id in rates else c
               for c in split.cameras]  # fmt: skip
    return split.model_copy(update={"cameras": cameras})


def run(
    single: DeviceConfig,
    split: DeviceConfig,
    *,
    max_frames: int | None = None,
    camera_fps: Mapping[str, float] | None = None,
    clock_offsets: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """``camera_fps`` / ``clock_offsets``: play the split's cameras as live ones would run,
    at their own rates and on clocks that disagree (seconds added to a camera's times)."""
    cameras = live_like(split, camera_fps)  # bad options fail before any video is played
    unknown = sorted(set(clock_offsets or {}) - {c.id for c in split.cameras})
    if unknown:
        raise ValueError(f"clock offsets for unknown camera(s): {', '.join(unknown)}")
    start = datetime.now(UTC).replace(microsecond=0)  # both runs on one clock
    one = analyze_store(single, max_frames=max_frames, start=start)
    two = analyze_store(cameras, max_frames=max_frames, start=start, clock_offsets=clock_offsets)
    verdict = judge(one, two)
    return {
        "camera_fps": dict(camera_fps or {}),
        "clock_offsets": dict(clock_offsets or {}),
        "single_camera": one.as_dict(),
        "two_cameras": two.as_dict(),
        "tolerance": TOLERANCE,
        **verdict,
        "visit_length_ratio": (
            round(statistics.median(two.durations) / statistics.median(one.durations), 3)
            if one.durations and two.durations and statistics.median(one.durations) > 0
            else math.nan
        ),
    }
