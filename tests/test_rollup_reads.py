"""What the footfall, conversion and member-share charts cost in statements: a chain-wide
chart reads the stores' groups and the dirty marks once (for its period and the previous
one), and the store-days that are not in day rows in one query, however many time zones
and runs of days they span; the numbers stay those of the raw events. Both backends."""

from __future__ import annotations

import dataclasses

from test_rollups import charts, same, scopes, seed

from storelens.cloud import analytics

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


def _statements(db, build, scope) -> tuple[list[str], dict]:
    seen: list[str] = []
    query, tuples = db.query, db.query_tuples

    def logged(sql, params=()):
        seen.append(sql)
        return query(sql, params)

    def logged_tuples(sql, params=()):
        seen.append(sql)
        return tuples(sql, params)

    db.query, db.query_tuples = logged, logged_tuples
    try:
        table = build(db, scope).to_json({})
    finally:
        db.query, db.query_tuples = query, tuples
    return seen, table


def test_chain_charts_share_their_reads_and_read_the_rest_at_once(db) -> None:
    seed(db)
    scope = scopes(db)[0]
    assert len({db.scalar("SELECT timezone FROM stores WHERE id = ?", (s,)) for s in
                ("paris", "lisbon")}) == 2  # fmt: skip
    raw = charts(db, scope, raw=True)
    for name, most in MOST.items():
        seen, table = _statements(db, analytics.CHARTS[name], scope)
        same(table, raw[name], name)
        assert len(seen) <= most, (name, len(seen), seen)
        assert sum("FROM stores" in sql for sql in seen) <= 1, name
        assert sum(sql.startswith("SELECT store, ts FROM rollup_dirty") for sql in seen) <= 1, name


def test_scope_bounds_are_whole_seconds() -> None:
    """Integer bounds: PostgreSQL compares a BIGINT ts (the rollups') with a float parameter
    by casting the column, which keeps its index from cutting the range."""
    from datetime import date

    scope = analytics.Scope(date(2026, 3, 1), date(2026, 3, 7), offsets={"a": 3600})
    _, params = scope.where()
    bounds = [p for p in params if not isinstance(p, str)]
    assert bounds and all(type(p) is int for p in bounds), bounds
    _, params = dataclasses.replace(scope, hour_from=9, hour_to=17).where()
    assert all(type(p) is int for p in params if not isinstance(p, str))
