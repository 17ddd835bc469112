"""Coupons: unguessable single-use codes with expiry, basket validation and safe redemption.

A coupon belongs to one member, optionally one store, and carries the discount terms of the
offer template it came from (copied at issue time, so editing a template never changes a
coupon already in a customer's hands). Redemption is a conditional UPDATE whose row count
decides the winner, so two tills redeeming the same code at once cannot both succeed.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from storelens.cloud.db import Database, IntegrityError, migrations
from storelens.contract.bounds import Amount

MIGRATIONS = migrations(
    "coupons",
    [
        """
        CREATE TABLE coupons (
            code TEXT PRIMARY KEY,
            member_id TEXT,
            template_id TEXT,
            store TEXT,
            source TEXT NOT NULL,
            kind TEXT NOT NULL,
            value {REAL} NOT NULL,
            scope TEXT NOT NULL,
            scope_value TEXT,
            min_spend {REAL} NOT NULL DEFAULT 0,
            issued_at {REAL} NOT NULL,
            valid_from {REAL} NOT NULL,
            expires_at {REAL} NOT NULL,
            voided_at {REAL},
            redeemed_at {REAL},
            redeemed_store TEXT,
            redeemed_sale_id TEXT,
            discount {REAL}
        );
        CREATE INDEX coupons_member ON coupons (member_id, issued_at);
        CREATE INDEX coupons_template ON coupons (template_id, member_id)
        """
    ],
)

# Upper-case letters and digits without look-alikes (0/O, 1/I/L): read aloud or typed at a
# till without mistakes. 14 characters of 31 symbols is about 69 bits of randomness.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 14

DiscountKind = Literal["percent", "amount"]
Scope = Literal["basket", "category", "brand", "sku"]
RejectReason = Literal[
    "unknown", "wrong_store", "redeemed", "expired", "not_yet_valid", "voided",
    "min_spend", "no_matching_items",
]  # fmt: skip


class DiscountTerms(BaseModel):
    """What a coupon takes off, and on what."""

    model_config = ConfigDict(extra="forbid")

    kind: DiscountKind = Field(description="percent: value % off; amount: value off.")
    value: Amount = Field(gt=0, description="Percent (0-100] or currency amount.")
    scope: Scope = Field("basket", description="What the discount applies to.")
    scope_value: str | None = Field(
        None, max_length=200, description="Category, brand or SKU; empty for basket."
    )
    min_spend: Amount = Field(0, description="Basket total needed before the discount.")

    @model_validator(mode="after")
    def _consistent(self) -> DiscountTerms:
        if self.kind == "percent" and self.value > 100:
            raise ValueError("a percent discount cannot exceed 100")
        if self.scope != "basket" and not self.scope_value:
            raise ValueError(f"scope {self.scope} needs scope_value")
        return self


@dataclass(frozen=True)
class BasketLine:
    sku: str
    qty: int
    unit_price: float
    category: str = ""
    brand: str = ""

    @property
    def amount(self) -> float:
        return self.qty * self.unit_price


class CouponRejected(ValueError):
    """A coupon that cannot be used for this sale; ``reason`` is a machine tag."""

    def __init__(self, code: str, reason: RejectReason, detail: str = "") -> None:
        super().__init__(
            f"coupon {_mask(code)} rejected: {reason}{': ' + detail if detail else ''}"
        )
        self.code = code
        self.reason = reason


def _mask(code: str) -> str:
    # Logs and errors show only the tail: a full code in a log is a usable coupon.
    return "*" * max(len(code) - 4, 0) + code[-4:]


def push_view(coupon: dict[str, Any], member_id: str, name: str | None = None) -> dict[str, Any]:
    """What a POS screen is told when a coupon is issued: who, what it gives, until when, and
    the code's last four characters to recognise it. Never the code: a push fans out to every
    device of the store (and over MQTT), and the full code is a usable coupon; the till
    fetches it with the member's card when the member is at the till."""
    return {
        "member_id": member_id, "code_hint": _mask(coupon["code"]),
        "template_id": coupon.get("template_id"), "name": name, "kind": coupon.get("kind"),
        "value": coupon.get("value"), "expires_at": coupon.get("expires_at"),
    }  # fmt: skip


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalize_code(code: str) -> str:
    return code.strip().upper().replace("-", "").replace(" ", "")


def issue(
    db: Database,
    member_id: str,
    terms: DiscountTerms,
    *,
    valid_days: float,
    source: str,
    template_id: str | None = None,
    store: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Create a coupon for a member; returns its row (with the code)."""
    now = time.time() if now is None else now
    for _ in range(5):  # a collision among 2^69 codes is practically impossible; retry anyway
        code = new_code()
        try:
            db.execute(
                "INSERT INTO coupons (code, member_id, template_id, store, source, kind, value,"
                " scope, scope_value, min_spend, issued_at, valid_from, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (code, member_id, template_id, store, source, terms.kind, terms.value,
                 terms.scope, terms.scope_value, terms.min_spend, now, now,
                 now + valid_days * 86400),
            )  # fmt: skip
        except IntegrityError:
            continue
        return get(db, code)  # type: ignore[return-value]
    raise RuntimeError("could not generate a unique coupon code")


def get(db: Database, code: str) -> dict[str, Any] | None:
    return db.query_one("SELECT * FROM coupons WHERE code = ?", (normalize_code(code),))


def list_for_member(
    db: Database,
    member_id: str,
    *,
    active_only: bool = False,
    now: float | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    now = time.time() if now is None else now
    extra = (
        " AND redeemed_at IS NULL AND voided_at IS NULL AND expires_at > ?" if active_only else ""
    )
    params: tuple[Any, ...] = (member_id, now) if active_only else (member_id,)
    return db.query(
        f"SELECT * FROM coupons WHERE member_id = ?{extra} ORDER BY issued_at DESC LIMIT ?",
        (*params, limit),
    )


def _matches(coupon: dict[str, Any], line: BasketLine) -> bool:
    scope, value = coupon["scope"], coupon["scope_value"]
    if scope == "basket":
        return True
    if scope == "category":
        return line.category == value
    if scope == "brand":
        return line.brand == value
    return line.sku == value


def evaluate(
    db: Database,
    code: str,
    *,
    member_id: str | None,
    store: str,
    lines: list[BasketLine],
    now: float | None = None,
) -> tuple[dict[str, Any], float]:
    """Check a coupon against a basket; returns (coupon, discount) or raises CouponRejected.

    Read-only: a positive answer is a quote, the redemption itself is `redeem`."""
    now = time.time() if now is None else now
    code = normalize_code(code)
    coupon = get(db, code)
    # Another member's code answers exactly like a code that does not exist: a guesser must
    # not learn that a code is real.
    if coupon is None or member_id is None or coupon["member_id"] != member_id:
        raise CouponRejected(code, "unknown", "no such coupon for this member")
    if coupon["store"] and coupon["store"] != store:
        raise CouponRejected(code, "wrong_store", f"valid only at store {coupon['store']}")
    if coupon["redeemed_at"] is not None:
        raise CouponRejected(code, "redeemed")
    if coupon["voided_at"] is not None:
        raise CouponRejected(code, "voided")
    if coupon["expires_at"] <= now:
        raise CouponRejected(code, "expired")
    if coupon["valid_from"] > now:
        raise CouponRejected(code, "not_yet_valid")
    total = sum(line.amount for line in lines)
    if total + 1e-9 < coupon["min_spend"]:
        raise CouponRejected(
            code, "min_spend", f"needs {coupon['min_spend']:.2f}, basket {total:.2f}"
        )
    eligible = sum(line.amount for line in lines if _matches(coupon, line))
    if eligible <= 0:
        raise CouponRejected(code, "no_matching_items")
    if coupon["kind"] == "percent":
        discount = eligible * coupon["value"] / 100.0
    else:
        discount = min(coupon["value"], eligible)
    return coupon, round(discount, 2)


def redeem(
    db: Database,
    code: str,
    *,
    member_id: str,
    store: str,
    sale_id: str,
    discount: float,
    now: float | None = None,
) -> None:
    """Mark the coupon used by this sale. Exactly one concurrent caller wins; the others get
    CouponRejected('redeemed'). Call inside the sale's transaction so a lost race rolls the
    sale back too."""  # fmt: skip
    now = time.time() if now is None else now
    code = normalize_code(code)
    won = db.execute(
        "UPDATE coupons SET redeemed_at = ?, redeemed_store = ?, redeemed_sale_id = ?, discount = ?"
        " WHERE code = ? AND member_id = ? AND redeemed_at IS NULL AND voided_at IS NULL"
        " AND expires_at > ? AND (store IS NULL OR store = ?)",
        (now, store, sale_id, discount, code, member_id, now, store),
    )
    if won != 1:
        raise CouponRejected(code, "redeemed", "already used, voided or expired")


def void(db: Database, code: str, *, now: float | None = None) -> bool:
    """Withdraw an unredeemed coupon (e.g. the member declined the offer)."""
    now = time.time() if now is None else now
    return bool(
        db.execute(
            "UPDATE coupons SET voided_at = ? WHERE code = ? AND redeemed_at IS NULL"
            " AND voided_at IS NULL",
            (now, normalize_code(code)),
        )
    )


def forget_member(db: Database, member_id: str, _token: str) -> None:
    """Forget-me hook: unused coupons are deleted; redeemed ones stay as anonymous records of
    the discount given on a sale (accounting), without the member."""
    db.execute("DELETE FROM coupons WHERE member_id = ? AND redeemed_at IS NULL", (member_id,))
    db.execute("UPDATE coupons SET member_id = NULL WHERE member_id = ?", (member_id,))


# Collected by cloud/db/schema.py into each process's Services (cloud/hooks.py).
HOOKS = [("member_forgotten", forget_member)]
