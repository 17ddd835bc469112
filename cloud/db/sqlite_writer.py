"""SQLite writes of the ingest worker in a child process, so they run on another core.

On SQLite the worker's time splits about evenly between parsing and inserting, and both hold
the GIL: a writer *thread* loses more to GIL hand-offs (the driver drops and re-takes it per
row) than it overlaps. A process with a pipe does not share the GIL. Each batch goes over as
rows in msgpack (several times cheaper than pickling tuples) and the rest (dead letters,
statuses, device updates) pickled; the child commits it in one transaction and answers with
the number of new rows; the parent acknowledges only after that answer. A child that dies
or fails makes `write` raise, and the caller retries the same batch (a fresh child is
started); de-duplication absorbs a batch committed twice. A transaction refused for the
batch's values (`storelens.cloud.db.data_error`) raises DataError instead: retrying the same
values cannot succeed, so the caller splits the batch to find the message at fault.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import sqlite3
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import msgspec

from storelens.cloud.db.base import DataError

if TYPE_CHECKING:  # the ingest domain's batch; this module only carries it
    from storelens.cloud.ingest.events import StoredBatch

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
CHECKPOINT_S = 1.0
CACHE_KIB = 64 * 1024


def _serve(url: str, conn: Any) -> None:
    """The child: one transaction per batch until the pipe closes."""
    # Ctrl-C reaches the whole process group; the parent decides when writing stops (it
    # closes the pipe, or dies and the pipe reports EOF), so a batch is never cut short here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from storelens.cloud.db import connect, data_error
    from storelens.cloud.ingest.events import store_prepared

    db = connect(url, migrate=False)
    # Checkpoints (copying the WAL into the database, with fsyncs) run in a thread of their
    # own, every CHECKPOINT_S: sqlite3 releases the GIL while it works, so inserting does not
    # wait for the disk, and a page written by many commits meanwhile is copied once.
    db.execute("PRAGMA wal_autocheckpoint=0")
    # The index pages that inserts touch stay cached between batches (the default is 2 MiB).
    db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    wake, done = threading.Event(), threading.Event()
    threading.Thread(
        target=_checkpoints, args=(db.path, wake, done), name="checkpoint", daemon=True
    ).start()
    try:
        conn.send(("ready", 0))
        decode = msgspec.msgpack.Decoder(list[list[Any]]).decode
        while (rows := conn.recv_bytes()) != b"":
            rest = conn.recv()
            try:
                with db.transaction():
                    stored = store_prepared(db, replace(rest, rows=decode(rows)))
            except Exception as exc:  # reported to the parent, which retries or splits
                kind = "data_error" if data_error(exc) else "error"
                conn.send((kind, f"{type(exc).__name__}: {exc}"))
            else:
                conn.send(("ok", stored))
    except (EOFError, OSError):
        pass  # the parent is gone or closed the pipe
    finally:
        done.set()
        wake.set()
        db.close()


def _checkpoints(path: str, wake: threading.Event, done: threading.Event) -> None:
    conn = sqlite3.connect(path, timeout=30)
    try:
        while not done.is_set():
            wake.wait(CHECKPOINT_S)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:  # busy or locked: the next round catches up
                log.warning("WAL checkpoint failed: %s", exc)
    finally:
        conn.close()


class SqliteWriter:
    """The parent's handle on the writer process (started at once, in the background)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._proc: Any = None
        self._conn: Any = None
        self._ready = False
        self._encode = msgspec.msgpack.Encoder().encode
        self._start()

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_serve, args=(self.url, child), name="storelens-sqlite-writer", daemon=True
        )
        self._proc.start()
        child.close()
        self._conn, self._ready = parent, False

    def write(self, batch: StoredBatch) -> tuple[int, int]:
        """Commit one batch in the child; returns (new event rows, ID collisions). Raises
        ConnectionError when the child is gone, DataError when its transaction failed on the
        batch's values (`data_error`: the caller splits the batch), RuntimeError when it
        failed otherwise (the caller retries)."""
        with self._lock:
            if not self._proc.is_alive():
                self._stop_child()
                self._start()
            try:
                if not self._wait_ready(START_TIMEOUT_S):
                    raise ConnectionError("the SQLite writer process did not start")
                # Rows as msgpack (several times cheaper than pickling tuples), the rest pickled.
                self._conn.send_bytes(self._encode(batch.rows))
                self._conn.send(replace(batch, rows=[]))
                status, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                self._stop_child()
                self._start()
                raise ConnectionError(f"SQLite writer process died: {exc}") from None
        if status == "data_error":
            raise DataError(f"SQLite writer: {value}")
        if status != "ok":
            raise RuntimeError(f"SQLite writer: {value}")
        stored, collisions = value
        return int(stored), int(collisions)

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> bool:
        """Wait until the child has started (imported, database open); False on timeout."""
        with self._lock:
            try:
                return self._wait_ready(timeout)
            except (EOFError, OSError):
                return False

    def _wait_ready(self, timeout: float) -> bool:
        if not self._ready and self._conn.poll(timeout):
            self._conn.recv()
            self._ready = True
        return self._ready

    def _stop_child(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(OSError, ValueError):
                self._conn.send_bytes(b"")
            self._stop_child()
