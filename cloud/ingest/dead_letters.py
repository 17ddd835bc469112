"""Dead letters: messages ingest could not store (malformed, unknown device, clock skew, ID
collision, storage_error), kept with their raw bytes and reason for ops to inspect and, once
the cause is fixed, to replay (`storelens.cloud.ingest.replay`). The table is created by
`storelens.cloud.ingest.events`' migrations (unchanged on disk)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from storelens.cloud.db import Database

MAX_DEAD_LETTER_BYTES = 1024 * 1024


def dead_letter(
    db: Database, topic: str, reason: str, detail: str, raw: bytes, received_at: float | None = None
) -> bool:
    """Keep a message ingest could not store; False when it is kept already (the same topic,
    raw bytes and reason: a redelivery of a batch whose dead letters were committed)."""
    digest = hashlib.sha256(raw).digest()  # of the bytes as received, before truncating
    if len(raw) > MAX_DEAD_LETTER_BYTES:
        # A flood of huge messages must not fill the disk; the head is enough to diagnose.
        detail = f"{detail} [raw truncated from {len(raw)} bytes]"
        raw = raw[:MAX_DEAD_LETTER_BYTES]
    return bool(
        db.execute(
            "INSERT INTO dead_letters (received_at, topic, reason, detail, raw, digest)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (topic, reason, digest) DO NOTHING",
            (received_at or time.time(), topic[:512], reason, detail[:2000], raw, digest),
        )
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
