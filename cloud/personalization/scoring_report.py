"""Contacts and responses per scoring plan: the evidence for the practice's claim that
scoring reaches the same response with fewer contacts.

A *contact* is an action a plan took for a member (POS alert, coupon, hand-off webhook). A
contact *responded* when the member bought (a POS sale or an online order that was not
cancelled) or redeemed a coupon within the plan's ``response_days`` after it. Because members
are split between active plans by a stable hash (`scoring_plans.assigned_plan`), the plans'
``buyers / members`` compare like with like: a plan that contacts fewer members for the same
buyer rate wasted fewer contacts.
"""

from __future__ import annotations

import time
from typing import Any

from storelens.cloud.db import Database
from storelens.cloud.personalization.scoring_plans import active_plans, assigned_plan, list_plans

_CANCELLED = ("cancelled", "unfulfillable")


def _responded_sql() -> str:
    marks = ", ".join("?" for _ in _CANCELLED)
    return (
        "EXISTS (SELECT 1 FROM pos_sales s WHERE s.member_id = c.member_id AND s.ts > c.at"
        " AND s.ts <= c.at + ?)"
        " OR EXISTS (SELECT 1 FROM online_orders o LEFT JOIN customer_accounts a"
        " ON a.id = o.customer_account WHERE COALESCE(o.member_id, a.member_id) = c.member_id"
        f" AND o.created_at > c.at AND o.created_at <= c.at + ? AND o.status NOT IN ({marks}))"
        " OR EXISTS (SELECT 1 FROM coupons k WHERE k.member_id = c.member_id"
        " AND k.redeemed_at > c.at AND k.redeemed_at <= c.at + ?)"
    )


def _buyers(db: Database, since: float, until: float) -> set[str]:
    marks = ", ".join("?" for _ in _CANCELLED)
    rows = db.query(
        "SELECT DISTINCT member_id FROM pos_sales WHERE member_id IS NOT NULL AND ts >= ?"
        " AND ts < ? UNION SELECT DISTINCT COALESCE(o.member_id, a.member_id) FROM online_orders o"
        " LEFT JOIN customer_accounts a ON a.id = o.customer_account"
        " WHERE o.created_at >= ? AND o.created_at < ?"
        f" AND o.status NOT IN ({marks})",
        (since, until, since, until, *_CANCELLED),
    )
    return {next(iter(r.values())) for r in rows} - {None}


def plan_report(
    db: Database, *, since: float | None = None, until: float | None = None
) -> dict[str, Any]:
    """Per plan: members assigned, contacts (by action), contacted members, responses,
    responders, buyers among its members, and the ratios between them."""
    until = time.time() if until is None else until
    since = until - 90 * 86400 if since is None else since
    plans = list_plans(db)
    active = active_plans(db)
    assigned: dict[str, set[str]] = {p.id: set() for p in plans}
    for row in db.query("SELECT id FROM members"):
        plan = assigned_plan(row["id"], active)
        if plan is not None:
            assigned[plan.id].add(row["id"])
    buyers = _buyers(db, since, until)
    out = []
    for plan in plans:
        window = plan.response_days * 86400
        rows = db.query(
            f"SELECT c.member_id, c.action, CASE WHEN {_responded_sql()} THEN 1 ELSE 0 END"
            " AS responded FROM score_contacts c WHERE c.plan = ? AND c.at >= ? AND c.at < ?",
            (window, window, *_CANCELLED, window, plan.id, since, until),
        )
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
    return {"since": since, "until": until, "plans": out}
