"""Chain rollups: per-store hour rollups pre-summed over the stores of a time zone, per day.

A chain-wide view without an hour filter (the ops dashboard's default) would otherwise read
one rollup row per store and hour, so its cost grew with the chain. ``rollup_days`` holds,
per *group* (the stores sharing one IANA time zone: ``grp`` is its name), UTC offset and
local day (``ts``, the local day's start as a local epoch), the sum over the group's stores
of their hour rollups: ``dwell`` (packed, as `aggregate.pack_dwell`), ``flows``, ``paths``
and ``counts`` (per local hour entrances, visits; which stores had entrances that day and
the visits of those that had none, for footfall's door rule). A chain view then reads
time zones x days rows, whatever the number of stores.

Exactness: a chart shifts a store's events by one offset for the whole period (the offset
at its middle), so a day row is kept for every offset its zone takes within half a year of
that day (winter and summer time): the row of the scope's offset is the sum of exactly the
per-store rows the store-level read would take. Distinct counts (members, try-on visits)
do not add up across stores and stay per store and visit.

Maintenance: the rows are a pure function of the per-store rollups. Whenever `sql.write_hours`
replaces a store's hours (settle, forget-me, rebuild), the days they fall in are recomputed
in the same transaction from the per-store rows of that day (`refresh`): exactly once, and
nothing personal (no member or visit appears in any day row). A day row is read only when no
hour of its group and day is dirty and its ``counts`` row exists (the day's "built" mark);
otherwise that group and day is read per store as before. A store moved to another time zone
needs `storelens cloud rollups rebuild` (its older day rows are in its former group).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date, datetime, timedelta
from hashlib import blake2b
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import numpy as np

from storelens.cloud.analytics.rollups import aggregate
from storelens.cloud.db import Database

DAY_S = 86_400
HOUR_S = aggregate.HOUR_S
KINDS = ("dwell", "flows", "paths")  # summed from rollup_maps; "counts" from rollup_counts
# Per store and local day (grp = STORE + store ID), for the charts that show one row per
# store: checkout by local hour of the day, try-on sessions of the day, and "built" (the
# store-day's finished visits, member visits and distinct members; it marks the day built).
STORE = "store:"
STORE_KINDS = ("checkout", "tryons", "heat", "staff")
# The "built" mark's format: [visits, member visits, members, BUILT_FORMAT]. Day rows of an
# older format (an int mark, or three numbers: try-on entries, no heat; 2: checkout cells
# unpacked, no staff; 3: try-on member visits as a list of visit IDs) count as not built (read
# per store-hour) until `storelens cloud rollups rebuild`.
BUILT_FORMAT = 4
# Try-on member visits are stored as 64-bit keyed BLAKE2b hashes of their visit IDs
# (`visit_hashes`): 8 bytes each, decoded in one `np.frombuffer`, instead of a msgpack list of
# 36-character IDs turned into sets. The chart only tests them against the hashes of the
# visits linked to member sales (same ID, same hash, on any day); a false match needs two of
# the visits compared in one chart to collide, about n^2 / 2^65: 3e-8 for a million visits.
# Visit IDs are random (not member IDs) and the hash is one-way: nothing personal is stored.
VISIT_HASH_KEY = b"storelens:try-on-visits:1"
UNKNOWN = "?"  # the group of events whose store is not in ``stores`` (no zone is named so)


def _day_date(local_day: int) -> date:
    return date(1970, 1, 1) + timedelta(days=local_day // DAY_S)


def zone_offsets(tz: str | None, around: date) -> set[int]:
    """The UTC offsets (seconds) a zone has within half a year of ``around``: what a
    scope of up to a year containing that day may shift its stores by."""
    if not tz:
        return {0}
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return {0}
    out = set()
    for k in range(-13, 14):
        moment = datetime.combine(around + timedelta(days=14 * k), datetime.min.time(), zone)
        out.add(int(moment.replace(hour=12).utcoffset().total_seconds()))  # type: ignore[union-attr]
    return out


def store_groups(db: Database) -> dict[str, str]:
    """store -> its group (time zone name, ``""`` for none)."""
    return {r["id"]: r["timezone"] or "" for r in db.query("SELECT id, timezone FROM stores")}


# -- writing ---------------------------------------------------------------------------
def affected(
    hours: Iterable[tuple[str, int]], groups: dict[str, str]
) -> dict[tuple[int, int], set[str]]:
    """(offset, local day) -> groups, and stores (`STORE` + ID), whose day rows the store
    hour buckets fall in."""
    out: dict[tuple[int, int], set[str]] = defaultdict(set)
    cache: dict[tuple[str, int], set[int]] = {}
    for store, hour in hours:
        group = groups.get(store, UNKNOWN)
        week = hour // (7 * DAY_S)
        offsets = cache.get((group, week))
        if offsets is None:
            around = _day_date(hour)
            offsets = cache[(group, week)] = zone_offsets(
                None if group == UNKNOWN else group or None, around
            )
        for o in offsets:
            out[(o, (hour + o) // DAY_S * DAY_S)].update((group, STORE + store))
    return out


class _Span:
    """The per-store rows one refresh reads for a run of overlapping day windows, each read
    and decoded once, sorted by (ts, store, kind): a day is recomputed for every UTC offset
    its zone takes and from each UTC day of hours settled, so the windows overlap and reading
    per window read (and decoded) most rows several times."""

    def __init__(self, db: Database, lo: int, hi: int, stores: list[str]) -> None:
        from storelens.cloud.analytics.rollups.sql import decode

        self.lo, self.hi = lo, hi
        # Every store's counts and zone maps (the group sums), the wanted stores' others.
        self.counts = sorted(db.query_tuples(
            "SELECT ts, store, metric, n FROM rollup_counts WHERE ts >= ? AND ts < ?"
            " AND metric IN ('entrances', 'visits', 'visits_ended')", (lo, hi)))  # fmt: skip
        maps = [
            (ts, store, kind, decode(bytes(data)))
            for ts, store, kind, data in db.query_tuples(
                "SELECT ts, store, kind, data FROM rollup_maps WHERE ts >= ? AND ts < ?"
                f" AND kind IN ({', '.join('?' for _ in KINDS)})",
                (lo, hi, *KINDS),
            )
        ]
        members: list[tuple] = []
        for i in range(0, len(stores), 500):  # bounded IN lists
            chunk = stores[i : i + 500]
            marks = ", ".join("?" for _ in chunk)
            members += db.query_tuples(
                "SELECT ts, store, member, visits FROM rollup_members WHERE ts >= ? AND ts < ?"
                f" AND store IN ({marks})", (lo, hi, *chunk))  # fmt: skip
            maps += [
                (ts, store, kind, decode(bytes(data)))
                for ts, store, kind, data in db.query_tuples(
                    "SELECT ts, store, kind, data FROM rollup_maps WHERE ts >= ?"
                    f" AND ts < ? AND kind IN ({', '.join('?' for _ in STORE_KINDS)})"
                    f" AND store IN ({marks})",
                    (lo, hi, *STORE_KINDS, *chunk),
                )
            ]
        self.maps = sorted(maps, key=lambda r: r[:3])
        self.members = sorted(members)
        self._ts = {
            name: [int(r[0]) for r in rows]
            for name, rows in (
                ("counts", self.counts),
                ("maps", self.maps),
                ("members", self.members),
            )
        }

    def rows(self, name: str, lo: int, hi: int) -> list[tuple]:
        """The ``name`` rows with lo <= ts < hi."""
        ts = self._ts[name]
        return getattr(self, name)[bisect_left(ts, lo) : bisect_left(ts, hi)]


def _spans(db: Database, windows: list[tuple[int, int]], stores: list[str]) -> list[_Span]:
    """`_Span` reads covering ``windows`` (UTC [lo, hi) pairs), one per run of windows that
    overlap or touch (so scattered days are not read with all the days between them)."""
    runs: list[list[int]] = []
    for lo, hi in sorted(windows):
        if runs and lo <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], hi)
        else:
            runs.append([lo, hi])
    return [_Span(db, lo, hi, stores) for lo, hi in runs]


def refresh(db: Database, hours: Iterable[tuple[str, int]]) -> None:
    """Recompute, in the caller's transaction, the day rows the store hours fall in, from
    the per-store rows (which the caller has just written): the rows of all the days are
    read at once (`_Span`), each day is then summed from its slice."""
    from storelens.cloud.analytics.rollups.sql import encode, path_ids

    groups = store_groups(db)
    known: dict[str, int] = {}  # path ids looked up by this refresh (every day and offset)
    plan = sorted(affected(hours, groups).items())
    windows = [(day - offset, day - offset + DAY_S) for (offset, day), _ in plan]
    wanted_stores = sorted({g[len(STORE) :] for _, w in plan for g in w if g.startswith(STORE)})
    spans = _spans(db, windows, wanted_stores)
    # Every zone sequence of these hours interned first, in one sorted batch, before any day
    # row is locked: concurrent refreshes (PostgreSQL) then take the new sequences' unique
    # keys and the day rows in one global order, so neither waits for the other in a cycle.
    path_ids(db, {p for x in spans for _, _, kind, v in x.maps if kind == "paths" for p in v},
             known)  # fmt: skip
    for (offset, day), wanted in plan:
        lo, hi = day - offset, day - offset + DAY_S
        span = next(x for x in spans if x.lo <= lo and hi <= x.hi)
        per_group = {g: _empty() for g in wanted if not g.startswith(STORE)}
        per_store: dict[str, dict[str, Any]] = {
            g: {"built": [0, 0, 0, BUILT_FORMAT]} for g in wanted if g.startswith(STORE)
        }
        for ts, store, metric, n in span.rows("counts", lo, hi):
            if metric == "visits_ended":
                # "built": [finished visits, member visits, distinct members] of the
                # store-day (counts only: forget-me recomputes the member's hours, and so
                # these).
                one = per_store.get(STORE + store)
                if one is not None:
                    one["built"][0] += int(n)
                continue
            acc = per_group.get(groups.get(store, UNKNOWN))
            if acc is not None:
                h = (int(ts) - lo) // HOUR_S
                cell = acc["counts"].setdefault(store, {}).setdefault(h, [0, 0])
                cell[0 if metric == "entrances" else 1] += int(n)
        distinct: dict[str, set[str]] = defaultdict(set)
        for _, store, member, visits in span.rows("members", lo, hi):
            one = per_store.get(STORE + store)
            if one is not None:
                one["built"][1] += int(visits)
                distinct[store].add(member)
        for store, seen in distinct.items():
            per_store[STORE + store]["built"][2] = len(seen)
        for ts, store, kind, value in span.rows("maps", lo, hi):
            if kind in STORE_KINDS:
                one = per_store.get(STORE + store)
                if one is not None:
                    _add_store_hour(one, kind, (int(ts) - lo) // HOUR_S, value)
                continue
            acc = per_group.get(groups.get(store, UNKNOWN))
            if acc is not None:
                acc[kind].append(value)
        db.executemany(
            "DELETE FROM rollup_days WHERE grp = ? AND utc_offset = ? AND ts = ?",
            [(g, offset, day) for g in sorted(wanted)],
        )
        rows = []
        for g in sorted(wanted):
            values = _finished(per_store[g], offset, day) if g in per_store else _summed(
                per_group[g], day)  # fmt: skip
            if "paths" in values:
                values["paths"] = pack_paths(values["paths"], path_ids(db, values["paths"],
                                                                       known))  # fmt: skip
            for kind, value in values.items():
                rows.append((g, offset, day, kind, encode(value)))
        db.executemany(
            "INSERT INTO rollup_days (grp, utc_offset, ts, kind, data) VALUES (?, ?, ?, ?, ?)",
            rows,
        )


def _add_store_hour(acc: dict[str, Any], kind: str, h: int, value: Any) -> None:
    """Add one store-hour's map to its store-day: checkout cells by local hour of the day
    (the chart's key), try-on sessions one after the other (`_finished` sums them), heat
    cells summed."""
    if kind in ("tryons", "staff"):
        acc.setdefault(kind, []).extend(value)
        return
    if kind == "heat":
        heat = acc.setdefault("heat", [0, [], []])
        samples, xy, seconds = aggregate.heat_arrays(value)
        heat[0] += samples
        if len(seconds):
            heat[1].append(xy)
            heat[2].append(seconds)
        return
    cell = acc.setdefault("checkout", {}).setdefault(str(h), {"q": [0, 0, None], "z": {}})
    merge_checkout(cell, value)


def _finished(acc: dict[str, Any], offset: int, day: int) -> dict[str, Any]:
    """A store-day's values as stored: try-on sessions summed (`tryon_day`), heat cells
    packed (`pack_heat`), checkout cells packed (`pack_checkout`)."""
    out = dict(acc)
    if "checkout" in out:
        out["checkout"] = pack_checkout(out["checkout"])
    if "tryons" in out:
        out["tryons"] = tryon_day(out["tryons"], offset, day)
    if "heat" in out:
        samples, xy, seconds = out["heat"]
        out["heat"] = pack_heat(samples, *aggregate.sum_cells(xy, seconds))
    return out


def tryon_day(entries: list[list[Any]], offset: int, day: int) -> dict[str, Any]:
    """What the try-on chart shows of a store-day, from its sessions ([visit ID, zone, kind,
    member visit?, seconds, visit end]) at UTC ``offset``: ``v`` try-on visits, ``d`` the
    sessions' seconds (packed float64, sorted: the chart's median and mean, and the chain's
    median), ``m`` the member visits that tried on, as sorted `visit_hashes` (their
    purchases are looked up when the chart is drawn: sales link to visits later), ``o``
    visits with a session whose visit did not end that local day (the chart counts them
    among the day's visits), ``z`` the zones taken as fitting rooms by the store's settings
    only (if one is no longer named so, the chart reads the store-day's sessions instead)."""
    seconds = np.sort(np.array([float(e[4]) for e in entries], dtype="<f8"))
    open_visits = {
        e[0] for e in entries
        if e[5] is None or int((e[5] + offset) // DAY_S) * DAY_S != day
    }  # fmt: skip
    return {
        "v": len({e[0] for e in entries}),
        "d": seconds.tobytes(),
        "m": visit_hashes({e[0] for e in entries if e[3]}).tobytes(),
        "o": len(open_visits),
        "z": sorted({e[1] for e in entries if e[2] != "fitting_room"}),
    }


def visit_hashes(visit_ids: Iterable[str]) -> np.ndarray:
    """The distinct 64-bit keyed hashes of ``visit_ids``, sorted, little-endian uint64 (see
    VISIT_HASH_KEY)."""
    digests = b"".join(blake2b(v.encode(), digest_size=8, key=VISIT_HASH_KEY).digest()
                       for v in visit_ids)  # fmt: skip
    return np.unique(np.frombuffer(digests, dtype="<u8"))


def pack_heat(samples: int, xy: np.ndarray, seconds: np.ndarray) -> dict[str, Any]:
    """Heat cells as stored in a store-day: ``n`` samples, ``xy`` little-endian int32 pairs
    (cell indices, sorted) and ``s`` float64 seconds, so that summing days is one NumPy pass
    (the format of store-hours too, `aggregate.heat_cells`)."""
    return {"n": int(samples), "xy": np.asarray(xy, dtype="<i4").reshape(-1, 2).tobytes(),
            "s": np.asarray(seconds, dtype="<f8").tobytes()}  # fmt: skip


def sum_heat(days: list[dict[str, Any]], hours: list[Any]) -> list[Any]:
    """[samples, [[cx, cy, seconds], ...] sorted] of packed store-days and store-hour
    values (packed, or the older lists: `aggregate.heat_arrays`)."""
    samples, xy, s = 0, [], []
    for value in [*days, *hours]:
        n, cells, seconds = aggregate.heat_arrays(value)
        samples += n
        if len(seconds):
            xy.append(cells)
            s.append(seconds)
    cells, seconds = aggregate.sum_cells(xy, s)
    if not len(seconds):
        return [samples, []]
    xs, ys = cells[:, 0].tolist(), cells[:, 1].tolist()
    return [samples, [[x, y, v] for x, y, v in zip(xs, ys, seconds.tolist(), strict=True)]]


def pack_checkout(cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A store-day's checkout cells (local hour of the day -> ``q``, ``z``, as
    `merge_checkout` adds them) as arrays, so that a period's days are summed in a few NumPy
    passes (`checkout_times._Parts`) rather than cell by cell: ``k`` the zone-and-kind keys,
    ``q`` int64 rows (hour, instants, sum, max), ``c`` int64 (hour, key, stays), ``w`` and
    ``s`` float64 (hour, key, seconds) of every wait and service time."""
    keys = sorted({k for cell in cells.values() for k in cell["z"]})
    index = {k: i for i, k in enumerate(keys)}
    q, c, w, sv = [], [], [], []
    for h, cell in sorted(cells.items(), key=lambda kv: int(kv[0])):
        hour = int(h)
        if cell["q"][0]:
            q.append((hour, *cell["q"]))
        for key, (stays, waits, services) in sorted(cell["z"].items()):
            c.append((hour, index[key], stays))
            w += [(hour, index[key], v) for v in waits]
            sv += [(hour, index[key], v) for v in services]
    return {
        "k": keys,
        "q": np.array(q, dtype="<i8").reshape(-1, 4).tobytes(),
        "c": np.array(c, dtype="<i8").reshape(-1, 3).tobytes(),
        "w": np.array(w, dtype="<f8").reshape(-1, 3).tobytes(),
        "s": np.array(sv, dtype="<f8").reshape(-1, 3).tobytes(),
    }


def merge_checkout(cell: dict[str, Any], value: dict[str, Any]) -> None:
    """Add a checkout value (``q`` queue snapshots [instants, sum, max], ``z`` zone-and-kind
    -> [stays, waits, service times]) into ``cell``."""
    if "q" in value and value["q"][0]:
        n, total, top = value["q"]
        q = cell["q"]
        q[0] += n
        q[1] += total
        q[2] = top if q[2] is None else max(q[2], top)
    for key, (stays, waits, services) in value["z"].items():
        z = cell["z"].setdefault(key, [0, [], []])
        z[0] += stays
        z[1] += waits
        z[2] += services


def _empty() -> dict[str, Any]:
    return {"counts": {}, "dwell": [], "flows": [], "paths": []}


def _summed(acc: dict[str, Any], day: int) -> dict[str, Any]:
    """One group-day's values; ``counts`` always (it marks the day as built)."""
    hours: dict[int, list[int]] = {}
    door: list[str] = []
    doorless: dict[str, list[list[int]]] = {}
    for store, per_hour in sorted(acc["counts"].items()):
        for h, (e, v) in per_hour.items():
            cell = hours.setdefault(h, [0, 0])
            cell[0] += e
            cell[1] += v
        if any(e for e, _ in per_hour.values()):
            door.append(store)
        else:
            doorless[store] = sorted([h, v] for h, (_, v) in per_hour.items() if v)
    out: dict[str, Any] = {
        "counts": {
            "d": day,
            "h": sorted([h, e, v] for h, (e, v) in hours.items() if e or v),
            "door": door,
            "doorless": doorless,
            # per store: the day's entrances and visits (footfall per store and day)
            "s": {
                store: [sum(e for e, _ in hs.values()), sum(v for _, v in hs.values())]
                for store, hs in sorted(acc["counts"].items())
            },
        }  # fmt: skip
    }
    if acc["dwell"]:
        out["dwell"] = pack_histograms(aggregate.sum_dwell(acc["dwell"]))
    for kind in ("flows", "paths"):
        if acc[kind]:
            merged: dict[str, int] = {}
            for value in acc[kind]:
                aggregate.merge_counter(merged, value)
            out[kind] = merged
    return out


# Day rows' path pairs as int32 (half the bytes), in a msgpack extension of this code; plain
# bytes are int64 pairs (ids or visits past 2**31, and the rows first written with ids).
PATHS32 = 1


def pack_paths(visits: dict[str, int], ids: dict[str, int]) -> Any:
    """A group-day's visits per zone sequence as stored: little-endian (the sequence's id
    in ``rollup_paths``, visits) pairs sorted by id, int32 when they fit (`PATHS32`), so
    that summing days is one NumPy pass (`top_paths`). Day rows written before are a dict of
    sequence -> visits."""
    pairs = np.array(sorted((ids[p], n) for p, n in visits.items()), dtype=np.int64)
    pairs = pairs.reshape(-1, 2)
    if not len(pairs) or (pairs.min() >= 0 and pairs.max() < 2**31):
        return msgspec.msgpack.Ext(PATHS32, pairs.astype("<i4").tobytes())
    return pairs.astype("<i8").tobytes()


def path_pairs(value: Any) -> np.ndarray | None:
    """The (id, visits) int64 pairs of a packed day value, None for a sequence counter."""
    if isinstance(value, bytes):
        return np.frombuffer(value, dtype="<i8").reshape(-1, 2)
    if isinstance(value, msgspec.msgpack.Ext) and value.code == PATHS32:
        return np.frombuffer(value.data, dtype="<i4").reshape(-1, 2).astype(np.int64)
    return None


def _kth_largest(values: np.ndarray, k: int) -> int:
    return int(np.partition(values, len(values) - k)[len(values) - k]) if len(values) >= k else 0


def top_paths(
    values: Iterable[Any], top: int, names: Callable[[list[int]], dict[int, str]]
) -> tuple[list[tuple[str, int]], int]:
    """The ``top`` zone sequences with the most visits (ties by sequence) of day values
    (`pack_paths`) and sequence -> visits counters (store-hours, dirty hours, day rows of
    the older format), and the visits of all; ``names(ids)`` -> {id: sequence}.

    Packed visits are summed per id in NumPy. Only ids that can reach the top are named: an
    id's total is at most its packed visits plus the largest counter total, and at least
    ``top`` sequences have a total of at least the ``top``-th largest packed (or counter)
    total, L. So every sequence whose total reaches L is either a named id (exact) or only
    in the counters (exact); any other sequence is short of L, also when its counter part
    is ranked without its packed part."""
    packed: list[np.ndarray] = []
    counted: dict[str, int] = {}
    for value in values:
        pairs = path_pairs(value)
        if pairs is None:
            aggregate.merge_counter(counted, value)
        else:
            packed.append(pairs)
    ids = visits = np.empty(0, dtype=np.int64)
    pairs = np.concatenate(packed) if packed else np.empty((0, 2), dtype=np.int64)
    if len(pairs):
        if int(pairs[:, 0].max()) < 4 * len(pairs) + (1 << 16):  # ids dense enough: a bincount
            summed = np.bincount(pairs[:, 0], weights=pairs[:, 1])
            ids = np.flatnonzero(np.bincount(pairs[:, 0]))
            visits = summed[ids]
        else:
            ids, inverse = np.unique(pairs[:, 0], return_inverse=True)
            visits = np.bincount(inverse.reshape(-1), weights=pairs[:, 1], minlength=len(ids))
        visits = np.rint(visits).astype(np.int64)  # exact: sums of integers below 2**53
    extra = np.fromiter(counted.values(), dtype=np.int64, count=len(counted))
    total = int(visits.sum()) + int(extra.sum())
    reach = max(_kth_largest(visits, top), _kth_largest(extra, top))
    most = int(extra.max()) if len(extra) else 0
    pick = np.flatnonzero(visits + most >= reach)
    merged = dict(counted)
    if len(pick):
        named = names(ids[pick].tolist())
        for i, n in zip(ids[pick].tolist(), visits[pick].tolist(), strict=True):
            p = named[i]
            merged[p] = merged.get(p, 0) + n
    ranked = sorted(((p, n) for p, n in merged.items() if n >= reach),
                    key=lambda kv: (-kv[1], kv[0]))  # fmt: skip
    return ranked[:top], total


def pack_histograms(per_zone: dict[str, aggregate.DwellHistogram]) -> dict[str, Any]:
    """Summed histograms in the stored format of `aggregate.pack_dwell`, the cells as
    uint16 (`aggregate.CELLS16`) when they all fit."""
    zones, parts = [], []
    for i, zone in enumerate(sorted(per_zone)):
        h = per_zone[zone]
        zones.append([zone, int(h.counts.sum()), float(h.total), float(h.lowest),
                      float(h.highest)])  # fmt: skip
        part = np.empty((len(h.seconds), 3), dtype=np.int64)
        part[:, 0] = i
        part[:, 1] = h.seconds.astype(np.int64)
        part[:, 2] = np.rint(h.counts).astype(np.int64)
        parts.append(part)
    cells = np.concatenate(parts) if parts else np.empty((0, 3), dtype=np.int64)
    if not len(cells) or (cells.min() >= 0 and cells.max() <= 0xFFFF):
        return {"zones": zones, aggregate.CELLS16: cells.astype("<u2").tobytes()}
    return {"zones": zones, "cells": cells.astype("<i4").tobytes()}


# -- reading ---------------------------------------------------------------------------
def _day_range(scope: Any) -> tuple[int, int]:
    """The local-day starts (local epochs) of the scope's first and last day."""
    epoch = date(1970, 1, 1)
    return (scope.start - epoch).days * DAY_S, (scope.end - epoch).days * DAY_S


def _days_touched(hour: int, offset: int) -> set[int]:
    """The local days (starts) a dirty UTC hour can touch at ``offset``: its own and those
    of the buckets it overlaps (a bucket of a :30 phase straddles two UTC hours)."""
    return {
        (hour - HOUR_S + offset) // DAY_S * DAY_S,
        (hour + 2 * HOUR_S - 1 + offset) // DAY_S * DAY_S,
    }


class Reads:
    """What every plan of one chart reads again, read once: the stores' groups and the
    dirty marks (a chart plans its period, the previous one, and several kinds). A reader
    (`SqlRollups`, one per chart) owns one; it never outlives the chart's call, so marks
    set meanwhile are seen by the next chart."""

    def __init__(self, db: Database, compare: bool = False) -> None:
        self.db = db
        # The chart reads the period before as well (its comparison): `ranged` reads both
        # periods' rows in one query.
        self.compare = compare
        self._groups: dict[str, str] | None = None
        self._span: tuple[int, int] | None = None  # the ts range whose marks are in _marks
        self._marks: list[tuple[str, int]] = []
        self._ranged: dict[Any, tuple[int, int, list[tuple]]] = {}

    def ranged(
        self, key: Any, first: int, last: int, fetch: Callable[[int, int], list[tuple]]
    ) -> list[tuple]:
        """The rows with ``first <= ts <= last`` (ts: a row's third column) of the query
        ``fetch(lo, hi)`` (rows with ``lo <= ts <= hi``) that ``key`` names: read again
        only when an earlier read does not cover the range; with ``compare``, a first read
        reaches back one period more, so the previous period's plan reads nothing."""
        have = self._ranged.get(key)
        if have is None or not (have[0] <= first and last <= have[1]):
            lo = first - (last - first + DAY_S) if self.compare and have is None else first
            have = self._ranged[key] = (lo, last, fetch(lo, last))
        if have[0] == first and have[1] == last:
            return have[2]
        return [r for r in have[2] if first <= int(r[2]) <= last]

    def groups(self, scope: Any = None) -> dict[str, str]:
        """store -> its group (`store_groups`): the ``scope``'s zones when it carries them
        (`scope_for` read the stores already), else read once."""
        if self._groups is None:
            zones = getattr(scope, "zones", None)
            self._groups = dict(zones) if zones else store_groups(self.db)
        return self._groups

    def dirty(self, lo: int, hi: int) -> list[tuple[str, int]]:
        """(store, UTC hour) of the dirty marks with ``lo <= ts < hi``. The range read is
        widened to take in every range asked before, reading only the part not yet read:
        the previous period's plan finds its marks read already."""
        lo, hi = int(lo), int(hi)
        if self._span is None:
            # The first read takes in the period before as well: charts compare with it, and
            # the marks (the hours not settled yet) are few.
            first = lo - (hi - lo)
            self._marks, self._span = self._read(first, hi), (first, hi)
        else:
            have_lo, have_hi = self._span
            if lo < have_lo:
                self._marks += self._read(lo, have_lo)
            if hi > have_hi:
                self._marks += self._read(have_hi, hi)
            self._span = (min(lo, have_lo), max(hi, have_hi))
        return [(s, ts) for s, ts in self._marks if lo <= ts < hi]

    def _read(self, lo: int, hi: int) -> list[tuple[str, int]]:
        return [(s, int(ts)) for s, ts in self.db.query_tuples(
            "SELECT store, ts FROM rollup_dirty WHERE ts >= ? AND ts < ?", (lo, hi))]  # fmt: skip


class Plan:
    """What a chain-wide scope reads: day rows of clean (group, day) pairs, and per-store
    sub-scopes for the rest."""

    def __init__(self, values: dict[str, list[Any]], rest: list[Any], clean: bool = False) -> None:
        self.values = values  # kind -> decoded day values
        self.rest = rest  # store-scoped Scopes to read per store
        # No dirty hour within two days of the scope: none in any of ``rest`` either.
        self.clean = clean

    def joined_rest(self) -> tuple[Any, set[tuple[str, int]]] | None:
        """``rest`` as one store-scoped Scope (its stores, first to last day) and the
        (store, local day) pairs of it to keep: per-store rows are grouped by day, so one
        query and a filter answer what a query per sub-scope did (None: no rest)."""
        if not self.rest:
            return None
        keep = {(store, d) for sub in self.rest for d in range(*_span(sub))
                for store in sub.stores}  # fmt: skip
        stores = tuple(sorted({s for sub in self.rest for s in sub.stores}))
        start, end = min(sub.start for sub in self.rest), max(sub.end for sub in self.rest)
        return replace(self.rest[0], start=start, end=end, stores=stores), keep


def _span(scope: Any) -> tuple[int, int, int]:
    """range() bounds of the scope's local-day starts."""
    first, last = _day_range(scope)
    return first, last + DAY_S, DAY_S


def plan(
    db: Database, scope: Any, kinds: tuple[str, ...], reads: Reads | None = None
) -> Plan | None:
    """How to read ``kinds`` for ``scope`` from the day rows, or None when the scope is
    not chain-wide over whole days (store- and region-scoped views, hour filters), or when
    events of stores outside ``stores`` are in the period. ``reads``: the chart's memo of
    groups and dirty marks (`Reads`), when the caller has one."""
    if scope.stores or not scope.all_hours or scope.raw:
        return None

    reads = reads if reads is not None else Reads(db)
    groups = reads.groups(scope)
    members: dict[str, list[str]] = defaultdict(list)
    for store, g in groups.items():
        members[g].append(store)
    offset_of = {g: int(scope.offsets.get(stores[0], 0) or 0) for g, stores in members.items()}
    first, last = _day_range(scope)
    days = range(first, last + 1, DAY_S)
    # Dirty UTC hours: the group's local days they (and the buckets they overlap) touch.
    unclean: set[tuple[str, int]] = set()
    dirty = reads.dirty(first - 2 * DAY_S, last + 3 * DAY_S)
    for store, ts in dirty:
        g = groups.get(store)
        if g is None:
            return None
        unclean.update((g, d) for d in _days_touched(ts, offset_of[g]))
    values: dict[str, list[Any]] = defaultdict(list)
    built: set[tuple[str, int]] = set()
    found: list[tuple[str, int, str, Any]] = []
    read = sorted({"counts", *kinds})
    # Only each group's rows at the scope's offset (a group has rows for every offset its
    # zone takes): the others' values would cross the wire to be dropped (dwell's are the
    # largest). 0: the UNKNOWN group's rows.
    by_offset: dict[int, set[str]] = defaultdict(set, {0: {UNKNOWN}})
    for g, o in offset_of.items():
        by_offset[o].add(g)
    pairs = sorted((o, sorted(gs)) for o, gs in by_offset.items())
    where = " OR ".join(f"(utc_offset = ? AND grp IN ({', '.join('?' for _ in gs)}))"
                        for _, gs in pairs)  # fmt: skip
    params = (*read, *(p for o, gs in pairs for p in (o, *gs)))
    for g, utc_offset, ts, kind, data in reads.ranged(
        ("days", where, params), first, last,
        lambda lo, hi: db.query_tuples(
            "SELECT grp, utc_offset, ts, kind, data FROM rollup_days WHERE ts >= ? AND ts <= ?"
            f" AND kind IN ({', '.join('?' for _ in read)}) AND ({where})", (lo, hi, *params),
            binary=True),
    ):  # fmt: skip
        day = int(ts)
        if g == UNKNOWN:
            return None  # events of stores outside `stores`: read them per store
        if offset_of.get(g) != int(utc_offset) or (g, day) in unclean:
            continue
        if kind == "counts":
            built.add((g, day))
        if kind in kinds:
            found.append((g, day, kind, data))
    wanted = [(kind, bytes(data)) for g, day, kind, data in found if (g, day) in built]
    for (kind, _), value in zip(wanted, decode_all([d for _, d in wanted]), strict=True):
        values[kind].append(value)
    # Runs of days not built, per group; the groups with the same run share one sub-scope
    # (each store keeps its own offset in it): one read for them all, not one per time zone.
    runs: dict[tuple[int, int], set[str]] = defaultdict(set)
    for g, stores in sorted(members.items()):
        run: list[int] = []
        for day in [*days, None]:
            if day is not None and (g, day) not in built:
                run.append(day)
                continue
            if run:
                runs[(run[0], run[-1])].update(stores)
                run = []
    rest = [replace(scope, start=_day_date(lo), end=_day_date(hi), stores=tuple(sorted(stores)))
            for (lo, hi), stores in sorted(runs.items())]  # fmt: skip
    return Plan(dict(values), rest, clean=not dirty)


class StorePlan:
    """What a whole-day scope reads per store: ``values`` (store, local day, value) of
    clean built store-days, and ``rest``, a store-scoped Scope covering the others, whose
    per-store rows are kept for the (store, local day) pairs in ``missing`` only."""

    def __init__(self, values: list[tuple[str, int, Any]], rest: Any, missing: set) -> None:
        self.values, self.rest, self.missing = values, rest, missing


class Marks:
    """The store-days of a whole-day scope: its ``stores`` (with those found in the rows),
    the clean ``built`` (store, local day) pairs and their marks ((store, day, mark))."""

    def __init__(self, stores: set[str], built: set[tuple[str, int]], marks: list) -> None:
        self.stores, self.built, self.marks = stores, built, marks


def store_marks(db: Database, scope: Any, reads: Reads | None = None) -> Marks | None:
    """The "built" marks `plan_stores` reads (None: hour filters); one read serves every
    kind a chart reads for the scope. ``reads``: the chart's memo (`Reads`), if any."""
    if not scope.all_hours or scope.raw:
        return None

    reads = reads if reads is not None else Reads(db)
    first, last = _day_range(scope)
    # A scope of `analytics.scope_for` has every store's offset: no stores query for them.
    stores = set(scope.stores or scope.offsets) or set(reads.groups(scope))
    unclean: set[tuple[str, int]] = set()
    for store, ts in reads.dirty(first - 2 * DAY_S, last + 3 * DAY_S):
        if scope.stores and store not in stores:
            continue
        stores.add(store)
        offset = int(scope.offsets.get(store, 0) or 0)
        unclean.update((store, d) for d in _days_touched(ts, offset))
    built: set[tuple[str, int]] = set()
    values: list[tuple[str, int, Any]] = []
    if scope.stores and len(scope.stores) <= 500:  # bounded IN lists
        grp_sql = f"grp IN ({', '.join('?' for _ in scope.stores)})"
        grp_params: tuple[Any, ...] = tuple(STORE + s for s in sorted(scope.stores))
    else:
        grp_sql, grp_params = "grp >= ? AND grp < ?", (STORE, STORE[:-1] + chr(ord(STORE[-1]) + 1))
    # Rows are kept for every offset a zone takes within half a year: the marks (a few bytes
    # each) of the scope's offsets are read first (0 too: stores outside `stores`), then the
    # values of the built days only, per offset and store, so no other offset's is fetched.
    offsets = sorted({int(scope.offsets.get(s, 0) or 0) for s in stores} | {0})
    kept: list[tuple[str, int]] = []
    data: list[bytes] = []
    offset_of = {s: int(o or 0) for s, o in scope.offsets.items()}
    cut = len(STORE)
    # Each store's rows at its own offset only (a zone keeps a row per offset it takes, so
    # an offset list alone fetched other stores' rows at the wrong offset, to drop them):
    # stores at a non-zero offset by name, offset 0 with the whole group range, which also
    # covers stores the scope has no offset for.
    by_offset: dict[int, list[str]] = defaultdict(list)
    for store in sorted(stores):
        if offset_of.get(store, 0):
            by_offset[offset_of[store]].append(STORE + store)
    if sum(len(g) for g in by_offset.values()) <= 500:  # bounded IN lists
        clauses = [f"(utc_offset = ? AND grp IN ({', '.join('?' for _ in grps)}))"
                   for grps in by_offset.values()]  # fmt: skip
        off_sql = " OR ".join([*clauses, f"(utc_offset = 0 AND {grp_sql})"])
        pairs = [v for o, grps in by_offset.items() for v in (o, *grps)]
        off_params: tuple[Any, ...] = (*pairs, *grp_params)
    else:
        off_sql = f"{grp_sql} AND utc_offset IN ({', '.join('?' for _ in offsets)})"
        off_params = (*grp_params, *offsets)
    for grp, utc_offset, ts, value in reads.ranged(
        ("built", off_sql, off_params), first, last,
        lambda lo, hi: db.query_tuples(
            "SELECT grp, utc_offset, ts, data FROM rollup_days WHERE ts >= ? AND ts <= ?"
            f" AND kind = 'built' AND ({off_sql})", (lo, hi, *off_params), binary=True),
    ):  # fmt: skip
        store, day = grp[cut:], int(ts)
        if scope.stores and store not in stores:
            continue
        if offset_of.get(store, 0) != int(utc_offset):
            continue
        stores.add(store)
        if (store, day) in unclean:
            continue
        kept.append((store, day))
        data.append(bytes(value))
    for (store, day), mark in zip(kept, decode_all(data), strict=True):
        if not isinstance(mark, list) or len(mark) < 4 or mark[3] != BUILT_FORMAT:
            continue  # an older format's day (see BUILT_FORMAT): read per store-hour
        built.add((store, day))
        values.append((store, day, mark))
    return Marks(stores, built, values)


def decode_all(values: list[bytes]) -> list[Any]:
    """Decode many msgpack values in one call: behind an array header they are one array
    (a chart's hundreds of store-day marks: one decoder call instead of one per mark)."""
    from storelens.cloud.analytics.rollups.sql import decode

    if len(values) < 2:
        return [decode(v) for v in values]
    return decode(b"\xdd" + len(values).to_bytes(4, "big") + b"".join(values))


def plan_stores(
    db: Database, scope: Any, kind: str, marks: Marks | None = None
) -> StorePlan | None:
    """How to read the per-store ``kind`` day rows for ``scope`` (None: hour filters);
    ``marks``: the scope's `store_marks`, when the caller has them."""
    marks = marks if marks is not None else store_marks(db, scope)
    if marks is None:
        return None
    from storelens.cloud.analytics.rollups.sql import decode

    first, last = _day_range(scope)
    stores, built = marks.stores, marks.built
    found: list[tuple[str, int, Any]] = []
    values: list[tuple[str, int, Any]] = list(marks.marks) if kind == "built" else []
    if kind != "built":
        # One query for every offset (a fixed cost per query, large on PostgreSQL): each
        # store's rows at its own offset only, so no other offset's value is fetched.
        wanted = sorted({(int(scope.offsets.get(store, 0) or 0), STORE + store)
                         for store, _ in built})  # fmt: skip
        for i in range(0, len(wanted), 500):  # bounded IN lists
            by_offset: dict[int, list[str]] = defaultdict(list)
            for offset, grp in wanted[i : i + 500]:
                by_offset[offset].append(grp)
            clauses = " OR ".join(
                f"(utc_offset = ? AND grp IN ({', '.join('?' for _ in grps)}))"
                for grps in by_offset.values()
            )
            for grp, ts, data in db.query_tuples(
                "SELECT grp, ts, data FROM rollup_days WHERE kind = ? AND ts >= ? AND ts <= ?"
                f" AND ({clauses})",
                (kind, first, last, *[v for o, grps in by_offset.items() for v in (o, *grps)]),
                binary=True,
            ):
                found.append((grp[len(STORE) :], int(ts), data))
    values += [(s, d, decode(bytes(data))) for s, d, data in found if (s, d) in built]
    missing = {(s, d) for s in stores for d in range(first, last + 1, DAY_S)} - built
    rest = None
    if missing:
        days = [d for _, d in missing]
        rest = replace(scope, start=_day_date(min(days)), end=_day_date(max(days)),
                       stores=tuple(sorted({s for s, _ in missing})))  # fmt: skip
    return StorePlan(values, rest, missing)
