"""`storelens bench scoring`: contacts and responses of a scoring plan replayed on a retailer's
history, against contacting every active customer.

The plan's points for purchases (``online_order`` for online lines, ``store_purchase`` for
store lines) accumulate with its half-life, exactly as `cloud.scoring` keeps them. After the
split, once a week, each arm decides whom to contact:

- ``scored``: customers whose score is at or above the plan's lowest threshold (once per that
  threshold's cooldown), the practice the business case follows;
- ``contact_all``: every customer who bought in the 90 days before (the usual campaign list).

A contact *responded* when the customer bought within the plan's ``response_days``. History
cannot say whether a contact caused a purchase (nobody was contacted in it), so this measures
targeting: how many contacts each arm spends per purchase that follows, and what share of all
the purchasing customers each arm reached. Settings come from the plan, fixed a priori.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from storelens.cloud.commerce.history.lines import OrderLines
from storelens.cloud.personalization import scoring_plans
from storelens.tools.bench import propensity as history_bench

DAY = 86400.0


def _orders(lines: OrderLines) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One entry per (customer, order): customer, time, online."""
    keep = (lines.member != "") & ~lines.is_return
    member, order, ts, store = (
        lines.member[keep],
        lines.order[keep],
        lines.ts[keep],
        lines.store[keep],
    )
    key = np.char.add(np.char.add(member.astype(str), "|"), order.astype(str))
    _, first = np.unique(key, return_index=True)
    first.sort()
    return member[first].astype(str), ts[first], store[first] == ""


def _responded(buys: dict[str, np.ndarray], member: str, at: float, window: float) -> bool:
    times = buys.get(member)
    if times is None:
        return False
    i = np.searchsorted(times, at, side="right")
    return i < len(times) and times[i] <= at + window


def run_split(
    member: np.ndarray, ts: np.ndarray, online: np.ndarray, split: float,
    plan: scoring_plans.ScoringPlan, weeks: int,
) -> dict[str, Any]:  # fmt: skip
    contact_th = min((t for t in plan.thresholds), key=lambda t: t.score, default=None)
    if contact_th is None:
        raise ValueError(f"plan {plan.id} has no threshold to contact on")
    half_life_s = plan.half_life_days * DAY
    window = plan.response_days * DAY
    points = np.where(online, plan.points("online_order"), plan.points("store_purchase"))
    order = np.argsort(ts, kind="stable")
    member, ts, points = member[order], ts[order], points[order]
    buys: dict[str, np.ndarray] = {}
    for m in np.unique(member):
        buys[m] = ts[member == m]
    arms = {"scored": {"contacts": 0, "responses": 0, "reached": set()},
            "contact_all": {"contacts": 0, "responses": 0, "reached": set()}}  # fmt: skip
    last_contact: dict[str, float] = {}
    buyers: set[str] = set()
    for w in range(weeks):
        now = split + w * 7 * DAY
        past = ts < now
        # Decayed score as of now: sum(points * 2^-(age / half-life)), as cloud.scoring keeps.
        decay = np.power(0.5, (now - ts[past]) / half_life_s)
        names, inverse = np.unique(member[past], return_inverse=True)
        score = np.bincount(inverse, weights=points[past] * decay, minlength=len(names))
        recent = set(member[past & (ts >= now - 90 * DAY)])
        chosen = {
            "scored": [
                m for m, s in zip(names, score, strict=True)
                if s >= contact_th.score
                and now - last_contact.get(m, -1e18) >= contact_th.cooldown_hours * 3600
            ],
            "contact_all": sorted(recent),
        }  # fmt: skip
        for m in chosen["scored"]:
            last_contact[m] = now
        for arm, who in chosen.items():
            for m in who:
                arms[arm]["contacts"] += 1
                if _responded(buys, m, now, window):
                    arms[arm]["responses"] += 1
                    arms[arm]["reached"].add(m)
        end = now + 7 * DAY
        buyers |= set(member[(ts >= now) & (ts < end)])
    out = {}
    for arm, a in arms.items():
        out[arm] = {
            "contacts": a["contacts"], "responses": a["responses"],
            "response_rate": round(a["responses"] / a["contacts"], 4) if a["contacts"] else None,
            "contacts_per_response": round(a["contacts"] / a["responses"], 2)
            if a["responses"] else None,
            "buyers_reached": len(a["reached"]),
            "buyer_coverage": round(len(a["reached"]) / len(buyers), 4) if buyers else None,
        }  # fmt: skip
    s, c = out["scored"], out["contact_all"]
    return {
        "split": datetime.fromtimestamp(split, UTC).date().isoformat(),
        "weeks": weeks,
        "buyers": len(buyers),
        "contact_threshold": {
            "name": contact_th.name,
            "score": contact_th.score,
            "cooldown_hours": contact_th.cooldown_hours,
        },  # fmt: skip
        "arms": out,
        "contacts_ratio": round(s["contacts"] / c["contacts"], 4) if c["contacts"] else None,
        "responses_ratio": round(s["responses"] / c["responses"], 4) if c["responses"] else None,
    }


def run(
    path: Path, splits: list[str], *, weeks: int = 8, plan_file: Path | None = None,
    mapping: dict[str, str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    started = time.perf_counter()
    plan = scoring_plans.load_yaml(plan_file)[0] if plan_file else scoring_plans.DEFAULT_PLAN
    history = history_bench.read(path, mapping)
    lines = history_bench.order_lines(history.lines, "prefix:3")
    member, ts, online = _orders(lines)
    results = [
        run_split(member, ts, online, datetime.fromisoformat(t).replace(tzinfo=UTC).timestamp(),
                  plan, weeks)
        for t in splits
    ]  # fmt: skip
    return {
        "bench": "scoring",
        "file": path.name,
        "plan": plan.id,
        "orders": len(ts),
        "splits": results,
        "contacts_ratio": results[0]["contacts_ratio"],
        "responses_ratio": results[0]["responses_ratio"],
        "seconds": round(time.perf_counter() - started, 1),
    }
