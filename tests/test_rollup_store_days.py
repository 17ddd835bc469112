"""What the per-store charts (one row per store and hour or day) ask the database: each
store-day kind in one query whatever the stores' UTC offsets, and no stores query beside the
scope's own. Both backends; numbers as the raw events'."""

from __future__ import annotations

from test_rollup_reads import _recording
from test_rollups import charts, same, scopes, seed

from storelens.cloud import analytics

PER_STORE = {"checkout-queue": 1, "try-ons": 1, "staff": 1, "entry-to-checkout": 0}


def test_per_store_charts_read_each_store_day_kind_once(db, monkeypatch) -> None:
    seed(db)
    scope = scopes(db)[0]
    assert len(set(scope.offsets.values())) > 1  # stores at two offsets
    expected = charts(db, scope, raw=True)
    seen = _recording(db, monkeypatch)
    for name, kinds in PER_STORE.items():
        seen.clear()
        now = analytics.CHARTS[name](db, scope).to_json({})
        same(now, expected[name], name)
        asked = [sql for sql, _ in seen]
        values = [q for q in asked if q.startswith("SELECT grp, ts, data FROM rollup_days")]
        assert len(values) == kinds, (name, asked)
        assert not [q for q in asked if q.startswith("SELECT id, timezone FROM stores")], name
