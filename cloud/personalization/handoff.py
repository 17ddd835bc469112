"""Hand-off webhooks: a scoring threshold hands a member to a person (a CRM, a call centre).

Each hand-off is a row in ``handoff_deliveries`` written in the same breath as the threshold
action (an outbox): the POST happens later, from a worker, so a slow or dead receiver never
slows ingest or checkout, and nothing is lost when it is down. Delivery:

- the body is JSON; ``X-Storelens-Signature: t=<unix>,v1=<hex>`` carries
  HMAC-SHA256(key, "<unix>.<body>") with the key from the plan's ``secret_env`` variable (the
  key is never stored), and ``X-Storelens-Delivery`` the row ID, for the receiver to drop
  repeats (delivery is at least once);
- a 2xx marks it delivered; anything else (status, timeout, refused connection, missing key)
  is recorded on the row and retried with exponential back-off plus jitter until
  ``max_attempts``, then the row is ``failed``;
- several workers (API replicas) may run: a row is claimed by a conditional UPDATE that
  pushes its next attempt past a lease, so only one of them sends it at a time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import threading
import time
import uuid
from typing import Any

import httpx

from storelens.cloud.db import Database, migrations

log = logging.getLogger(__name__)

MIGRATIONS = migrations(
    "handoff",
    [
        """
        CREATE TABLE handoff_deliveries (
            id TEXT PRIMARY KEY,
            plan TEXT NOT NULL,
            threshold TEXT NOT NULL,
            member_id TEXT NOT NULL,
            url TEXT NOT NULL,
            secret_env TEXT NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL,
            next_attempt_at {REAL} NOT NULL,
            last_status INTEGER,
            last_error TEXT,
            created_at {REAL} NOT NULL,
            delivered_at {REAL}
        );
        CREATE INDEX handoff_deliveries_due ON handoff_deliveries (status, next_attempt_at);
        CREATE INDEX handoff_deliveries_member ON handoff_deliveries (member_id)
        """
    ],
)

SIGNATURE_HEADER = "X-Storelens-Signature"
DELIVERY_HEADER = "X-Storelens-Delivery"
BACKOFF_BASE_S = 30.0
BACKOFF_MAX_S = 6 * 3600.0
LEASE_S = 60.0  # longer than one POST can take (timeout below)
TIMEOUT_S = 10.0


def sign(key: bytes, body: bytes, timestamp: int) -> str:
    """The signature header value; receivers recompute it and compare in constant time."""
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(key: bytes, body: bytes, header: str, *, tolerance_s: float = 300.0) -> bool:
    """What a receiver does (and the tests): check the MAC and that the timestamp is fresh."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(key, body, timestamp), header)


def backoff_s(attempts: int) -> float:
    """Delay before the next try after ``attempts`` failures: 30 s, 1 min, 2 min ... capped at
    6 h, each +-20 % so receivers coming back are not hit by every sender at once."""
    base = min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S)
    return base * random.uniform(0.8, 1.2)


def enqueue(
    db: Database,
    *,
    plan: str,
    threshold: str,
    member_id: str,
    url: str,
    secret_env: str,
    max_attempts: int,
    payload: dict[str, Any],
    now: float,
) -> str:
    delivery_id = uuid.uuid4().hex
    body = json.dumps({"delivery_id": delivery_id, **payload}, separators=(",", ":"), default=str)
    db.execute(
        "INSERT INTO handoff_deliveries (id, plan, threshold, member_id, url, secret_env, body,"
        " status, max_attempts, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
        (delivery_id, plan, threshold, member_id, url, secret_env, body, max_attempts, now, now),
    )
    return delivery_id


def _claim(db: Database, delivery_id: str, now: float) -> bool:
    return (
        db.execute(
            "UPDATE handoff_deliveries SET next_attempt_at = ? WHERE id = ? AND status = 'pending'"
            " AND next_attempt_at <= ?",
            (now + LEASE_S, delivery_id, now),
        )
        == 1
    )


def _send(client: httpx.Client, row: dict[str, Any]) -> tuple[int | None, str | None]:
    """(HTTP status, error) of one try; error is None on a 2xx."""
    key = os.environ.get(row["secret_env"])
    if not key:
        return None, f"signing key: environment variable {row['secret_env']} is not set"
    body = row["body"].encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(key.encode(), body, int(time.time())),
        DELIVERY_HEADER: row["id"],
        "User-Agent": "storelens-handoff/1",
    }
    try:
        response = client.post(row["url"], content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"


def deliver_due(
    db: Database, *, now: float | None = None, client: httpx.Client | None = None, limit: int = 50
) -> dict[str, int]:
    """Try every pending delivery whose time has come; returns counts by outcome."""
    now = time.time() if now is None else now
    due = db.query(
        "SELECT * FROM handoff_deliveries WHERE status = 'pending' AND next_attempt_at <= ?"
        " ORDER BY next_attempt_at LIMIT ?",
        (now, limit),
    )
    counts = {"delivered": 0, "retry": 0, "failed": 0}
    if not due:
        return counts
    own = client is None
    client = client or httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)
    try:
        for row in due:
            if not _claim(db, row["id"], now):
                continue  # another worker has it
            code, error = _send(client, row)
            attempts = row["attempts"] + 1
            if error is None:
                outcome = "delivered"
                db.execute(
                    "UPDATE handoff_deliveries SET status = 'delivered', attempts = ?,"
                    " last_status = ?, last_error = NULL, delivered_at = ? WHERE id = ?",
                    (attempts, code, time.time(), row["id"]),
                )
            else:
                outcome = "failed" if attempts >= row["max_attempts"] else "retry"
                db.execute(
                    "UPDATE handoff_deliveries SET status = ?, attempts = ?, last_status = ?,"
                    " last_error = ?, next_attempt_at = ? WHERE id = ?",
                    ("failed" if outcome == "failed" else "pending", attempts, code, error,
                     now + backoff_s(attempts), row["id"]),
                )  # fmt: skip
                log.warning("hand-off %s to %s: attempt %d: %s", row["id"], row["url"],
                            attempts, error)  # fmt: skip
            counts[outcome] += 1
    finally:
        if own:
            client.close()
    return counts


def list_deliveries(
    db: Database, *, status: str | None = None, plan: str | None = None, limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:  # fmt: skip
    where, params = [], []
    if status:
        where.append("status = ?")
        params.append(status)
    if plan:
        where.append("plan = ?")
        params.append(plan)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = db.query(
        "SELECT id, plan, threshold, member_id, url, status, attempts, max_attempts,"
        " next_attempt_at, last_status, last_error, created_at, delivered_at"
        f" FROM handoff_deliveries{clause} ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return rows


class DeliveryWorker:
    """Runs `deliver_due` every ``interval_s`` in a daemon thread (one per API replica)."""

    def __init__(self, db: Database, *, interval_s: float = 5.0) -> None:
        self.db, self.interval_s = db, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="handoff-deliveries", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(TIMEOUT_S + 5)

    def _run(self) -> None:
        with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as client:
            while not self._stop.wait(self.interval_s):
                try:
                    deliver_due(self.db, client=client)
                except Exception:  # a database hiccup must not end the worker
                    log.exception("hand-off delivery round failed; will retry")


def forget_member(db: Database, member_id: str, _token: str) -> None:
    db.execute("DELETE FROM handoff_deliveries WHERE member_id = ?", (member_id,))
