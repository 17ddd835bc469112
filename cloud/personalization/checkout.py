"""Checkout at a store's POS: coupons validated and redeemed together with the sale.

The sale, its coupon links and the coupon redemptions commit in one transaction: if another
till redeems the same coupon first, the conditional UPDATE loses and the whole sale rolls
back, so a coupon is never used twice and a sale never claims a discount it did not get.
After the commit, engagement points are awarded and the "buy a recommended item today"
rule may issue a coupon for the next purchase (pushed to the store's POS).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from storelens.cloud import services
from storelens.cloud.commerce import members, sales, visit_sales
from storelens.cloud.db import Database
from storelens.cloud.personalization import coupons, offers, propensity, scoring
from storelens.cloud.personalization.coupons import BasketLine, CouponRejected

log = logging.getLogger(__name__)


@dataclass
class CheckoutResult:
    sale_id: str
    created: bool
    subtotal: float
    discount: float
    total: float
    redeemed: list[dict[str, Any]] = field(default_factory=list)  # code, discount
    issued: list[dict[str, Any]] = field(default_factory=list)  # coupons for next time


def basket_lines(db: Database, items: list[sales.SaleItem]) -> list[BasketLine]:
    """Sale items priced (catalog price unless the POS gives one) with category and brand."""
    skus = sorted({i.sku for i in items})
    marks = ", ".join("?" for _ in skus)
    products = {
        r["sku"]: r
        for r in db.query(
            f"SELECT sku, price, category, brand FROM products WHERE sku IN ({marks})", skus
        )
    }
    missing = [s for s in skus if s not in products]
    if missing:
        raise sales.SaleError(f"unknown SKUs: {', '.join(missing)}")
    return [
        BasketLine(
            sku=i.sku,
            qty=i.qty,
            unit_price=products[i.sku]["price"] if i.unit_price is None else i.unit_price,
            category=products[i.sku]["category"],
            brand=products[i.sku]["brand"],
        )
        for i in items
    ]


def quote(
    db: Database, sale: sales.SaleIn, *, now: float | None = None
) -> tuple[list[BasketLine], list[tuple[str, float]]]:
    """Validate every coupon of the sale against its basket; raises CouponRejected."""
    now = time.time() if now is None else now
    lines = basket_lines(db, sale.items)
    subtotal = sum(line.amount for line in lines)
    codes: list[tuple[str, float]] = []
    seen: set[str] = set()
    left = subtotal
    for raw in sale.coupon_codes:
        code = coupons.normalize_code(raw)
        if code in seen:
            raise CouponRejected(code, "redeemed", "the same coupon twice in one sale")
        seen.add(code)
        _, discount = coupons.evaluate(
            db, code, member_id=sale.member_id, store=sale.store, lines=lines, now=now
        )
        discount = min(discount, round(left, 2))  # coupons together never exceed the basket
        left -= discount
        codes.append((code, discount))
    return lines, codes


def checkout(
    db: Database,
    sale: sales.SaleIn,
    *,
    device: str | None = None,
    now: float | None = None,
    start_of_day: float | None = None,
    policy: offers.OfferPolicy | None = None,
    sale_link: visit_sales.LinkWindows = visit_sales.DEFAULT_WINDOWS,
) -> CheckoutResult:
    """Record a POS sale with its coupons. A replay of a sale ID returns the stored sale.
    ``sale_link``: the windows the sale is attached to its visit by (the service's settings)."""
    now = time.time() if now is None else now
    if sale.id is not None:
        stored = sales.get_sale(db, sale.id)
        if stored is not None:
            return _replayed(db, stored)
    lines, codes = quote(db, sale, now=now)
    subtotal = round(sum(line.amount for line in lines), 2)
    normalized = sale.model_copy(update={"coupon_codes": [c for c, _ in codes]})
    with db.transaction():
        sale_id, created = sales.record_sale(db, normalized, device)
        if created:
            for code, discount in codes:
                coupons.redeem(
                    db, code, member_id=sale.member_id or "", store=sale.store, sale_id=sale_id,
                    discount=discount, now=now,
                )  # fmt: skip
    if not created:
        return _replayed(db, sales.get_sale(db, sale_id) or {"id": sale_id, "total": subtotal})
    discount = round(sum(d for _, d in codes), 2)
    result = CheckoutResult(
        sale_id=sale_id, created=True, subtotal=subtotal, discount=discount,
        total=round(subtotal - discount, 2),
        redeemed=[{"code": c, "discount": d} for c, d in codes],
    )  # fmt: skip
    # Each step below is a transaction of its own (in a request: a savepoint), so a failed
    # one undoes only itself and the sale still goes through.
    try:  # a member's visit is usually open at the till: attach the sale to it now
        with db.transaction():
            visit_sales.link_sale(db, sale_id, now, sale_link)
    except Exception:  # the sale stands; `link_pending` retries later
        log.exception("linking sale %s to its visit failed", sale_id)
    if sale.member_id:
        try:
            with db.transaction():
                result.issued = _after_sale(db, sale, lines, codes, now, start_of_day, policy)
        except Exception:  # the sale stands; a failed reward is logged, not an error
            log.exception("post-sale rewards failed for sale %s", sale_id)
    return result


def _after_sale(
    db: Database,
    sale: sales.SaleIn,
    lines: list[BasketLine],
    codes: list[tuple[str, float]],
    now: float,
    start_of_day: float | None,
    policy: offers.OfferPolicy | None = None,
) -> list[dict[str, Any]]:
    member = members.get_member(db, sale.member_id or "")
    if member is None:
        return []
    scored = scoring.record(
        db, member, [("store_purchase", None)] + [("coupon_redeemed", None)] * len(codes),
        at=sale.ts or now, now=now, offer_policy=policy,
    )  # fmt: skip
    facts = offers.MemberFacts(
        member["id"], member["marketing"], member["tier"], scored.score,
        propensity=propensity.for_member(db, member["id"]),
    )  # fmt: skip
    since = start_of_day if start_of_day is not None else now - 86400
    issued = offers.reward_recommended_purchase(
        db,
        facts,
        sale.store,
        sorted({line.sku for line in lines}),
        since=since,
        now=now,
        policy=policy,
    )
    for coupon in issued:  # announced once the coupon is committed, never before
        view = coupons.push_view(coupon, member["id"])
        services.announce(db, sale.store, "coupon_issued", view)
    return issued


def _replayed(db: Database, stored: dict[str, Any]) -> CheckoutResult:
    redeemed = db.query(
        "SELECT code, discount FROM coupons WHERE redeemed_sale_id = ? ORDER BY code",
        (stored["id"],),
    )
    discount = round(sum(r["discount"] or 0.0 for r in redeemed), 2)
    subtotal = round(float(stored.get("total") or 0.0), 2)
    return CheckoutResult(
        sale_id=stored["id"], created=False, subtotal=subtotal, discount=discount,
        total=round(subtotal - discount, 2), redeemed=redeemed,
    )  # fmt: skip
