"""Rollup tables in the service's own database (SQLite or PostgreSQL): marks and writes.

Ingest, in the transaction that stores events, only marks their (store, hour) *dirty*
(`mark_dirty`: one upsert per hour touched, whatever the number of events). `settle`
replaces a dirty hour's rollup rows by what its raw events add up to (`write_hour`), so a
rollup row is always a pure function of the raw events of its hour: duplicates, resends and
late events cannot be counted twice, and two workers settling the same hour write the same
rows.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from storelens.cloud.analytics.rollups import aggregate
from storelens.cloud.db import Database, migrations

MIGRATIONS = migrations(
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
        CREATE INDEX rollup_counts_store ON rollup_counts (store, ts);
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
        CREATE INDEX rollup_maps_store ON rollup_maps (store, ts);
        CREATE TABLE rollup_dirty (
            store TEXT NOT NULL,
            ts {BIGINT} NOT NULL,
            marked_at {REAL} NOT NULL,
            version {BIGINT} NOT NULL,
            PRIMARY KEY (ts, store)
        );
        CREATE INDEX rollup_dirty_marked ON rollup_dirty (marked_at)
        """,
        # Day rows per time zone, summed over its stores (`rollups.chain`); ts = local day.
        """
        CREATE TABLE rollup_days (
            grp TEXT NOT NULL,
            utc_offset {BIGINT} NOT NULL,
            ts {BIGINT} NOT NULL,
            kind TEXT NOT NULL,
            data {BLOB} NOT NULL,
            PRIMARY KEY (kind, ts, grp, utc_offset)
        )
        """,
        # The store-days' "built" marks (a few bytes each), which every per-store chart reads
        # for its whole period first, in an index of their own that holds them (covering):
        # in the table they sit between the days' large values, a page read per mark.
        """
        CREATE INDEX rollup_days_built ON rollup_days (kind, ts, grp, utc_offset, data)
            WHERE kind = 'built'
        """,
        # The zone sequences of the paths chart, one id each (`path_ids`): day rows count
        # visits per id, so a chart sums integer arrays and looks up only the names it shows.
        # Unique on a digest of the sequence, not on the text: PostgreSQL's B-tree entries
        # are limited to ~2.7 kB, and a long walk's sequence may be longer.
        """
        CREATE TABLE rollup_paths (
            id {ID},
            digest {BLOB} NOT NULL UNIQUE,
            path TEXT NOT NULL
        )
        """,
    ],
)

ROLLUP_TABLES = ("rollup_counts", "rollup_members", "rollup_maps")
TABLES = (*ROLLUP_TABLES, "rollup_dirty")
RETAINED = (*TABLES, "rollup_days")  # what rollup retention deletes by ``ts``
MAP_KINDS = aggregate.MAP_KINDS
encode = msgspec.msgpack.Encoder().encode
decode = msgspec.msgpack.Decoder().decode

_MARK_DIRTY = (
    "INSERT INTO rollup_dirty (store, ts, marked_at, version) VALUES (?, ?, ?, 1)"
    " ON CONFLICT (ts, store) DO UPDATE SET marked_at = excluded.marked_at,"
    " version = rollup_dirty.version + 1"
)


def mark_dirty(db: Database, hours: Iterable[tuple[str, int]]) -> None:
    """Mark (store, hour) pairs for `settle`, inside the caller's transaction. Sorted, so
    concurrent workers lock the rows in one order and never deadlock."""
    keys = sorted(set(hours))
    if keys:
        now = time.time()
        db.executemany(_MARK_DIRTY, [(s, h, now) for s, h in keys])


def write_hours(
    db: Database,
    deltas: aggregate.Deltas,
    hours: Iterable[tuple[str, int]],
    cleared: Iterable[tuple[str, int]] = (),
    *,
    refresh: bool = True,
) -> None:
    """Replace the rollup rows of ``hours`` by ``deltas`` (computed from all their raw
    events), inside the caller's transaction, and the day rows (`chain`) of those hours
    and of ``cleared`` ones (whose rows the caller deleted). ``refresh=False``: the caller
    refreshes the day rows later (`chain.refresh`), and keeps the hours marked dirty until
    then, so no reader takes the day rows of hours they do not sum yet."""
    keys = sorted(set(hours))
    from storelens.cloud.analytics.rollups import chain

    if not keys:
        if refresh:
            chain.refresh(db, cleared)
        return
    for table in ROLLUP_TABLES:
        db.executemany(f"DELETE FROM {table} WHERE ts = ? AND store = ?", [(h, s) for s, h in keys])
    wanted = set(keys)
    counts = [(s, h, m, int(v[0]), v[1]) for (s, h, m), v in deltas.counts.items()
              if (s, h) in wanted]  # fmt: skip
    if counts:
        db.executemany(
            "INSERT INTO rollup_counts (store, ts, metric, n, total) VALUES (?, ?, ?, ?, ?)",
            sorted(counts),
        )
    linked = [(s, h, m, n) for (s, h, m), n in deltas.members.items() if (s, h) in wanted]
    if linked:
        db.executemany(
            "INSERT INTO rollup_members (store, ts, member, visits) VALUES (?, ?, ?, ?)",
            sorted(linked),
        )
    maps = [(s, h, kind, encode(value)) for (s, h, kind), value in deltas.maps().items()
            if (s, h) in wanted]  # fmt: skip
    if maps:
        db.executemany(
            "INSERT INTO rollup_maps (store, ts, kind, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (kind, ts, store) DO UPDATE SET data = excluded.data",
            sorted(maps),
        )
    if refresh:
        chain.refresh(db, {*keys, *cleared})


def forget_member(db: Database, token: str) -> int:
    """Delete a member's rows (forget-me): no rollup keeps the pseudonym afterwards. The
    hours stay equal to a recompute, since the member's events are unlinked with it."""
    return db.execute("DELETE FROM rollup_members WHERE member = ?", (token,))


def _digest(path: str) -> bytes:
    return hashlib.blake2b(path.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def path_ids(db: Database, paths: Iterable[str], known: dict[str, int] | None = None
             ) -> dict[str, int]:  # fmt: skip
    """The id of each zone sequence in ``rollup_paths``, adding those not there yet, in the
    caller's transaction. Exactly once: the digest is unique, a concurrent writer's insert of
    the same sequence makes ours do nothing (PostgreSQL waits for it to commit first), and
    both then read the one id. Looked up before inserting, so PostgreSQL's sequence does not
    advance for sequences already known. ``known``: ids found earlier in this transaction
    (updated in place)."""
    known = {} if known is None else known
    wanted = sorted({p for p in paths if p not in known}, key=_digest)  # one lock order
    for attempt in range(2):
        for i in range(0, len(wanted), 500):  # bounded IN lists
            chunk = [_digest(p) for p in wanted[i : i + 500]]
            marks = ", ".join("?" for _ in chunk)
            for r in db.query(
                f"SELECT id, path FROM rollup_paths WHERE digest IN ({marks})", chunk
            ):
                known[r["path"]] = int(r["id"])
        wanted = [p for p in wanted if p not in known]
        if not wanted or attempt:
            break
        db.executemany(
            "INSERT INTO rollup_paths (digest, path) VALUES (?, ?) ON CONFLICT (digest) DO NOTHING",
            [(_digest(p), p) for p in wanted],
        )
    if wanted:  # two sequences with one 128-bit digest: not expected in this universe
        raise RuntimeError(f"rollup_paths: digest collision for {wanted[0]!r}")
    return known


def path_names(db: Database, ids: Iterable[int]) -> dict[int, str]:
    """id -> zone sequence of some ``rollup_paths`` ids."""
    wanted = sorted(set(ids))
    out: dict[int, str] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        for r in db.query(
            f"SELECT id, path FROM rollup_paths WHERE id IN ({', '.join('?' for _ in chunk)})",
            chunk,
        ):
            out[int(r["id"])] = r["path"]
    missing = set(wanted) - out.keys()
    if missing:
        raise RuntimeError(
            f"rollup_paths lacks {len(missing)} path id(s) the day rows use:"
            " run `storelens cloud rollups rebuild`"
        )
    return out


def map_values(
    db: Database, kind: str, where: str, params: Iterable[Any]
) -> list[tuple[tuple[str, int], Any]]:
    """((store, hour), decoded value) of every settled ``kind`` map matched by ``where``
    (on ``store`` and ``ts``)."""
    rows = db.query_tuples(
        f"SELECT store, ts, data FROM rollup_maps WHERE kind = ? AND {where}",
        [kind, *params],
        binary=True,
    )
    return [((store, int(ts)), decode(bytes(data))) for store, ts, data in rows]
