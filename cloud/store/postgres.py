"""PostgreSQL backend through psycopg 3: autocommit connections, one per thread, explicit
transactions; reconnects after the server restarts."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from storelens.cloud.store.base import Database, DataError, IntegrityError, Row

_PLACEHOLDER = re.compile(r"\?")


def _pg(sql: str) -> str:
    # Portable SQL uses '?'; literal '%' must be doubled for psycopg's format style.
    return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))


class PostgresDatabase(Database):
    dialect = "postgres"
    MACROS = {
        "ID": "BIGSERIAL PRIMARY KEY",
        "REAL": "DOUBLE PRECISION",
        "BLOB": "BYTEA",
        "BIGINT": "BIGINT",
        "TEXT": "TEXT",
        "BOOL": "INTEGER",
    }

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._all: list[psycopg.Connection] = []

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row)
        self._all.append(conn)
        return conn

    @property
    def conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn.closed:
            conn = None  # server restarted: reconnect on next use
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

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
            with self.transaction(), conn.cursor() as cur:
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

    def _rowcount(self, cursor: Any) -> int:
        return cursor.rowcount

    def close(self) -> None:
        for conn in self._all:
            conn.close()
        self._all.clear()
        self._local.__dict__.clear()
