"""Two processes starting on one new database both find its migrations missing (two ingest
workers, an API beside a worker): the second must find each applied, not apply it again."""

from __future__ import annotations

from typing import Any

from storelens.cloud.db import connect


def test_a_migration_another_process_applied_meanwhile_is_skipped(db, db_url: str) -> None:
    other = connect(db_url)  # the second process: it read the applied list before the first wrote
    try:
        query = other.query

        def stale(sql: str, params: Any = ()) -> list[Any]:
            if sql == "SELECT component, version FROM schema_migrations":
                return []
            return query(sql, params)

        other.query = stale  # type: ignore[method-assign]
        assert other.migrate() == []
        other.query = query  # type: ignore[method-assign]
        assert db.scalar("SELECT count(*) FROM members") == 0  # the schema is intact
    finally:
        other.close()
