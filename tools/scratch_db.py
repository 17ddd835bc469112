"""A throw-away PostgreSQL schema for benches: real server, no shared state, dropped after."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_PG_ADMIN = "postgresql://root@127.0.0.1:5432/test"


@contextmanager
def scratch_postgres(admin_url: str | None = None) -> Iterator[str | None]:
    """A URL of a fresh schema of its own on ``admin_url`` (default ``STORELENS_TEST_PG``,
    else the local test database), dropped afterwards; None when PostgreSQL is unreachable."""
    admin_url = admin_url or os.environ.get("STORELENS_TEST_PG", DEFAULT_PG_ADMIN)
    try:
        import psycopg

        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
            schema = "bench_" + uuid.uuid4().hex[:10]
            conn.execute(f"CREATE SCHEMA {schema}")
    except Exception:
        yield None
        return
    sep = "&" if "?" in admin_url else "?"
    try:
        yield f"{admin_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
