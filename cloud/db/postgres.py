"""PostgreSQL backend through psycopg 3: a psycopg_pool pool of autocommit connections,
explicit transactions; a connection the server dropped (a restart) is replaced on checkout."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool
from sqlparse import lexer, tokens

from storelens.cloud.db.base import Database, DataError, IntegrityError, Row


@lru_cache(maxsize=4096)
def _pg(sql: str) -> str:
    """Portable SQL (``?`` placeholders) in psycopg's format style (``%s``, literal ``%%``).

    Only a ``?`` the SQL lexer reads as a placeholder is rewritten: one inside a string
    literal, a quoted identifier, a dollar-quoted string or a comment is text and stays. Every
    ``%`` is doubled, literals included, because psycopg reads the whole query text. Cached:
    the same few hundred statements run over and over.
    """
    out = []
    for ttype, value in lexer.tokenize(sql):
        if ttype is tokens.Name.Placeholder and value == "?":
            out.append("%s")
        else:
            out.append(value.replace("%", "%%"))
    return "".join(out)


class PostgresDatabase(Database):
    dialect = "postgres"
    MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(5308675)"  # one key for storelens schema work
    MACROS = {
        "ID": "BIGSERIAL PRIMARY KEY",
        "REAL": "DOUBLE PRECISION",
        "BLOB": "BYTEA",
        "BIGINT": "BIGINT",
        "TEXT": "TEXT",
        "BOOL": "INTEGER",
    }

    # A process's threads (the API's worker threads, ingest's writer) share at most this
    # many connections; a statement borrows one only while it runs, a transaction for its
    # length, so a few serve many threads (before the pool: one per thread, never closed).
    POOL_MAX = 16
    # How long a statement waits for a free connection (or for the server to come back).
    POOL_TIMEOUT_S = 10.0

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=self.POOL_MAX,
            timeout=self.POOL_TIMEOUT_S,
            kwargs={"autocommit": True, "row_factory": dict_row},
            check=ConnectionPool.check_connection,  # drop connections the server closed
            open=False,
            name="storelens",
        )
        # Fail now with the driver's own error (bad URL, refused, auth) rather than a pool
        # timeout; then open the pool.
        psycopg.connect(url, connect_timeout=int(self.POOL_TIMEOUT_S)).close()
        self._pool.open(wait=True, timeout=self.POOL_TIMEOUT_S)

    def _connect(self) -> psycopg.Connection:
        raise RuntimeError(
            "a PostgreSQL connection belongs to a transaction: use `with db.transaction():`"
        )

    @contextmanager
    def _borrow(self) -> Iterator[psycopg.Connection]:
        held = getattr(self._local, "conn", None) or getattr(self._local, "pinned", None)
        if held is not None:
            yield held  # inside a transaction: its connection; in `pinned`, the block's
        else:
            with self._pool.connection() as conn:
                yield conn

    @contextmanager
    def pinned(self) -> Iterator[Database]:
        # One checkout for the block: each checkout also checks the connection is alive (an
        # empty statement, a round trip), which doubled the round trips of a chart's reads.
        if getattr(self._local, "pinned", None) is not None:
            yield self  # nested: the outer block's connection
            return
        with self._pool.connection() as conn:
            self._local.pinned = conn
            try:
                yield self
            finally:
                self._local.pinned = None

    @contextmanager
    def _hold(self) -> Iterator[psycopg.Connection]:
        with self._pool.connection() as conn:
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    def _execute(self, conn: psycopg.Connection, sql: str, params: Sequence[Any]) -> Any:
        try:
            return conn.execute(_pg(sql), tuple(params), prepare=False)
        except psycopg.errors.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        except psycopg.errors.DataError as exc:  # out of range, bad value: as on SQLite
            raise DataError(str(exc)) from exc

    def _executemany(
        self, conn: psycopg.Connection, sql: str, rows: Iterable[Sequence[Any]]
    ) -> int:
        total = 0
        try:
            with conn.cursor() as cur:
                cur.executemany(_pg(sql), list(rows))
                total = max(cur.rowcount, 0)
        except psycopg.errors.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        return total

    @contextmanager
    def _transaction(self, conn: psycopg.Connection) -> Iterator[None]:
        with conn.transaction():
            yield

    def _fetch(self, cursor: Any) -> list[Row]:
        return cursor.fetchall() if cursor.description else []

    def _query_tuples(
        self, conn: psycopg.Connection, sql: str, params: Sequence[Any], binary: bool = False
    ) -> list[tuple]:
        try:
            with conn.cursor(row_factory=tuple_row) as cursor:
                cursor.execute(_pg(sql), tuple(params), prepare=False, binary=binary)
                return cursor.fetchall() if cursor.description else []
        except psycopg.errors.IntegrityError as exc:
            raise IntegrityError(str(exc)) from exc
        except psycopg.errors.DataError as exc:
            raise DataError(str(exc)) from exc

    def _rowcount(self, cursor: Any) -> int:
        return cursor.rowcount

    def _unit_connect(self) -> psycopg.Connection:
        return self._pool.getconn()

    def _unit_release(self, conn: psycopg.Connection, *, broken: bool) -> None:
        if broken:
            conn.close()  # the pool replaces a closed connection
        self._pool.putconn(conn)

    def close(self) -> None:
        self._pool.close()
        self._local.__dict__.clear()
