"""The storage interface and migrations shared by both backends."""

from __future__ import annotations

import logging
import math
import sqlite3
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from storelens.cloud.db import unit_of_work
from storelens.cloud.db.unit_of_work import UnitOfWork

Row = dict[str, Any]
log = logging.getLogger(__name__)


class IntegrityError(Exception):
    """A unique or foreign-key constraint failed (same type on both backends)."""


class DataError(ValueError):
    """A value no column can hold: NaN, an infinity, an integer beyond 64 bits, text that is
    not valid Unicode (same type on both backends; PostgreSQL refuses these, SQLite would
    store them as text or REAL, or fail to encode them)."""


def data_error(exc: BaseException) -> bool:
    """Whether a failed write is the fault of the values written (a constraint they break, a
    value no column holds, one the driver cannot bind or encode), not of the database (locked,
    unreachable, full, a dropped connection): the same values fail again however often they
    are retried, where an outage passes. Ingest splits a batch on the first kind, to find the
    message at fault, and retries it whole on the second."""
    if isinstance(exc, DataError | IntegrityError | sqlite3.IntegrityError | sqlite3.DataError):
        return True
    if isinstance(exc, OverflowError | UnicodeEncodeError):  # an int or text beyond binding
        return True
    if isinstance(exc, sqlite3.InterfaceError | sqlite3.ProgrammingError):
        # "Error binding parameter ..." (a type sqlite3 cannot bind), "Incorrect number of
        # bindings" (a row of the wrong length); not "Cannot operate on a closed database".
        return "binding" in str(exc)
    psycopg = sys.modules.get("psycopg")  # not imported: the error cannot be one of its own
    if psycopg is None:
        return False
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        return True  # SQLSTATE classes 22 and 23, and values psycopg refuses to send (NUL)
    # Client side, no SQLSTATE: "cannot adapt type ..." / "cannot dump ..." (a value's type).
    # Server-side ProgrammingErrors (syntax, undefined table, privileges) are the code's.
    return (
        isinstance(exc, psycopg.ProgrammingError)
        and exc.sqlstate is None
        and ("adapt" in str(exc) or "dump" in str(exc))
    )


_INT64 = 2**63


def check_params(params: Sequence[Any]) -> None:
    """Raise DataError before a statement would store what PostgreSQL refuses, so a write
    fails the same way, inside its transaction, on both backends."""
    for value in params:
        kind = type(value)
        if kind is float and not math.isfinite(value):
            raise DataError(f"not a finite number: {value}")
        if kind is int and not -_INT64 <= value < _INT64:
            raise DataError(f"integer out of range: {value}")
        if kind is str and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON)
                raise DataError("text is not valid Unicode (a lone surrogate)") from None


@dataclass(frozen=True)
class Migration:
    """One schema step of one component. ``sql`` may use the type macros below.

    Macros: {ID} auto-increment primary key, {REAL} double, {BLOB} bytes, {BIGINT}, {TEXT},
    {BOOL} (0/1 integer on both backends, so queries compare with 0/1). A step that only one
    backend needs (PostgreSQL partitioning) is a mapping of dialect to SQL; the others record
    it as applied with nothing to do.
    """

    component: str
    version: int
    sql: str | Mapping[str, str]

    def script(self, dialect: str) -> str:
        return self.sql if isinstance(self.sql, str) else self.sql.get(dialect, "")


def migrations(component: str, steps: Sequence[str | Mapping[str, str]]) -> tuple[Migration, ...]:
    """A component's schema as an ordered list of SQL scripts (version = index+1), which its
    domain module declares as ``MIGRATIONS``; the storage root (`schema`) collects them in the
    order it declares, so what was imported first never decides what runs first.

    Each domain module owns its tables; components never share a version counter, so two
    domains can evolve their schemas independently.
    """
    return tuple(Migration(component, i + 1, sql) for i, sql in enumerate(steps))


class Database(ABC):
    """A connection factory with portable helpers. Thread-safe: a transaction keeps one
    connection for its thread; a statement outside one borrows a connection (`_borrow`)."""

    dialect: str
    MACROS: dict[str, str]
    BEGIN = "BEGIN"  # how a request's unit of work starts its transaction
    MIGRATION_LOCK: str | None = None  # taken before a migration re-checks it is still due

    def __init__(self) -> None:
        self._local = threading.local()
        # The `Services` built around this database, newest last (cloud/services.py binds
        # and unbinds them; the newest live one serves the domains' pushes and rules).
        self.served_by: list[Any] = []

    # -- backend hooks -------------------------------------------------------------------
    @abstractmethod
    def _connect(self) -> Any: ...

    @abstractmethod
    def _execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Any: ...

    @abstractmethod
    def _executemany(self, conn: Any, sql: str, rows: Iterable[Sequence[Any]]) -> int: ...

    @abstractmethod
    @contextmanager
    def _transaction(self, conn: Any) -> Iterator[None]: ...

    @abstractmethod
    def _fetch(self, cursor: Any) -> list[Row]: ...

    @abstractmethod
    def _rowcount(self, cursor: Any) -> int: ...

    @abstractmethod
    def _query_tuples(
        self, conn: Any, sql: str, params: Sequence[Any], binary: bool = False
    ) -> list[tuple]: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _unit_connect(self) -> Any:
        """A connection of its own for a request's unit of work."""

    @abstractmethod
    def _unit_release(self, conn: Any, *, broken: bool) -> None:
        """Give back a unit's connection (closed for good when ``broken``)."""

    # -- public API ----------------------------------------------------------------------
    def _unit(self) -> UnitOfWork | None:
        """The open unit of work of the request this code runs for, if any."""
        unit = unit_of_work.current()
        return unit if unit is not None and unit.db is self and not unit.closed else None

    @property
    def conn(self) -> Any:
        """This thread's connection (SQLite: its own for the thread's life; PostgreSQL: the
        one the open transaction holds); in a request, the request's transaction's."""
        unit = self._unit()
        if unit is not None:
            return unit.connection()
        return self._thread_conn()

    def _thread_conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    @contextmanager
    def _borrow(self) -> Iterator[Any]:
        """The connection one statement runs on; PostgreSQL lends one from its pool."""
        yield self._thread_conn()

    @contextmanager
    def pinned(self) -> Iterator[Database]:
        """Statements outside a transaction run on one connection until the block ends
        (PostgreSQL: one pool checkout for a chart's reads instead of one per statement;
        SQLite: the thread's own connection already). Transactions inside are unchanged."""
        yield self

    @contextmanager
    def _hold(self) -> Iterator[Any]:
        """The connection a whole transaction runs on, kept as `conn` until it ends."""
        yield self._thread_conn()

    @contextmanager
    def _statement(self, sql: str) -> Iterator[Any]:
        """The connection for one statement: in a request, a write begins (and joins) the
        request's transaction; on PostgreSQL a lone write is a savepoint, so a failed one
        (a unique key the caller catches) does not abort the request's transaction."""
        unit = self._unit()
        if unit is None or (not unit.begun and _reads(sql)):
            with self._borrow() as conn:
                yield conn
        elif unit.depth or self.dialect != "postgres" or _reads(sql):
            yield unit.connection()
        else:
            with unit.savepoint() as conn:
                yield conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the affected row count."""
        check_params(params)
        with self._statement(sql) as conn:
            return self._rowcount(self._execute(conn, sql, params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        check_params(params)
        with self._statement(sql) as conn:
            return self._fetch(self._execute(conn, sql, params))

    def query_tuples(
        self, sql: str, params: Sequence[Any] = (), *, binary: bool = False
    ) -> list[tuple]:
        """As `query`, rows as tuples in the SELECT's column order: no dict per row, for
        reads of many rows (settling rollups reads every event of the hours it recomputes).
        ``binary``: results in the backend's binary format where it has one (PostgreSQL:
        bytea as bytes, not hex text of twice the size to send and decode); for columns of
        plain types (text, integers, bytes), whose values are the same either way."""
        check_params(params)
        with self._statement(sql) as conn:
            return self._query_tuples(conn, sql, params, binary)

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.query_one(sql, params)
        return None if row is None else next(iter(row.values()))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """One statement over many rows, in one transaction (joining an open one)."""
        with self.transaction():
            return self._executemany(self.conn, sql, rows)

    def insert_many(
        self, table: str, rows: Sequence[Row], *, ignore_conflicts_on: str | None = None
    ) -> int:
        """Batched insert. With ``ignore_conflicts_on`` (a unique column list) duplicates are
        skipped silently; returns how many rows were new."""
        if not rows:
            return 0
        cols = list(rows[0])
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        if ignore_conflicts_on:
            sql += f" ON CONFLICT ({ignore_conflicts_on}) DO NOTHING"
        return self.executemany(sql, ([r[c] for c in cols] for r in rows))

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """All statements inside commit together or not at all (nesting joins the outer).
        In a request it is a savepoint of the request's transaction (`unit_of_work`)."""
        unit = self._unit()
        if unit is not None:
            with unit.savepoint():
                yield self
            return
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield self
            finally:
                self._local.depth = depth
            return
        self._local.depth = 1
        self._local.after_commit = []
        try:
            with self._hold() as conn, self._transaction(conn):
                yield self
        except BaseException:
            self._local.after_commit = []  # rolled back: what it announced never happened
            raise
        finally:
            self._local.depth = 0
        callbacks, self._local.after_commit = self._local.after_commit, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # the data is committed; a failed notification only logs
                log.exception("after-commit callback failed")

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the outermost transaction of this thread (in a request:
        the request's) commits (at once when none is open); dropped if it rolls back. For
        pushes and other announcements that must never get ahead of the data they announce."""
        unit = self._unit()
        if unit is not None:
            unit.after_commit(callback)
        elif getattr(self._local, "depth", 0):
            self._local.after_commit.append(callback)
        else:
            callback()

    @contextmanager
    def independent(self) -> Iterator[Database]:
        """Statements inside commit on their own, whatever becomes of the request around
        them (write-behind buffers that hold other requests' rows). On SQLite only before
        the request's first write: after it, the request holds the one write lock and an
        independent write would wait for itself."""
        unit = self._unit()
        if unit is None:
            yield self
            return
        if unit.begun and self.dialect == "sqlite":
            raise RuntimeError(
                "an independent write after the request's first write would wait for the "
                "request's own SQLite write lock: write independently before it"
            )
        with unit_of_work.suspended():
            yield self

    def migrate(self) -> list[Migration]:
        """Apply every declared migration not yet applied (`schema.declared_migrations`, in
        `schema.COMPONENTS` order); returns those applied."""
        # The storage root collects the domains' migrations in its declared order.
        from storelens.cloud.db import schema

        self.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " component TEXT NOT NULL, version INTEGER NOT NULL, applied_at "
            + self.MACROS["REAL"]
            + " NOT NULL, PRIMARY KEY (component, version))"
        )
        import time

        done = {
            (r["component"], r["version"])
            for r in self.query("SELECT component, version FROM schema_migrations")
        }
        applied = []
        for m in schema.declared_migrations():
            if (m.component, m.version) in done:
                continue
            with self.transaction():
                # Two processes starting on one new database (two ingest workers, an API and a
                # worker) both saw the migration missing: the first to hold the lock applies
                # it, the other finds it applied. SQLite's transactions take the write lock up
                # front; PostgreSQL takes MIGRATION_LOCK.
                if self.MIGRATION_LOCK:
                    self.execute(self.MIGRATION_LOCK)
                if self.scalar(
                    "SELECT count(*) FROM schema_migrations WHERE component = ? AND version = ?",
                    (m.component, m.version),
                ):
                    continue
                for statement in _split(m.script(self.dialect).format(**self.MACROS)):
                    self.execute(statement)
                self.execute(
                    "INSERT INTO schema_migrations (component, version, applied_at)"
                    " VALUES (?, ?, ?)",
                    (m.component, m.version, time.time()),
                )
            applied.append(m)
        return applied

    def applied_migrations(self) -> set[tuple[str, int]]:
        return {
            (r["component"], r["version"])
            for r in self.query("SELECT component, version FROM schema_migrations")
        }


def _reads(sql: str) -> bool:
    """A statement that only reads (it needs no transaction of the request's own yet)."""
    return sql.lstrip()[:6].upper() == "SELECT"


def _split(script: str) -> list[str]:
    # Migrations are plain DDL without semicolons inside literals, so a split is enough.
    return [s.strip() for s in script.split(";") if s.strip()]


def connect(url: str, *, migrate: bool = True) -> Database:
    """``sqlite:///path/to.db`` (or a bare path) or ``postgresql://...``."""
    if url.startswith(("postgresql://", "postgres://")):
        from storelens.cloud.db.postgres import PostgresDatabase

        db: Database = PostgresDatabase(url)
    else:
        from storelens.cloud.db.sqlite import SqliteDatabase

        db = SqliteDatabase(url.removeprefix("sqlite:///").removeprefix("sqlite://"))
    if migrate:
        db.migrate()
    return db
