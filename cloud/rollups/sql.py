"""Rollups in the service's own database (SQLite or PostgreSQL): tables, writes, reads.

Writes happen inside the transaction that stored the events (`apply`), so a batch and its
rollup update commit together or not at all. Counters and member visits are additive
upserts; sparse maps (dwell histograms, flows, paths, heat cells) are read, merged and
written back under a row lock (PostgreSQL: placeholder insert, then ``SELECT .. FOR UPDATE``;
SQLite has one writer). Keys are written in sorted order so concurrent workers never
deadlock on each other's rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import msgspec

from storelens.cloud.rollups import aggregate
from storelens.cloud.store import Database, register_migrations

register_migrations(
    "rollups",
    [
        """
        CREATE TABLE rollup_counts (
            store TEXT NOT NULL,
            ts {BIGINT} NOT NULL,
            metric TEXT NOT NULL,
            n {BIGINT} NOT NULL,
            total {REAL} NOT NULL DEFAULT 0,
            PRIMARY KEY (metric, ts, store)
        );
        CREATE TABLE rollup_members (
            store TEXT NOT NULL,
            ts {BIGINT} NOT NULL,
            member TEXT NOT NULL,
            visits {BIGINT} NOT NULL,
            PRIMARY KEY (ts, store, member)
        );
        CREATE INDEX rollup_members_member ON rollup_members (member);
        CREATE TABLE rollup_maps (
            store TEXT NOT NULL,
            ts {BIGINT} NOT NULL,
            kind TEXT NOT NULL,
            data {BLOB} NOT NULL,
            PRIMARY KEY (kind, ts, store)
        );
        CREATE TABLE rollup_dirty (
            store TEXT NOT NULL,
            ts {BIGINT} NOT NULL,
            marked_at {REAL} NOT NULL,
            version {BIGINT} NOT NULL,
            PRIMARY KEY (ts, store)
        );
        CREATE INDEX rollup_dirty_marked ON rollup_dirty (marked_at)
        """
    ],
)

TABLES = ("rollup_counts", "rollup_members", "rollup_maps", "rollup_dirty")
MAP_KINDS = ("dwell", "flows", "paths", "heat")
encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


_UPSERT_COUNTS = (
    "INSERT INTO rollup_counts (store, ts, metric, n, total) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (metric, ts, store) DO UPDATE SET n = rollup_counts.n + excluded.n,"
    " total = rollup_counts.total + excluded.total"
)
_MARK_DIRTY = (
    "INSERT INTO rollup_dirty (store, ts, marked_at, version) VALUES (?, ?, ?, 1)"
    " ON CONFLICT (ts, store) DO UPDATE SET marked_at = excluded.marked_at,"
    " version = rollup_dirty.version + 1"
)


_UPSERT_MEMBERS = (
    "INSERT INTO rollup_members (store, ts, member, visits) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (ts, store, member) DO UPDATE SET visits = rollup_members.visits + excluded.visits"
)


def apply(db: Database, deltas: aggregate.Deltas) -> None:
    """Add ``deltas`` to the rollups inside the caller's transaction."""
    if not deltas:
        return
    with db.transaction():
        if deltas.counts:
            db.executemany(
                _UPSERT_COUNTS,
                [(s, h, m, int(v[0]), v[1]) for (s, h, m), v in sorted(deltas.counts.items())],
            )
        if deltas.members:
            db.executemany(
                _UPSERT_MEMBERS, [(s, h, m, n) for (s, h, m), n in sorted(deltas.members.items())]
            )
        maps = deltas.maps()
        if maps:
            _merge_maps(db, maps)
        if deltas.dirty:
            now = time.time()
            db.executemany(_MARK_DIRTY, [(s, h, now) for s, h in sorted(deltas.dirty)])


def apply_sqlite_since(db: Database, rowid: int) -> None:
    """`apply` for the events a SQLite transaction stored past ``rowid`` (it has the only
    write lock, so those are exactly its new rows), aggregated by SQLite itself: several
    times cheaper per event than the same loop in Python, and SQLite's writer process is
    where ingest spends its time on that backend. Same numbers as `aggregate.add_rows`
    (the tests compare it with a rebuild)."""
    from storelens.cloud.analytics.footfall import entrance_line_sql

    hour = "CAST(ts / 3600 AS INTEGER) * 3600"
    with db.transaction():
        db.execute(
            "INSERT INTO rollup_counts (store, ts, metric, n, total)"
            " SELECT store, h, metric, COUNT(*), COALESCE(SUM(v), 0) FROM ("
            f" SELECT store, {hour} AS h, CASE type"
            " WHEN 'visit_started' THEN 'visits' WHEN 'visit_ended' THEN 'visits_ended'"
            " WHEN 'occupancy' THEN 'occupancy'"
            f" WHEN 'line_crossing' THEN CASE WHEN {entrance_line_sql('sqlite')} THEN"
            " CASE direction WHEN 'in' THEN 'entrances' WHEN 'out' THEN 'exits' END END"
            " END AS metric,"
            " CASE WHEN type = 'occupancy' THEN json_extract(payload, '$.total') END AS v"
            " FROM events WHERE rowid > ?)"
            " WHERE metric IS NOT NULL AND (metric <> 'occupancy' OR typeof(v) IN"
            " ('integer', 'real')) GROUP BY store, h, metric"
            " ON CONFLICT (metric, ts, store) DO UPDATE SET n = rollup_counts.n + excluded.n,"
            " total = rollup_counts.total + excluded.total",
            (rowid,),
        )
        db.execute(
            "INSERT INTO rollup_members (store, ts, member, visits)"
            f" SELECT store, {hour} AS h, member, COUNT(*) FROM events WHERE rowid > ?"
            " AND type = 'visit_ended' AND member IS NOT NULL GROUP BY store, h, member"
            " ON CONFLICT (ts, store, member) DO UPDATE"
            " SET visits = rollup_members.visits + excluded.visits",
            (rowid,),
        )
        db.execute(
            "INSERT INTO rollup_dirty (store, ts, marked_at, version)"
            f" SELECT DISTINCT store, {hour}, ?, 1 FROM events WHERE rowid > ?"
            " AND type = 'visit_ended' AND true"
            " ON CONFLICT (ts, store) DO UPDATE SET marked_at = excluded.marked_at,"
            " version = rollup_dirty.version + 1",
            (time.time(), rowid),
        )
        dwell: dict[tuple[str, int, str], Any] = {}
        for r in db.query(
            f"SELECT store, {hour} AS h, zone, CAST(dwell_s AS INTEGER) AS s, COUNT(*) AS n,"
            " SUM(dwell_s) AS total, MIN(dwell_s) AS lo, MAX(dwell_s) AS hi FROM events"
            " WHERE rowid > ? AND type = 'zone_visit' AND zone IS NOT NULL"
            " AND dwell_s IS NOT NULL GROUP BY store, h, zone, s",
            (rowid,),
        ):
            per_zone = dwell.setdefault((r["store"], int(r["h"]), "dwell"), {})
            per_zone.setdefault(r["zone"], {})[int(r["s"])] = [
                int(r["n"]), float(r["total"]), float(r["lo"]), float(r["hi"])
            ]
        if dwell:
            _merge_maps(db, dwell)


def _merge_maps(db: Database, maps: dict[tuple[str, int, str], Any]) -> None:
    keys = sorted(maps)
    if db.dialect == "postgres":
        # Lock every key first (a placeholder row for new ones), then read what is there.
        db.executemany(
            "INSERT INTO rollup_maps (store, ts, kind, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (kind, ts, store) DO NOTHING",
            [(s, h, k, b"") for s, h, k in keys],
        )
    current = _read_maps(db, keys, lock=db.dialect == "postgres")
    rows = []
    for key in keys:
        kind = key[2]
        old = current.get(key)
        value = aggregate.merge(kind, old if old is not None else aggregate.empty(kind), maps[key])
        rows.append((key[0], key[1], kind, encode(value)))
    db.executemany(
        "INSERT INTO rollup_maps (store, ts, kind, data) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (kind, ts, store) DO UPDATE SET data = excluded.data",
        rows,
    )


_CHUNK = 300  # keys per lookup (SQLite allows 32766 parameters; three per key)


def _read_maps(
    db: Database, keys: list[tuple[str, int, str]], *, lock: bool
) -> dict[tuple[str, int, str], Any]:
    out: dict[tuple[str, int, str], Any] = {}
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        marks = ", ".join("(?, ?, ?)" for _ in chunk)
        params = [v for s, h, k in chunk for v in (k, h, s)]
        sql = f"SELECT store, ts, kind, data FROM rollup_maps WHERE (kind, ts, store) IN ({marks})"
        if lock:
            sql += " ORDER BY kind, ts, store FOR UPDATE"
        for r in db.query(sql, params):
            data = bytes(r["data"])
            if data:
                out[(r["store"], int(r["ts"]), r["kind"])] = _decode(data)
    return out


def forget_member(db: Database, token: str) -> int:
    """Delete a member's rows (forget-me): no rollup keeps the pseudonym afterwards."""
    return db.execute("DELETE FROM rollup_members WHERE member = ?", (token,))


def clear(db: Database, since: float | None = None, store: str | None = None) -> None:
    """Delete rollup rows from ``since`` (a bucket start) on, of one store or all."""
    where, params = [], []
    if since is not None:
        where.append("ts >= ?")
        params.append(int(since))
    if store is not None:
        where.append("store = ?")
        params.append(store)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    for table in TABLES:
        db.execute(f"DELETE FROM {table}{clause}", params)


def map_values(
    db: Database, kind: str, where: str, params: Iterable[Any], *, keyed: bool = False
) -> list[Any]:
    """Every decoded ``kind`` map in the rows matched by ``where`` (on ``store`` and ``ts``);
    with ``keyed``, as ((store, ts), value) pairs."""
    rows = db.query(
        f"SELECT store, ts, data FROM rollup_maps WHERE kind = ? AND {where}", [kind, *params]
    )
    if keyed:
        return [((r["store"], int(r["ts"])), _decode(bytes(r["data"]))) for r in rows
                if r["data"]]  # fmt: skip
    return [_decode(bytes(r["data"])) for r in rows if r["data"]]
