"""Store-and-forward: events wait in a local SQLite file until their delivery is confirmed.

Row states::

    pending --take()/mark_sent(batch)--> sent (batch id) --confirm(batch)--> deleted
       ^                                    |
       +---- requeue: no receipt in time, or a restart (the MQTT session died) ----+

What confirms a batch is the publisher's choice (``outbox.confirm``): the cloud's receipt
that the events are durably stored (default), or the broker's PUBACK. A row that is sent
again goes out in a new envelope with a new batch id; its event ID does not change, so the
cloud stores it once.

The outbox is bounded by bytes and by age. When a bound is hit the oldest rows are dropped
and counted in ``lost``, which is persisted and reported in the device status.

Sequence numbers: `next_seq()` hands out numbers from memory, starting from the high-water
mark persisted with the last stored event, so numbers of events that were never stored
(a crash between creation and `put`) are reused and the stored sequence stays gap-free.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq     INTEGER PRIMARY KEY,
    kind    TEXT    NOT NULL,
    created REAL    NOT NULL,
    size    INTEGER NOT NULL,
    body    BLOB    NOT NULL,
    batch   TEXT
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (kind, seq) WHERE batch IS NULL;
CREATE INDEX IF NOT EXISTS outbox_batch ON outbox (batch) WHERE batch IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

# Outbox files written before receipts existed tracked the MQTT message id (``mid``); what
# was in flight is resent at start anyway, so the column is simply replaced.
_FROM_MID = """
DROP INDEX IF EXISTS outbox_pending;
DROP INDEX IF EXISTS outbox_mid;
ALTER TABLE outbox DROP COLUMN mid;
ALTER TABLE outbox ADD COLUMN batch TEXT;
"""


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    kind: str
    body: bytes


class Outbox:
    """A thread-safe SQLite (WAL) queue of encoded events, oldest first."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        max_age_s: float = 7 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (SIGKILL); only a power cut may lose the
        # last transactions, which is the trade-off for not fsyncing on every frame's events.
        self._db.execute("PRAGMA synchronous=NORMAL")
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}
        if "mid" in columns:
            self._db.executescript(_FROM_MID)
        self._db.executescript(_SCHEMA)
        with self._lock:
            self._db.execute("UPDATE outbox SET batch = NULL WHERE batch IS NOT NULL")
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
            self._depth, self._bytes = int(row[0]), int(row[1])
            self._next_seq = max(self._meta("next_seq"), self._max_seq() + 1, 1)
            self._lost = self._meta("lost")

    # -- sequence numbers ----------------------------------------------------------------
    def next_seq(self) -> int:
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            return seq

    # -- writing -------------------------------------------------------------------------
    def put(self, events: Sequence[BaseModel], kind: str = "events") -> None:
        """Store events (each with its ``seq``); enforce the bounds afterwards."""
        if not events:
            return
        now = self._clock()
        rows = []
        for ev in events:
            body = ev.model_dump_json(exclude_none=True).encode()
            rows.append((ev.seq, kind, now, len(body), body))  # type: ignore[attr-defined]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO outbox (seq, kind, created, size, body) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                high = max(r[0] for r in rows) + 1
                self._set_meta("next_seq", max(high, self._meta("next_seq")))
                self._depth += len(rows)
                self._bytes += sum(r[3] for r in rows)
                self._enforce_bounds(now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._refresh_counts()
                raise
            self._next_seq = max(self._next_seq, high)

    def _enforce_bounds(self, now: float) -> None:
        cutoff = now - self.max_age_s
        excess = self._bytes - self.max_bytes
        if excess > 0:
            excess += self.max_bytes // 20  # free 5% more, so the next puts need not drop again
        # Rows are in age order by seq: walk the oldest prefix only as far as needed (O(k)).
        last, freed = None, 0
        for seq, created, size in self._db.execute(
            "SELECT seq, created, size FROM outbox ORDER BY seq"
        ):
            if created >= cutoff and freed >= excess:
                break
            last, freed = seq, freed + size
        dropped = self._drop("seq <= ?", last) if last is not None else 0
        if dropped:
            self._set_meta("lost", self._meta("lost") + dropped)
            self._lost += dropped

    # -- sending -------------------------------------------------------------------------
    def take(self, kind: str, max_events: int, max_bytes: int) -> list[OutboxRow]:
        """The oldest pending rows of one kind, at most ``max_events`` and ``max_bytes``."""
        with self._lock:
            cur = self._db.execute(
                "SELECT seq, kind, size, body FROM outbox WHERE batch IS NULL AND kind = ? "
                "ORDER BY seq LIMIT ?",
                (kind, max_events),
            )
            out: list[OutboxRow] = []
            used = 0
            for seq, k, size, body in cur:
                if out and used + size > max_bytes:
                    break
                out.append(OutboxRow(seq, k, bytes(body)))
                used += size
            return out

    def mark_sent(self, seqs: Sequence[int], batch: str) -> None:
        """Rows ``seqs`` left in envelope ``batch``; they stay until it is confirmed."""
        with self._lock:
            self._db.executemany(
                "UPDATE outbox SET batch = ? WHERE seq = ?", [(batch, s) for s in seqs]
            )

    def confirm(self, batches: Iterable[str]) -> int:
        """Envelopes ``batches`` were delivered: delete their rows. Returns the count.

        An unknown batch (already confirmed, or requeued and sent again under a new id)
        deletes nothing."""
        with self._lock:
            deleted = 0
            for batch in batches:
                sizes = self._db.execute(
                    "DELETE FROM outbox WHERE batch = ? RETURNING size", (batch,)
                ).fetchall()
                self._depth -= len(sizes)
                self._bytes -= sum(r[0] for r in sizes)
                deleted += len(sizes)
            return deleted

    def requeue(self, batches: Iterable[str]) -> int:
        """Rows of unconfirmed envelopes ``batches`` become pending, to be sent again."""
        with self._lock:
            return sum(
                self._db.execute("UPDATE outbox SET batch = NULL WHERE batch = ?", (b,)).rowcount
                for b in batches
            )

    # -- numbers for the status message --------------------------------------------------
    @property
    def depth(self) -> int:
        return self._depth

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def lost(self) -> int:
        return self._lost

    def oldest_age_s(self) -> float:
        """Seconds since the oldest message still held (sent or not: it leaves only when the
        cloud confirms it) was stored; 0 when empty. One row by primary key: seq grows with
        time, so the lowest seq is the oldest."""
        with self._lock:
            row = self._db.execute("SELECT created FROM outbox ORDER BY seq LIMIT 1").fetchone()
        return 0.0 if row is None else round(max(0.0, self._clock() - row[0]), 1)

    def pending(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                q = self._db.execute("SELECT COUNT(*) FROM outbox WHERE batch IS NULL")
            else:
                q = self._db.execute(
                    "SELECT COUNT(*) FROM outbox WHERE batch IS NULL AND kind = ?", (kind,)
                )
            return int(q.fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- internals (caller holds the lock) -----------------------------------------------
    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _drop(self, where: str, arg: float) -> int:
        sizes = self._db.execute(
            f"DELETE FROM outbox WHERE {where} RETURNING size", (arg,)
        ).fetchall()
        self._depth -= len(sizes)
        self._bytes -= sum(r[0] for r in sizes)
        return len(sizes)

    def _max_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), -1) FROM outbox").fetchone()[0])

    def _refresh_counts(self) -> None:
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        self._depth, self._bytes = int(row[0]), int(row[1])
