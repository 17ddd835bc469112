"""A request's unit of work: every write of one API request in one transaction.

The API opens one per request (`storelens.cloud.api.unit_of_work`) and the `Database` finds
it through a context variable, so domain code keeps writing ``with db.transaction():`` and
needs no new argument. Inside a unit:

- the transaction begins at the request's first write (reads before it take no lock: on
  SQLite, a GET never holds the write lock), on a connection of its own;
- a domain ``transaction()`` is a savepoint: when it raises, its writes (and the
  announcements it queued with ``after_commit``) are undone and the rest of the request
  goes on, as the domain code expects when it catches the error;
- on PostgreSQL a lone write is a savepoint too: a failed statement would otherwise abort
  the whole transaction, where SQLite undoes only the statement;
- the unit commits once, when the response starts with a status below 400, and then runs
  the ``after_commit`` callbacks (pushes); any error, or an error status, rolls back
  everything the request wrote.

The context variable reaches the threads a request runs its code in (Starlette and anyio
copy the context into worker threads); threads of their own (ingest, rebuilds, delivery
workers) start with an empty context and keep their own transactions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storelens.cloud.db.base import Database

log = logging.getLogger(__name__)

_current: ContextVar[UnitOfWork | None] = ContextVar("storelens_unit_of_work", default=None)


def current() -> UnitOfWork | None:
    """The unit of work of the running request, if any (closed or not)."""
    return _current.get()


def open_unit(db: Database) -> tuple[UnitOfWork, Token]:
    """Start a unit for ``db`` in this context; `close_unit` with the token afterwards."""
    unit = UnitOfWork(db)
    return unit, _current.set(unit)


def close_unit(token: Token) -> None:
    _current.reset(token)


@contextmanager
def suspended() -> Iterator[None]:
    """Statements inside run outside the request's unit (see `Database.independent`)."""
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)


class UnitOfWork:
    """One request's transaction; used by one request at a time (its code runs in order)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.conn: Any = None
        self.depth = 0  # nesting of domain transactions (the outermost is a savepoint)
        self.closed = False
        self._after_commit: list[Callable[[], None]] = []

    @property
    def begun(self) -> bool:
        return self.conn is not None

    @property
    def pending(self) -> bool:
        """Whether finishing has anything to do (a transaction or announcements)."""
        return self.conn is not None or bool(self._after_commit)

    def connection(self) -> Any:
        """The unit's connection, beginning its transaction on first use."""
        if self.conn is None:
            conn = self.db._unit_connect()
            try:
                self.db._execute(conn, self.db.BEGIN, ())
            except BaseException:
                self.db._unit_release(conn, broken=True)
                raise
            self.conn = conn
        return self.conn

    @contextmanager
    def savepoint(self) -> Iterator[Any]:
        """A domain transaction inside the unit: undone alone when it raises."""
        conn = self.connection()
        if self.depth:  # nested: joins the enclosing domain transaction, as outside a unit
            self.depth += 1
            try:
                yield conn
            finally:
                self.depth -= 1
            return
        mark = len(self._after_commit)
        self.db._execute(conn, "SAVEPOINT request_step", ())
        self.depth = 1
        try:
            yield conn
        except BaseException:
            self.depth = 0
            del self._after_commit[mark:]  # undone: what it announced never happened
            self.db._execute(conn, "ROLLBACK TO SAVEPOINT request_step", ())
            self.db._execute(conn, "RELEASE SAVEPOINT request_step", ())
            raise
        self.depth = 0
        self.db._execute(conn, "RELEASE SAVEPOINT request_step", ())

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._after_commit.append(callback)

    def commit(self) -> None:
        """Commit what the request wrote, then run its announcements (each failure only
        logs: the data is committed)."""
        if self.closed:
            return
        self.closed = True
        callbacks, self._after_commit = self._after_commit, []
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                self.db._execute(conn, "COMMIT", ())
            except BaseException:
                self._abandon(conn)
                raise
            self.db._unit_release(conn, broken=False)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("after-commit callback failed")

    def rollback(self) -> None:
        """Undo everything the request wrote; its announcements are dropped."""
        if self.closed:
            return
        self.closed = True
        self._after_commit = []
        conn, self.conn = self.conn, None
        if conn is not None:
            self._abandon(conn)

    def _abandon(self, conn: Any) -> None:
        try:
            self.db._execute(conn, "ROLLBACK", ())
        except Exception:  # the connection is gone: the server rolled back already
            log.warning("rollback of a request's transaction failed", exc_info=True)
            self.db._unit_release(conn, broken=True)
        else:
            self.db._unit_release(conn, broken=False)
