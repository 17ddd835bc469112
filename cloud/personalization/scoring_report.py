"""Contacts and responses per scoring plan: the evidence for the practice's claim that
scoring reaches the same response with fewer contacts.

A *contact* is an action a plan took for a member (POS alert, coupon, hand-off webhook). A
contact *responded* when the member bought (a POS sale or an online order that was not
cancelled) or redeemed a coupon within the plan's ``response_days`` after it. Because members
are split between active plans by a stable hash (`scoring_plans.assigned_plan`), the plans'
``buyers / members`` compare like with like: a plan that contacts fewer members for the same
buyer rate wasted fewer contacts.

Ops users limited to some stores (`storelens cloud user-add --stores`) see those stores only
(``stores``): the contacts made in them (a POS alert at their till, a coupon or hand-off raised
while the member was there; contacts made outside any store are chain-wide and left out), a
response is a purchase in one of them (a POS sale, or a coupon redeemed there; online orders
belong to no store), and a plan's members are those seen in them in the period (a member-linked
visit, a sale or a contact there), its buyers those who bought there.
"""

from __future__ import annotations

import time
from typing import Any

from storelens.cloud.db import Database
from storelens.cloud.personalization.scoring_plans import active_plans, assigned_plan, list_plans

_CANCELLED = ("cancelled", "unfulfillable")
_WINDOW = object()  # stands for the plan's response window among the SQL parameters


def _marks(values: tuple[str, ...]) -> str:
    return ", ".join("?" for _ in values)


def _responded_sql(stores: tuple[str, ...] | None) -> tuple[str, list[Any]]:
    """SQL true when contact ``c`` was followed by a purchase within the response window,
    and its parameters (`_WINDOW` where the window goes)."""
    if stores is None:
        sql = (
            "EXISTS (SELECT 1 FROM pos_sales s WHERE s.member_id = c.member_id AND s.ts > c.at"
            " AND s.ts <= c.at + ?)"
            " OR EXISTS (SELECT 1 FROM online_orders o LEFT JOIN customer_accounts a"
            " ON a.id = o.customer_account WHERE COALESCE(o.member_id, a.member_id) = c.member_id"
            " AND o.created_at > c.at AND o.created_at <= c.at + ?"
            f" AND o.status NOT IN ({_marks(_CANCELLED)}))"
            " OR EXISTS (SELECT 1 FROM coupons k WHERE k.member_id = c.member_id"
            " AND k.redeemed_at > c.at AND k.redeemed_at <= c.at + ?)"
        )
        return sql, [_WINDOW, _WINDOW, *_CANCELLED, _WINDOW]
    sql = (
        "EXISTS (SELECT 1 FROM pos_sales s WHERE s.member_id = c.member_id AND s.ts > c.at"
        f" AND s.ts <= c.at + ? AND s.store IN ({_marks(stores)}))"
        " OR EXISTS (SELECT 1 FROM coupons k WHERE k.member_id = c.member_id"
        f" AND k.redeemed_at > c.at AND k.redeemed_at <= c.at + ?"
        f" AND k.redeemed_store IN ({_marks(stores)}))"
    )
    return sql, [_WINDOW, *stores, _WINDOW, *stores]


def _buyers(db: Database, since: float, until: float, stores: tuple[str, ...] | None) -> set[str]:
    if stores is not None:
        rows = db.query(
            "SELECT DISTINCT member_id FROM pos_sales WHERE member_id IS NOT NULL AND ts >= ?"
            f" AND ts < ? AND store IN ({_marks(stores)})",
            (since, until, *stores),
        )
        return {r["member_id"] for r in rows}
    rows = db.query(
        "SELECT DISTINCT member_id FROM pos_sales WHERE member_id IS NOT NULL AND ts >= ?"
        " AND ts < ? UNION SELECT DISTINCT COALESCE(o.member_id, a.member_id) FROM online_orders o"
        " LEFT JOIN customer_accounts a ON a.id = o.customer_account"
        " WHERE o.created_at >= ? AND o.created_at < ?"
        f" AND o.status NOT IN ({_marks(_CANCELLED)})",
        (since, until, since, until, *_CANCELLED),
    )
    return {next(iter(r.values())) for r in rows} - {None}


def _members(db: Database, since: float, until: float, stores: tuple[str, ...] | None) -> list[str]:
    """Every member (the chain), or those seen in ``stores`` in the period."""
    if stores is None:
        return [r["id"] for r in db.query("SELECT id FROM members")]
    marks = _marks(stores)
    rows = db.query(
        "SELECT m.id FROM members m WHERE m.token IN (SELECT e.member FROM events e"
        f" WHERE e.member IS NOT NULL AND e.store IN ({marks}) AND e.ts >= ? AND e.ts < ?)"
        " OR m.id IN (SELECT s.member_id FROM pos_sales s WHERE s.member_id IS NOT NULL"
        f" AND s.store IN ({marks}) AND s.ts >= ? AND s.ts < ?)"
        " OR m.id IN (SELECT c.member_id FROM score_contacts c"
        f" WHERE c.store IN ({marks}) AND c.at >= ? AND c.at < ?)",
        (*stores, since, until, *stores, since, until, *stores, since, until),
    )
    return [r["id"] for r in rows]


def plan_report(
    db: Database,
    *,
    since: float | None = None,
    until: float | None = None,
    stores: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Per plan: members assigned, contacts (by action), contacted members, responses,
    responders, buyers among its members, and the ratios between them; ``stores``: only
    what happened in those stores (see the module docstring), None for the whole chain."""
    until = time.time() if until is None else until
    since = until - 90 * 86400 if since is None else since
    if stores is not None and not stores:
        raise ValueError("stores: name at least one store, or None for the whole chain")
    plans = list_plans(db)
    active = active_plans(db)
    assigned: dict[str, set[str]] = {p.id: set() for p in plans}
    for member_id in _members(db, since, until, stores):
        plan = assigned_plan(member_id, active)
        if plan is not None:
            assigned[plan.id].add(member_id)
    buyers = _buyers(db, since, until, stores)
    responded, params = _responded_sql(stores)
    in_scope = "" if stores is None else f" AND c.store IN ({_marks(stores)})"
    out = []
    for plan in plans:
        window = plan.response_days * 86400
        rows = db.query(
            f"SELECT c.member_id, c.action, CASE WHEN {responded} THEN 1 ELSE 0 END"
            " AS responded FROM score_contacts c WHERE c.plan = ? AND c.at >= ? AND c.at < ?"
            + in_scope,
            (*(window if p is _WINDOW else p for p in params), plan.id, since, until,
             *(stores or ())),
        )  # fmt: skip
        by_action: dict[str, int] = {}
        for r in rows:
            by_action[r["action"]] = by_action.get(r["action"], 0) + 1
        contacts = len(rows)
        responses = sum(int(r["responded"]) for r in rows)
        mine = assigned[plan.id]
        plan_buyers = len(mine & buyers)
        out.append(
            {
                "plan": plan.id,
                "name": plan.name,
                "active": plan.active,
                "share": plan.share if plan.active else 0.0,
                "response_days": plan.response_days,
                "members": len(mine),
                "contacts": contacts,
                "contacts_by_action": by_action,
                "contacted_members": len({r["member_id"] for r in rows}),
                "responses": responses,
                "responders": len({r["member_id"] for r in rows if r["responded"]}),
                "buyers": plan_buyers,
                "response_rate": round(responses / contacts, 4) if contacts else None,
                "contacts_per_response": round(contacts / responses, 2) if responses else None,
                "contacts_per_member": round(contacts / len(mine), 4) if mine else None,
                "buyer_rate": round(plan_buyers / len(mine), 4) if mine else None,
            }  # fmt: skip
        )
    return {
        "since": since,
        "until": until,
        "stores": None if stores is None else list(stores),
        "plans": out,
    }
