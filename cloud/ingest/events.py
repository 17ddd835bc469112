"""In-store event storage: the ``events`` table (its migrations also create the ``devices`` and
``dead_letters`` tables, whose functions live in `device_registry` and `dead_letters`).

Every event is one row keyed by its UUID, so re-delivered batches are stored once. Columns
that analytics filter on (zone, line, dwell, visit start) are typed; the full event stays in
``payload`` as JSON: the device's own text of it when the contract's decoder took it as sent
(timestamps then keep the device's spelling), else the contract's canonical text of it (see
`storelens.contract.decoder`). Rows are built by `storelens.cloud.ingest.rows`, the one
builder. All timestamps in columns are epoch seconds.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from storelens.cloud.analytics import rollups
from storelens.cloud.analytics.rollups import sql as rollup_tables
from storelens.cloud.db import Database, migrations
from storelens.cloud.ingest.dead_letters import dead_letter
from storelens.cloud.ingest.device_registry import apply_status_rows, mark_seen, set_availability
from storelens.cloud.ingest.rows import (  # the one row builder; re-exported for its callers
    EVENT_COLUMNS,
    EventRow,
    StatusRow,
    event_row,
    model_row,
)
from storelens.contract import topics
from storelens.contract.events import CardSwipe

__all__ = ["EVENT_COLUMNS", "EventRow", "StatusRow", "event_row", "model_row"]

MIGRATIONS = migrations(
    "events",
    [
        """
        CREATE TABLE events (
            id TEXT PRIMARY KEY,
            store TEXT NOT NULL,
            device TEXT NOT NULL,
            seq {BIGINT} NOT NULL,
            type TEXT NOT NULL,
            ts {REAL} NOT NULL,
            camera TEXT,
            visit_id TEXT,
            member TEXT,
            key_id TEXT,
            zone TEXT,
            line TEXT,
            direction TEXT,
            dwell_s {REAL},
            t_start {REAL},
            received_at {REAL} NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE INDEX events_store_ts ON events (store, ts);
        CREATE INDEX events_member_ts ON events (member, ts);
        CREATE INDEX events_type_ts ON events (type, ts);
        CREATE TABLE dead_letters (
            id {ID},
            received_at {REAL} NOT NULL,
            topic TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            raw {BLOB} NOT NULL
        );
        CREATE INDEX dead_letters_received ON dead_letters (received_at);
        CREATE TABLE devices (
            store TEXT NOT NULL,
            device TEXT NOT NULL,
            registered {BOOL} NOT NULL DEFAULT 1,
            registered_at {REAL} NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            last_seen {REAL},
            online {BOOL},
            status TEXT,
            fps {REAL},
            outbox_depth INTEGER,
            lost_events {BIGINT},
            PRIMARY KEY (store, device)
        )
        """,
        # Four events in five carry no member: a partial index skips them on every insert.
        """
        DROP INDEX events_member_ts;
        CREATE INDEX events_member_ts ON events (member, ts) WHERE member IS NOT NULL
        """,
        # Every analytics query filters on type (events_type_ts) or member; (store, ts) only
        # cost each insert about a quarter of ingest's SQLite time.
        "DROP INDEX events_store_ts",
        # Visits a device flagged as staff (contract 1.2): analytics leave them out.
        """
        CREATE TABLE staff_visits (
            visit_id TEXT PRIMARY KEY,
            store TEXT NOT NULL,
            ts {REAL} NOT NULL
        );
        CREATE INDEX staff_visits_store_ts ON staff_visits (store, ts)
        """,
        # PostgreSQL's partitioned ``events`` can only be unique on (id, ts): which device
        # owns each event ID is kept here, so another device's reuse of an ID is a collision
        # whatever its time (`claim_ids`). SQLite's ``events`` is unique on the ID itself.
        {
            "postgres": """
            CREATE TABLE event_ids (
                id UUID PRIMARY KEY,
                store TEXT NOT NULL,
                device TEXT NOT NULL
            );
            INSERT INTO event_ids (id, store, device)
                SELECT DISTINCT ON (id) CAST(id AS UUID), store, device FROM events
                ORDER BY id, received_at
            """
        },
        # The contract bounds device counts to a BIGINT (bounds.MAX_STORED_INT); PostgreSQL's
        # INTEGER held 2^31 - 1, so a larger outbox depth failed its whole status batch.
        # (SQLite's INTEGER is 64 bits.)
        {"postgres": "ALTER TABLE devices ALTER COLUMN outbox_depth TYPE BIGINT"},
        # A dead letter's natural key: the message (topic and the SHA-256 of its raw bytes as
        # received) and the reason. A batch the broker redelivers, after a worker stopped
        # part-way through splitting it, dead-letters its messages once (`dead_letter`
        # ignores the second). Rows from before this step have no digest and stay as they are.
        """
        ALTER TABLE dead_letters ADD COLUMN digest {BLOB};
        CREATE UNIQUE INDEX dead_letters_message ON dead_letters (topic, reason, digest)
        """,
    ],
)

# The staff flag as devices write it (compact JSON, or with a space after the colon).
_STAFF_MARKS = ('"staff":true', '"staff": true')
_TYPE, _VISIT, _STORE, _TS = (EVENT_COLUMNS.index(c) for c in ("type", "visit_id", "store", "ts"))


def record_staff_visits(db: Database, rows: Sequence[tuple]) -> int:
    """Remember the visits whose end says staff (rows in `EVENT_COLUMNS` order); a visit's
    end carries the flag whenever any of its events did. Returns how many rows said so."""
    staff = [
        (r[_VISIT], r[_STORE], r[_TS])
        for r in rows
        if r[_TYPE] == "visit_ended" and r[_VISIT] and any(m in r[-1] for m in _STAFF_MARKS)
    ]
    if staff:
        db.executemany(
            "INSERT INTO staff_visits (visit_id, store, ts) VALUES (?, ?, ?)"
            " ON CONFLICT (visit_id) DO NOTHING",
            staff,
        )
    return len(staff)


_COLUMNS = ", ".join(EVENT_COLUMNS)
_INSERT = (
    f"INSERT INTO events ({_COLUMNS})"
    f" VALUES ({', '.join('?' * len(EVENT_COLUMNS))}) ON CONFLICT (id) DO NOTHING"
)


def store_events(db: Database, rows: Sequence[dict[str, Any] | tuple]) -> int:
    """Insert event rows (dicts, or tuples in `EVENT_COLUMNS` order), skipping IDs already
    stored and IDs another device owns; returns how many were new."""
    return _store_events(db, rows)[0]


def _store_events(
    db: Database, rows: Sequence[dict[str, Any] | tuple], *, copied: bool = False
) -> tuple[int, list[tuple]]:
    """`store_events`, also returning the rows whose ID another device owns (collisions).
    ``copied``: the rows are in ``events`` already (streamed by `EventCopy`)."""
    if not rows:
        return 0, []
    values = [tuple(r[c] for c in EVENT_COLUMNS) if isinstance(r, dict) else r for r in rows]
    with db.transaction():
        record_staff_visits(db, values)
        if db.dialect == "postgres":
            if copied:
                stored = len(values)
                rollups.record(db, values)
            else:
                stored = _copy_events(db, values)
            collided, removed = claim_ids(db, values)
            return stored - removed, collided
        stored = db.executemany(_INSERT, values)
        if stored:
            rollups.record(db, values)
    # Some IDs were stored already: the same device's, or another's?
    return stored, id_collisions(db, values) if stored < len(values) else []


def _copy_events(db: Database, rows: Sequence[tuple]) -> int:
    # COPY is several times faster than executemany on PostgreSQL for hundreds of rows. COPY
    # has no ON CONFLICT, so it goes straight into ``events`` inside a savepoint, and only
    # when that hits an ID already stored (a redelivery: rare) does the batch go through a
    # staging table and one INSERT .. ON CONFLICT DO NOTHING.
    import psycopg

    with db.transaction():
        conn = db.conn  # the transaction's connection
        try:
            with (
                conn.transaction(),  # nested in db.transaction(): a savepoint
                conn.cursor() as cur,
                cur.copy(f"COPY events ({_COLUMNS}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            rollups.record(db, rows)
            return len(rows)
        except psycopg.errors.UniqueViolation:
            pass
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS events_stage "
            "(LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with conn.cursor() as cur:
            with cur.copy(f"COPY events_stage ({_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO events ({_COLUMNS}) SELECT DISTINCT ON (id) {_COLUMNS} "
                "FROM events_stage ON CONFLICT DO NOTHING"  # (id), or (id, ts) when partitioned
            )
            new = max(cur.rowcount, 0)
            cur.execute("DELETE FROM events_stage")
        if new:
            rollups.record(db, rows)
    return new


class _Abandon(Exception):
    """Rolls back a stream whose COPY failed part-way."""


class EventCopy:
    """Streams event rows into ``events`` with COPY while the caller is still parsing the
    rest of the batch (PostgreSQL): the server inserts and indexes on another core meanwhile
    instead of after the parse. Use inside ``db.transaction()``. The stream is a savepoint: an
    ID already stored (a redelivery) rolls back only the stream, and ``ok`` is then False, so
    the caller stores its rows with `store_events`. Other database errors are raised on exit.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.ok = False
        self._stack = ExitStack()
        self._copy: Any = None
        self._error: Exception | None = None

    def __enter__(self) -> EventCopy:
        conn = self.db.conn
        with self._stack.pop_all() as stack:
            stack.enter_context(conn.transaction())  # nested in db.transaction(): a savepoint
            cursor = stack.enter_context(conn.cursor())
            self._copy = stack.enter_context(cursor.copy(f"COPY events ({_COLUMNS}) FROM STDIN"))
            self._stack = stack.pop_all()
        return self

    def write(self, rows: Sequence[tuple]) -> None:
        """Send rows; never raises (the caller is parsing input), errors surface on exit."""
        if self._copy is None or self._error is not None:
            return
        try:
            for row in rows:
                self._copy.write_row(row)
        except Exception as exc:
            self._error = exc

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        import psycopg

        if exc is None and self._error is None:
            try:
                self._stack.close()
            except psycopg.errors.UniqueViolation:
                return  # rolled back to the savepoint; ok stays False
            self.ok = True
            return
        # Abort the COPY and roll back to the savepoint; what the server answers to the
        # aborted COPY is expected and dropped.
        failure = exc or _Abandon()
        with suppress(_Abandon, psycopg.Error):
            self._stack.__exit__(type(failure), failure, None)
        if exc is None and not isinstance(self._error, psycopg.errors.UniqueViolation):
            raise self._error  # a database fault, not a duplicate: the caller retries


class DeadLetter(NamedTuple):
    """A message ingest could not store, kept with its raw bytes (`dead_letters`)."""

    topic: str
    reason: str  # a short machine tag (`ContractError.reason`, or internal_error)
    detail: str
    raw: bytes


class Availability(NamedTuple):
    """A device's retained online/offline message (its last will)."""

    store: str
    device: str
    online: bool


@dataclass
class StoredBatch:
    """What one ingest batch writes, as it travels to storage (to the SQLite writer process
    too: ``rows`` go as msgpack, the rest pickled)."""

    rows: list[EventRow]
    received_at: float
    dead: list[DeadLetter] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)
    availability: list[Availability] = field(default_factory=list)
    seen: dict[tuple[str, str], float] = field(default_factory=dict)  # (store, device) -> t
    copied: bool = False  # the rows are in the transaction already (PostgreSQL COPY)


def store_prepared(db: Database, batch: StoredBatch) -> tuple[int, int]:
    """Write one prepared batch inside the caller's transaction; returns (new event rows,
    ID collisions). Every other row left out was a duplicate: its device's own redelivery."""
    received_at = batch.received_at
    stored, collided = _store_events(db, batch.rows, copied=batch.copied)
    for row in collided:
        detail = f"event ID {row[0]} is stored already from another device"
        dead_letter(db, topics.events(row[1], row[2]), "event_id_collision", detail,
                    str(row[-1]).encode(), received_at)  # fmt: skip
    for dead in batch.dead:
        dead_letter(db, dead.topic, dead.reason, dead.detail, dead.raw, received_at)
    apply_status_rows(db, batch.statuses, received_at)
    for store, device, online in batch.availability:
        set_availability(db, store, device, online)
    mark_seen(db, batch.seen)
    return stored, len(collided)


def id_collisions(db: Database, rows: Sequence[tuple]) -> list[tuple]:
    """The rows whose event ID is stored under another store or device (SQLite, where the
    ID is the key of ``events``). Duplicates are a device's own redeliveries (dropped and
    receipted); an ID that another device used first is a collision, dead-lettered so it is
    not lost silently. Only asked when an insert skipped rows, so the common batch pays
    nothing."""
    owner = {
        str(r["id"]): (r["store"], r["device"])
        for r in _events_with_ids(db, "id, store, device", {str(r[0]) for r in rows})
    }
    return [r for r in rows if owner.get(str(r[0]), (r[1], r[2])) != (r[1], r[2])]


def claim_ids(db: Database, rows: Sequence[tuple]) -> tuple[list[tuple], int]:
    """PostgreSQL: record which device owns each new event ID of the batch (``event_ids``),
    inside the caller's transaction, after its events went in. Returns the rows whose ID
    another device owns (collisions) and how many of them had been stored (partitioned
    ``events`` is unique on (id, ts) only, so a reuse with another time went in), now
    removed again.

    The common batch (every ID new) is one COPY of three narrow columns; only when that hits
    a known ID (a redelivery, or a collision) does the batch go through a staging table."""
    import psycopg

    if not rows:
        return [], 0
    conn = db.conn  # the transaction's connection
    try:
        with (
            conn.transaction(),  # a savepoint: a known ID rolls back only this COPY
            conn.cursor() as cur,
            cur.copy("COPY event_ids (id, store, device) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row((row[0], row[1], row[2]))
        return [], 0
    except psycopg.errors.UniqueViolation:
        pass
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS event_ids_stage2"
        " (n INTEGER, id UUID, store TEXT, device TEXT, ts DOUBLE PRECISION)"
        " ON COMMIT DELETE ROWS"
    )
    with conn.cursor() as cur:
        with cur.copy("COPY event_ids_stage2 (n, id, store, device, ts) FROM STDIN") as copy:
            for n, row in enumerate(rows):
                copy.write_row((n, row[0], row[1], row[2], row[_TS]))
        # The first row of the batch with an ID owns it when nobody did before.
        cur.execute(
            "INSERT INTO event_ids (id, store, device) SELECT DISTINCT ON (id) id, store,"
            " device FROM event_ids_stage2 ORDER BY id, n ON CONFLICT (id) DO NOTHING"
            " RETURNING id"
        )
        fresh = {str(r["id"]) for r in cur.fetchall()}
        cur.execute(
            "SELECT s.n, s.id, s.ts, o.store = s.store AND o.device = s.device AS own"
            " FROM event_ids_stage2 s JOIN event_ids o ON o.id = s.id ORDER BY s.n"
        )
        hits = cur.fetchall()
        cur.execute("DELETE FROM event_ids_stage2")
    collided = [rows[r["n"]] for r in hits if not r["own"]]
    # The owner's own reuse of an ID with another time is a duplicate too (the key of
    # partitioned ``events`` is (id, ts), so it went in): keep the row stored first, which
    # is the earlier batch's, else the first of this batch.
    own = [r for r in hits if r["own"]]
    before = _stored_times(db, {str(r["id"]) for r in own} - fresh)
    kept: dict[str, float] = {}
    again: list[tuple] = []
    for r in own:
        key = str(r["id"])
        if key not in kept:
            # Owned before this batch: the row stored then is the one with another time, if
            # this one went in beside it; else this batch's first row keeps the ID.
            kept[key] = min((t for t in before.get(key, ()) if t != r["ts"]), default=r["ts"])
        if kept[key] != r["ts"]:
            again.append(rows[r["n"]])
    removed = 0
    for row in collided + again:  # rare: one statement each, pruned to the row's partition
        removed += db.execute(
            "DELETE FROM events WHERE id = ? AND ts = ? AND store = ? AND device = ?",
            (row[0], row[_TS], row[1], row[2]),
        )
    return collided, removed


def _stored_times(db: Database, ids: set[str]) -> dict[str, list[float]]:
    """The times stored under each of ``ids`` in ``events`` (one query per 500 IDs, so a
    redelivered batch does not cost a query per row)."""
    times: dict[str, list[float]] = defaultdict(list)
    for r in _events_with_ids(db, "id, ts", ids):
        times[str(r["id"])].append(float(r["ts"]))
    return times


def _events_with_ids(db: Database, columns: str, ids: set[str]) -> Iterator[dict[str, Any]]:
    """``columns`` of the stored events with these IDs, asked 500 IDs at a time."""
    ordered = sorted(ids)
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        marks = ", ".join("?" for _ in chunk)
        yield from db.query(f"SELECT {columns} FROM events WHERE id IN ({marks})", chunk)


def unlink_member_events(db: Database, token: str) -> int:
    """Remove a member's pseudonym from stored events (forget-me). Card swipes, which are
    nothing but the token, are deleted; other events keep their anonymous counts."""
    with db.transaction():
        deleted = db.execute(
            "DELETE FROM events WHERE member = ? AND type = ?",
            (token, CardSwipe.model_fields["type"].default),
        )
        rows = db.query("SELECT id, store, ts, payload FROM events WHERE member = ?", (token,))
        for row in rows:
            payload = json.loads(row["payload"])
            payload.pop("member", None)
            payload.pop("key_id", None)
            db.execute(
                "UPDATE events SET member = NULL, key_id = NULL, payload = ? WHERE id = ?",
                (json.dumps(payload, separators=(",", ":")), row["id"]),
            )
        rollup_tables.forget_member(db, token)
        # Try-on rollups flag member visits: recompute the member's hours from the unlinked
        # events now, so no rollup says a forgotten member's visit was a member's.
        from storelens.cloud.analytics.rollups import settle

        settle.recompute(db, {(r["store"], int(r["ts"] // 3600) * 3600) for r in rows})
        # A swipe that never carried the member column still names the token in its payload.
        deleted += db.execute(
            "DELETE FROM events WHERE type = ? AND payload LIKE ?",
            (CardSwipe.model_fields["type"].default, f"%{token}%"),
        )
    return deleted + len(rows)
