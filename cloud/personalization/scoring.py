"""Engagement scoring: points per interaction, decaying over time, kept as running totals,
and threshold actions; what earns how much and what happens is a `scoring_plans.ScoringPlan`.

A score decays with a half-life. Instead of storing (score, last update) and rewriting both on
every event, each (plan, member) row holds the score expressed at a fixed reference time:
``acc = sum(points_i * 2^((t_i - T0) / half_life))`` and ``score(now) = acc * 2^(-(now - T0) /
half_life)``. This is the same decayed total, but an award is one commutative
``acc = acc + delta`` UPDATE: concurrent ingest workers never lose an update, and events
arriving out of order are counted exactly as if they had come in order. (Doubles hold 2^1000,
i.e. ~80 years of 30-day half-lives past T0, ~19 of the shortest allowed (7 days), before a
rebase would be needed.) Changing a
plan's half-life rescales its stored totals (`put_plan`), so scores stay continuous.

Every active plan scores every member; the member's assigned plan (`scoring_plans.
assigned_plan`) runs the actions: an alert to the store's POS when a high-intent member is in
the store now ("member in Handbags for 6 min, score 42"), a coupon, or a signed hand-off
webhook (`handoff`). Each action has a cooldown per member (and store), enforced by a
conditional upsert, so several ingest workers cannot fire it twice. Every action taken is a
*contact* (``score_contacts``), which the report (`scoring_report`) sets against responses.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from storelens.cloud import services
from storelens.cloud.commerce import members
from storelens.cloud.db import Database, migrations
from storelens.cloud.personalization import handoff, offers
from storelens.cloud.personalization.recommend.ranking import format_duration
from storelens.cloud.personalization.scoring_plans import (
    DEFAULT_PLAN,
    CouponAction,
    PlanError,
    PosAlert,
    ScoringPlan,
    Threshold,
    WebhookAction,
    active_plans,
    assigned_plan,
    get_plan,
    save_plan,
)

log = logging.getLogger(__name__)

MIGRATIONS = migrations(
    "scoring",
    [
        """
        CREATE TABLE member_scores (
            member_id TEXT PRIMARY KEY,
            acc {REAL} NOT NULL,
            updated_at {REAL} NOT NULL
        );
        CREATE TABLE score_actions (
            member_id TEXT NOT NULL,
            rule TEXT NOT NULL,
            store TEXT NOT NULL,
            last_at {REAL} NOT NULL,
            PRIMARY KEY (member_id, rule, store)
        );
        CREATE TABLE scored_events (
            event_id TEXT PRIMARY KEY,
            scored_at {REAL} NOT NULL
        );
        CREATE INDEX scored_events_at ON scored_events (scored_at)
        """,
        # Scores per plan (the totals so far belong to the built-in plan), and contacts.
        """
        CREATE TABLE plan_member_scores (
            plan TEXT NOT NULL,
            member_id TEXT NOT NULL,
            acc {REAL} NOT NULL,
            updated_at {REAL} NOT NULL,
            PRIMARY KEY (plan, member_id)
        );
        INSERT INTO plan_member_scores (plan, member_id, acc, updated_at)
            SELECT 'default', member_id, acc, updated_at FROM member_scores;
        DROP TABLE member_scores;
        ALTER TABLE plan_member_scores RENAME TO member_scores;
        CREATE INDEX member_scores_member ON member_scores (member_id);
        CREATE TABLE score_contacts (
            id {ID},
            plan TEXT NOT NULL,
            threshold TEXT NOT NULL,
            action TEXT NOT NULL,
            member_id TEXT NOT NULL,
            store TEXT NOT NULL DEFAULT '',
            at {REAL} NOT NULL,
            ref TEXT
        );
        CREATE INDEX score_contacts_plan ON score_contacts (plan, at);
        CREATE INDEX score_contacts_member ON score_contacts (member_id, at)
        """,
    ],
)

T0 = 1_704_067_200.0  # 2024-01-01T00:00:00Z, the reference time of stored totals


def _growth(t: float, half_life_days: float) -> float:
    return 2.0 ** ((t - T0) / (half_life_days * 86400))


def plan_for(db: Database, member_id: str) -> ScoringPlan:
    """The plan that acts for this member (the built-in one when every plan is inactive)."""
    return assigned_plan(member_id, active_plans(db)) or DEFAULT_PLAN


def score(
    db: Database, member_id: str, *, now: float | None = None, plan: ScoringPlan | None = None
) -> float:
    """The member's score in ``plan`` (default: the member's assigned plan) as of ``now``."""
    plan = plan or plan_for(db, member_id)
    now = time.time() if now is None else now
    acc = db.scalar(
        "SELECT acc FROM member_scores WHERE plan = ? AND member_id = ?", (plan.id, member_id)
    )
    return 0.0 if acc is None else float(acc) / _growth(now, plan.half_life_days)


def _add(
    db: Database, plan: ScoringPlan, member_id: str, points: float, at: float, now: float
) -> tuple[float, float]:
    """Add points earned at ``at``; (score before, score after), both as of ``now``."""
    if points == 0:
        s = score(db, member_id, now=now, plan=plan)
        return s, s
    delta = points * _growth(at, plan.half_life_days)
    db.execute(
        "INSERT INTO member_scores (plan, member_id, acc, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (plan, member_id) DO UPDATE SET acc = member_scores.acc + excluded.acc,"
        " updated_at = excluded.updated_at",
        (plan.id, member_id, delta, now),
    )
    acc = float(
        db.scalar(
            "SELECT acc FROM member_scores WHERE plan = ? AND member_id = ?", (plan.id, member_id)
        )
    )
    g = _growth(now, plan.half_life_days)
    return (acc - delta) / g, acc / g


def award(
    db: Database,
    member_id: str,
    interaction: str,
    *,
    at: float | None = None,
    now: float | None = None,
    plan: ScoringPlan | None = None,
    category: str | None = None,
) -> tuple[float, float]:
    """Add the points of one interaction at ``at`` in ``plan`` (default: every active plan),
    without running actions; returns the score before and after in ``plan`` (default: the
    member's assigned plan)."""
    now = time.time() if now is None else now
    at = now if at is None else at
    if plan is not None:
        return _add(db, plan, member_id, plan.points(interaction, category), at, now)
    plans = active_plans(db)
    mine = assigned_plan(member_id, plans)
    result = (0.0, 0.0)
    for p in plans:
        pair = _add(db, p, member_id, p.points(interaction, category), at, now)
        if p is mine:
            result = pair
    return result


def claim_action(
    db: Database, member_id: str, rule: str, store: str, cooldown_s: float, now: float
) -> bool:
    """True for exactly one caller per cooldown window (conditional upsert)."""
    return (
        db.execute(
            "INSERT INTO score_actions (member_id, rule, store, last_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (member_id, rule, store) DO UPDATE SET last_at = excluded.last_at"
            " WHERE score_actions.last_at <= ?",
            (member_id, rule, store, now, now - cooldown_s),
        )
        == 1
    )


@dataclass(frozen=True)
class Presence:
    """Where the member is in the store now, from the event that triggered the check."""

    store: str
    zone: str | None = None
    category: str | None = None
    dwell_s: float | None = None


def _contact(
    db: Database, plan: ScoringPlan, th: Threshold, member_id: str, store: str, now: float,
    ref: str | None,
) -> None:  # fmt: skip
    db.execute(
        "INSERT INTO score_contacts (plan, threshold, action, member_id, store, at, ref)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (plan.id, th.name, th.action.kind, member_id, store, now, ref),
    )


def check_thresholds(
    db: Database,
    member: dict[str, Any],
    before: float,
    after: float,
    *,
    presence: Presence | None,
    now: float,
    plan: ScoringPlan | None = None,
    offer_policy: offers.OfferPolicy | None = None,
) -> list[dict[str, Any]]:
    """Run the actions of ``plan`` whose threshold applies; returns what was done.

    Alerts fire while a member at or above the threshold is in a store (once per cooldown);
    coupons and webhooks fire when the score crosses the threshold. All need marketing
    consent. Each action taken is recorded as a contact of the plan."""
    plan = plan or plan_for(db, member["id"])
    if not member.get("marketing"):
        return []
    done: list[dict[str, Any]] = []
    for th in plan.thresholds:
        rule = th.name if plan.id == DEFAULT_PLAN.id else f"{plan.id}:{th.name}"
        cooldown_s = th.cooldown_hours * 3600
        action = th.action
        if isinstance(action, PosAlert):
            if presence is None or after < th.score:
                continue
            if not claim_action(db, member["id"], rule, presence.store, cooldown_s, now):
                continue
            where = presence.category or presence.zone or "the store"
            message = f"member in {where}"
            if presence.dwell_s:
                message += f" for {format_duration(presence.dwell_s)}"
            message += f", score {round(after)}"
            payload = {
                "member_id": member["id"], "name": member.get("name"), "tier": member.get("tier"),
                "score": round(after, 1), "zone": presence.zone, "category": presence.category,
                "dwell_s": presence.dwell_s, "message": message, "plan": plan.id,
            }  # fmt: skip
            _contact(db, plan, th, member["id"], presence.store, now, None)
            _announce(db, presence.store, "member_alert", payload)
            done.append({"action": "alert", **payload})
            continue
        if not before < th.score <= after:
            continue
        if isinstance(action, CouponAction):
            template = offers.get_template(db, action.template_id)
            if template is None or not template.active:
                continue
            if offers.in_holdout(member["id"], offer_policy or services.offer_policy(db)):
                continue
            if not claim_action(db, member["id"], rule, "", cooldown_s, now):
                continue
            from storelens.cloud.personalization import coupons

            coupon = coupons.issue(
                db, member["id"], template.terms, valid_days=template.coupon_days,
                source="score", template_id=template.id, now=now,
            )  # fmt: skip
            payload = coupons.push_view(coupon, member["id"], template.name)
            store = presence.store if presence else ""
            _contact(db, plan, th, member["id"], store, now, coupon["code"])
            if store:
                _announce(db, store, "coupon_issued", payload)
            done.append({"action": "coupon", **payload})
        elif isinstance(action, WebhookAction):
            if not claim_action(db, member["id"], rule, "", cooldown_s, now):
                continue
            store = presence.store if presence else ""
            payload = {
                "event": "member_handoff", "plan": plan.id, "threshold": th.name,
                "score": round(after, 1), "at": now, "store": store or None,
                "member": {"id": member["id"], "name": member.get("name"),
                           "tier": member.get("tier")},
            }  # fmt: skip
            delivery = handoff.enqueue(
                db, plan=plan.id, threshold=th.name, member_id=member["id"], url=action.url,
                secret_env=action.secret_env, max_attempts=action.max_attempts,
                payload=payload, now=now,
            )  # fmt: skip
            _contact(db, plan, th, member["id"], store, now, delivery)
            done.append({"action": "webhook", "delivery_id": delivery, **payload})
    return done


def _announce(db: Database, store: str, kind: str, payload: dict[str, Any]) -> None:
    """Push once the action's rows are committed (at once outside a transaction): a till
    never hears of a coupon or contact that was rolled back."""
    services.announce(db, store, kind, payload)


@dataclass
class Scored:
    """What one scoring step did: the member's score in their plan after it, and actions."""

    score: float = 0.0
    actions: list[dict[str, Any]] = field(default_factory=list)


def record(
    db: Database,
    member: dict[str, Any],
    interactions: Sequence[tuple[str, str | None]],
    *,
    at: float | None = None,
    now: float | None = None,
    presence: Presence | None = None,
    offer_policy: offers.OfferPolicy | None = None,
    plans: list[ScoringPlan] | None = None,
) -> Scored:
    """Score (interaction type, category) pairs that happened at ``at`` in every active plan,
    then run the actions of the member's own plan. Consent to be scored is the caller's."""
    now = time.time() if now is None else now
    at = now if at is None else at
    plans = active_plans(db) if plans is None else plans
    mine = assigned_plan(member["id"], plans)
    result = Scored()
    for plan in plans:
        points = sum(plan.points(kind, category) for kind, category in interactions)
        before, after = _add(db, plan, member["id"], points, at, now)
        if plan is mine:
            result.score = after
            result.actions += check_thresholds(
                db, member, before, after, presence=presence, now=now, plan=plan,
                offer_policy=offer_policy,
            )  # fmt: skip
    return result


def put_plan(db: Database, plan: ScoringPlan, *, now: float | None = None) -> None:
    """Store a plan; a changed half-life rescales the plan's totals so that every member's
    current score stays what it was (only its future decay changes)."""
    now = time.time() if now is None else now
    for th in plan.thresholds:
        if isinstance(th.action, CouponAction):
            template = offers.get_template(db, th.action.template_id)
            if template is None or template.trigger != "score":
                raise PlanError(
                    f"threshold {th.name}: no offer template {th.action.template_id!r} with"
                    " trigger 'score'"
                )
    with db.transaction():
        old = get_plan(db, plan.id)
        if old is not None and old.half_life_days != plan.half_life_days:
            factor = _growth(now, plan.half_life_days) / _growth(now, old.half_life_days)
            db.execute("UPDATE member_scores SET acc = acc * ? WHERE plan = ?", (factor, plan.id))
        save_plan(db, plan, now=now)


def _members_by_token(db: Database, tokens: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not tokens:
        return {}
    marks = ", ".join("?" for _ in tokens)
    rows = db.query(
        "SELECT m.id, m.token, m.name, m.tier, c.marketing, c.tracking FROM members m"
        f" JOIN member_consent c ON c.member_id = m.id WHERE m.token IN ({marks})",
        list(tokens),
    )
    return {r["token"]: r for r in rows}


def _event_interaction(
    plan: ScoringPlan, row: dict[str, Any], category: str | None
) -> tuple[str, str | None] | None:
    """The interaction a stored event is in ``plan``: a visit, a dwell in a category, or a
    try-on (a stay in a zone whose category the plan's ``try_on`` rule lists, e.g. fitting
    rooms); None when it earns nothing."""
    kind = row.get("type")
    if kind in ("card_swipe", "visit_started"):
        return ("store_visit", None)
    if kind != "zone_visit":
        return None
    dwell = float(row.get("dwell_s") or 0.0)
    try_on = plan.interactions.get("try_on")
    if try_on is not None and (
        _is_fitting_room(row) or (category and category in try_on.categories)
    ):
        return ("try_on", category) if dwell >= try_on.min_dwell_s else None
    if dwell < plan.min_dwell_s("zone_dwell"):
        return None
    return ("zone_dwell", category)


def _is_fitting_room(row: dict[str, Any]) -> bool:
    """A stay the device marked as a try-on session (ZoneVisit.kind, contract 1.2)."""
    payload = row.get("payload") or ""
    if row.get("kind") == "fitting_room":
        return True
    if "fitting_room" not in payload:  # most rows: no JSON parse
        return False
    try:
        return json.loads(payload).get("kind") == "fitting_room"
    except (ValueError, AttributeError):
        return False


def on_events_stored(
    db: Database,
    rows: Iterable[dict[str, Any]],
    *,
    now: float | None = None,
    plans: list[ScoringPlan] | None = None,
) -> list[dict[str, Any]]:
    """The ingest hook: score newly stored event rows (as `events.event_row` makes them) and
    run threshold actions. Never raises on a bad row: it is logged and skipped."""
    now = time.time() if now is None else now
    linked = [r for r in rows if r.get("member")]
    if not linked:
        return []
    plans = active_plans(db) if plans is None else plans
    if not plans:
        return []
    by_token = _members_by_token(db, sorted({r["member"] for r in linked}))
    zones: dict[tuple[str, str], str] = {}
    stores = sorted({r["store"] for r in linked})
    marks = ", ".join("?" for _ in stores)
    for z in db.query(
        f"SELECT store, zone, category FROM store_zones WHERE store IN ({marks})", stores
    ):
        zones[(z["store"], z["zone"])] = z["category"]
    present_s = max(p.present_window_s for p in plans)
    actions: list[dict[str, Any]] = []
    for row in sorted(linked, key=lambda r: r.get("ts") or 0.0):
        member = by_token.get(row["member"])
        if member is None or not member.get("tracking"):
            continue
        try:
            if row.get("type") not in ("zone_visit", "card_swipe", "visit_started"):
                continue
            if not _first_time(db, str(row["id"]), now):
                continue  # a redelivered event is stored once, and scored once
            ts = float(row["ts"])
            zone = row.get("zone")
            category = zones.get((row["store"], zone)) if zone else None
            presence = None
            if now - ts <= present_s:
                presence = Presence(
                    store=row["store"], zone=zone, category=category, dwell_s=row.get("dwell_s")
                )
            mine = assigned_plan(member["id"], plans)
            for plan in plans:
                what = _event_interaction(plan, row, category)
                before, after = _add(
                    db, plan, member["id"], plan.points(*what) if what else 0.0, ts, now
                )
                if plan is mine:
                    here = presence if now - ts <= plan.present_window_s else None
                    actions += check_thresholds(
                        db, member, before, after, presence=here, now=now, plan=plan
                    )
        except Exception:  # one bad row must not stop the others or the ingest worker
            log.exception("scoring failed for event %s", row.get("id"))
    return actions


def _first_time(db: Database, event_id: str, now: float) -> bool:
    return (
        db.execute(
            "INSERT INTO scored_events (event_id, scored_at) VALUES (?, ?)"
            " ON CONFLICT (event_id) DO NOTHING",
            (event_id, now),
        )
        == 1
    )


def prune_scored(db: Database, *, keep_s: float = 14 * 86400, now: float | None = None) -> int:
    """Forget event IDs older than any plausible redelivery (devices resend within their
    outbox age); the ingest workers' housekeeping calls it (``scored_events_retention_days``)."""
    now = time.time() if now is None else now
    return db.execute("DELETE FROM scored_events WHERE scored_at < ?", (now - keep_s,))


def _on_order_created(db: Database, order_id: str) -> None:
    row = db.query_one(
        "SELECT COALESCE(o.member_id, a.member_id) AS member_id, o.created_at FROM online_orders o"
        " LEFT JOIN customer_accounts a ON a.id = o.customer_account WHERE o.id = ?",
        (order_id,),
    )
    if row and row["member_id"]:
        member = members.get_member(db, row["member_id"])
        if member is not None:
            record(db, member, [("online_order", None)], at=row["created_at"])


def _on_enrolled(db: Database, member_id: str) -> None:
    award(db, member_id, "enrolled")


def forget_member(db: Database, member_id: str, token: str) -> None:
    for table in ("member_scores", "score_actions", "score_contacts"):
        db.execute(f"DELETE FROM {table} WHERE member_id = ?", (member_id,))
    handoff.forget_member(db, member_id, token)


def _ingest_hook(db: Database, rows: list[dict[str, Any]]) -> None:
    on_events_stored(db, rows)


# Collected by cloud/db/schema.py into each process's Services (cloud/hooks.py): scoring
# does not import the ingest worker to register itself.
HOOKS = [
    ("events_stored", _ingest_hook),
    ("order_created", _on_order_created),
    ("member_forgotten", forget_member),
    ("member_enrolled", _on_enrolled),
]
