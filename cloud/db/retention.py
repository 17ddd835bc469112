"""How long raw events and rollups are kept, and PostgreSQL's daily partitions of events.

PostgreSQL: ``events`` is range-partitioned by day on ``ts`` (UTC days, one table each,
``events_pYYYYMMDD``), plus a default partition for what falls outside the tables created so
far (a device that was offline for days, a clock far ahead). `ensure_partitions` creates the
days ahead and moves any day found in the default partition into a table of its own; expired
days are dropped whole (`DROP TABLE`: no dead rows, no vacuum). The migration below turns an
existing unpartitioned table into this (its rows go through the default partition, then
`ensure_partitions` splits them into days). The primary key becomes (id, ts): a partitioned
table's unique keys must include the partition column; an event's resend carries the same
ID and time, so duplicates are caught as before.

SQLite: expired events are deleted in bounded batches (one short transaction each, so
ingest's writer never waits long). Cut-offs are UTC midnights on both, so a day is kept or
dropped whole and a rollup rebuild of a kept day sees all of its events.

Rollups are kept for their own period (``rollups_retention_days``, longer): dropping events
never changes rollups, and `storelens.cloud.analytics.rollups.settle` skips hours older than
the events cut-off (their raw events are gone, a recompute would erase them).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from storelens.cloud.db import Database, migrations

log = logging.getLogger(__name__)

DAY_S = 86_400
PARTITIONS_AHEAD_DAYS = 7
DELETE_BATCH = 5_000
_NAME = re.compile(r"^events_p(\d{8})$")

MIGRATIONS = migrations(
    "events_partitions",
    [
        {
            "postgres": """
            ALTER TABLE events RENAME TO events_unpartitioned;
            ALTER TABLE events_unpartitioned RENAME CONSTRAINT events_pkey
                TO events_unpartitioned_pkey;
            ALTER INDEX events_type_ts RENAME TO events_unpartitioned_type_ts;
            ALTER INDEX events_member_ts RENAME TO events_unpartitioned_member_ts;
            CREATE TABLE events (LIKE events_unpartitioned INCLUDING DEFAULTS)
                PARTITION BY RANGE (ts);
            ALTER TABLE events ADD PRIMARY KEY (id, ts);
            CREATE INDEX events_type_ts ON events (type, ts);
            CREATE INDEX events_member_ts ON events (member, ts) WHERE member IS NOT NULL;
            CREATE TABLE events_default PARTITION OF events DEFAULT;
            INSERT INTO events SELECT * FROM events_unpartitioned;
            DROP TABLE events_unpartitioned
            """
        }
    ],
)


def midnight(ts: float) -> int:
    return int(ts // DAY_S) * DAY_S


def partition_name(day: int) -> str:
    return f"events_p{datetime.fromtimestamp(day, UTC):%Y%m%d}"


def _day_of(name: str) -> int | None:
    m = _NAME.match(name)
    if m is None:
        return None
    return int(datetime.strptime(m.group(1), "%Y%m%d").replace(tzinfo=UTC).timestamp())


def partitioned(db: Database) -> bool:
    if db.dialect != "postgres":
        return False
    return bool(db.scalar(
        "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
        " WHERE c.relname = 'events' AND c.relnamespace = current_schema()::regnamespace"
    ))  # fmt: skip


def partitions(db: Database) -> dict[int, str]:
    """Day start -> table of the day partitions of ``events``."""
    rows = db.query(
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'"
        " AND p.relnamespace = current_schema()::regnamespace"
    )
    out = {}
    for r in rows:
        day = _day_of(r["name"])
        if day is not None:
            out[day] = r["name"]
    return out


def ensure_partitions(
    db: Database, now: float | None = None, ahead: int = PARTITIONS_AHEAD_DAYS
) -> list[str]:
    """Create the day partitions from yesterday to ``ahead`` days on, and move every day
    found in the default partition into its own; returns the tables created."""
    if not partitioned(db):
        return []
    today = midnight(time.time() if now is None else now)
    existing = partitions(db)
    created = []
    stray = {
        int(r["day"])
        for r in db.query(
            "SELECT DISTINCT CAST(FLOOR(ts / 86400) AS BIGINT) * 86400 AS day FROM events_default"
        )  # fmt: skip
    }
    for day in sorted(stray - set(existing)):
        name = partition_name(day)
        with db.transaction():  # move the day's rows out of the default, then attach
            db.execute(f"CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS)")
            db.execute(
                f"WITH moved AS (DELETE FROM events_default WHERE ts >= ? AND ts < ?"
                f" RETURNING *) INSERT INTO {name} SELECT * FROM moved",
                (day, day + DAY_S),
            )
            db.execute(
                f"ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ({day}) TO"
                f" ({day + DAY_S})"
            )
        created.append(name)
        existing[day] = name
    for day in range(today - DAY_S, today + (ahead + 1) * DAY_S, DAY_S):
        if day not in existing:
            name = partition_name(day)
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF events FOR VALUES FROM ({day})"
                f" TO ({day + DAY_S})"
            )
            created.append(name)
    return created


def _delete_before(db: Database, table: str, cutoff: int, where: str = "") -> int:
    """Delete rows of ``table`` with ``ts`` before ``cutoff`` in bounded batches."""
    key = "rowid" if db.dialect == "sqlite" else "ctid"
    deleted = 0
    while True:
        with db.transaction():
            n = db.execute(
                f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table}"
                f" WHERE {where}ts < ? LIMIT ?)",
                (cutoff, DELETE_BATCH),
            )
        deleted += n
        if n < DELETE_BATCH:
            return deleted


def _expire_event_ids(db: Database, cutoff: int) -> int:
    """PostgreSQL's owners of event IDs (`events.claim_ids`) from before ``cutoff``, by the
    time a UUIDv7 carries in its first 48 bits, in bounded batches along the key. An ID that
    is no UUIDv7 goes by whatever time its bits spell: at worst its reuse by another device
    after that is stored instead of dead-lettered (a redelivery is still a duplicate)."""
    bound = uuid.UUID(int=(cutoff * 1000) << 80)
    deleted = 0
    while True:
        with db.transaction():
            n = db.execute(
                "DELETE FROM event_ids WHERE id IN (SELECT id FROM event_ids WHERE id < ?"
                " ORDER BY id LIMIT ?)",
                (bound, DELETE_BATCH),
            )
        deleted += n
        if n < DELETE_BATCH:
            return deleted


def expire(
    db: Database,
    events_days: int = 0,
    rollups_days: int = 0,
    now: float | None = None,
) -> dict[str, Any]:
    """Drop raw events older than ``events_days`` and rollups older than ``rollups_days``
    (whole UTC days; 0 keeps forever); returns what went."""
    today = midnight(time.time() if now is None else now)
    out: dict[str, Any] = {"partitions_dropped": [], "events_deleted": 0, "rollup_rows": 0}
    if events_days > 0:
        cutoff = today - events_days * DAY_S
        if partitioned(db):
            for day, name in sorted(partitions(db).items()):
                if day + DAY_S <= cutoff:
                    db.execute(f"DROP TABLE {name}")
                    out["partitions_dropped"].append(name)
            out["events_deleted"] = _delete_before(db, "events_default", cutoff)
            out["event_ids_deleted"] = _expire_event_ids(db, cutoff)
        else:
            from storelens.contract.events import EVENT_TYPES

            # By type: the index is (type, ts), and a cut on ts alone would scan the table.
            for kind in EVENT_TYPES:
                out["events_deleted"] += _delete_before(db, "events", cutoff,
                                                        f"type = '{kind}' AND ")  # fmt: skip
    if rollups_days > 0:
        from storelens.cloud.analytics.rollups.sql import RETAINED

        cutoff = today - rollups_days * DAY_S
        for table in RETAINED:
            out["rollup_rows"] += _delete_before(db, table, cutoff)
    return out


def events_cutoff(events_days: int, now: float | None = None) -> int | None:
    """The first ``ts`` still kept (None: events are kept forever)."""
    if events_days <= 0:
        return None
    return midnight(time.time() if now is None else now) - events_days * DAY_S


def housekeeping(db: Database, events_days: int, rollups_days: int) -> dict[str, Any]:
    """What the service runs now and then: partitions ahead, then expiry."""
    created = ensure_partitions(db)
    result = expire(db, events_days, rollups_days)
    result["partitions_created"] = created
    if created or result["partitions_dropped"] or result["events_deleted"]:
        log.info("retention: %s", result)
    return result
