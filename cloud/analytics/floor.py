"""Where people go: presence heatmap over the floor plan and zone-to-zone flows.

Both read ``visit_ended`` events: ``path`` is ``[[x_m, y_m, t_s], ...]`` in floor metres and
``zones`` the zones visited in order. Paths are simplified on the device (points kept where the
direction changes), so the straight segment between two points is the faithful reconstruction:
the heatmap samples every segment each quarter metre and shares the segment's time among the
samples, which makes a cell read as "seconds of presence", not "number of path vertices".
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
from storelens.cloud.analytics.scope import Scope
from storelens.cloud.analytics.table import Table
from storelens.cloud.store import Database

CELL_M = 0.5
MAX_CELLS_PER_AXIS = 200
TOP_PATHS = 15
ENTRY, EXIT = "(entry)", "(exit)"


def _visit_payloads(db: Database, scope: Scope, store: str | None = None) -> Iterator[dict]:
    where, params = scope.where()
    if store is not None:
        where += " AND store = ?"
        params.append(store)
    for r in db.query(f"SELECT payload FROM events WHERE type = 'visit_ended' AND {where}", params):
        payload = r["payload"]
        if isinstance(payload, (str, bytes)):
            try:
                payload = json.loads(payload)
            except ValueError:
                continue  # ingest validated it; a damaged row must not break the chart
        if isinstance(payload, dict):
            yield payload


MAX_SAMPLES_PER_SEGMENT = 400


def _segment_samples(path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points along each segment of one path and the seconds each stands for."""
    a, b = path[:-1], path[1:]
    dt = np.clip(b[:, 2] - a[:, 2], 0, None)
    dist = np.hypot(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1])
    n = np.clip(np.ceil(dist / (CELL_M / 2)), 1, MAX_SAMPLES_PER_SEGMENT).astype(int)
    seg = np.repeat(np.arange(len(a)), n)
    k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    frac = ((k + 0.5) / n[seg])[:, None]
    return a[seg, :2] + (b[seg, :2] - a[seg, :2]) * frac, dt[seg] / n[seg]


def _points(payloads: Iterator[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Presence samples of all paths as (N, 2) metres and their weights in seconds."""
    xy_parts, w_parts = [], []
    for payload in payloads:
        try:
            path = np.asarray(payload.get("path") or [], dtype=float)
        except (TypeError, ValueError):
            continue
        if path.ndim != 2 or path.shape[1] != 3 or len(path) < 2 or not np.isfinite(path).all():
            continue
        xy, w = _segment_samples(path)
        xy_parts.append(xy)
        w_parts.append(w)
    if not xy_parts:
        return np.empty((0, 2)), np.empty(0)
    return np.concatenate(xy_parts), np.concatenate(w_parts)


def _edges(lo: float, hi: float) -> np.ndarray:
    lo, hi = np.floor(lo / CELL_M) * CELL_M, np.ceil(hi / CELL_M) * CELL_M
    hi = max(hi, lo + CELL_M)
    cell = max(CELL_M, (hi - lo) / MAX_CELLS_PER_AXIS)
    return np.arange(lo, hi + cell / 2, cell)


def heatmap(db: Database, scope: Scope, store: str) -> Table:
    """Seconds of presence per floor cell of one store (floor plans differ between stores)."""
    xy, weights = _points(_visit_payloads(db, scope, store))
    rows: list[dict[str, Any]] = []
    grid: dict[str, Any] = {"x": [], "y": [], "z": [], "cell_m": CELL_M}
    if len(xy):
        x_edges, y_edges = (
            _edges(xy[:, 0].min(), xy[:, 0].max()),
            _edges(xy[:, 1].min(), xy[:, 1].max()),
        )
        hist, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=[x_edges, y_edges], weights=weights)
        xc = np.round((x_edges[:-1] + x_edges[1:]) / 2, 3)
        yc = np.round((y_edges[:-1] + y_edges[1:]) / 2, 3)
        # plotly heatmaps take z[row=y][col=x]
        grid = {
            "x": xc.tolist(),
            "y": yc.tolist(),
            "z": np.round(hist.T, 1).tolist(),
            "cell_m": float(x_edges[1] - x_edges[0]),
        }
        for i, j in zip(*np.nonzero(hist), strict=True):
            rows.append(
                {
                    "x_m": float(xc[i]),
                    "y_m": float(yc[j]),
                    "presence_s": round(float(hist[i, j]), 1),
                }
            )
    return Table(
        chart="heatmap",
        columns=["x_m", "y_m", "presence_s"],
        rows=rows,
        extra={"store": store, "grid": grid, "points": int(len(xy))},
    )


def _zone_lists(db: Database, scope: Scope) -> list[list[str]]:
    lists = []
    for payload in _visit_payloads(db, scope):
        zones = payload.get("zones")
        if isinstance(zones, list) and zones:
            lists.append([str(z) for z in zones])
    return lists


def flows(db: Database, scope: Scope) -> Table:
    """How often people went from one zone straight to another, with entry and exit."""
    moves: Counter[tuple[str, str]] = Counter()
    for zones in _zone_lists(db, scope):
        steps = [ENTRY, *zones, EXIT]
        moves.update(zip(steps, steps[1:], strict=False))
    total = sum(moves.values())
    rows = [
        {"from_zone": a, "to_zone": b, "moves": n, "share": round(n / total, 4)}
        for (a, b), n in sorted(moves.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return Table(chart="flows", columns=["from_zone", "to_zone", "moves", "share"], rows=rows)


def paths(db: Database, scope: Scope) -> Table:
    """The most common zone sequences of a visit."""
    lists = _zone_lists(db, scope)
    counted = Counter(" > ".join(z) for z in lists)
    rows = [
        {"rank": i, "path": p, "visits": n, "share": round(n / len(lists), 4)}
        for i, (p, n) in enumerate(counted.most_common(TOP_PATHS), start=1)
    ]
    return Table(chart="paths", columns=["rank", "path", "visits", "share"], rows=rows)
