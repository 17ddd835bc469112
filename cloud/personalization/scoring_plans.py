"""Scoring plans as data: which interactions earn how many points, how fast points decay, and
which thresholds trigger which action (POS alert, coupon, hand-off webhook).

A plan is a YAML file or an API body validated by `ScoringPlan` (unknown keys are errors).
Several plans can be active at once: each member is assigned to exactly one active plan by a
deterministic hash weighted by the plans' ``share``, so plans compete as an A/B test and the
report (`scoring_report`) compares their contacts and responses on comparable members. Every
active plan keeps a score for every member; only the member's own plan acts on it.

With no plan stored the built-in `DEFAULT_PLAN` applies (the points the code used to hold).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from storelens.cloud.db import Database, migrations

MIGRATIONS = migrations(
    "scoring_plans",
    [
        """
        CREATE TABLE scoring_plans (
            id TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            active {BOOL} NOT NULL DEFAULT 1,
            updated_at {REAL} NOT NULL
        )
        """
    ],
)

# Interaction types the cloud derives itself from store events and commerce.
STORE_INTERACTIONS = ("store_visit", "zone_dwell", "try_on", "store_purchase")
COMMERCE_INTERACTIONS = ("enrolled", "online_order", "coupon_redeemed")
# Interaction types other systems send through POST /api/v1/interactions.
EXTERNAL_INTERACTIONS = (
    "profile_completed", "web_page_viewed", "email_opened", "event_attended", "product_viewed",
    "cart_add", "try_on",
)  # fmt: skip
BUILTIN_INTERACTIONS = tuple(
    dict.fromkeys(STORE_INTERACTIONS + COMMERCE_INTERACTIONS + EXTERNAL_INTERACTIONS)
)
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,47}$"


class PlanError(ValueError):
    """A plan that cannot be loaded; ``errors`` lists pydantic's details when it has them."""

    def __init__(self, message: str, errors: list | None = None) -> None:
        super().__init__(message)
        self.errors = errors


class InteractionRule(BaseModel):
    """Points for one interaction type."""

    model_config = ConfigDict(extra="forbid")

    points: float = Field(ge=-1000, le=1000, description="Points per occurrence.")
    min_dwell_s: float = Field(
        0, ge=0, le=86400, description="zone_dwell/try_on: shorter stays earn nothing."
    )
    categories: dict[str, float] = Field(
        default_factory=dict,
        max_length=200,
        description="Points per product category, overriding `points` (e.g. dwell in Handbags).",
    )

    def points_for(self, category: str | None) -> float:
        if category and category in self.categories:
            return self.categories[category]
        return self.points


class PosAlert(BaseModel):
    """Push a member alert to the POS of the store the member is in now."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["pos_alert"] = "pos_alert"


class CouponAction(BaseModel):
    """Issue the coupon of an offer template (trigger ``score``) when the score crosses."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["coupon"] = "coupon"
    template_id: str = Field(min_length=1, max_length=64, description="Offer template ID.")


class WebhookAction(BaseModel):
    """Hand the member to a person: POST a signed JSON to a CRM or call centre."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["webhook"] = "webhook"
    url: str = Field(
        min_length=8, max_length=2000, pattern=r"^https?://\S+$", description="http(s) endpoint."
    )
    secret_env: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Z][A-Z0-9_]*$",
        description="Environment variable holding the HMAC-SHA256 key (never stored).",
    )
    max_attempts: int = Field(8, ge=1, le=20, description="Deliveries tried before giving up.")


Action = PosAlert | CouponAction | WebhookAction


class Threshold(BaseModel):
    """When the score reaches ``score``: alerts fire while the member is in a store (once per
    cooldown per store); coupons and webhooks fire when the score crosses upwards (once per
    cooldown)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Unique within the plan.")
    score: float = Field(ge=0, le=1e6)
    action: Action = Field(discriminator="kind")
    cooldown_hours: float = Field(4, gt=0, le=24 * 366)


class ScoringPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    name: str = Field("", max_length=200)
    active: bool = True
    share: float = Field(
        1.0, gt=0, le=1000, description="Relative share of members assigned to this plan."
    )
    # At least a week: totals are kept as 2^((t - 2024-01-01) / half-life) (scoring.py), which
    # a double holds for 1,000 half-lives; a 1-day half-life overflowed in late 2026 (a PUT of
    # a tiny half-life answered 500), a 7-day one lasts until about 2043.
    half_life_days: float = Field(30, ge=7, le=3650, description="Points halve this often.")
    present_window_s: float = Field(
        900, gt=0, le=86400, description="An event this recent means the member is in store."
    )
    response_days: float = Field(
        7, gt=0, le=365, description="A purchase or redemption this soon after a contact is a "
        "response to it (report).",
    )  # fmt: skip
    interactions: dict[str, InteractionRule] = Field(
        description="Interaction type -> points; types not listed earn nothing.", max_length=200
    )
    thresholds: list[Threshold] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _consistent(self) -> ScoringPlan:
        import re

        bad = [k for k in self.interactions if not re.match(NAME_PATTERN, k)]
        if bad:
            raise ValueError(f"interaction type names must match {NAME_PATTERN}: {bad}")
        names = [t.name for t in self.thresholds]
        if len(set(names)) != len(names):
            raise ValueError("threshold names must be unique within a plan")
        return self

    def points(self, interaction: str, category: str | None = None) -> float:
        rule = self.interactions.get(interaction)
        return 0.0 if rule is None else rule.points_for(category)

    def min_dwell_s(self, interaction: str) -> float:
        rule = self.interactions.get(interaction)
        return 0.0 if rule is None else rule.min_dwell_s


DEFAULT_PLAN = ScoringPlan(
    id="default",
    name="Engagement (built-in)",
    interactions={
        "enrolled": InteractionRule(points=2),
        "profile_completed": InteractionRule(points=2),
        "store_visit": InteractionRule(points=1),
        "zone_dwell": InteractionRule(points=5, min_dwell_s=180),
        "try_on": InteractionRule(points=5),
        "store_purchase": InteractionRule(points=3),
        "online_order": InteractionRule(points=10),
        "coupon_redeemed": InteractionRule(points=5),
        "email_opened": InteractionRule(points=5),
        "event_attended": InteractionRule(points=10),
        "web_page_viewed": InteractionRule(points=0.5),
        "product_viewed": InteractionRule(points=1),
        "cart_add": InteractionRule(points=3),
    },
    thresholds=[
        Threshold(name="high_intent_alert", score=25, action=PosAlert(), cooldown_hours=2),
        Threshold(
            name="engaged_coupon",
            score=40,
            action=CouponAction(template_id="engaged"),
            cooldown_hours=30 * 24,
        ),  # fmt: skip
    ],
)


def parse_plan(data: object) -> ScoringPlan:
    try:
        return ScoringPlan.model_validate(data)
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        raise PlanError(f"invalid scoring plan: {exc.error_count()} error(s)", errors) from None


def load_yaml(path: Path) -> list[ScoringPlan]:
    """A YAML file holding one plan (a mapping) or several (a list, or ``plans: [...]``)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f"cannot read {path}: {exc}") from None
    if isinstance(data, dict) and set(data) == {"plans"}:
        data = data["plans"]
    items = data if isinstance(data, list) else [data]
    plans = [parse_plan(item) for item in items]
    ids = [p.id for p in plans]
    if len(set(ids)) != len(ids):
        raise PlanError(f"duplicate plan IDs in {path}")
    return plans


def save_plan(db: Database, plan: ScoringPlan, *, now: float | None = None) -> None:
    now = time.time() if now is None else now
    db.execute(
        "INSERT INTO scoring_plans (id, body, active, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET body = excluded.body, active = excluded.active,"
        " updated_at = excluded.updated_at",
        (plan.id, plan.model_dump_json(), int(plan.active), now),
    )


def get_plan(db: Database, plan_id: str) -> ScoringPlan | None:
    body = db.scalar("SELECT body FROM scoring_plans WHERE id = ?", (plan_id,))
    if body is None:
        return DEFAULT_PLAN if plan_id == DEFAULT_PLAN.id and not _any_stored(db) else None
    return ScoringPlan.model_validate_json(body)


def list_plans(db: Database) -> list[ScoringPlan]:
    rows = db.query("SELECT body FROM scoring_plans ORDER BY id")
    if not rows:
        return [DEFAULT_PLAN]
    return [ScoringPlan.model_validate_json(r["body"]) for r in rows]


def active_plans(db: Database) -> list[ScoringPlan]:
    """Active plans in ID order (the built-in default when none is stored)."""
    return [p for p in list_plans(db) if p.active]


def _any_stored(db: Database) -> bool:
    return bool(db.scalar("SELECT count(*) FROM scoring_plans"))


def assigned_plan(member_id: str, plans: list[ScoringPlan]) -> ScoringPlan | None:
    """The one plan that acts for this member: a stable hash of the member ID placed on the
    plans' cumulative shares (changing shares moves only the members between boundaries)."""
    if not plans:
        return None
    if len(plans) == 1:
        return plans[0]
    digest = hashlib.sha256(f"storelens-plan-v1:{member_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    total = sum(p.share for p in plans)
    edge = 0.0
    for plan in plans:
        edge += plan.share / total
        if u < edge:
            return plan
    return plans[-1]


def known_interactions(plans: list[ScoringPlan]) -> set[str]:
    """Types POST /interactions accepts: the built-in ones and any a stored plan declares."""
    return set(BUILTIN_INTERACTIONS) | {k for p in plans for k in p.interactions}


def plan_json(plan: ScoringPlan) -> str:
    return json.dumps(plan.model_dump(mode="json"), sort_keys=True)
