"""Visits against money: conversion, member share of visitors, coupon uplift vs holdout."""

from __future__ import annotations

from typing import Any

from storelens.cloud.analytics import footfall, rollups
from storelens.cloud.analytics.scope import DAY_S, HOUR_S, Scope, local_label
from storelens.cloud.analytics.staff import shoppers_only
from storelens.cloud.analytics.table import Table, change, ratio
from storelens.cloud.db import Database


def member_share(db: Database, scope: Scope) -> Table:
    """Per store and day: finished visits, those linked to a member (card swiped), the share.

    Visits of members who opted out of tracking are stored unlinked, so they count as
    anonymous here, which is what they asked for.
    """

    reader = rollups.reader(db, compare=True)  # the period and the previous: shared reads

    def query(s: Scope) -> list[dict[str, Any]]:
        if not s.raw:
            return reader.member_visits(s)
        bucket, bucket_params = s.bucket(DAY_S)
        where, params = s.where()
        return db.query(
            f"SELECT store, {bucket} AS b, COUNT(*) AS visits, COUNT(member) AS member_visits,"
            " COUNT(DISTINCT member) AS members"
            f" FROM events WHERE type = 'visit_ended' AND {where} AND {shoppers_only()}"
            " GROUP BY store, b ORDER BY b, store",
            bucket_params + params,
        )

    found = query(scope)
    labels = {b: local_label(b, daily=True) for b in {int(r["b"]) for r in found}}  # per day
    rows = [
        {
            "day": labels[int(r["b"])],
            "store": r["store"],
            "visits": int(r["visits"]),
            "member_visits": int(r["member_visits"]),
            "members": int(r["members"]),
            "member_share": ratio(int(r["member_visits"]), int(r["visits"])),
        }
        for r in found
    ]
    previous = query(scope.previous())
    now_v, now_m = sum(r["visits"] for r in rows), sum(r["member_visits"] for r in rows)
    prev_v = sum(int(r["visits"]) for r in previous)
    prev_m = sum(int(r["member_visits"]) for r in previous)
    share, prev_share = ratio(now_m, now_v), ratio(prev_m, prev_v)
    return Table(
        chart="member-share",
        columns=["day", "store", "visits", "member_visits", "members", "member_share"],
        rows=rows,
        extra={
            "comparison": {
                "member_share": share,
                "previous_member_share": prev_share,
                "change_pct": change(share or 0.0, prev_share or 0.0),
            }
        },
    )


def _sales(db: Database, scope: Scope, seconds: int) -> dict[tuple[str, int], dict[str, float]]:
    bucket, bucket_params = scope.bucket(seconds)
    where, params = scope.where()
    rows = db.query(
        f"SELECT store, {bucket} AS b, COUNT(*) AS transactions, SUM(total) AS revenue"
        f" FROM pos_sales WHERE {where} GROUP BY store, b",
        bucket_params + params,
    )
    return {
        (r["store"], int(r["b"])): {
            "transactions": int(r["transactions"]),
            "revenue": float(r["revenue"] or 0),
        }
        for r in rows
    }


Sales = dict[tuple[str, int], dict[str, float]]  # (store, bucket) -> transactions, revenue


def _counted_days(visitors: dict[str, footfall.Counts]) -> set[tuple[str, int]]:
    """(store, local day) pairs whose visitors were counted: the only ones a conversion rate
    can speak for. A store without cameras, or a day before its device came, still sells;
    dividing those sales by other stores' or days' visitors gave rates like 3707%."""
    return {
        (store, b - b % DAY_S)
        for store, counts in visitors.items()
        for b, c in counts.items()
        if c["visitors"]
    }


def _conversion_totals(visitors: dict[str, footfall.Counts], sales: Sales) -> dict[str, Any]:
    counted = _counted_days(visitors)
    matched = [s for (store, b), s in sales.items() if (store, b - b % DAY_S) in counted]
    people = sum(c["visitors"] for counts in visitors.values() for c in counts.values())
    converted = sum(int(s["transactions"]) for s in matched)
    return {
        "visitors": people,
        "transactions": sum(int(s["transactions"]) for s in sales.values()),
        "revenue": round(sum(s["revenue"] for s in sales.values()), 2),
        "counted_transactions": converted,
        "conversion": ratio(converted, people),
        "uncounted_store_days": len({(st, b - b % DAY_S) for st, b in sales} - counted),
    }


def conversion(db: Database, scope: Scope) -> Table:
    """Per store and local day: POS transactions / visitors, revenue and average basket.

    The period's rate (``comparison.conversion``) divides the transactions of the store-days
    that counted visitors by those visitors: one scope for numerator and denominator.
    ``transactions`` and ``revenue`` are all the period's sales."""
    reader = rollups.reader(db, compare=True)
    visitors = footfall.counts_by_store(db, scope, DAY_S, reader)
    sales = _sales(db, scope, DAY_S)
    keys = {(s, b) for s, counts in visitors.items() for b in counts} | set(sales)
    rows = []
    labels = {b: local_label(b, daily=True) for b in {b for _, b in keys}}  # per day, not row
    for store, b in sorted(keys, key=lambda k: (k[1], k[0])):
        v = visitors.get(store, {}).get(b, {}).get("visitors", 0)
        s = sales.get((store, b), {"transactions": 0, "revenue": 0.0})
        rows.append(
            {
                "day": labels[b],
                "store": store,
                "visitors": v,
                "transactions": int(s["transactions"]),
                "conversion": ratio(s["transactions"], v),
                "revenue": round(s["revenue"], 2),
                "avg_basket": ratio(s["revenue"], s["transactions"], 2),
            }
        )
    previous = scope.previous()
    now = _conversion_totals(visitors, sales)
    before = _conversion_totals(
        footfall.counts_by_store(db, previous, DAY_S, reader), _sales(db, previous, DAY_S)
    )
    return Table(
        chart="conversion",
        columns=["day", "store", "visitors", "transactions", "conversion", "revenue", "avg_basket"],
        rows=rows,
        extra={
            "comparison": {
                **now,
                **{f"previous_{k}": v for k, v in before.items()},
                "change_pct": change(now["conversion"] or 0.0, before["conversion"] or 0.0),
            }
        },
    )


def conversion_hourly(db: Database, scope: Scope) -> Table:
    """Per local hour of the day, summed over the selected stores and days (transactions of
    store-days that counted visitors only, as in `conversion`)."""
    # A store-day counted visitors iff its hours did: the days need no hourly rows per
    # store, and the visitors per hour are footfall's totals (summed per time zone).
    reader = rollups.reader(db)
    counted = _counted_days(footfall.counts_by_store(db, scope, DAY_S, reader))
    visitors: dict[int, int] = {}
    for b, c in footfall.totals(db, scope, HOUR_S, reader).items():
        h = (b // HOUR_S) % 24
        visitors[h] = visitors.get(h, 0) + c["visitors"]
    transactions: dict[int, int] = {}
    revenue: dict[int, float] = {}
    for (store, b), s in _sales(db, scope, HOUR_S).items():
        if (store, b - b % DAY_S) not in counted:
            continue
        h = (b // HOUR_S) % 24
        transactions[h] = transactions.get(h, 0) + int(s["transactions"])
        revenue[h] = revenue.get(h, 0.0) + s["revenue"]
    rows = [
        {
            "hour_of_day": h,
            "visitors": visitors.get(h, 0),
            "transactions": transactions.get(h, 0),
            "conversion": ratio(transactions.get(h, 0), visitors.get(h, 0)),
            "revenue": round(revenue.get(h, 0.0), 2),
        }
        for h in range(24)
        if scope.hour_selected(h) and (h in visitors or h in transactions)
    ]
    return Table(
        chart="conversion-hourly",
        columns=["hour_of_day", "visitors", "transactions", "conversion", "revenue"],
        rows=rows,
    )


def _per_member(db: Database, sql: str, params: list[Any]) -> dict[str, dict[str, float]]:
    return {
        r["member_id"]: {k: float(v or 0) for k, v in r.items() if k != "member_id"}
        for r in db.query(sql, params)
    }


def coupon_uplift(db: Database, scope: Scope, policy: Any = None) -> Table:
    """Members offered coupons against the holdout group, over the period.

    Intention to treat: both groups are all members with marketing consent, split by the offer
    engine's deterministic holdout rule. Comparing "members who were shown an offer" with the
    holdout would flatter the offers (clerks show offers to people already buying); comparing
    the eligible groups measures what the programme adds. Sales and redemptions follow the
    scope (stores, days, hours) of the sale they belong to.
    """
    from storelens.cloud.personalization import offers

    policy = policy or offers.OfferPolicy()
    where, params = scope.where("s")
    bought = _per_member(
        db,
        "SELECT s.member_id AS member_id, COUNT(*) AS transactions, SUM(s.total) AS spend"
        f" FROM pos_sales s WHERE s.member_id IS NOT NULL AND {where} GROUP BY s.member_id",
        params,
    )
    redeemed = _per_member(
        db,
        "SELECT c.member_id AS member_id, COUNT(*) AS redeemed, SUM(c.discount) AS discount"
        f" FROM coupons c JOIN pos_sales s ON s.id = c.redeemed_sale_id"
        f" WHERE c.member_id IS NOT NULL AND {where} GROUP BY c.member_id",
        params,
    )
    shown_where, shown_params = scope.where("i", ts="at")
    shown = _per_member(
        db,
        "SELECT i.member_id AS member_id, COUNT(*) AS shown FROM offer_impressions i"
        f" WHERE i.action = 'shown' AND {shown_where} GROUP BY i.member_id",
        shown_params,
    )
    consenting = db.query(
        "SELECT m.id FROM members m JOIN member_consent c ON c.member_id = m.id"
        " WHERE c.marketing = 1"
    )
    groups = {g: dict.fromkeys(("members", "buyers", "transactions", "spend", "redeemed",
                                "discount", "offers_shown", "members_shown"), 0.0)
              for g in ("offered", "holdout")}  # fmt: skip
    for r in consenting:
        m = r["id"]
        g = groups["holdout" if offers.in_holdout(m, policy) else "offered"]
        b, c, s = bought.get(m, {}), redeemed.get(m, {}), shown.get(m, {})
        g["members"] += 1
        g["buyers"] += 1 if b else 0
        g["transactions"] += b.get("transactions", 0)
        g["spend"] += b.get("spend", 0)
        g["redeemed"] += c.get("redeemed", 0)
        g["discount"] += c.get("discount", 0)
        g["offers_shown"] += s.get("shown", 0)
        g["members_shown"] += 1 if s else 0
    rows = []
    for name, g in groups.items():
        n = g["members"]
        rows.append(
            {
                "group": name,
                "members": int(n),
                "members_shown_offers": int(g["members_shown"]),
                "offers_shown": int(g["offers_shown"]),
                "coupons_redeemed": int(g["redeemed"]),
                "redemption_per_member": ratio(g["redeemed"], n),
                "buyers": int(g["buyers"]),
                "purchase_rate": ratio(g["buyers"], n),
                "transactions": int(g["transactions"]),
                "spend": round(g["spend"], 2),
                "spend_per_member": ratio(g["spend"], n, 2),
                "discount_given": round(g["discount"], 2),
            }
        )
    offered, holdout = rows
    return Table(
        chart="coupon-uplift",
        columns=list(offered),
        rows=rows,
        extra={
            "holdout_share": policy.holdout_share,
            "uplift_pct": {
                "purchase_rate": change(
                    offered["purchase_rate"] or 0, holdout["purchase_rate"] or 0
                ),
                "spend_per_member": change(
                    offered["spend_per_member"] or 0, holdout["spend_per_member"] or 0
                ),
            },
        },
    )
