"""Re-association: a newly started track that continues a recently lost one takes its number.

The library starts a new track whenever a person comes back from behind a pillar, another
shopper or a missed detection too far from where its motion model expected them; that splits
one shopper into two visits. Here each new track is compared with the tracks lost in the last
few seconds (``TrackerConfig.stitch_s``): the lost person's feet moved on at their last
velocity (for at most ``COAST_S``) must land near the new box's feet, within a gate that
grows with the time lost, the box sizes must agree, and, when both have an appearance
descriptor (in memory only, ``appearance``), they must look alike. Pairs are assigned at
minimum total cost; a new track with two plausible lost candidates (or the reverse) is left
alone: a wrong join is worse than a split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from storelens.edge.track import appearance

GATE_H = 0.5  # feet within this many box heights of where the lost person should be ...
GATE_H_PER_S = 0.5  # ... plus this many per second lost (a walker covers ~0.7 a second)
COAST_S = 1.0  # a lost person's velocity is extrapolated at most this long (people stop)
MAX_SIZE_RATIO = 1.4  # box heights of the two within this factor
MAX_LOOKS = 0.4  # Bhattacharyya distance of the colour descriptors at most this
NO_LOOKS_GATE = 0.5  # without descriptors the motion gate is this much tighter
AMBIGUITY = 0.25  # a runner-up this close in cost makes the pair ambiguous: not joined


@dataclass(frozen=True)
class Lost:
    track_id: int
    t: float  # last seen
    xyxy: np.ndarray
    velocity: np.ndarray | None  # px/s of the box centre
    looks: np.ndarray | None


@dataclass(frozen=True)
class Born:
    track_id: int
    xyxy: np.ndarray
    looks: np.ndarray | None


def _feet(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, box[3]], np.float64)


def cost(lost: Lost, born: Born, t: float) -> float | None:
    """Cost of joining ``born`` (seen at ``t``) to ``lost``; None when they cannot be one."""
    dt = t - lost.t
    if dt <= 0:
        return None
    h_lost = float(lost.xyxy[3] - lost.xyxy[1])
    h_born = float(born.xyxy[3] - born.xyxy[1])
    if min(h_lost, h_born) <= 0 or max(h_lost, h_born) / min(h_lost, h_born) > MAX_SIZE_RATIO:
        return None
    expected = _feet(lost.xyxy)
    if lost.velocity is not None:
        expected = expected + lost.velocity * min(dt, COAST_S)
    height = max(h_lost, h_born)
    moved = float(np.hypot(*(_feet(born.xyxy) - expected))) / height
    gate = GATE_H + GATE_H_PER_S * dt
    if lost.looks is None or born.looks is None:
        gate *= NO_LOOKS_GATE
        return moved / gate + 1.0 if moved <= gate else None
    looks = appearance.distance(lost.looks, born.looks)
    if looks is None or moved > gate or looks > MAX_LOOKS:
        return None
    return moved / gate + looks / MAX_LOOKS


def match(lost: list[Lost], born: list[Born], t: float) -> dict[int, int]:
    """{new track: lost track it continues} for the unambiguous pairs."""
    if not lost or not born:
        return {}
    costs = np.full((len(born), len(lost)), np.inf)
    for i, b in enumerate(born):
        for j, m in enumerate(lost):
            c = cost(m, b, t)
            if c is not None:
                costs[i, j] = c
    if not np.isfinite(costs).any():
        return {}
    big = 1e6
    rows, cols = linear_sum_assignment(np.where(np.isfinite(costs), costs, big))
    joined = {}
    for i, j in zip(rows, cols, strict=True):
        c = costs[i, j]
        if not np.isfinite(c):
            continue
        others = np.concatenate((np.delete(costs[i], j), np.delete(costs[:, j], i)))
        if others.size and others.min() < c + AMBIGUITY:
            continue
        joined[born[i].track_id] = lost[j].track_id
    return joined
