"""Dead letters: messages ingest could not store (malformed, unknown device, clock skew, ID
collision, storage_error), kept with their raw bytes and reason for ops to inspect and, once
the cause is fixed, to replay (`storelens.cloud.ingest.replay`). The table is created by
`storelens.cloud.ingest.events`' migrations (unchanged on disk)."""

from __future__ import annotations

import time
from typing import Any

from storelens.cloud.db import Database

MAX_DEAD_LETTER_BYTES = 1024 * 1024


def dead_letter(
    db: Database, topic: str, reason: str, detail: str, raw: bytes, received_at: float | None = None
) -> None:
    if len(raw) > MAX_DEAD_LETTER_BYTES:
        # A flood of huge messages must not fill the disk; the head is enough to diagnose.
        detail = f"{detail} [raw truncated from {len(raw)} bytes]"
        raw = raw[:MAX_DEAD_LETTER_BYTES]
    db.execute(
        "INSERT INTO dead_letters (received_at, topic, reason, detail, raw) VALUES (?, ?, ?, ?, ?)",
        (received_at or time.time(), topic[:512], reason, detail[:2000], raw),
    )


def dead_letters(
    db: Database, *, reason: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    where, params = ("WHERE reason = ?", [reason]) if reason else ("", [])
    return db.query(
        f"SELECT id, received_at, topic, reason, detail, raw FROM dead_letters {where} "
        "ORDER BY id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
