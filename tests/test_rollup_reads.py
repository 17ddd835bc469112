"""What a chain-wide chart asks the database: integer ts bounds (PostgreSQL serves a BIGINT
column's index only so), each group's day rows at the scope's offset only, the stores'
groups and the dirty hours once per chart (its period and the previous one), and the
store-days not in day rows in one query. Both backends; numbers as the raw events'."""

from __future__ import annotations

from datetime import date

from test_rollups import charts, same, scopes, seed

from storelens.cloud import analytics
from storelens.cloud.analytics.rollups import chain


def _recording(db, monkeypatch) -> list[tuple[str, list]]:
    seen: list[tuple[str, list]] = []
    for method in ("query", "query_tuples"):
        original = getattr(type(db), method)

        def recorded(self, sql, params=(), original=original):
            rows = original(self, sql, params)
            seen.append((sql, rows))
            return rows

        monkeypatch.setattr(type(db), method, recorded)
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


# Statements per chart over a chain-wide scope of two time zones whose previous period has
# no day rows (the seed starts with the period): before one chart's reads were shared,
# footfall-hourly made 10 (groups, dirty marks and day rows per period, and marks
# and counts per time zone of the previous period).
MOST = {
    "footfall-hourly": 5,
    "footfall-daily": 5,
    "peak-hours": 5,
    "conversion": 7,
    "conversion-hourly": 4,
    "member-share": 6,
}


def test_chain_charts_share_their_reads_and_read_the_rest_at_once(db, monkeypatch) -> None:
    seed(db)
    scope = scopes(db)[0]
    assert len({db.scalar("SELECT timezone FROM stores WHERE id = ?", (s,)) for s in
                ("paris", "lisbon")}) == 2  # fmt: skip
    raw = charts(db, scope, raw=True)
    for name, most in MOST.items():
        recorded = _recording(db, monkeypatch)
        table = analytics.CHARTS[name](db, scope).to_json({})
        seen = [sql for sql, _ in recorded]
        monkeypatch.undo()
        same(table, raw[name], name)
        assert len(seen) <= most, (name, len(seen), seen)
        assert sum("FROM stores" in sql for sql in seen) <= 1, name
        assert sum(sql.startswith("SELECT store, ts FROM rollup_dirty") for sql in seen) <= 1, name


def test_a_chart_reads_on_one_pinned_connection(db) -> None:
    """A chart's statements run on one connection (PostgreSQL: one pool checkout, each of
    which checks the connection with a round trip); a transaction inside the block keeps
    its own connection, commits or rolls back as outside it, and the block sees the result."""
    seed(db)
    scope = scopes(db)[0]
    with db.pinned():
        with db.transaction():
            db.execute("INSERT INTO rollup_dirty (store, ts, marked_at, version)"
                       " VALUES ('x', 1, 0, 1)")  # fmt: skip
            assert db.scalar("SELECT count(*) FROM rollup_dirty WHERE store = 'x'") == 1
        try:
            with db.transaction():
                db.execute("DELETE FROM rollup_dirty WHERE store = 'x'")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        assert db.scalar("SELECT count(*) FROM rollup_dirty WHERE store = 'x'") == 1
    db.execute("DELETE FROM rollup_dirty WHERE store = 'x'")
    if db.dialect != "postgres":
        return
    checkouts = db._pool.get_stats().get("requests_num", 0)
    analytics.CHARTS["conversion"](db, scope)
    assert db._pool.get_stats().get("requests_num", 0) - checkouts == 1
    with db.pinned(), db.pinned():  # nested: the outer block's connection
        db.query("SELECT 1")
        db.query("SELECT 1")
    assert db._pool.get_stats().get("requests_num", 0) - checkouts == 2
