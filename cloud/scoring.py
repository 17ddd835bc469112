"""Engagement scoring: points per behaviour, decaying over time, kept as running totals.

A score decays with a half-life. Instead of storing (score, last update) and rewriting both on
every event, each member's row holds the score expressed at a fixed reference time:
``acc = sum(points_i * 2^((t_i - T0) / half_life))`` and ``score(now) = acc * 2^(-(now - T0) /
half_life)``. This is the same decayed total, but an award is one commutative
``acc = acc + delta`` UPDATE: concurrent ingest workers never lose an update, and events
arriving out of order are counted exactly as if they had come in order. (Doubles hold 2^1000,
i.e. ~80 years of 30-day half-lives past T0, before a rebase would be needed.)

Thresholds trigger actions: an alert to the store's POS when a high-intent member is in the
store now ("member in Handbags for 6 min, score 42"), or a coupon. Each action has a
cooldown per member (and store), enforced by a conditional upsert, so several ingest workers
cannot fire it twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from storelens.cloud import ingest, members, offers, orders, push
from storelens.cloud.recommend.ranking import format_duration
from storelens.cloud.store import Database, register_migrations

log = logging.getLogger(__name__)

register_migrations(
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
        """
    ],
)

T0 = 1_704_067_200.0  # 2024-01-01T00:00:00Z, the reference time of stored totals
Behaviour = Literal[
    "enrolled", "store_visit", "zone_dwell", "online_order", "store_purchase", "coupon_redeemed"
]  # fmt: skip


@dataclass(frozen=True)
class Threshold:
    name: str
    score: float
    action: Literal["alert", "coupon"]
    template_id: str | None = None  # for coupons: an offer template with trigger "score"
    cooldown_s: float = 4 * 3600


@dataclass(frozen=True)
class ScoringPolicy:
    points: dict[str, float] = field(
        default_factory=lambda: {
            "enrolled": 2.0,
            "store_visit": 1.0,
            "zone_dwell": 5.0,
            "online_order": 10.0,
            "store_purchase": 3.0,
            "coupon_redeemed": 5.0,
        }
    )
    zone_dwell_min_s: float = 180.0
    half_life_days: float = 30.0
    present_window_s: float = 900.0  # an event this recent means the member is in store now
    thresholds: tuple[Threshold, ...] = (
        Threshold("high_intent_alert", 25.0, "alert", cooldown_s=2 * 3600),
        Threshold("engaged_coupon", 40.0, "coupon", template_id="engaged", cooldown_s=30 * 86400),
    )


_policy = ScoringPolicy()


def configure(policy: ScoringPolicy) -> None:
    global _policy
    _policy = policy


def policy() -> ScoringPolicy:
    return _policy


def _growth(t: float, half_life_days: float) -> float:
    return 2.0 ** ((t - T0) / (half_life_days * 86400))


def score(
    db: Database, member_id: str, *, now: float | None = None, policy: ScoringPolicy | None = None
) -> float:
    policy = policy or _policy
    now = time.time() if now is None else now
    acc = db.scalar("SELECT acc FROM member_scores WHERE member_id = ?", (member_id,))
    return 0.0 if acc is None else float(acc) / _growth(now, policy.half_life_days)


def award(
    db: Database,
    member_id: str,
    behaviour: str,
    *,
    at: float | None = None,
    now: float | None = None,
    policy: ScoringPolicy | None = None,
    multiplier: float = 1.0,
) -> tuple[float, float]:
    """Add the points of one behaviour that happened at ``at``; returns the score just before
    and just after, both as of ``now``."""
    policy = policy or _policy
    now = time.time() if now is None else now
    at = now if at is None else at
    points = policy.points.get(behaviour, 0.0) * multiplier
    if points == 0:
        s = score(db, member_id, now=now, policy=policy)
        return s, s
    delta = points * _growth(at, policy.half_life_days)
    db.execute(
        "INSERT INTO member_scores (member_id, acc, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (member_id) DO UPDATE SET acc = member_scores.acc + excluded.acc,"
        " updated_at = excluded.updated_at",
        (member_id, delta, now),
    )
    acc = float(db.scalar("SELECT acc FROM member_scores WHERE member_id = ?", (member_id,)))
    g = _growth(now, policy.half_life_days)
    return (acc - delta) / g, acc / g


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


def check_thresholds(
    db: Database,
    member: dict[str, Any],
    before: float,
    after: float,
    *,
    presence: Presence | None,
    now: float,
    policy: ScoringPolicy | None = None,
    offer_policy: offers.OfferPolicy | None = None,
) -> list[dict[str, Any]]:
    """Run the actions whose threshold applies; returns what was done (for tests and logs).

    Alerts fire while a member at or above the threshold is in a store (once per cooldown);
    coupons fire when the score crosses the threshold. Both need marketing consent."""
    policy = policy or _policy
    if not member.get("marketing"):
        return []
    done: list[dict[str, Any]] = []
    for th in policy.thresholds:
        if th.action == "alert":
            if presence is None or after < th.score:
                continue
            if not claim_action(db, member["id"], th.name, presence.store, th.cooldown_s, now):
                continue
            where = presence.category or presence.zone or "the store"
            message = f"member in {where}"
            if presence.dwell_s:
                message += f" for {format_duration(presence.dwell_s)}"
            message += f", score {round(after)}"
            payload = {
                "member_id": member["id"], "name": member.get("name"), "tier": member.get("tier"),
                "score": round(after, 1), "zone": presence.zone, "category": presence.category,
                "dwell_s": presence.dwell_s, "message": message,
            }  # fmt: skip
            push.publish(presence.store, "member_alert", payload)
            done.append({"action": "alert", **payload})
        elif th.action == "coupon" and before < th.score <= after and th.template_id:
            template = offers.get_template(db, th.template_id)
            if template is None or not template.active:
                continue
            if offers.in_holdout(member["id"], offer_policy or offers.OfferPolicy()):
                continue
            store = presence.store if presence else ""
            if not claim_action(db, member["id"], th.name, "", th.cooldown_s, now):
                continue
            from storelens.cloud import coupons

            coupon = coupons.issue(
                db, member["id"], template.terms, valid_days=template.coupon_days,
                source="score", template_id=template.id, now=now,
            )  # fmt: skip
            payload = coupons.push_view(coupon, member["id"], template.name)
            if store:
                push.publish(store, "coupon_issued", payload)
            done.append({"action": "coupon", **payload})
    return done


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


def on_events_stored(
    db: Database,
    rows: Iterable[dict[str, Any]],
    *,
    now: float | None = None,
    policy: ScoringPolicy | None = None,
) -> list[dict[str, Any]]:
    """The ingest hook: score newly stored event rows (as `events.event_row` makes them) and
    run threshold actions. Never raises on a bad row: it is logged and skipped."""
    policy = policy or _policy
    now = time.time() if now is None else now
    linked = [r for r in rows if r.get("member")]
    if not linked:
        return []
    by_token = _members_by_token(db, sorted({r["member"] for r in linked}))
    zones: dict[tuple[str, str], str] = {}
    stores = sorted({r["store"] for r in linked})
    marks = ", ".join("?" for _ in stores)
    for z in db.query(
        f"SELECT store, zone, category FROM store_zones WHERE store IN ({marks})", stores
    ):
        zones[(z["store"], z["zone"])] = z["category"]
    actions: list[dict[str, Any]] = []
    for row in sorted(linked, key=lambda r: r.get("ts") or 0.0):
        member = by_token.get(row["member"])
        if member is None or not member.get("tracking"):
            continue
        try:
            if not _first_time(db, str(row["id"]), now):
                continue  # a redelivered event is stored once, and scored once
            ts = float(row["ts"])
            kind = row.get("type")
            if kind == "zone_visit":
                if float(row.get("dwell_s") or 0.0) < policy.zone_dwell_min_s:
                    before = after = score(db, member["id"], now=now, policy=policy)
                else:
                    before, after = award(
                        db, member["id"], "zone_dwell", at=ts, now=now, policy=policy
                    )
            elif kind in ("card_swipe", "visit_started"):
                before, after = award(
                    db, member["id"], "store_visit", at=ts, now=now, policy=policy
                )
            else:
                continue
            presence = None
            if now - ts <= policy.present_window_s:
                zone = row.get("zone")
                presence = Presence(
                    store=row["store"], zone=zone,
                    category=zones.get((row["store"], zone)) if zone else None,
                    dwell_s=row.get("dwell_s"),
                )  # fmt: skip
            actions += check_thresholds(
                db, member, before, after, presence=presence, now=now, policy=policy
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
    """Forget event IDs older than any plausible redelivery (devices resend within hours)."""
    now = time.time() if now is None else now
    return db.execute("DELETE FROM scored_events WHERE scored_at < ?", (now - keep_s,))


def _on_order_created(db: Database, order_id: str) -> None:
    row = db.query_one(
        "SELECT COALESCE(o.member_id, a.member_id) AS member_id, o.created_at FROM online_orders o"
        " LEFT JOIN customer_accounts a ON a.id = o.customer_account WHERE o.id = ?",
        (order_id,),
    )
    if row and row["member_id"]:
        award(db, row["member_id"], "online_order", at=row["created_at"])


def _on_enrolled(db: Database, member_id: str) -> None:
    award(db, member_id, "enrolled")


def forget_member(db: Database, member_id: str, _token: str) -> None:
    db.execute("DELETE FROM member_scores WHERE member_id = ?", (member_id,))
    db.execute("DELETE FROM score_actions WHERE member_id = ?", (member_id,))


def _ingest_hook(db: Database, rows: list[dict[str, Any]]) -> None:
    on_events_stored(db, rows)


ingest.on_events_stored.append(_ingest_hook)
orders.on_order_created.append(_on_order_created)
members.on_member_forgotten.append(forget_member)
members.on_member_enrolled.append(_on_enrolled)
