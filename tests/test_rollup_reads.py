"""What a chain-wide chart asks the database: integer ts bounds (PostgreSQL serves a BIGINT
column's index only so), each group's day rows at the scope's offset only, and one query
for dirty hours per plan when there are none. Both backends; numbers as the raw events'."""

from __future__ import annotations

from datetime import date

from test_rollups import charts, same, scopes, seed

from storelens.cloud import analytics
from storelens.cloud.analytics.rollups import chain


def _recording(db, monkeypatch) -> list[tuple[str, list]]:
    seen: list[tuple[str, list]] = []
    query = type(db).query

    def recorded(self, sql, params=()):
        rows = query(self, sql, params)
        seen.append((sql, rows))
        return rows

    monkeypatch.setattr(type(db), "query", recorded)
    return seen


def test_scope_bounds_are_integers_and_postgres_uses_the_ts_index(db) -> None:
    scope = analytics.Scope(date(2026, 3, 1), date(2026, 3, 7), offsets={"a": 3600, "b": 0})
    where, params = scope.where()
    assert all(isinstance(p, int) for p in params if not isinstance(p, str)), params
    if db.dialect == "postgres":
        with db.transaction():
            db.execute("SET LOCAL enable_seqscan = off")
            sql = f"EXPLAIN SELECT data FROM rollup_maps WHERE kind = 'dwell' AND {where}"
            plan = db.query(sql, params)
        text = "\n".join(str(next(iter(r.values()))) for r in plan)
        assert "numeric" not in text and "ts >=" in text, text


def test_a_chain_view_reads_day_rows_of_its_offsets_and_dirty_hours_once(db, monkeypatch) -> None:
    seed(db)
    scope = scopes(db)[0]
    expected = charts(db, scope, raw=True)
    seen = _recording(db, monkeypatch)
    now = charts(db, scope)
    for name in ("dwell", "paths", "flows", "footfall-daily"):
        same(now[name], expected[name], name)
    offset_of = {chain.store_groups(db)[s]: o for s, o in scope.offsets.items()}
    day_rows = [r for sql, rows in seen if sql.startswith("SELECT grp, utc_offset, ts, kind")
                for r in rows]  # fmt: skip
    assert day_rows and all(int(r["utc_offset"]) == offset_of[r["grp"]] for r in day_rows)
    # The previous period (of the dwell chart) has days without rows: read per store, the
    # two time zones' stores in one read (the same days), known clean from the plan's one
    # look at the dirty hours.
    seen.clear()
    analytics.CHARTS["dwell"](db, scope)
    asked = [sql for sql, _ in seen]
    plans = [q for q in asked if q.startswith("SELECT grp, utc_offset, ts, kind")]
    dirty = [q for q in asked if q.startswith("SELECT store, ts FROM rollup_dirty WHERE")]
    per_store = [q for q in asked if q.startswith("SELECT store, ts, data FROM rollup_maps")]
    assert len(plans) == 2 and len(per_store) == 1 and len(dirty) == len(plans), seen
