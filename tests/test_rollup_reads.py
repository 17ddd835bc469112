"""What a chain-wide chart asks the database: integer ts bounds (PostgreSQL serves a BIGINT
column's index only so), each group's day rows at the scope's offset only, the stores'
groups and the dirty hours once per chart (its period and the previous one), and the
store-days not in day rows in one query. Both backends; numbers as the raw events'."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

from test_rollups import charts, same, scopes, seed

from storelens.cloud import analytics
from storelens.cloud.analytics.rollups import chain


def _recording(db, monkeypatch) -> list[tuple[str, list]]:
    seen: list[tuple[str, list]] = []
    for method in ("query", "query_tuples"):
        original = getattr(type(db), method)

        def recorded(self, sql, params=(), original=original, **kw):
            rows = original(self, sql, params, **kw)
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
    day_rows = [(r["grp"], r["utc_offset"]) if isinstance(r, dict) else (r[0], r[1])
                for sql, rows in seen if sql.startswith("SELECT grp, utc_offset, ts, kind")
                for r in rows]  # fmt: skip (dicts of query, tuples of query_tuples)
    assert day_rows and all(int(o) == offset_of[g] for g, o in day_rows)
    # The previous period (of the dwell chart) has days without rows: read per store, the
    # two time zones' stores in one read (the same days), known clean from the plan's one
    # look at the dirty hours. Both periods' day rows come in one query (one reader).
    seen.clear()
    analytics.CHARTS["dwell"](db, scope)
    asked = [sql for sql, _ in seen]
    plans = [q for q in asked if q.startswith("SELECT grp, utc_offset, ts, kind")]
    dirty = [q for q in asked if q.startswith("SELECT store, ts FROM rollup_dirty WHERE")]
    per_store = [q for q in asked if q.startswith("SELECT store, ts, data FROM rollup_maps")]
    assert len(plans) == 1 and len(per_store) == 1 and len(dirty) == 1, seen


# Statements per chart over a chain-wide scope of two time zones whose previous period has
# no day rows (the seed starts with the period): dirty marks and the day rows (or store-day
# marks) of both periods once each, then the previous period's store-days in one query (and
# the sales). The stores' zones come with the scope (`scope_for` read them). Before one
# chart's reads were shared, footfall-hourly made 10 (groups, dirty marks and day rows per
# period, then marks and counts per time zone); before the scope carried the zones, one
# more each (the groups).
MOST = {
    "footfall-hourly": 3,
    "footfall-daily": 3,
    "peak-hours": 3,
    "conversion": 5,
    "conversion-hourly": 3,
    "member-share": 4,
    # zones, dirty marks, both periods' day rows, the previous period's store-days (one
    # reader for both periods; with a reader each it made 8).
    "dwell": 4,
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
        assert not any("FROM stores" in sql for sql in seen), name
        assert sum(sql.startswith("SELECT store, ts FROM rollup_dirty") for sql in seen) <= 1, name
    # A scope without the zones (not made by `scope_for`): the groups are read, once.
    recorded = _recording(db, monkeypatch)
    table = analytics.CHARTS["conversion"](db, replace(scope, zones={})).to_json({})
    seen = [sql for sql, _ in recorded]
    monkeypatch.undo()
    same(table, raw["conversion"], "conversion")
    assert sum("FROM stores" in sql for sql in seen) == 1, seen


def test_store_day_marks_are_fetched_at_each_stores_offset_only(db, monkeypatch) -> None:
    """A zone keeps a store-day row per offset it takes within half a year: the marks query
    fetches each store's rows at its own offset, not every offset of the scope's stores
    (Lisbon's rows at Paris's offset were fetched only to be dropped)."""
    seed(db)
    scope = scopes(db)[0]
    assert len(set(scope.offsets.values())) == 2, scope.offsets
    raw = charts(db, scope, raw=True)
    seen = _recording(db, monkeypatch)
    for name in ("member-share", "conversion"):
        same(analytics.CHARTS[name](db, scope).to_json({}), raw[name], name)
    offset_of = {chain.STORE + s: int(o) for s, o in scope.offsets.items()}
    query = "SELECT grp, utc_offset, ts, data FROM rollup_days"
    marks = [(r[0], int(r[1])) for sql, rows in seen if sql.startswith(query) for r in rows]
    assert marks and all(o == offset_of[g] for g, o in marks), sorted(set(marks))


def test_binary_tuples_read_the_same_values(db) -> None:
    """``query_tuples(binary=True)``: text, integers, bytes and NULL as in the text format."""
    db.execute("CREATE TABLE t_bin (a TEXT, b INTEGER, c BIGINT, d {BLOB})".format(
        BLOB="BYTEA" if db.dialect == "postgres" else "BLOB"))  # fmt: skip
    rows = [("x", 1, 2**40, b"\x00\xffab"), ("", -3, -(2**40), b""), (None, None, None, None)]
    db.executemany("INSERT INTO t_bin (a, b, c, d) VALUES (?, ?, ?, ?)", rows)
    sql = "SELECT a, b, c, d FROM t_bin WHERE b >= ? OR b IS NULL ORDER BY b"
    text, binary = db.query_tuples(sql, (-5,)), db.query_tuples(sql, (-5,), binary=True)
    assert [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in binary] == [
        tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in text]
    assert sorted(binary, key=str) == sorted([tuple(r) for r in rows], key=str)


def test_chain_charts_fetch_rollup_values_in_binary(db, monkeypatch) -> None:
    """The rollup value reads (day rows, store-day marks and values, hour maps) ask for the
    binary format: on PostgreSQL bytea then comes as bytes, not as hex text twice its size."""
    seed(db)
    scope = scopes(db)[0]
    raw = charts(db, scope, raw=True)
    asked: list[tuple[str, bool]] = []
    original = type(db).query_tuples

    def recorded(self, sql, params=(), binary=False):
        asked.append((sql, binary))
        return original(self, sql, params, binary=binary)

    monkeypatch.setattr(type(db), "query_tuples", recorded)
    for name in ("member-share", "conversion", "dwell", "footfall-daily", "staff"):
        same(analytics.CHARTS[name](db, scope).to_json({}), raw[name], name)
    values = [(sql, b) for sql, b in asked
              if " data FROM rollup_days" in sql or " data FROM rollup_maps" in sql]  # fmt: skip
    assert values and all(b for _, b in values), values


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


def test_scope_ts_bounds_are_padded_by_its_stores_offsets_only() -> None:
    """The coarse ts bounds (the index's cut) reach as far as the scope's own offsets move a
    local day, no further (the widest zone's 14 h added rows only to be dropped)."""
    start = date(2026, 3, 1)
    lo = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    hi = lo + 7 * 86_400
    east = analytics.Scope(start, date(2026, 3, 7), offsets={"a": 3600, "b": 7200, "c": 0})
    assert east.where()[1][:2] == [lo - 7200, hi]
    west = analytics.Scope(start, date(2026, 3, 7), offsets={"a": -18_000, "b": 3600})
    assert west.where()[1][:2] == [lo - 3600, hi + 18_000]
    only_a = analytics.Scope(start, date(2026, 3, 7), ("a",), offsets={"a": -18_000, "b": 3600})
    assert only_a.where()[1][:2] == [lo, hi + 18_000]
