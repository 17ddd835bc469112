"""PostgreSQL connections come from a pool: many threads share a bounded number of them, a
connection the server dropped is replaced, and transactions keep one connection throughout."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from conftest import wait_for

from storelens.cloud.db import connect
from storelens.cloud.db.postgres import PostgresDatabase


def _backends(admin_url: str, app: str) -> int:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
        ).fetchone()[0]


@pytest.fixture
def tagged(pg_url: str) -> tuple[str, str]:
    app = "pooltest-" + uuid.uuid4().hex[:8]
    return f"{pg_url}&application_name={app}", app


def test_many_threads_share_a_bounded_number_of_connections(tagged, pg_url: str) -> None:
    url, app = tagged
    db = connect(url)
    try:
        errors: list[BaseException] = []
        start = threading.Barrier(3 * PostgresDatabase.POOL_MAX)

        def work() -> None:
            try:
                start.wait()
                for _ in range(20):
                    assert db.scalar("SELECT 1") == 1
                    with db.transaction():
                        db.execute("SELECT pg_sleep(0.001)")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(3 * PostgresDatabase.POOL_MAX)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        # Before the pool every thread kept a connection of its own (48 here).
        assert 1 <= _backends(pg_url, app) <= PostgresDatabase.POOL_MAX
    finally:
        db.close()
    # close() closes them all; a backend leaves pg_stat_activity a moment after its client
    # hung up, so a loaded server may still list it at once.
    wait_for(lambda: _backends(pg_url, app) == 0, timeout=10)


def test_a_transaction_runs_on_one_connection(pg_url: str) -> None:
    db = connect(pg_url)
    try:
        with db.transaction():
            first = db.scalar("SELECT pg_backend_pid()")
            assert all(db.scalar("SELECT pg_backend_pid()") == first for _ in range(5))
            assert db.conn.execute("SELECT pg_backend_pid()").fetchone()["pg_backend_pid"] == first
        with pytest.raises(RuntimeError, match="transaction"):
            _ = db.conn  # outside a transaction no connection is held
    finally:
        db.close()


def test_a_connection_the_server_dropped_is_replaced(tagged, pg_url: str) -> None:
    url, app = tagged
    db = connect(url)
    try:
        assert db.scalar("SELECT 1") == 1
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (app,),
            )
        assert db.scalar("SELECT 2") == 2
        with db.transaction():
            db.execute("CREATE TABLE t (x INTEGER)")
        assert db.scalar("SELECT count(*) FROM t") == 0
    finally:
        db.close()


def test_an_unreachable_server_fails_at_once_with_the_drivers_error() -> None:
    with pytest.raises(psycopg.OperationalError):
        connect("postgresql://root@127.0.0.1:1/test")
