"""What a set of new ``events`` rows adds to the rollups (pure Python, no database).

Every rollup is keyed by (store, hour bucket start in UTC epoch seconds) and one of:

- ``counts``: additive counters per metric (``visits``, ``entrances``, ``exits``,
  ``visits_ended``, ``occupancy``: ``n`` and a ``total``);
- ``members``: finished visits per member pseudonym (the only personal rollup; forget-me
  deletes its rows, like it unlinks the events);
- ``maps``: sparse distributions merged in Python, one value per (store, hour, kind):
  ``dwell`` (zone -> whole second of dwell -> [n, total, min, max]: a fixed-bucket histogram
  of 1-second buckets), ``flows`` (zone-to-zone moves), ``paths`` (zone sequences) and
  ``heat`` (seconds of presence per 0.5 m floor cell, plus the number of samples).

Counters, member visits and dwell cost ingest a dict update per event. The *visit shapes*
(flows, paths, heat) need each finished visit's JSON and its floor path sampled every
quarter metre (hundreds of samples per visit): several times the cost of storing the event.
Ingest therefore only marks their (store, hour) ``dirty`` and `storelens.cloud.rollups.
settle` recomputes a dirty hour from its raw events once it has been quiet for a while;
charts read a dirty hour from the raw events meanwhile, so they are exact at all times.

Why 1-second histogram buckets and not a sketch (DDSketch, t-digest): the dwell chart's
quartiles were already computed from whole-second groups, so this histogram reproduces them
exactly and is mergeable by addition; a sketch would change published numbers for no gain
at dwell times of seconds to minutes (a zone-hour holds at most a few hundred distinct
seconds). Hours are UTC hours: every chart buckets by a store's whole-hour UTC offset, so an
hour bucket is always entirely inside or outside a local day or hour (stores in half-hour
time zones would need quarter-hour buckets; see docs/scaling.md).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

HOUR_S = 3600
CELL_M = 0.5  # the heatmap's finest cell (storelens.cloud.analytics.floor.CELL_M)
FLOW_SEP = "\x1f"  # between the two zones of a flow key (never in a zone name)
PATH_SEP = " > "  # as the paths chart shows a sequence
ENTRY, EXIT = "(entry)", "(exit)"

# Column positions in `storelens.cloud.events.EVENT_COLUMNS` (checked in `_positions`).
_STORE, _TYPE, _TS, _MEMBER, _ZONE, _LINE, _DIR, _DWELL, _PAYLOAD = 1, 4, 5, 8, 10, 11, 12, 13, 16

Key = tuple[str, int]  # (store, hour bucket start)


@dataclass
class Deltas:
    """What some new events add, per rollup key."""

    counts: dict[tuple[str, int, str], list[float]] = field(default_factory=dict)
    members: dict[tuple[str, int, str], int] = field(default_factory=dict)
    dwell: dict[Key, dict[str, dict[int, list[float]]]] = field(default_factory=dict)
    flows: dict[Key, dict[str, int]] = field(default_factory=dict)
    paths: dict[Key, dict[str, int]] = field(default_factory=dict)
    walks: dict[Key, list[list[Any]]] = field(default_factory=dict)  # floor paths, for heat
    dirty: set[Key] = field(default_factory=set)  # hours whose visit shapes are not computed
    shapes: set[Key] = field(default_factory=set)  # hours whose visit shapes were computed

    def maps(self) -> dict[tuple[str, int, str], Any]:
        """Every sparse-map delta keyed (store, hour, kind); heat computed here, in one
        vectorised pass per (store, hour)."""
        out: dict[tuple[str, int, str], Any] = {}
        for kind, per_key in (("dwell", self.dwell), ("flows", self.flows),
                              ("paths", self.paths)):  # fmt: skip
            for (store, hour), value in per_key.items():
                out[(store, hour, kind)] = value
        for (store, hour), walks in self.walks.items():
            heat = heat_cells(walks)
            if heat[0]:
                out[(store, hour, "heat")] = heat
        return out

    def __bool__(self) -> bool:
        return bool(self.counts or self.members or self.dwell or self.dirty or self.shapes)


def check_positions() -> None:
    """Raise when `EVENT_COLUMNS` moved (a test calls it; importing events here would cycle)."""
    from storelens.cloud.events import EVENT_COLUMNS as c

    expected = {"store": _STORE, "type": _TYPE, "ts": _TS, "member": _MEMBER, "zone": _ZONE,
                "line": _LINE, "direction": _DIR, "dwell_s": _DWELL, "payload": _PAYLOAD}  # fmt: skip
    if any(c[i] != name for name, i in expected.items()):
        raise RuntimeError("events columns moved: update storelens.cloud.rollups.aggregate")


def _count(d: Deltas, store: str, hour: int, metric: str, total: float = 0.0) -> None:
    cell = d.counts.get((store, hour, metric))
    if cell is None:
        d.counts[(store, hour, metric)] = [1, total]
    else:
        cell[0] += 1
        cell[1] += total


def is_entrance(line: str | None, flag: Any) -> bool:
    """The footfall rule (`storelens.cloud.analytics.footfall`): the device's ``entrance``
    flag when it sent one, else lines named ``entrance*`` or ``door*``."""
    if flag is not None:
        return flag is True
    name = (line or "").lower()
    return name.startswith(("entrance", "door"))


def _payload(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


class _Shape(msgspec.Struct):
    """The two fields of a ``visit_ended`` the rollups read (msgspec skips the rest without
    building it: several times faster than json.loads of a payload that is mostly path)."""

    path: Any = None
    zones: Any = None


_decode_shape = msgspec.json.Decoder(_Shape).decode
_ENTRANCE_KEY = re.compile(r'"entrance"\s*:')


def _shape(text: Any) -> _Shape:
    try:
        return _decode_shape(text)
    except (TypeError, msgspec.DecodeError):
        return _Shape()


def add_rows(d: Deltas, rows: Iterable[Sequence[Any]], *, shapes: bool = False) -> Deltas:
    """Add ``events`` rows (tuples in `EVENT_COLUMNS` order), each once, to ``d``. Visit
    shapes are computed with ``shapes`` (a settle or a rebuild), else only marked dirty."""
    for r in rows:
        kind = r[_TYPE]
        store = r[_STORE]
        hour = int(r[_TS] // HOUR_S) * HOUR_S
        if kind == "visit_started":
            _count(d, store, hour, "visits")
        elif kind == "zone_visit":
            zone, dwell = r[_ZONE], r[_DWELL]
            if zone is None or dwell is None:
                continue
            per_zone = d.dwell.setdefault((store, hour), {}).setdefault(zone, {})
            second = math.floor(dwell)
            cell = per_zone.get(second)
            if cell is None:
                per_zone[second] = [1, dwell, dwell, dwell]
            else:
                cell[0] += 1
                cell[1] += dwell
                cell[2] = min(cell[2], dwell)
                cell[3] = max(cell[3], dwell)
        elif kind == "line_crossing":
            text = r[_PAYLOAD]
            flag = _payload(text).get("entrance") if _ENTRANCE_KEY.search(text) else None
            if is_entrance(r[_LINE], flag):
                if r[_DIR] == "in":
                    _count(d, store, hour, "entrances")
                elif r[_DIR] == "out":
                    _count(d, store, hour, "exits")
        elif kind == "visit_ended":
            _count(d, store, hour, "visits_ended")
            member = r[_MEMBER]
            if member is not None:
                key = (store, hour, member)
                d.members[key] = d.members.get(key, 0) + 1
            if shapes:
                d.shapes.add((store, hour))
                _visit_shape(d, (store, hour), _shape(r[_PAYLOAD]))
            else:
                d.dirty.add((store, hour))
        elif kind == "occupancy":
            total = _payload(r[_PAYLOAD]).get("total")
            if isinstance(total, (int, float)) and not isinstance(total, bool):
                _count(d, store, hour, "occupancy", float(total))
    return d


def _visit_shape(d: Deltas, key: Key, payload: _Shape) -> None:
    zones = payload.zones
    if isinstance(zones, list) and zones:
        names = [str(z) for z in zones]
        steps = [ENTRY, *names, EXIT]
        flows = d.flows.setdefault(key, {})
        for a, b in zip(steps, steps[1:], strict=False):
            move = a + FLOW_SEP + b
            flows[move] = flows.get(move, 0) + 1
        paths = d.paths.setdefault(key, {})
        path = PATH_SEP.join(names)
        paths[path] = paths.get(path, 0) + 1
    walk = payload.path
    if isinstance(walk, list) and walk:
        d.walks.setdefault(key, []).append(walk)


def deltas_of(rows: Iterable[Sequence[Any]], *, shapes: bool = False) -> Deltas:
    return add_rows(Deltas(), rows, shapes=shapes)


SHAPE_KINDS = ("flows", "paths", "heat")


def shapes_of(payloads: Iterable[Any]) -> dict[str, Any]:
    """Flows, paths and heat of some ``visit_ended`` payloads (JSON texts), as one hour's
    map values (empty kinds left out)."""
    d = Deltas()
    for text in payloads:
        _visit_shape(d, ("", 0), _shape(text))
    out: dict[str, Any] = {}
    if d.flows:
        out["flows"] = d.flows[("", 0)]
        out["paths"] = d.paths[("", 0)]
    if d.walks:
        heat = heat_cells(d.walks[("", 0)])
        if heat[0]:
            out["heat"] = heat
    return out


# -- heat --------------------------------------------------------------------------------
Heat = list[Any]  # [samples, [[cx, cy, seconds], ...]]


def heat_cells(walks: list[list[Any]]) -> Heat:
    """Seconds of presence per 0.5 m cell (integer cell indices) of some floor paths,
    sampled exactly as the heatmap chart samples them."""
    from storelens.cloud.analytics.floor import _points

    xy, weights = _points(walks)
    if not len(xy):
        return [0, []]
    cells = np.floor(xy / CELL_M).astype(np.int64)
    lo = cells.min(axis=0)
    span = cells.max(axis=0) - lo + 1
    # One flat index per cell of the bounding box: a bincount instead of a sort.
    flat = (cells[:, 0] - lo[0]) * span[1] + (cells[:, 1] - lo[1])
    seconds = np.bincount(flat, weights=weights, minlength=int(span[0] * span[1]))
    hit = np.flatnonzero(np.bincount(flat, minlength=len(seconds)))
    xs, ys = hit // span[1] + lo[0], hit % span[1] + lo[1]
    return [int(len(xy)), [[int(x), int(y), float(s)]
                           for x, y, s in zip(xs, ys, seconds[hit], strict=True)]]  # fmt: skip


# -- merging map values (read-modify-write at ingest, and summing at read time) -----------
def merge_dwell(into: dict[str, dict[int, list[float]]], add: dict[str, Any]) -> None:
    for zone, seconds in add.items():
        target = into.setdefault(zone, {})
        for second, (n, total, lo, hi) in seconds.items():
            second = int(second)
            cell = target.get(second)
            if cell is None:
                target[second] = [n, total, lo, hi]
            else:
                cell[0] += n
                cell[1] += total
                cell[2] = min(cell[2], lo)
                cell[3] = max(cell[3], hi)


def merge_counter(into: dict[str, int], add: dict[str, int]) -> None:
    for k, n in add.items():
        into[k] = into.get(k, 0) + n


def merge_heat(into: Heat, add: Heat) -> Heat:
    cells: dict[tuple[int, int], float] = defaultdict(float)
    for x, y, s in into[1]:
        cells[(x, y)] += s
    for x, y, s in add[1]:
        cells[(x, y)] += s
    return [into[0] + add[0], [[x, y, s] for (x, y), s in sorted(cells.items())]]


def empty(kind: str) -> Any:
    return [0, []] if kind == "heat" else {}


def merge(kind: str, into: Any, add: Any) -> Any:
    """``into`` with ``add`` merged in (either may be an empty value)."""
    if kind == "dwell":
        merge_dwell(into, add)
        return into
    if kind == "heat":
        return merge_heat(into, add)
    merge_counter(into, add)
    return into

