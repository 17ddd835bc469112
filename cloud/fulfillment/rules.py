"""Routing rules: which store (or stores) fulfills an order.

The configuration is an ordered list of `RoutingRule`s (YAML or JSON, unknown keys rejected).
Each rule filters the candidate stores and sorts the survivors; the first rule that can place
the whole order wins, otherwise routing falls through to the next rule. A rule with
``split: true`` may spread the order over several stores, but only when no single qualifying
store can take all of it.

Every store a rule turns away gets a reason, so an order no rule can place lands in the manual
queue with an explanation per store and rule.

This module is pure: it decides on in-memory `StoreCandidate`s and never touches the database;
`router.py` loads the candidates and applies the decision.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)


class RoutingConfigError(ValueError):
    """The routing configuration file is missing, unreadable or invalid."""


class SortKey(StrEnum):
    """How a rule orders the stores that pass its filters (each key has its natural direction)."""

    distance = "distance"  # nearest first
    inventory_balance = "inventory_balance"  # most stock left after taking the order first
    priority = "priority"  # highest configured store priority first
    rejection_rate = "rejection_rate"  # most reliable first


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleFilters(_Strict):
    max_distance_km: float | None = Field(
        None, gt=0, description="Great-circle distance from the store to the destination."
    )
    max_rejection_rate: float | None = Field(
        None, ge=0, le=1, description="Share of the store's recent tasks it rejected or let lapse."
    )
    min_capacity_left: int = Field(
        1, ge=1, description="Free task slots today (daily limit minus open tasks) a store needs."
    )
    stores: list[str] | None = Field(None, description="Only these stores (e.g. the flagships).")


class RoutingRule(_Strict):
    name: str = Field(min_length=1)
    filters: RuleFilters = RuleFilters()
    sort: list[SortKey] = Field(default_factory=lambda: [SortKey.distance], min_length=1)
    split: bool = Field(False, description="Spread the order over stores when none holds all.")
    max_stores: int = Field(3, ge=2, le=10, description="Most stores one split may use.")


class RoutingConfig(_Strict):
    rules: list[RoutingRule] = Field(min_length=1)
    rejection_window_days: float = Field(
        14, gt=0, description="How far back the rejection rate looks."
    )
    pickup_hold_hours: float = Field(
        72, gt=0, description="How long a ready pickup waits for the customer."
    )
    pickup_expiry: str = Field(
        "cancel",
        pattern="^(cancel|reoffer)$",
        description="When a pickup lapses: cancel the order, or offer it again (re-route).",
    )

    @model_validator(mode="after")
    def _unique_names(self) -> RoutingConfig:
        names = [r.name for r in self.rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        return self


DEFAULT_CONFIG = RoutingConfig(
    rules=[
        RoutingRule(
            name="nearby-reliable",
            filters=RuleFilters(max_distance_km=50, max_rejection_rate=0.3),
            sort=[SortKey.distance, SortKey.inventory_balance],
        ),
        RoutingRule(
            name="regional",
            filters=RuleFilters(max_distance_km=300),
            sort=[SortKey.inventory_balance, SortKey.distance],
        ),
        RoutingRule(
            name="regional-split",
            filters=RuleFilters(max_distance_km=300),
            sort=[SortKey.distance],
            split=True,
        ),
        RoutingRule(name="national", sort=[SortKey.priority, SortKey.distance], split=True),
    ]
)


def load_config(source: str | Path | Mapping[str, Any] | None = None) -> RoutingConfig:
    """Read a routing configuration from a YAML/JSON file or a mapping; None gives the default."""
    if source is None:
        return DEFAULT_CONFIG
    if isinstance(source, Mapping):
        data: Any = source
        origin = "routing configuration"
    else:
        path = Path(source)
        origin = str(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise RoutingConfigError(f"cannot read routing rules {path}: {exc}") from exc
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise RoutingConfigError(
                f"{path} is not valid {path.suffix[1:] or 'YAML'}: {exc}"
            ) from exc
    try:
        return RoutingConfig.model_validate(data)
    except ValidationError as exc:
        raise RoutingConfigError(f"{origin}: {exc}") from exc


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance. Hand-written: one well-known formula does not justify a dependency."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class StoreCandidate:
    """What routing needs to know about one store right now."""

    store_id: str
    lat: float
    lon: float
    capacity_left: int  # today's limit (after any cut) minus open tasks; <= 0 takes nothing
    priority: int
    rejection_rate: float
    available: Mapping[str, int]  # available to promise per SKU: on hand - reserved - safety


@dataclass(frozen=True)
class Allocation:
    store_id: str
    lines: dict[str, int]
    distance_km: float | None


@dataclass(frozen=True)
class StoreVerdict:
    """Why one rule turned one store away."""

    rule: str
    store_id: str
    reason: str


@dataclass
class RoutingDecision:
    rule: str | None  # the rule that placed the order; None means the manual queue
    allocations: list[Allocation] = field(default_factory=list)
    verdicts: list[StoreVerdict] = field(default_factory=list)

    @property
    def placed(self) -> bool:
        return self.rule is not None

    @property
    def reason(self) -> str:
        if self.placed:
            return f"placed by rule {self.rule}"
        return "no routing rule could place the order"

    def considered(self) -> dict[str, list[str]]:
        """Each store considered, with every rule's reason for turning it away."""
        out: dict[str, list[str]] = {}
        for v in self.verdicts:
            out.setdefault(v.store_id, []).append(f"{v.rule}: {v.reason}")
        return out


def decide(
    lines: Mapping[str, int],
    candidates: Sequence[StoreCandidate],
    config: RoutingConfig,
    *,
    destination: tuple[float, float] | None,
    excluded: Mapping[str, str] | None = None,
    allow_split: bool = True,
) -> RoutingDecision:
    """Place ``lines`` (SKU -> quantity) on stores by the first rule that can.

    ``destination`` is the shipping (or customer) position; without it, distance filters
    turn every store away and distance sorts treat all stores as equal. ``excluded`` maps
    stores that must not get the order (they rejected it) to the reason.
    ``allow_split=False`` (pickups) keeps the order in one store whatever the rule says.
    """
    wanted = {sku: int(q) for sku, q in lines.items() if q > 0}
    if not wanted:
        raise ValueError("an order needs at least one line with a positive quantity")
    excluded = dict(excluded or {})
    decision = RoutingDecision(rule=None)
    distances = {
        s.store_id: great_circle_km(s.lat, s.lon, *destination) if destination else None
        for s in candidates
    }
    for rule in config.rules:
        eligible: list[tuple[StoreCandidate, float | None]] = []
        for store in candidates:
            distance = distances[store.store_id]
            reason = excluded.get(store.store_id) or _filter_reason(rule, store, distance)
            if reason:
                decision.verdicts.append(StoreVerdict(rule.name, store.store_id, reason))
            else:
                eligible.append((store, distance))
        eligible.sort(key=lambda sd: _sort_key(rule, sd[0], sd[1], wanted))
        shortfalls = {s.store_id: _shortfall(s, wanted) for s, _ in eligible}
        whole = [(s, d) for s, d in eligible if shortfalls[s.store_id] is None]
        allocations: list[Allocation] | None = None
        if whole:
            store, distance = whole[0]
            allocations = [Allocation(store.store_id, dict(wanted), distance)]
        elif rule.split and allow_split:
            allocations = _split(wanted, eligible, rule.max_stores)
        used = {a.store_id for a in allocations or []}
        split_failed = not allocations and rule.split and allow_split
        for store_id, shortfall in shortfalls.items():
            if shortfall and store_id not in used:
                why = shortfall + ("; a split did not cover the order" if split_failed else "")
                decision.verdicts.append(StoreVerdict(rule.name, store_id, why))
        if allocations:
            decision.rule = rule.name
            decision.allocations = allocations
            return decision
    return decision


def _filter_reason(rule: RoutingRule, store: StoreCandidate, distance: float | None) -> str | None:
    f = rule.filters
    if f.stores is not None and store.store_id not in f.stores:
        return "not among the rule's stores"
    if store.capacity_left < f.min_capacity_left:
        return f"no capacity today ({max(store.capacity_left, 0)} task slots left)"
    if f.max_distance_km is not None:
        if distance is None:
            return "order has no destination to measure distance against"
        if distance > f.max_distance_km:
            return f"{distance:.1f} km away, rule allows {f.max_distance_km:g} km"
    if f.max_rejection_rate is not None and store.rejection_rate > f.max_rejection_rate:
        return (
            f"rejection rate {store.rejection_rate:.0%} above the rule's {f.max_rejection_rate:.0%}"
        )
    return None


def _shortfall(store: StoreCandidate, wanted: Mapping[str, int]) -> str | None:
    missing = [
        f"{sku} (needs {q}, available {max(store.available.get(sku, 0), 0)})"
        for sku, q in wanted.items()
        if store.available.get(sku, 0) < q
    ]
    return f"not enough stock: {', '.join(missing)}" if missing else None


def _balance(store: StoreCandidate, wanted: Mapping[str, int]) -> int:
    # The least stock any wanted SKU keeps after this order: taking from the deepest shelf
    # keeps the network balanced and the store able to serve walk-in customers.
    return min(store.available.get(sku, 0) - q for sku, q in wanted.items())


def _sort_key(
    rule: RoutingRule, store: StoreCandidate, distance: float | None, wanted: Mapping[str, int]
) -> tuple[Any, ...]:
    parts: list[Any] = []
    for key in rule.sort:
        if key is SortKey.distance:
            parts.append(distance if distance is not None else math.inf)
        elif key is SortKey.inventory_balance:
            parts.append(-_balance(store, wanted))
        elif key is SortKey.priority:
            parts.append(-store.priority)
        elif key is SortKey.rejection_rate:
            parts.append(store.rejection_rate)
    parts.append(store.store_id)  # deterministic tie-break
    return tuple(parts)


def _split(
    wanted: Mapping[str, int],
    eligible: Sequence[tuple[StoreCandidate, float | None]],
    max_stores: int,
) -> list[Allocation] | None:
    """Greedy split in the rule's store order; each store takes what it holds of what is left.

    Greedy is good enough here: orders have few lines, and the rule's sort already encodes
    which stores the retailer prefers to ship from.
    """
    remaining = dict(wanted)
    allocations: list[Allocation] = []
    for store, distance in eligible:
        take = {
            sku: min(q, store.available.get(sku, 0))
            for sku, q in remaining.items()
            if store.available.get(sku, 0) > 0
        }
        if not take:
            continue
        allocations.append(Allocation(store.store_id, take, distance))
        for sku, q in take.items():
            remaining[sku] -= q
            if remaining[sku] == 0:
                del remaining[sku]
        if not remaining:
            return allocations
        if len(allocations) == max_stores:
            return None
    return None
