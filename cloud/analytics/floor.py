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
from typing import Any

import numpy as np

from storelens.cloud.analytics import rollups
from storelens.cloud.analytics.rollups.aggregate import ENTRY, EXIT, FLOW_SEP, PATH_SEP
from storelens.cloud.analytics.scope import Scope
from storelens.cloud.analytics.staff import shoppers_only
from storelens.cloud.analytics.table import Table
from storelens.cloud.db import Database

CELL_M = 0.5
MAX_CELLS_PER_AXIS = 200
TOP_PATHS = 15


# Only the one field a chart needs leaves the database: the payloads are mostly path points,
# and parsing them whole was the bulk of the time of the zone charts. Both operators return the
# field as JSON text (a string stays quoted), so a text starting with "[" is a whole array and
# the texts can be joined into one JSON document safely. (SQLite has "->" since 3.38.)
_FIELD_SQL = {"sqlite": "payload -> '$.{f}'", "postgres": "(payload::json -> '{f}')::text"}


def _visit_field(db: Database, scope: Scope, field: str, store: str | None = None) -> list[Any]:
    """One JSON field of every ``visit_ended`` in scope, parsed (rows without it skipped)."""
    where, params = scope.where()
    if store is not None:
        where += " AND store = ?"
        params.append(store)
    column = _FIELD_SQL[db.dialect].format(f=field)
    sql = (
        f"SELECT {column} AS v FROM events WHERE type = 'visit_ended' AND {where}"
        f" AND {shoppers_only()}"
    )
    texts = [r["v"] for r in db.query(sql, params) if isinstance(r["v"], str)]
    texts = [t for t in texts if t.startswith("[")]
    try:  # one parse of one array is several times faster than one parse per row
        values = json.loads("[" + ",".join(texts) + "]")
    except ValueError:  # a damaged row (ingest validated them all): parse one by one, skip it
        values = []
        for text in texts:
            try:
                values.append(json.loads(text))
            except ValueError:
                continue
    return [v for v in values if isinstance(v, list) and v]


MAX_SAMPLES_PER_SEGMENT = 400


def _points(paths: list[list[Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Presence samples along all paths as (N, 2) metres and the seconds each stands for."""
    xy, weights, _ = _samples(paths)
    return xy, weights


def _samples(paths: list[list[Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_points`, and the index in ``paths`` of the path each sample lies on.

    All paths are stacked into one array and every segment is sampled in one vectorised pass
    (per-path NumPy calls cost more than the arithmetic)."""
    good = [i for i, p in enumerate(paths)
            if len(p) >= 2 and all(isinstance(q, list) and len(q) == 3 for q in p)]  # fmt: skip
    if not good:
        return np.empty((0, 2)), np.empty(0), np.empty(0, dtype=np.int64)
    try:
        flat = np.array([q for i in good for q in paths[i]], dtype=float)
    except (TypeError, ValueError):
        return np.empty((0, 2)), np.empty(0), np.empty(0, dtype=np.int64)
    lengths = np.array([len(paths[i]) for i in good])
    return sample_stacked(flat, lengths, np.asarray(good, dtype=np.int64))


def sample_stacked(
    flat: np.ndarray, lengths: np.ndarray, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_samples` of paths already stacked: ``flat`` (N, 3) points of paths of ``lengths``
    points (each at least 2), ``ids`` each path's id (returned per sample)."""
    # A segment joins point i to i+1 of the same path: drop the joins between paths.
    inside = np.ones(len(flat) - 1, dtype=bool)
    inside[np.cumsum(lengths)[:-1] - 1] = False
    owner = np.repeat(ids, lengths)[:-1][inside]
    a, b = flat[:-1][inside], flat[1:][inside]
    keep = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    a, b, owner = a[keep], b[keep], owner[keep]
    dt = np.clip(b[:, 2] - a[:, 2], 0, None)
    dx, dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    dist = np.hypot(dx, dy)
    n = np.clip(np.ceil(dist / (CELL_M / 2)), 1, MAX_SAMPLES_PER_SEGMENT).astype(int)
    seg = np.repeat(np.arange(len(a)), n)
    k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    n_seg = n[seg]
    frac = (k + 0.5) / n_seg
    # Per coordinate on 1-D arrays (2-D fancy indexing was most of the time): the same
    # operations per sample, so the same values.
    xy = np.empty((len(seg), 2))
    xy[:, 0] = a[:, 0][seg] + dx[seg] * frac
    xy[:, 1] = a[:, 1][seg] + dy[seg] * frac
    return xy, dt[seg] / n_seg, owner[seg]


def _edges(lo: float, hi: float) -> np.ndarray:
    lo, hi = np.floor(lo / CELL_M) * CELL_M, np.ceil(hi / CELL_M) * CELL_M
    hi = max(hi, lo + CELL_M)
    cell = max(CELL_M, (hi - lo) / MAX_CELLS_PER_AXIS)
    return np.arange(lo, hi + cell / 2, cell)


def heatmap(db: Database, scope: Scope, store: str) -> Table:
    """Seconds of presence per floor cell of one store (floor plans differ between stores)."""
    if scope.raw:
        xy, weights = _points(_visit_field(db, scope, "path", store))
        points = int(len(xy))
        edges = None
        if points:
            edges = (_edges(xy[:, 0].min(), xy[:, 0].max()), _edges(xy[:, 1].min(), xy[:, 1].max()))
    else:
        # Rollups hold seconds per CELL_M cell: the cell centres carry them into the grid,
        # which is the same grid as above (cells are whole CELL_M steps from the origin).
        samples, cells = rollups.reader(db).heat(scope, store)
        points = int(samples)
        edges = None
        if cells:
            c = np.array(cells, dtype=float)
            xy, weights = (c[:, :2] + 0.5) * CELL_M, c[:, 2]
            edges = (
                _edges(c[:, 0].min() * CELL_M, (c[:, 0].max() + 1) * CELL_M),
                _edges(c[:, 1].min() * CELL_M, (c[:, 1].max() + 1) * CELL_M),
            )
    rows: list[dict[str, Any]] = []
    grid: dict[str, Any] = {"x": [], "y": [], "z": [], "cell_m": CELL_M}
    if edges is not None:
        x_edges, y_edges = edges
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
        extra={"store": store, "grid": grid, "points": points},
    )


def _zone_lists(db: Database, scope: Scope) -> list[list[str]]:
    return [[str(z) for z in zones] for zones in _visit_field(db, scope, "zones")]


def _moves(db: Database, scope: Scope) -> Counter[tuple[str, str]]:
    moves: Counter[tuple[str, str]] = Counter()
    if not scope.raw:
        for key, n in rollups.reader(db).flows(scope).items():
            a, _, b = key.partition(FLOW_SEP)
            moves[(a, b)] += n
        return moves
    for zones in _zone_lists(db, scope):
        steps = [ENTRY, *zones, EXIT]
        moves.update(zip(steps, steps[1:], strict=False))
    return moves


def flows(db: Database, scope: Scope) -> Table:
    """How often people went from one zone straight to another, with entry and exit."""
    moves = _moves(db, scope)
    total = sum(moves.values())
    rows = [
        {"from_zone": a, "to_zone": b, "moves": n, "share": round(n / total, 4)}
        for (a, b), n in sorted(moves.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return Table(chart="flows", columns=["from_zone", "to_zone", "moves", "share"], rows=rows)


def paths(db: Database, scope: Scope) -> Table:
    """The most common zone sequences of a visit (ties in path order)."""
    if scope.raw:
        counted = Counter(PATH_SEP.join(z) for z in _zone_lists(db, scope))
        visits = sum(counted.values())
        top = sorted(counted.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_PATHS]
    else:  # the rollups name only the top sequences (a chain has a long tail of them)
        top, visits = rollups.reader(db).paths(scope, TOP_PATHS)
    rows = [
        {"rank": i, "path": p, "visits": n, "share": round(n / visits, 4)}
        for i, (p, n) in enumerate(top, start=1)
    ]
    return Table(chart="paths", columns=["rank", "path", "visits", "share"], rows=rows)
