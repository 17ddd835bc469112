"""Storage: one interface (`Database`), two backends (SQLite via sqlite-utils, PostgreSQL via
psycopg 3), and per-component versioned migrations that run on start (each domain declares its
``MIGRATIONS``; `schema` collects them in a declared order).

Domain modules write portable SQL with ``?`` placeholders against `Database`; the PostgreSQL
backend rewrites placeholders. Timestamps are stored as epoch seconds (float) so arithmetic
and bucketing are identical on both backends.
"""

from storelens.cloud.db.base import (
    Database,
    DataError,
    IntegrityError,
    Migration,
    connect,
    data_error,
    migrations,
)

__all__ = [
    "DataError",
    "Database",
    "IntegrityError",
    "Migration",
    "connect",
    "data_error",
    "migrations",
]
