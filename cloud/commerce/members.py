"""Members: card pseudonyms, linked online accounts, consent, forget-me and the profile view.

A member is found by the HMAC pseudonym of their card (the number itself is never stored) or
by a linked online account. Consent decides whether in-store events carrying the member's
pseudonym are linked to them; ingest reads `opted_out_tokens` and `consent_version`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from storelens.cloud import services
from storelens.cloud.db import Database, IntegrityError, migrations
from storelens.cloud.hooks import Hooks
from storelens.cloud.ingest import events as event_store
from storelens.pseudonym import PseudonymKey

MIGRATIONS = migrations(
    "members",
    [
        """
        CREATE TABLE members (
            id TEXT PRIMARY KEY,
            token TEXT NOT NULL UNIQUE,
            key_id TEXT NOT NULL,
            name TEXT,
            tier TEXT NOT NULL DEFAULT 'standard',
            created_at {REAL} NOT NULL
        );
        CREATE TABLE member_consent (
            member_id TEXT PRIMARY KEY REFERENCES members (id) ON DELETE CASCADE,
            tracking {BOOL} NOT NULL DEFAULT 1,
            marketing {BOOL} NOT NULL DEFAULT 0,
            updated_at {REAL} NOT NULL
        );
        CREATE TABLE customer_accounts (
            id TEXT PRIMARY KEY,
            member_id TEXT REFERENCES members (id) ON DELETE SET NULL,
            email TEXT,
            name TEXT,
            created_at {REAL} NOT NULL,
            linked_at {REAL}
        );
        CREATE INDEX customer_accounts_member ON customer_accounts (member_id);
        CREATE TABLE member_tombstones (
            token_sha256 TEXT PRIMARY KEY,
            forgotten_at {REAL} NOT NULL
        );
        CREATE TABLE consent_state (
            id INTEGER PRIMARY KEY,
            version {BIGINT} NOT NULL
        );
        INSERT INTO consent_state (id, version) VALUES (1, 0)
        """
    ],
)

Tier = Literal["standard", "silver", "gold", "platinum"]


class MemberError(ValueError):
    pass


class UnknownMember(LookupError):
    pass


class Enrollment(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    card_number: str = Field(
        min_length=4, max_length=64, description="Printed card number; hashed, never stored."
    )
    name: str | None = Field(None, max_length=200, description="Optional display name.")
    tier: Tier = Field("standard", description="Loyalty tier.")
    tracking: bool = Field(True, description="Consent: link in-store visits to this member.")
    marketing: bool = Field(False, description="Consent: personalised offers and messages.")
    account_id: str | None = Field(None, max_length=128, description="Online account to link.")


class Consent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking: bool | None = Field(
        None, description="In-store tracking allowed; omitted = unchanged."
    )
    marketing: bool | None = Field(None, description="Marketing allowed; omitted = unchanged.")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bump_consent_version(db: Database) -> None:
    """Consent changed: ingest, which caches opted-out tokens by this version, reloads."""
    db.execute("UPDATE consent_state SET version = version + 1 WHERE id = 1")


def consent_version(db: Database) -> int:
    return int(db.scalar("SELECT version FROM consent_state WHERE id = 1") or 0)


def opted_out_tokens(db: Database) -> set[str]:
    """Pseudonyms whose in-store events must not be linked to a member."""
    rows = db.query(
        "SELECT m.token FROM members m JOIN member_consent c ON c.member_id = m.id "
        "WHERE c.tracking = 0"
    )
    return {r["token"] for r in rows}


def forgotten_digests(db: Database) -> set[str]:
    """SHA-256 of tokens of forgotten members: late events from devices stay unlinked."""
    return {r["token_sha256"] for r in db.query("SELECT token_sha256 FROM member_tombstones")}


def enroll(
    db: Database, key: PseudonymKey, enrollment: Enrollment, *, hooks: Hooks | None = None
) -> dict[str, Any]:
    """Create a member from a card number; raises MemberError if the card is enrolled.
    ``hooks`` (default: those of the process serving ``db``, `services.hooks_for`): the
    ``member_enrolled`` hooks run inside the enrollment's transaction (scoring awards points)."""
    hooks = services.hooks_for(db) if hooks is None else hooks
    token = key.token(enrollment.card_number)
    member_id = "m_" + secrets.token_hex(8)
    now = time.time()
    try:
        with db.transaction():
            db.execute(
                "INSERT INTO members (id, token, key_id, name, tier, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (member_id, token, key.key_id, enrollment.name, enrollment.tier, now),
            )
            db.execute(
                "INSERT INTO member_consent (member_id, tracking, marketing, updated_at)"
                " VALUES (?, ?, ?, ?)",
                (member_id, int(enrollment.tracking), int(enrollment.marketing), now),
            )
            db.execute(
                "DELETE FROM member_tombstones WHERE token_sha256 = ?", (token_digest(token),)
            )
            if enrollment.account_id:
                _link(db, member_id, enrollment.account_id, now)
            bump_consent_version(db)
            for hook in hooks["member_enrolled"]:
                hook(db, member_id)
    except IntegrityError:
        raise MemberError("this card is already enrolled") from None
    return get_member(db, member_id)  # type: ignore[return-value]


def _link(db: Database, member_id: str, account_id: str, now: float) -> None:
    row = db.query_one("SELECT member_id FROM customer_accounts WHERE id = ?", (account_id,))
    if row is None:
        db.execute(
            "INSERT INTO customer_accounts (id, member_id, created_at, linked_at)"
            " VALUES (?, ?, ?, ?)",
            (account_id, member_id, now, now),
        )
    elif row["member_id"] not in (None, member_id):
        raise MemberError(f"account {account_id} is linked to another member")
    else:
        db.execute(
            "UPDATE customer_accounts SET member_id = ?, linked_at = ? WHERE id = ?",
            (member_id, now, account_id),
        )


def upsert_account(
    db: Database, account_id: str, *, email: str | None = None, name: str | None = None
) -> None:
    """Record an online customer account (from the web shop); keeps an existing link."""
    db.execute(
        "INSERT INTO customer_accounts (id, email, name, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET email = COALESCE(excluded.email, customer_accounts.email),"
        " name = COALESCE(excluded.name, customer_accounts.name)",
        (account_id, email, name, time.time()),
    )


def link_account(db: Database, member_id: str, account_id: str) -> dict[str, Any]:
    with db.transaction():
        if get_member(db, member_id) is None:
            raise UnknownMember(member_id)
        _link(db, member_id, account_id, time.time())
    return get_member(db, member_id)  # type: ignore[return-value]


def unlink_account(db: Database, member_id: str, account_id: str) -> bool:
    return bool(
        db.execute(
            "UPDATE customer_accounts SET member_id = NULL, linked_at = NULL"
            " WHERE id = ? AND member_id = ?",
            (account_id, member_id),
        )
    )


_MEMBER_SQL = (
    "SELECT m.id, m.token, m.key_id, m.name, m.tier, m.created_at, c.tracking, c.marketing,"
    " c.updated_at AS consent_updated_at FROM members m"
    " JOIN member_consent c ON c.member_id = m.id"
)


def _shape(db: Database, row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    row["tracking"] = bool(row["tracking"])
    row["marketing"] = bool(row["marketing"])
    row["accounts"] = [
        r["id"]
        for r in db.query(
            "SELECT id FROM customer_accounts WHERE member_id = ? ORDER BY id", (row["id"],)
        )
    ]
    return row


def get_member(db: Database, member_id: str) -> dict[str, Any] | None:
    return _shape(db, db.query_one(_MEMBER_SQL + " WHERE m.id = ?", (member_id,)))


def member_by_token(db: Database, token: str) -> dict[str, Any] | None:
    return _shape(db, db.query_one(_MEMBER_SQL + " WHERE m.token = ?", (token,)))


def member_by_card(db: Database, key: PseudonymKey, card_number: str) -> dict[str, Any] | None:
    return member_by_token(db, key.token(card_number))


def member_by_account(db: Database, account_id: str) -> dict[str, Any] | None:
    row = db.query_one("SELECT member_id FROM customer_accounts WHERE id = ?", (account_id,))
    if row is None or row["member_id"] is None:
        return None
    return get_member(db, row["member_id"])


def list_members(db: Database, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    rows = db.query(_MEMBER_SQL + " ORDER BY m.created_at, m.id LIMIT ? OFFSET ?", (limit, offset))
    if not rows:
        return []
    # One query for the whole page's accounts instead of one per member.
    marks = ", ".join("?" for _ in rows)
    accounts: dict[str, list[str]] = {}
    for r in db.query(
        f"SELECT id, member_id FROM customer_accounts WHERE member_id IN ({marks}) ORDER BY id",
        [r["id"] for r in rows],
    ):
        accounts.setdefault(r["member_id"], []).append(r["id"])
    for row in rows:
        row["tracking"] = bool(row["tracking"])
        row["marketing"] = bool(row["marketing"])
        row["accounts"] = accounts.get(row["id"], [])
    return rows


def set_consent(
    db: Database, member_id: str, consent: Consent, *, hooks: Hooks | None = None
) -> dict[str, Any]:
    """Change consent. Withdrawing tracking runs the ``tracking_withdrawn`` hooks (``hooks``,
    as in `enroll`): behaviour other domains recorded about the member goes too."""
    hooks = services.hooks_for(db) if hooks is None else hooks
    with db.transaction():
        current = get_member(db, member_id)
        if current is None:
            raise UnknownMember(member_id)
        tracking = current["tracking"] if consent.tracking is None else consent.tracking
        marketing = current["marketing"] if consent.marketing is None else consent.marketing
        db.execute(
            "UPDATE member_consent SET tracking = ?, marketing = ?, updated_at = ?"
            " WHERE member_id = ?",
            (int(tracking), int(marketing), time.time(), member_id),
        )
        if not tracking and current["tracking"]:
            # Withdrawing consent also unlinks what was already collected.
            event_store.unlink_member_events(db, current["token"])
            for hook in hooks["tracking_withdrawn"]:
                hook(db, member_id)
        bump_consent_version(db)
    return get_member(db, member_id)  # type: ignore[return-value]


def forget(db: Database, member_id: str, *, hooks: Hooks | None = None) -> dict[str, int]:
    """Forget-me: delete the profile, consent and accounts; unlink in-store events (card
    swipes deleted); detach orders and sales; let other domains delete their rows (the
    ``member_forgotten`` hooks, as in `enroll`, inside the same transaction)."""
    hooks = services.hooks_for(db) if hooks is None else hooks
    with db.transaction():
        member = get_member(db, member_id)
        if member is None:
            raise UnknownMember(member_id)
        token = member["token"]
        accounts = member["accounts"]
        counts = {"events": event_store.unlink_member_events(db, token)}
        for hook in hooks["member_forgotten"]:
            hook(db, member_id, token)
        counts["orders"] = _detach_orders(db, member_id, accounts)
        counts["sales"] = _detach_sales(db, member_id)
        if accounts:
            marks = ", ".join("?" for _ in accounts)
            db.execute(f"DELETE FROM customer_accounts WHERE id IN ({marks})", accounts)
        counts["accounts"] = len(accounts)
        db.execute("DELETE FROM member_consent WHERE member_id = ?", (member_id,))
        db.execute("DELETE FROM members WHERE id = ?", (member_id,))
        db.execute(
            "INSERT INTO member_tombstones (token_sha256, forgotten_at) VALUES (?, ?)"
            " ON CONFLICT (token_sha256) DO NOTHING",
            (token_digest(token), time.time()),
        )
        bump_consent_version(db)
    return counts


def _has_table(db: Database, name: str) -> bool:
    if db.dialect == "sqlite":
        sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        sql = "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"  # noqa: E501
    return bool(db.scalar(sql, (name,)))


def _detach_orders(db: Database, member_id: str, accounts: list[str]) -> int:
    # Orders stay as sales records for accounting, without anything that names the person.
    if not accounts or not _has_table(db, "online_orders"):
        return 0
    marks = ", ".join("?" for _ in accounts)
    return db.execute(
        "UPDATE online_orders SET customer_account = NULL, member_id = NULL, ship_name = NULL,"
        " ship_address = '[forgotten]', ship_postcode = NULL, ship_lat = NULL, ship_lon = NULL"
        f" WHERE customer_account IN ({marks}) OR member_id = ?",
        (*accounts, member_id),
    )


def _detach_sales(db: Database, member_id: str) -> int:
    if not _has_table(db, "pos_sales"):
        return 0
    return db.execute("UPDATE pos_sales SET member_id = NULL WHERE member_id = ?", (member_id,))


def profile(db: Database, member_id: str, *, days: float = 90, limit: int = 20) -> dict[str, Any]:
    """Online and in-store behaviour of one member: recent visits, zone dwell, orders, POS
    purchases and coupons (when the offers domain has its table)."""
    member = get_member(db, member_id)
    if member is None:
        raise UnknownMember(member_id)
    since = time.time() - days * 86400
    token = member["token"]
    visits = [
        {
            "visit_id": r["visit_id"],
            "store": r["store"],
            "started_at": r["t_start"],
            "ended_at": r["ts"],
            "duration_s": r["dwell_s"],
            "zones": json.loads(r["payload"]).get("zones", []),
        }
        for r in db.query(
            "SELECT visit_id, store, t_start, ts, dwell_s, payload FROM events"
            " WHERE member = ? AND type = 'visit_ended' AND ts >= ? ORDER BY ts DESC LIMIT ?",
            (token, since, limit),
        )
    ]
    zone_dwell = db.query(
        "SELECT store, zone, count(*) AS visits, sum(dwell_s) AS dwell_s FROM events"
        " WHERE member = ? AND type = 'zone_visit' AND ts >= ? GROUP BY store, zone"
        " ORDER BY dwell_s DESC",
        (token, since),
    )
    orders: list[dict[str, Any]] = []
    if _has_table(db, "online_orders"):
        accounts = member["accounts"] or [""]
        marks = ", ".join("?" for _ in accounts)
        orders = db.query(
            "SELECT id, status, fulfillment_type, total, created_at FROM online_orders"
            f" WHERE member_id = ? OR customer_account IN ({marks})"
            " ORDER BY created_at DESC LIMIT ?",
            (member_id, *accounts, limit),
        )
        for order in orders:
            order["items"] = db.query(
                "SELECT sku, qty, unit_price FROM online_order_items WHERE order_id = ?"
                " ORDER BY line",
                (order["id"],),
            )
    purchases: list[dict[str, Any]] = []
    if _has_table(db, "pos_sales"):
        purchases = db.query(
            "SELECT id, store, ts, total FROM pos_sales WHERE member_id = ?"
            " ORDER BY ts DESC LIMIT ?",
            (member_id, limit),
        )
        for sale in purchases:
            sale["items"] = db.query(
                "SELECT sku, qty, unit_price FROM pos_sale_items WHERE sale_id = ? ORDER BY line",
                (sale["id"],),
            )
    coupons: list[dict[str, Any]] = []
    if _has_table(db, "coupons"):
        coupons = db.query("SELECT * FROM coupons WHERE member_id = ? LIMIT ?", (member_id, limit))
    public = {k: v for k, v in member.items() if k != "token"}
    return {
        "member": public,
        "visits": visits,
        "zone_dwell": zone_dwell,
        "online_orders": orders,
        "pos_purchases": purchases,
        "coupons": coupons,
    }
