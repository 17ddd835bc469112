"""Dead-letter replay (`storelens cloud dead-letters replay`): once an operator has fixed what
made ingest dead-letter messages (a device registered late, a schema migration, a contract or
ingest bug fixed in a new release), their raw bytes go through ingest again.

Replay feeds each selected dead letter's topic and raw bytes to an `Ingestor` as an
`Incoming`, through ``prepare`` and ``write``: the worker's own code, so validation, the
registry and consent checks, de-duplication by event ID, rollup dirty marks, the events hooks
and the batch splitting on a refused value all apply. The time of receipt is the dead
letter's own (``received_at``), so events keep when the cloud first heard them, a clock-skew
verdict does not change because time passed, and device health never moves (``last_seen``
only moves forward).

- A message that now stores (or is all duplicates: stored meanwhile) has its dead letter
  deleted, in the same transaction as its events.
- A message that fails again keeps its dead letter as it was (reason, detail, time): the
  ingestor hands the new dead letter to replay (`Ingestor.dead_letter_sink`) instead of
  writing a second row. ``still_dead`` counts them by the reason of this attempt.
- An event whose ID another device used first becomes an ``event_id_collision`` dead letter
  of its own, as in the worker (its raw bytes are the event, not an envelope, so replaying
  that dead letter fails again as a contract error until it is handled by hand).

Dead letters are replayed oldest first, in batches of those received together (one batch
of the worker gives one time of receipt), each batch in one transaction (a unit of work,
`storelens.cloud.db.unit_of_work`, in which each of the ingestor's transactions is a
savepoint, so splitting works inside it on both backends). A dry run does all of it in one
unit and rolls it back: what it reports is what a real run would do at that moment. On SQLite
it holds the write lock meanwhile (ingest waits), so bound a large one with ``limit``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from storelens.cloud.db import Database, unit_of_work
from storelens.cloud.ingest.events import DeadLetter
from storelens.cloud.ingest.worker import Incoming, Ingestor

BATCH = 100  # dead letters per transaction at most (each up to 1 MiB of raw bytes)


@dataclass
class ReplayResult:
    dry_run: bool = False
    replayed: int = 0  # dead letters fed back through ingest
    removed: int = 0  # ... whose message stored now, or was all duplicates: deleted
    stored: int = 0  # new events
    duplicates: int = 0  # events stored already (their device's or a replay's before)
    collisions: int = 0  # events whose ID another device owns: new event_id_collision rows
    statuses: int = 0  # device statuses applied
    still_dead: dict[str, int] = field(default_factory=dict)  # kept, by this attempt's reason

    def summary(self) -> str:
        head = "dry run, nothing changed: would replay" if self.dry_run else "replayed"
        kept = sum(self.still_dead.values())
        why = ", ".join(f"{reason} {n}" for reason, n in sorted(self.still_dead.items()))
        return (
            f"{head} {self.replayed} dead letter(s): {self.removed} stored and removed "
            f"({self.stored} new events, {self.duplicates} duplicates"
            + (f", {self.collisions} ID collisions dead-lettered" if self.collisions else "")
            + f"), {kept} still dead"
            + (f" ({why})" if why else "")
        )


def select(
    db: Database,
    *,
    reason: str | None = None,
    since: float | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """IDs and times of receipt of the dead letters to replay, oldest first (no raw bytes:
    those are read one batch at a time)."""
    where, params = [], []
    if reason is not None:
        where.append("reason = ?")
        params.append(reason)
    if since is not None:
        where.append("received_at >= ?")
        params.append(since)
    sql = "SELECT id, received_at FROM dead_letters"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return db.query(sql, params)


def batches(selected: Sequence[dict[str, Any]], size: int = BATCH) -> Iterator[list[dict]]:
    """Runs of dead letters received at the same time (at most ``size``): one ingest batch's
    dead letters share their time, and a replayed batch has one time of receipt."""
    run: list[dict[str, Any]] = []
    for row in selected:
        if run and (len(run) >= size or row["received_at"] != run[0]["received_at"]):
            yield run
            run = []
        run.append(row)
    if run:
        yield run


def replay(
    db: Database,
    ingestor: Ingestor,
    *,
    reason: str | None = None,
    since: float | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Replay the selected dead letters (see the module); ``progress(done, total)`` after
    each batch. Raises on a database outage: batches committed by then stay committed (a
    run again goes on with what is left), the one in hand is rolled back."""
    selected = select(db, reason=reason, since=since, limit=limit)
    result = ReplayResult(dry_run=dry_run)
    diverted: list[DeadLetter] = []
    ingestor.dead_letter_sink = diverted.extend
    done = 0
    try:
        with _unit(db, commit=False) if dry_run else nullcontext():
            for run in batches(selected):
                with nullcontext() if dry_run else _unit(db, commit=True):
                    diverted.clear()
                    _replay_batch(db, ingestor, run, diverted, result)
                done += len(run)
                if progress is not None:
                    progress(done, len(selected))
    finally:
        ingestor.dead_letter_sink = None
    return result


def _replay_batch(
    db: Database,
    ingestor: Ingestor,
    run: list[dict[str, Any]],
    diverted: list[DeadLetter],
    result: ReplayResult,
) -> None:
    ids = [r["id"] for r in run]
    marks = ", ".join("?" for _ in ids)
    rows = db.query(
        f"SELECT id, topic, raw FROM dead_letters WHERE id IN ({marks}) ORDER BY id", ids
    )  # one replayed meanwhile (another replay) is gone: skipped
    if not rows:
        return
    batch = [Incoming(r["topic"], bytes(r["raw"])) for r in rows]
    written = ingestor.write(ingestor.prepare(batch, received_at=float(run[0]["received_at"])))
    # Every dead letter the ingest path made this time names its message's topic and bytes.
    failed = {(d.topic, d.raw): d.reason for d in diverted}
    stored: list[Any] = []
    for row, msg in zip(rows, batch, strict=True):
        why = failed.get((msg.topic, msg.payload))
        if why is None:
            stored.append(row["id"])
        else:
            result.still_dead[why] = result.still_dead.get(why, 0) + 1
    if stored:
        marks = ", ".join("?" for _ in stored)
        db.execute(f"DELETE FROM dead_letters WHERE id IN ({marks})", stored)
    result.replayed += len(rows)
    result.removed += len(stored)
    result.stored += written.stored
    result.duplicates += written.duplicates
    result.collisions += written.collisions
    result.statuses += written.statuses


@contextmanager
def _unit(db: Database, *, commit: bool) -> Iterator[None]:
    """One transaction around everything inside, committed at the end when ``commit`` (and
    nothing raised), else rolled back; each transaction inside is a savepoint of it."""
    unit, token = unit_of_work.open_unit(db)
    try:
        yield
        if commit:
            unit.commit()
    finally:
        unit.rollback()  # nothing to do once committed
        unit_of_work.close_unit(token)
