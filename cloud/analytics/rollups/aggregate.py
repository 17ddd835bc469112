"""What raw ``events`` rows add up to in the rollups (pure Python, no database).

Every rollup is keyed by (store, hour bucket start in UTC epoch seconds) and one of:

- ``counts``: counters per metric (``visits``, ``entrances``, ``exits``, ``visits_ended``,
  ``occupancy``: ``n`` and a ``total``);
- ``members``: finished visits per member pseudonym (the only personal rollup; forget-me
  deletes its rows, as it unlinks the events);
- ``maps``: sparse distributions, one value per (store, hour, kind): ``dwell`` (zone ->
  whole second of dwell -> [n, total, min, max]: a fixed-bucket histogram of 1-second
  buckets), ``flows`` (zone-to-zone moves), ``paths`` (zone sequences), ``heat``
  (seconds of presence per 0.5 m floor cell, plus the number of samples), and for the
  try-on, checkout and staff charts: ``checkout`` (queue snapshots as [instants, sum, max],
  and per zone and device-given kind [stays, waits, service times]), ``tryons`` (one entry
  per fitting-room session: [visit ID, zone, kind, member visit?, seconds, visit end]: the
  chart counts distinct visits per local day, which do not add up across hours, and joins
  the member visits to their sales; the visit ID is random and the member flag is cleared
  by forget-me) and ``staff`` (the lengths of staff visits). Waits, service, session and
  staff-visit times are kept as values (devices send tenths of a second, and there are a
  few per store-hour), so medians and p90s are those of the raw events exactly.

Why 1-second histogram buckets and not a sketch (DDSketch, t-digest): the dwell chart's
quartiles were already computed from whole-second groups, so this histogram reproduces them
exactly and is mergeable by addition; a sketch would change published numbers for no gain
at dwell times of seconds to minutes (a zone-hour holds at most a few hundred distinct
seconds). Hour buckets follow the store's local hours: they start on the UTC hour for stores
whose UTC offset is whole hours, and at :30 or :15 past for stores in half- or quarter-hour
time zones (Asia/Kolkata, Asia/Kathmandu; the bucket's *phase*), so a bucket is always wholly
inside or outside a local day or hour, and rows stay one per hour whatever the zone. Dirty
marks stay UTC hours (ingest does not look up time zones); a mark covers the one or two
buckets it overlaps (`buckets_of`).
"""

from __future__ import annotations

import json
import math
import re
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

# Column positions in `storelens.cloud.ingest.events.EVENT_COLUMNS` (checked in `_positions`).
_STORE, _TYPE, _TS, _VISIT, _MEMBER, _ZONE, _LINE, _DIR, _DWELL, _START, _PAYLOAD = (
    1,
    4,
    5,
    7,
    8,
    10,
    11,
    12,
    13,
    14,
    16,
)
_STAFF = 17  # settle and rebuild append "is a staff visit" (staff_visits) to each row

Key = tuple[str, int]  # (store, hour bucket start)
# The event types any rollup counts (card swipes and device status are in none).
ROLLED_TYPES = ("visit_started", "line_crossing", "zone_visit", "visit_ended", "occupancy")
SHAPE_KINDS = ("flows", "paths", "heat")
MAP_KINDS = ("dwell", *SHAPE_KINDS, "checkout", "tryons", "staff")  # rollup_maps.kind


def phase(utc_offset_s: int) -> int:
    """Seconds past the UTC hour at which a store's local hours start (0 for whole-hour
    offsets, 1800 for Asia/Kolkata's +5:30). DST moves offsets by whole hours, so a store's
    phase does not change with it (Lord Howe's half-hour DST aside)."""
    return int(-utc_offset_s) % HOUR_S


def buckets_of(marks: Iterable[Key], phases: dict[str, int]) -> set[Key]:
    """The hour buckets (store, start) that dirty UTC hours (store, hour) overlap."""
    out: set[Key] = set()
    for store, hour in marks:
        p = phases.get(store, 0)
        if p:
            out.update(((store, hour - HOUR_S + p), (store, hour + p)))
        else:
            out.add((store, hour))
    return out


@dataclass
class Deltas:
    """What some new events add, per rollup key."""

    counts: dict[tuple[str, int, str], list[float]] = field(default_factory=dict)
    members: dict[tuple[str, int, str], int] = field(default_factory=dict)
    dwell: dict[Key, dict[str, dict[int, list[float]]]] = field(default_factory=dict)
    flows: dict[Key, dict[str, int]] = field(default_factory=dict)
    paths: dict[Key, dict[str, int]] = field(default_factory=dict)
    # floor paths, for heat: JSON text (`_Shape`), or lists (`heat_values` takes both)
    walks: dict[Key, list[Any]] = field(default_factory=dict)
    instants: dict[Key, dict[int, int]] = field(default_factory=dict)  # queue per snapshot
    checkout: dict[Key, dict[str, list[Any]]] = field(default_factory=dict)
    tryons: dict[Key, list[list[Any]]] = field(default_factory=dict)
    staff: dict[Key, list[float]] = field(default_factory=dict)
    # (store, zone) the store's settings call fitting rooms (for devices that send no kind)
    fitting_rooms: set[tuple[str, str]] = field(default_factory=set)
    phases: dict[str, int] = field(default_factory=dict)  # store -> bucket phase (`phase`)

    def maps(
        self, kinds: tuple[str, ...] = MAP_KINDS, store: str | None = None
    ) -> dict[tuple[str, int, str], Any]:
        """The sparse-map values keyed (store, hour, kind), of ``kinds`` (and one store);
        heat is computed here, one vectorised pass over all the (store, hour) pairs."""
        out: dict[tuple[str, int, str], Any] = {}
        if "dwell" in kinds:
            for (s, hour), per_zone in self.dwell.items():
                if store is None or s == store:
                    out[(s, hour, "dwell")] = pack_dwell(per_zone)
        for kind, per_key in (("flows", self.flows),
                              ("paths", self.paths), ("tryons", self.tryons),
                              ("staff", self.staff)):  # fmt: skip
            if kind in kinds:
                for (s, hour), value in per_key.items():
                    if store is None or s == store:
                        out[(s, hour, kind)] = value
        if "heat" in kinds:
            keys = [k for k in self.walks if store is None or k[0] == store]
            values = heat_values([self.walks[k] for k in keys])
            for (s, hour), heat in zip(keys, values, strict=True):
                if heat["n"]:
                    out[(s, hour, "heat")] = heat
        if "checkout" in kinds:
            for key in self.instants.keys() | self.checkout.keys():
                if store is None or key[0] == store:
                    value: dict[str, Any] = {"z": self.checkout.get(key, {})}
                    queues = list(self.instants.get(key, {}).values())
                    if queues:
                        value["q"] = [len(queues), sum(queues), max(queues)]
                    out[(key[0], key[1], "checkout")] = value
        return out

    def __bool__(self) -> bool:
        return bool(self.counts or self.members or self.dwell or self.flows or self.walks
                    or self.instants or self.checkout or self.tryons or self.staff)  # fmt: skip


def check_positions() -> None:
    """Raise when `EVENT_COLUMNS` moved (a test calls it; importing events here would cycle)."""
    from storelens.cloud.ingest.events import EVENT_COLUMNS as c

    expected = {"store": _STORE, "type": _TYPE, "ts": _TS, "member": _MEMBER,
                "zone": _ZONE, "line": _LINE, "direction": _DIR, "dwell_s": _DWELL,
                "t_start": _START, "payload": _PAYLOAD}  # fmt: skip
    if any(c[i] != name for name, i in expected.items()):
        raise RuntimeError(
            "events columns moved: update storelens.cloud.analytics.rollups.aggregate"
        )


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
    building it: several times faster than json.loads of a payload that is mostly path).
    ``path`` stays JSON text: the heat rollup parses all paths of a round in one NumPy pass
    (`heat_values`) instead of building a Python list per point."""

    path: msgspec.Raw = msgspec.Raw(b"null")
    zones: Any = None


_decode_shape = msgspec.json.Decoder(_Shape).decode


class _Stay(msgspec.Struct):
    """The fields of a ``zone_visit`` the try-on and checkout rollups read (contract 1.2)."""

    kind: Any = None
    staff: Any = None
    queue_s: Any = None
    service_s: Any = None


_decode_stay = msgspec.json.Decoder(_Stay).decode


class _Crossing(msgspec.Struct):
    """The one field of a ``line_crossing`` the footfall rollup reads."""

    entrance: Any = None


class _Occupancy(msgspec.Struct):
    """The fields of an ``occupancy`` snapshot the rollups read."""

    total: Any = None
    queues: Any = None


_decode_crossing = msgspec.json.Decoder(_Crossing).decode
_decode_occupancy = msgspec.json.Decoder(_Occupancy).decode


def _stay(text: Any) -> _Stay:
    try:
        return _decode_stay(text)
    except (TypeError, msgspec.DecodeError):
        return _Stay()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_ENTRANCE_KEY = re.compile(r'"entrance"\s*:')


def _shape(text: Any) -> _Shape:
    try:
        return _decode_shape(text)
    except (TypeError, msgspec.DecodeError):
        return _Shape()


def add_rows(d: Deltas, rows: Iterable[Sequence[Any]]) -> Deltas:
    """Add ``events`` rows (tuples in `EVENT_COLUMNS` order), each once, to ``d``."""
    for r in rows:
        kind = r[_TYPE]
        store = r[_STORE]
        phase = d.phases.get(store, 0)
        hour = int((r[_TS] - phase) // HOUR_S) * HOUR_S + phase
        if len(r) > _STAFF and r[_STAFF]:
            # Staff are not shoppers: only the staff chart counts their visits.
            if kind == "visit_ended":
                d.staff.setdefault((store, hour), []).append(float(r[_DWELL] or 0.0))
            continue
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
            _zone_stay(d, (store, hour), r, dwell)
        elif kind == "line_crossing":
            text = r[_PAYLOAD]
            flag = None
            if _ENTRANCE_KEY.search(text):
                try:  # msgspec: no dict of the whole payload; json for what it refuses
                    flag = _decode_crossing(text).entrance
                except (TypeError, msgspec.DecodeError):
                    flag = _payload(text).get("entrance")
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
            _visit_shape(d, (store, hour), _shape(r[_PAYLOAD]))
        elif kind == "occupancy":
            try:
                snapshot = _decode_occupancy(r[_PAYLOAD])
                total, queues = snapshot.total, snapshot.queues
            except (TypeError, msgspec.DecodeError):
                body = _payload(r[_PAYLOAD])
                total, queues = body.get("total"), body.get("queues")
            if isinstance(total, (int, float)) and not isinstance(total, bool):
                _count(d, store, hour, "occupancy", float(total))
            if isinstance(queues, dict) and queues:
                # One store's cameras snapshot at the same aligned instants: summed per instant.
                at = d.instants.setdefault((store, hour), {})
                instant = round(float(r[_TS]))
                at[instant] = at.get(instant, 0) + sum(
                    int(v) for v in queues.values() if isinstance(v, int)
                )
    return d


def _zone_stay(d: Deltas, key: Key, r: Sequence[Any], dwell: float) -> None:
    """A shopper's zone stay for the checkout and try-on rollups (what the charts of
    `storelens.cloud.analytics.checkout_times` and `.tryons` read from raw events)."""
    stay = _stay(r[_PAYLOAD])
    if stay.staff is True:
        return
    pkind = stay.kind if isinstance(stay.kind, str) else ""
    zone = r[_ZONE]
    cell = d.checkout.setdefault(key, {}).setdefault(zone + FLOW_SEP + pkind, [0, [], []])
    cell[0] += 1
    if _number(stay.queue_s):
        cell[1].append(float(stay.queue_s))
    if _number(stay.service_s) and stay.service_s:  # 0: left the queue without being served
        cell[2].append(float(stay.service_s))
    if pkind == "fitting_room" or (key[0], zone) in d.fitting_rooms:
        member = r[_MEMBER] is not None and r[_MEMBER] != ""
        d.tryons.setdefault(key, []).append([r[_VISIT], zone, pkind, member, float(dwell), None])


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
    walk = bytes(payload.path)
    if walk[:1] == b"[" and not _EMPTY_LIST.fullmatch(walk):  # a list, not empty
        d.walks.setdefault(key, []).append(walk)


def deltas_of(rows: Iterable[Sequence[Any]]) -> Deltas:
    return add_rows(Deltas(), rows)


MAX_VISIT_HOURS = 24  # a visit's end re-dirties at most this many hours back


def hours_of(rows: Iterable[Sequence[Any]]) -> set[Key]:
    """The (store, hour) pairs some ``events`` rows fall in (what ingest marks dirty). A
    visit's end also marks the hours since it started: it may say the visit was staff's,
    which takes the visit's earlier events out of those hours' numbers."""
    rows = rows if isinstance(rows, Sequence) else list(rows)
    # Comprehensions (the ingest hot path): hour numbers first, epochs on the small set.
    numbers = {(r[_STORE], r[_TS] // HOUR_S) for r in rows}
    spans = {(r[_STORE], r[_START] // HOUR_S, r[_TS] // HOUR_S) for r in rows
             if r[_TYPE] == "visit_ended" and isinstance(r[_START], (int, float))}  # fmt: skip
    for store, first, last in spans:
        first = max(first, last - MAX_VISIT_HOURS)
        numbers.update((store, h) for h in range(int(first), int(last)))
    return {(store, int(h) * HOUR_S) for store, h in numbers}


# -- heat --------------------------------------------------------------------------------
Heat = list[Any]  # what the heatmap reads: [samples, [[cx, cy, seconds], ...]]


def _walk_list(walk: Any) -> Any:
    return msgspec.json.decode(walk) if isinstance(walk, bytes) else walk


def heat_cells(walks: list[Any]) -> dict[str, Any]:
    """Seconds of presence per 0.5 m cell (integer cell indices) of some floor paths,
    sampled exactly as the heatmap chart samples them, as stored: ``n`` samples, ``xy``
    little-endian int32 cell pairs sorted by (x, y), ``s`` float64 seconds (the store-day
    format, `chain.sum_heat`). Rows written before were [samples, [[x, y, s], ...]]: every
    reader takes both (`heat_arrays`); packing spares a Python list per cell, which was the
    bulk of settling heat."""
    from storelens.cloud.analytics.floor import _points

    xy, weights = _points([_walk_list(w) for w in walks])
    if not len(xy):
        return {"n": 0, "xy": b"", "s": b""}
    cells = np.floor(xy / CELL_M).astype(np.int64)
    lo = cells.min(axis=0)
    span = cells.max(axis=0) - lo + 1
    # One flat index per cell of the bounding box: a bincount instead of a sort.
    flat = (cells[:, 0] - lo[0]) * span[1] + (cells[:, 1] - lo[1])
    seconds = np.bincount(flat, weights=weights, minlength=int(span[0] * span[1]))
    hit = np.flatnonzero(np.bincount(flat, minlength=len(seconds)))
    pairs = np.stack([hit // span[1] + lo[0], hit % span[1] + lo[1]], axis=1)
    return {"n": int(len(xy)), "xy": pairs.astype("<i4").tobytes(),
            "s": seconds[hit].astype("<f8").tobytes()}  # fmt: skip


_NUMBER = rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_POINT = rb"\[" + _NUMBER + rb"," + _NUMBER + rb"," + _NUMBER + rb"\]"
# A path as devices send it, compact: a list of [x, y, t] numbers (what the fast parse
# reads; anything else, spaces included, takes the Python route).
_PLAIN_PATH = re.compile(rb"\[" + _POINT + rb"(?:," + _POINT + rb")*\]")
_EMPTY_LIST = re.compile(rb"\[\s*\]")
_TO_SPACES = bytes.maketrans(b"[],", b"   ")


def _stacked(walks: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """`floor._samples` of walks given as JSON text, parsed in one pass (None when one is
    not a plain list of [x, y, t] numbers: those take the Python route). The numbers are
    read as json reads them (correctly rounded doubles)."""
    from storelens.cloud.analytics.floor import sample_stacked

    if not all(isinstance(w, bytes) and _PLAIN_PATH.fullmatch(w) for w in walks):
        return None
    lengths = np.array([w.count(b"[") - 1 for w in walks], dtype=np.int64)
    ids = np.flatnonzero(lengths >= 2)  # a one-point path has no segment (as in `_samples`)
    if not len(ids):
        return np.empty((0, 2)), np.empty(0), np.empty(0, dtype=np.int64)
    text = b" ".join(walks[i] for i in ids.tolist()).translate(_TO_SPACES).decode("ascii")
    flat = np.fromstring(text, sep=" ")
    if len(flat) != 3 * int(lengths[ids].sum()):  # not expected after the pattern
        return None
    return sample_stacked(flat.reshape(-1, 3), lengths[ids], ids)


def heat_values(groups: list[list[Any]]) -> list[dict[str, Any]]:
    """`heat_cells` of each group of walks (a store-hour's), all sampled and summed in one
    NumPy pass: per-group passes cost more in NumPy calls than in arithmetic. Each cell's
    seconds are added in the same order as `heat_cells` adds them, so the values are the
    same; a batch with a point NumPy cannot read is done group by group (the heatmap samples
    the hours it sums as one batch too). Walks are JSON text (`_Shape`) or parsed lists."""
    from storelens.cloud.analytics.floor import _samples

    walks = [w for g in groups for w in g]
    stacked = _stacked(walks)
    if stacked is None:
        groups = [[_walk_list(w) for w in g] for g in groups]
        stacked = _samples([w for g in groups for w in g])
    xy, weights, owner = stacked
    if not len(xy):
        return [heat_cells(g) for g in groups]
    group = np.repeat(np.arange(len(groups)), [len(g) for g in groups])[owner]
    cells = np.floor(xy / CELL_M).astype(np.int64)
    lo = cells.min(axis=0)
    span = cells.max(axis=0) - lo + 1
    area = int(span[0]) * int(span[1])
    if area * len(groups) >= 1 << 62:  # absurd coordinates: no int64 key
        return [heat_cells(g) for g in groups]
    key = group * area + (cells[:, 0] - lo[0]) * span[1] + (cells[:, 1] - lo[1])
    if area * len(groups) <= 4 * len(key) + (1 << 16):  # dense: a bincount, no sort
        seconds = np.bincount(key, weights=weights, minlength=area * len(groups))
        keys = np.flatnonzero(np.bincount(key, minlength=len(seconds)))
        seconds = seconds[keys]
    else:
        keys, inverse = np.unique(key, return_inverse=True)
        seconds = np.bincount(inverse.reshape(-1), weights=weights, minlength=len(keys))
    flat = keys % area
    pairs = np.stack([flat // span[1] + lo[0], flat % span[1] + lo[1]], axis=1).astype("<i4")
    seconds = seconds.astype("<f8")
    bounds = np.searchsorted(keys // area, np.arange(len(groups) + 1)).tolist()
    samples = np.bincount(group, minlength=len(groups)).tolist()
    return [{"n": int(samples[g]), "xy": pairs[bounds[g] : bounds[g + 1]].tobytes(),
             "s": seconds[bounds[g] : bounds[g + 1]].tobytes()} if samples[g]
            else {"n": 0, "xy": b"", "s": b""} for g in range(len(groups))]  # fmt: skip


def heat_arrays(value: Any) -> tuple[int, np.ndarray, np.ndarray]:
    """(samples, (N, 2) int64 cells, N float64 seconds) of a stored heat value: packed
    (`heat_cells`, and store-days) or the older [samples, [[x, y, s], ...]] of store-hours."""
    if isinstance(value, dict):
        xy = np.frombuffer(value["xy"], dtype="<i4").reshape(-1, 2).astype(np.int64)
        return int(value["n"]), xy, np.frombuffer(value["s"], dtype="<f8")
    samples, items = value
    if not items:
        return int(samples), np.empty((0, 2), dtype=np.int64), np.empty(0)
    xy = np.array([[x, y] for x, y, _ in items], dtype=np.int64)
    return int(samples), xy, np.array([v for _, _, v in items], dtype=np.float64)


def sum_cells(xy: list[np.ndarray], s: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Cells summed: ((M, 2) distinct cells sorted by (x, y), their seconds). Each cell's
    seconds are added in the order the parts come (as a dict summing them one by one)."""
    if not xy or not sum(len(a) for a in s):
        return np.empty((0, 2), dtype=np.int64), np.empty(0)
    cells = np.concatenate(xy).astype(np.int64)
    lo = cells.min(axis=0)
    span = int(cells[:, 1].max() - lo[1]) + 1
    # One int64 key per cell, in (x, y) order: a 1-D unique is several times faster than
    # np.unique(axis=0) on the pairs.
    keys, inverse = np.unique((cells[:, 0] - lo[0]) * span + (cells[:, 1] - lo[1]),
                              return_inverse=True)  # fmt: skip
    seconds = np.bincount(inverse.reshape(-1), weights=np.concatenate(s), minlength=len(keys))
    return np.stack([keys // span + lo[0], keys % span + lo[1]], axis=1), seconds


# -- summing the hours of a chart -----------------------------------------------------
def pack_dwell(per_zone: dict[str, dict[int, list[float]]]) -> dict[str, Any]:
    """A store-hour's dwell histogram as stored: ``zones`` [[zone, visits, total seconds,
    min, max], ...] and ``cells``, little-endian int32 triples (zone's index in ``zones``,
    whole second, visits) sorted. The chart needs per-second counts only (quantiles, bins)
    besides each zone's count, sum and extremes, and packed cells decode into one NumPy array
    instead of a Python list per cell (the chart's cost was that decoding)."""
    zones, cells = [], []
    for i, zone in enumerate(sorted(per_zone)):
        seconds = per_zone[zone]
        zones.append([zone, int(sum(c[0] for c in seconds.values())),
                      float(sum(c[1] for c in seconds.values())),
                      float(min(c[2] for c in seconds.values())),
                      float(max(c[3] for c in seconds.values()))])  # fmt: skip
        cells += [(i, int(s), int(seconds[s][0])) for s in sorted(seconds)]
    packed = np.array(cells, dtype="<i4").reshape(-1, 3).tobytes()
    return {"zones": zones, "cells": packed}


# A day row's cells as uint16 triples, when every zone index, second and count fits: half
# the bytes of the int32 ``cells`` (the largest value a chain view reads; PostgreSQL
# decompresses and sends it as hex).
CELLS16 = "cells16"


@dataclass
class DwellHistogram:
    """One zone's dwell over a period: visits per whole second, and the exact extremes."""

    seconds: np.ndarray  # sorted whole seconds with visits
    counts: np.ndarray  # visits per second (float, for the quantile arithmetic)
    total: float
    lowest: float
    highest: float


def sum_dwell(values: Iterable[dict[str, Any]]) -> dict[str, DwellHistogram]:
    """Sum packed store-hour histograms (`pack_dwell`) into one per zone: all cells are
    joined into one array (one NumPy pass per field, not per value) and summed per (zone,
    second) with a bincount over the zones x seconds grid (a sort when the grid would be
    sparse); Python touches only each value's few zone entries."""
    ids: dict[str, int] = {}
    extremes: list[list[float]] = []  # per zone: total, min, max
    remap: list[int] = []  # the global zone of each value's local zones, values one after another
    bases, buffers, narrow = [], [], []  # narrow: the uint16 cells of day rows (`CELLS16`)
    for value in values:
        if "cells" not in value and CELLS16 not in value:  # before the packed format:
            value = pack_dwell({z: {int(s): c for s, c in v.items()}  # zone -> second -> cell
                                for z, v in value.items()})  # fmt: skip
        bases.append(len(remap))
        for zone, _, total, lo, hi in value["zones"]:
            g = ids.get(zone)
            if g is None:
                g = ids[zone] = len(extremes)
                extremes.append([0.0, math.inf, -math.inf])
            e = extremes[g]
            e[0] += total
            e[1] = min(e[1], lo)
            e[2] = max(e[2], hi)
            remap.append(g)
        wide = value.get("cells")
        buffers.append(wide)
        narrow.append(value[CELLS16] if wide is None else None)
    parts, owners = [], []
    for dtype, width, blobs in (("<i4", 12, buffers), ("<u2", 6, narrow)):
        taken = [(i, b) for i, b in enumerate(blobs) if b]
        if taken:
            joined = b"".join(b for _, b in taken)
            parts.append(np.frombuffer(joined, dtype=dtype).reshape(-1, 3).astype(np.int64))
            owners.append(np.repeat([i for i, _ in taken], [len(b) // width for _, b in taken]))
    if not parts:
        return {}
    cells = np.concatenate(parts) if len(parts) > 1 else parts[0]
    of_value = np.concatenate(owners) if len(owners) > 1 else owners[0]
    zone = np.asarray(remap, dtype=np.int64)[np.asarray(bases, dtype=np.int64)[of_value]
                                             + cells[:, 0]]  # fmt: skip
    second, visits = cells[:, 1], cells[:, 2]
    first = int(second.min())
    span = int(second.max()) - first + 1
    if len(ids) * span <= max(4 * len(cells), 1 << 16):  # dense enough for a grid
        grid = np.bincount(zone * span + (second - first), weights=visits,
                           minlength=len(ids) * span).reshape(len(ids), span)  # fmt: skip
        per_zone = []
        for g in range(len(ids)):
            hit = np.flatnonzero(grid[g])
            per_zone.append(((hit + first).astype(float), grid[g, hit]))
    else:
        keys, inverse = np.unique(zone * span + (second - first), return_inverse=True)
        counts = np.bincount(inverse.reshape(-1), weights=visits, minlength=len(keys))
        zone_of = keys // span
        per_zone = [((keys[pick] % span + first).astype(float), counts[pick])
                    for pick in (zone_of == g for g in range(len(ids)))]  # fmt: skip
    out = {}
    for name, g in ids.items():
        seconds, counts = per_zone[g]
        if len(seconds):
            total, lo, hi = extremes[g]
            out[name] = DwellHistogram(seconds, counts, total, lo, hi)
    return out


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
