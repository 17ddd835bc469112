"""The storage interface behaves the same on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from storelens.cloud.db import IntegrityError


def test_migrations_recorded_and_idempotent(db) -> None:
    first = db.applied_migrations()
    assert db.migrate() == []
    assert db.applied_migrations() == first


def test_batched_insert_ignores_duplicates_and_transactions_roll_back(db) -> None:
    db.execute("CREATE TABLE probe (id TEXT PRIMARY KEY, v {REAL})".format(**db.MACROS))
    assert (
        db.insert_many(
            "probe", [{"id": "a", "v": 1.0}, {"id": "b", "v": 2.0}], ignore_conflicts_on="id"
        )
        == 2
    )
    assert (
        db.insert_many(
            "probe", [{"id": "a", "v": 1.0}, {"id": "c", "v": 3.0}], ignore_conflicts_on="id"
        )
        == 1
    )
    with pytest.raises(IntegrityError), db.transaction():
        db.execute("INSERT INTO probe (id, v) VALUES (?, ?)", ("d", 4.0))
        db.execute("INSERT INTO probe (id, v) VALUES (?, ?)", ("a", 5.0))
    assert db.scalar("SELECT count(*) FROM probe") == 3
    assert db.query("SELECT id FROM probe WHERE v >= ? ORDER BY id", (2.0,)) == [
        {"id": "b"},
        {"id": "c"},
    ]


def test_after_commit_waits_for_the_outermost_commit_and_is_dropped_on_rollback(db) -> None:
    db.execute("CREATE TABLE note (id TEXT PRIMARY KEY)")
    seen: list[int] = []

    def count() -> None:
        seen.append(db.scalar("SELECT count(*) FROM note"))

    with db.transaction():
        db.execute("INSERT INTO note (id) VALUES ('a')")
        with db.transaction():
            db.after_commit(count)
        assert seen == []
    assert seen == [1]
    with pytest.raises(RuntimeError), db.transaction():
        db.execute("INSERT INTO note (id) VALUES ('b')")
        db.after_commit(count)
        raise RuntimeError("abort")
    assert seen == [1]
    db.after_commit(count)  # no transaction open: runs at once
    assert seen == [1, 1]
