"""The dwell chart's sums of packed histograms and its bins and quartiles equal the plain
per-cell arithmetic they replace: a grid bincount where seconds are dense, a sort where a
few long stays make the grid sparse, day values with uint16 cells, and old-format (unpacked
or int32) values among them; day rows hold uint16 cells, and int32 ones are still read."""

from __future__ import annotations

import math
import random

import msgspec
import numpy as np
from test_rollups import charts, same, scopes, seed

from storelens.cloud.analytics import dwell
from storelens.cloud.analytics.rollups import aggregate, chain


def _reference(values: list[dict]) -> dict[str, tuple[list[int], list[float], float, float, float]]:
    merged: dict[str, dict[int, list[float]]] = {}
    for value in values:
        aggregate.merge_dwell(merged, value)
    out = {}
    for zone, cells in merged.items():
        cs = cells.values()
        out[zone] = (sorted(cells), [float(cells[s][0]) for s in sorted(cells)],
                     sum(c[1] for c in cs), min(c[2] for c in cs), max(c[3] for c in cs))
    return out


def _hour(rng: random.Random, long_stays: bool) -> dict[str, dict[int, list[float]]]:
    out: dict[str, dict[int, list[float]]] = {}
    for zone in rng.sample(["shoes", "denim", "tills", "kids", "home"], rng.randrange(1, 5)):
        cells = out.setdefault(zone, {})
        for _ in range(rng.randrange(1, 30)):
            d = rng.uniform(0, 200_000 if long_stays and rng.random() < 0.1 else 400)
            s = math.floor(d)
            c = cells.setdefault(s, [0, 0.0, d, d])
            c[0] += 1
            c[1] += d
            c[2], c[3] = min(c[2], d), max(c[3], d)
    return out


def test_summed_histograms_equal_the_cell_by_cell_sum() -> None:
    rng = random.Random(3)
    for case in range(60):
        hours = [_hour(rng, long_stays=case % 2 == 1) for _ in range(rng.randrange(1, 12))]
        # Hour values, summed day values (uint16 cells when they fit) and values as stored
        # before the packed format (zone -> second -> cell).
        values = [aggregate.pack_dwell(h) for h in hours]
        for i in range(len(values)):
            if rng.random() < 0.3:
                values[i] = chain.pack_histograms(aggregate.sum_dwell([values[i]]))
            elif rng.random() < 0.2:
                values[i] = {z: {str(s): c for s, c in v.items()} for z, v in hours[i].items()}
        got = aggregate.sum_dwell(values)
        want = _reference([{z: {int(s): c for s, c in v.items()} for z, v in h.items()}
                           for h in hours])  # fmt: skip
        assert got.keys() == want.keys()
        for zone, (seconds, counts, total, lo, hi) in want.items():
            h = got[zone]
            assert h.seconds.tolist() == [float(s) for s in seconds]
            assert h.counts.tolist() == counts
            assert math.isclose(h.total, total) and (h.lowest, h.highest) == (lo, hi)
    assert aggregate.sum_dwell([]) == {}


def test_bins_and_quartiles_equal_numpy_histogram_and_the_per_quantile_search() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        seconds = np.unique(rng.integers(0, rng.choice([20, 700, 5000]), rng.integers(1, 60)))
        counts = rng.integers(1, 9, len(seconds)).astype(float)
        want = np.histogram(seconds, bins=[*dwell.HISTOGRAM_EDGES_S, np.inf], weights=counts)[0]
        assert dwell._binned(seconds.astype(float), counts) == [int(v) for v in want]
        cum = np.cumsum(counts)
        expected = []
        for q in dwell.QUANTILES:
            target = q * cum[-1]
            i = int(np.searchsorted(cum, target, side="left"))
            before = cum[i - 1] if i else 0.0
            expected.append(round(float(seconds[i] + (target - before) / counts[i]), 1))
        assert dwell._quantiles(seconds.astype(float), counts) == expected


def test_day_rows_hold_uint16_cells_and_older_int32_ones_are_read(db) -> None:
    seed(db)
    scope = scopes(db)[0]
    expected = charts(db, scope, raw=True)["dwell"]
    decode, encode = msgspec.msgpack.Decoder().decode, msgspec.msgpack.Encoder().encode
    rows = db.query("SELECT grp, utc_offset, ts, data FROM rollup_days WHERE kind = 'dwell'")
    values = [decode(bytes(r["data"])) for r in rows]
    assert rows and all(set(v) == {"zones", aggregate.CELLS16} for v in values)
    same(charts(db, scope)["dwell"], expected)
    for k, (r, v) in enumerate(zip(rows, values, strict=True)):
        if k % 2:  # half the days as written before: int32 cells
            cells = np.frombuffer(v.pop(aggregate.CELLS16), dtype="<u2").astype("<i4")
            v["cells"] = cells.tobytes()
            db.execute("UPDATE rollup_days SET data = ? WHERE kind = 'dwell' AND grp = ?"
                       " AND utc_offset = ? AND ts = ?",
                       (encode(v), r["grp"], r["utc_offset"], r["ts"]))  # fmt: skip
    same(charts(db, scope)["dwell"], expected)
