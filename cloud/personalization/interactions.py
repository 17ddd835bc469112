"""Interactions other systems report about known customers: a web shop's product views and cart
adds, a CRM's email opens, an events tool's attendance, a POS's try-ons.

`record_batch` stores each interaction once (its ``id`` is the idempotency key: a resend is
answered ``duplicate`` and scores nothing), scores it with the scoring plans and runs their
actions. Interactions are kept only for members who allow tracking (the same consent that
links their store visits); forget-me deletes them. Online product views and cart adds also
feed the recommender (weaker than purchases) and the profile's "viewed online, in stock here".
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from storelens.cloud.commerce import members
from storelens.cloud.db import Database, migrations
from storelens.cloud.personalization import scoring
from storelens.cloud.personalization.scoring_plans import (
    NAME_PATTERN,
    active_plans,
    known_interactions,
)

MIGRATIONS = migrations(
    "interactions",
    [
        """
        CREATE TABLE interactions (
            id TEXT PRIMARY KEY,
            member_id TEXT NOT NULL,
            type TEXT NOT NULL,
            at {REAL} NOT NULL,
            store TEXT,
            sku TEXT,
            category TEXT,
            url TEXT,
            source TEXT NOT NULL,
            received_at {REAL} NOT NULL
        );
        CREATE INDEX interactions_member ON interactions (member_id, at);
        CREATE INDEX interactions_type_at ON interactions (type, at)
        """
    ],
)

ONLINE_PRODUCT_TYPES = ("product_viewed", "cart_add")
NO_NUL = r"^[^\x00]*$"  # PostgreSQL refuses NUL in text: a 422, not a 500
MAX_AGE_S = 366 * 86400.0
MAX_AHEAD_S = 300.0  # clock skew allowed for "at"

Outcome = Literal["recorded", "duplicate", "unknown_member", "not_tracked", "unknown_type"]


class InteractionIn(BaseModel):
    """One interaction of a known customer."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(
        min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$",
        description="Globally unique ID from the sender (e.g. a UUID): a resend is ignored.",
    )  # fmt: skip
    type: str = Field(
        pattern=NAME_PATTERN,
        description="profile_completed, web_page_viewed, email_opened, event_attended, "
        "product_viewed, cart_add, try_on, or a type a scoring plan declares.",
    )
    member_id: str | None = Field(None, max_length=64, pattern=NO_NUL, description="Member ID.")
    account_id: str | None = Field(
        None, max_length=128, pattern=NO_NUL, description="Or the linked online account ID."
    )
    at: float | None = Field(
        None, ge=0, le=1e11, description="When it happened, epoch seconds; default now."
    )
    store: str | None = Field(
        None, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$",
        description="Store it happened in (in-store types such as try_on).",
    )  # fmt: skip
    sku: str | None = Field(None, max_length=64, pattern=NO_NUL, description="Product, if any.")
    category: str | None = Field(
        None, max_length=200, pattern=NO_NUL, description="Category; default the SKU's."
    )
    url: str | None = Field(None, max_length=2000, pattern=NO_NUL, description="Page viewed.")

    @model_validator(mode="after")
    def _one_customer(self) -> InteractionIn:
        if (self.member_id is None) == (self.account_id is None):
            raise ValueError("give exactly one of member_id or account_id")
        if self.type in ONLINE_PRODUCT_TYPES and not self.sku:
            raise ValueError(f"{self.type} needs sku")
        return self


class InteractionBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interactions: list[InteractionIn] = Field(min_length=1, max_length=500)


class InteractionResult(BaseModel):
    id: str
    outcome: Outcome
    member_id: str | None = None
    score: float | None = Field(None, description="The member's score in their plan after it.")
    actions: list[str] = Field(default_factory=list, description="Actions it triggered.")


def _member(db: Database, item: InteractionIn) -> dict[str, Any] | None:
    if item.member_id is not None:
        return members.get_member(db, item.member_id)
    return members.member_by_account(db, item.account_id or "")


def _category(db: Database, item: InteractionIn) -> str | None:
    if item.category or not item.sku:
        return item.category
    return db.scalar("SELECT category FROM products WHERE sku = ?", (item.sku,))


def record_batch(
    db: Database, items: list[InteractionIn], *, source: str, now: float | None = None
) -> list[InteractionResult]:
    """Store and score each interaction once; one item's outcome never affects another's."""
    now = time.time() if now is None else now
    plans = active_plans(db)
    known = known_interactions(plans)
    results = []
    for item in items:
        if item.type not in known:
            results.append(InteractionResult(id=item.id, outcome="unknown_type"))
            continue
        member = _member(db, item)
        if member is None:
            results.append(InteractionResult(id=item.id, outcome="unknown_member"))
            continue
        if not member["tracking"]:
            results.append(
                InteractionResult(id=item.id, outcome="not_tracked", member_id=member["id"])
            )
            continue
        at = now if item.at is None else min(max(item.at, now - MAX_AGE_S), now + MAX_AHEAD_S)
        category = _category(db, item)
        with db.transaction():  # stored and scored together, or neither
            new = db.execute(
                "INSERT INTO interactions (id, member_id, type, at, store, sku, category, url,"
                " source, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO NOTHING",
                (item.id, member["id"], item.type, at, item.store, item.sku, category, item.url,
                 source, now),
            )  # fmt: skip
            if not new:
                results.append(
                    InteractionResult(id=item.id, outcome="duplicate", member_id=member["id"])
                )
                continue
            presence = None
            if item.store and now - at <= max((p.present_window_s for p in plans), default=0):
                presence = scoring.Presence(store=item.store, category=category)
            scored = scoring.record(
                db, member, [(item.type, category)], at=at, now=now, presence=presence,
                plans=plans,
            )  # fmt: skip
        results.append(
            InteractionResult(
                id=item.id,
                outcome="recorded",
                member_id=member["id"],
                score=round(scored.score, 2),
                actions=[a["action"] for a in scored.actions],
            )  # fmt: skip
        )
    return results


def online_interest(
    db: Database, member_id: str, *, store: str | None = None, days: float = 30,
    limit: int = 20, now: float | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Products the member viewed or put in a cart online lately, most recent first, with
    what the given store has in stock of each ("viewed online, in stock here")."""
    now = time.time() if now is None else now
    marks = ", ".join("?" for _ in ONLINE_PRODUCT_TYPES)
    rows = db.query(
        "SELECT i.sku, max(p.name) AS name, max(i.category) AS category,"
        " sum(CASE WHEN i.type = 'product_viewed' THEN 1 ELSE 0 END) AS views,"
        " sum(CASE WHEN i.type = 'cart_add' THEN 1 ELSE 0 END) AS cart_adds,"
        " max(i.at) AS last_at FROM interactions i LEFT JOIN products p ON p.sku = i.sku"
        f" WHERE i.member_id = ? AND i.type IN ({marks}) AND i.at >= ? AND i.sku IS NOT NULL"
        " GROUP BY i.sku ORDER BY max(i.at) DESC, i.sku LIMIT ?",
        (member_id, *ONLINE_PRODUCT_TYPES, now - days * 86400, limit),
    )
    if store and rows:
        skus = [r["sku"] for r in rows]
        sku_marks = ", ".join("?" for _ in skus)
        stock = {
            r["sku"]: r
            for r in db.query(
                "SELECT sku, on_hand - reserved AS available, shelf_location FROM inventory"
                f" WHERE store = ? AND sku IN ({sku_marks})",
                (store, *skus),
            )
        }
        for r in rows:
            level = stock.get(r["sku"])
            r["store"] = store
            r["available_here"] = max(int(level["available"]), 0) if level else 0
            r["in_stock_here"] = bool(level and level["available"] > 0)
            r["shelf_location"] = level["shelf_location"] if level else None
    return rows


def load_online_signals(
    db: Database, *, since: float = 0.0, until: float | None = None
) -> list[tuple[str, str, float, str]]:
    """(member, sku, at, type) of online product views and cart adds, for the recommender."""
    upper = 1e18 if until is None else until
    marks = ", ".join("?" for _ in ONLINE_PRODUCT_TYPES)
    rows = db.query(
        "SELECT member_id, sku, at, type FROM interactions"
        f" WHERE type IN ({marks}) AND at >= ? AND at < ? AND sku IS NOT NULL",
        (*ONLINE_PRODUCT_TYPES, since, upper),
    )
    return [(r["member_id"], r["sku"], r["at"], r["type"]) for r in rows]


def forget_member(db: Database, member_id: str, _token: str) -> None:
    db.execute("DELETE FROM interactions WHERE member_id = ?", (member_id,))


def unlink_untracked(db: Database, member_id: str) -> int:
    """Tracking consent withdrawn: the behaviour recorded so far goes too."""
    return db.execute("DELETE FROM interactions WHERE member_id = ?", (member_id,))


# Collected by cloud/db/schema.py into each process's Services (cloud/hooks.py).
HOOKS = [("member_forgotten", forget_member), ("tracking_withdrawn", unlink_untracked)]
