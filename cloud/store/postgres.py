"""PostgreSQL backend through psycopg 3: autocommit connections, one per thread, explicit
transactions; reconnects after the server restarts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.rows import dict_row
from sqlparse import lexer, tokens

from storelens.cloud.store.base import Database, DataError, IntegrityError, Row


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
