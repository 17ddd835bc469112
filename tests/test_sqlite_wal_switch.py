"""Two processes opening one new SQLite file: the switch to WAL waits for the other instead of
failing at once with 'database is locked' (SQLite does not call the busy handler for it; an
ingest worker died at start-up in CI beside its twin)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from storelens.cloud.db.sqlite import SqliteDatabase


def test_wal_switch_waits_for_a_reader_holding_the_file(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")  # still in rollback-journal mode
    other.execute("BEGIN IMMEDIATE")  # a write lock, as another starting process holds
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()

    db = SqliteDatabase(str(path))
    assert db.scalar("PRAGMA journal_mode") == "wal"
    other.close()
