"""`storelens bench ingest-stages`: what each stage of ingest costs per event, measured alone.

`storelens bench ingest` gives end-to-end rates and the machine's CPU per event; this splits
that cost into the stages of the hot path, each timed on its own (no MQTT, one process) over
the same realistic envelopes, best of ``repeat`` runs:

- ``json_loads``: what the bare subscriber does to a message after receiving it;
- ``validate``: the contract's decoder (`decode_envelope`: msgspec structs, each
  event's raw text, the bulk pattern check);
- ``rows``: building the ``events`` rows from the structs (`rows.message_rows`);
- ``msgpack``: encoding the rows for the SQLite writer process;
- ``sqlite_executemany``: inserting the rows into a fresh, migrated SQLite ``events`` table
  through Python's driver, in transactions of ``rows_per_commit`` (the writer's batches);
- ``sqlite_sql_only``: the same inserts with no Python per row (``INSERT ... SELECT`` from a
  staged in-memory table): SQLite's own cost of a row with its key and indexes;
- ``postgres_copy_client`` and ``postgres_copy_server``: COPY of the rows into a fresh,
  migrated PostgreSQL schema: CPU of this process and of its server backend (read from
  ``/proc``, so only for a server on this machine);
- ``postgres_claim_client`` and ``postgres_claim_server``: the same for recording each
  event ID's owning device (`claim_ids`: COPY of id, store, device into ``event_ids`` in a
  savepoint), which PostgreSQL ingest pays on top of the COPY.

The sum of the stages a backend needs, plus receiving (the bare subscriber pays that too), is
a floor for the CPU one event costs; compare it with ``cpu_count / (0.5 * bare_eps)``.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from storelens.tools.bench.ingest import envelopes, realistic_event_dicts


def _best(repeat: int, run: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _process_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sqlite(rows: list[tuple], per_commit: int, repeat: int, tmp: Path) -> dict[str, float]:
    from storelens.cloud.db import connect
    from storelens.cloud.ingest import events as event_store

    columns = ", ".join(event_store.EVENT_COLUMNS)
    marks = ", ".join("?" * len(event_store.EVENT_COLUMNS))

    def fresh() -> Any:
        path = tmp / f"stages-{uuid.uuid4().hex[:8]}.db"
        db = connect(f"sqlite:///{path}")
        db.execute("PRAGMA cache_size=-65536")  # as the ingest writer process runs
        return db

    def executemany() -> float:
        db = fresh()
        start = time.perf_counter()
        for i in range(0, len(rows), per_commit):
            with db.transaction():
                event_store.store_events(db, rows[i : i + per_commit])
        elapsed = time.perf_counter() - start
        db.close()
        return elapsed

    def sql_only() -> float:
        db = fresh()
        conn = db.conn
        conn.execute("ATTACH ':memory:' AS staged")
        conn.execute(f"CREATE TABLE staged.rows (n INTEGER PRIMARY KEY, {columns})")
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO staged.rows ({columns}) VALUES ({marks})", rows)
        conn.execute("COMMIT")
        start = time.perf_counter()
        for i in range(0, len(rows), per_commit):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                f"INSERT INTO main.events ({columns}) SELECT {columns} FROM staged.rows "
                "WHERE n > ? AND n <= ?",
                (i, i + per_commit),
            )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        db.close()
        return elapsed

    return {
        "sqlite_executemany": min(executemany() for _ in range(repeat)),
        "sqlite_sql_only": min(sql_only() for _ in range(repeat)),
    }


def _postgres(
    rows: list[tuple], per_commit: int, repeat: int, admin_url: str | None
) -> dict[str, Any]:
    import psycopg

    from storelens.cloud.db import connect
    from storelens.cloud.ingest import events as event_store
    from storelens.tools.scratch_db import scratch_postgres

    columns = ", ".join(event_store.EVENT_COLUMNS)
    best: dict[str, Any] = {}
    with scratch_postgres(admin_url) as url:
        if url is None:
            return dict.fromkeys(("postgres_copy_client", "postgres_copy_server",
                                  "postgres_claim_client", "postgres_claim_server"))  # fmt: skip
        for _ in range(repeat):
            db = connect(url)
            db.execute("TRUNCATE events")
            db.close()
            # A connection of its own (not one lent by the pool per statement), so the server
            # process timed is the one that copies.
            conn = psycopg.connect(url, autocommit=True)
            server = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            server_cpu, client_cpu = _process_cpu(server), time.process_time()
            for i in range(0, len(rows), per_commit):
                with (
                    conn.transaction(),
                    conn.cursor() as cur,
                    cur.copy(f"COPY events ({columns}) FROM STDIN") as copy,
                ):
                    for row in rows[i : i + per_commit]:
                        copy.write_row(row)
            client = time.process_time() - client_cpu
            after = _process_cpu(server)
            _keep_best(best, "postgres_copy", client, server_cpu, after)
            conn.execute("TRUNCATE event_ids")
            server_cpu, client_cpu = _process_cpu(server), time.process_time()
            for i in range(0, len(rows), per_commit):
                with (
                    conn.transaction(),
                    conn.transaction(),  # a savepoint, as in claim_ids
                    conn.cursor() as cur,
                    cur.copy("COPY event_ids (id, store, device) FROM STDIN") as copy,
                ):
                    for row in rows[i : i + per_commit]:
                        copy.write_row((row[0], row[1], row[2]))
            client = time.process_time() - client_cpu
            _keep_best(best, "postgres_claim", client, server_cpu, _process_cpu(server))
            conn.close()
    for stage in ("postgres_copy", "postgres_claim"):
        best.setdefault(f"{stage}_server", None)
    return best


def _keep_best(
    best: dict[str, Any], stage: str, client: float, server_before: float | None,
    server_after: float | None,
) -> None:  # fmt: skip
    spent = None if server_before is None or server_after is None else server_after - server_before
    if client < best.get(f"{stage}_client", float("inf")):
        best[f"{stage}_client"] = client
    if spent is not None and spent < best.get(f"{stage}_server", float("inf")):
        best[f"{stage}_server"] = spent


def run(
    *,
    events: int = 100_000,
    per_message: int = 200,
    rows_per_commit: int = 10_000,
    repeat: int = 3,
    pg_url: str | None = None,
) -> dict[str, Any]:
    from storelens.cloud.ingest.rows import EventRow, message_rows
    from storelens.contract.decoder import accept, decode_envelope

    raws = envelopes("s1", "box-1", realistic_event_dicts("box-1", events, seed=1), per_message)
    if any(accept(raw) is None for raw in raws):
        raise RuntimeError("the contract's structs refused a realistic envelope as sent")
    decoded = [decode_envelope(raw) for raw in raws]

    def json_loads() -> None:
        for raw in raws:
            json.loads(raw)

    def validate() -> None:
        for raw in raws:
            decode_envelope(raw)

    def linkable(token: str) -> str:
        return token

    def build() -> list[EventRow]:
        out: list[EventRow] = []
        for envelope, texts in decoded:
            out += message_rows("s1", envelope.events, texts, 1.0, linkable)[0]
        return out

    rows = build()
    per_message_rows = [
        message_rows("s1", envelope.events, texts, 1.0, linkable)[0]
        for envelope, texts in decoded
    ]
    encode = msgspec.msgpack.Encoder().encode

    def hand_over() -> None:
        for chunk in per_message_rows:
            encode(chunk)

    seconds: dict[str, Any] = {
        "json_loads": _best(repeat, json_loads),
        "validate": _best(repeat, validate),
        "rows": _best(repeat, build),
        "msgpack": _best(repeat, hand_over),
    }
    with tempfile.TemporaryDirectory(prefix="storelens-stages-") as tmp:
        seconds |= _sqlite(rows, rows_per_commit, repeat, Path(tmp))
    seconds |= _postgres(rows, rows_per_commit, repeat, pg_url)
    us = {k: None if v is None else round(v / len(rows) * 1e6, 2) for k, v in seconds.items()}
    return {
        "events": len(rows),
        "events_per_message": per_message,
        "rows_per_commit": rows_per_commit,
        "repeat": repeat,
        "us_per_event": us,
        "cpu_count": os.cpu_count(),
    }
