"""Routes online orders to stores: decides by the configured rules, reserves the stock and
creates one brokered task per store; what no rule can place goes to the manual queue with
every considered store and why it was turned away.

Ship orders use the configured rules (split where a rule says so and the customer allowed
brokering, i.e. parcels from several stores). Pickup orders stay in one store: the customer's
chosen store, or the nearest one holding everything when the customer asked for "nearest";
only when the customer allowed brokering may another store (nearest to the chosen one first)
take it instead.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from storelens.cloud.db import Database, IntegrityError
from storelens.cloud.fulfillment import network, progress, tasks
from storelens.cloud.fulfillment.rules import (
    DEFAULT_CONFIG,
    RoutingConfig,
    RoutingDecision,
    RoutingRule,
    RuleFilters,
    SortKey,
    decide,
    great_circle_km,
)
from storelens.cloud.fulfillment.states import STORE_DECLINED_STATES, TaskKind, TaskState

AUDIT_PASSED_OVER = 10
RESERVE_ATTEMPTS = 3  # stock can move between deciding and reserving; decide again this often


class OrderError(ValueError):
    """The order cannot be routed as given (no lines, unknown pickup store, ...)."""


@dataclass(frozen=True)
class OrderToRoute:
    """What routing needs from an online order (the orders domain owns the rest)."""

    order_id: str
    lines: Mapping[str, int]
    kind: TaskKind = TaskKind.ship
    destination: tuple[float, float] | None = None  # shipping (or customer) latitude, longitude
    pickup_store: str | None = None  # None on a pickup order: nearest store with everything
    allow_brokering: bool = True  # pickup: another store may serve it; ship: may split
    channel: str = "email"  # how the customer hears about the order
    recipient: str | None = None


@dataclass
class RoutingOutcome:
    order_id: str
    task_ids: list[str] = field(default_factory=list)
    manual_queue_id: int | None = None
    rule: str | None = None
    already_known: bool = False


def submit_order(
    db: Database,
    order: OrderToRoute,
    *,
    config: RoutingConfig = DEFAULT_CONFIG,
    now: float | None = None,
    actor: str = "router",
) -> RoutingOutcome:
    """Register an order for fulfillment and route it. Idempotent per order ID: a replay
    returns the existing tasks and routes nothing twice. Pushes new tasks after commit."""
    now = time.time() if now is None else now
    lines = _clean_lines(order.lines)
    if order.kind is TaskKind.ship and order.destination is None:
        raise OrderError(f"order {order.order_id}: a ship order needs shipping coordinates")
    if order.kind is TaskKind.pickup and order.pickup_store is None and order.destination is None:
        raise OrderError(
            f"order {order.order_id}: a pickup order needs a pickup store or the customer's"
            " position to find the nearest store"
        )
    with db.transaction():
        if order.pickup_store is not None and network.store_row(db, order.pickup_store) is None:
            raise OrderError(f"order {order.order_id}: unknown pickup store {order.pickup_store}")
        lat, lon = order.destination or (None, None)
        try:
            inserted = db.execute(
                "INSERT INTO fulfillment_orders (order_id, kind, dest_lat, dest_lon, pickup_store,"
                " allow_brokering, channel, recipient, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING",
                (order.order_id, order.kind.value, lat, lon, order.pickup_store,
                 int(order.allow_brokering), order.channel, order.recipient, now),
            )  # fmt: skip
        except IntegrityError as exc:  # pragma: no cover - ON CONFLICT covers the race
            raise OrderError(str(exc)) from exc
        if inserted != 1:
            existing = db.query(
                "SELECT id FROM fulfillment_tasks WHERE order_id = ? ORDER BY created_at, id",
                (order.order_id,),
            )
            return RoutingOutcome(order.order_id, [r["id"] for r in existing], already_known=True)
        outcome = route_lines(
            db, order.order_id, lines, config=config, now=now, actor=actor, cause="new order"
        )
        progress.sync_order_status(db, order.order_id)
    tasks.publish(db, outcome.task_ids, event="created")
    return outcome


def _clean_lines(lines: Mapping[str, int]) -> dict[str, int]:
    clean: dict[str, int] = {}
    for sku, qty in lines.items():
        if not isinstance(qty, int) or isinstance(qty, bool) or qty <= 0:
            raise OrderError(f"line {sku!r}: quantity must be a positive integer, got {qty!r}")
        clean[sku] = clean.get(sku, 0) + qty
    if not clean:
        raise OrderError("an order needs at least one line")
    return clean


def declined_by(db: Database, order_id: str) -> dict[str, str]:
    """Stores that turned this order down, with their reason: they never get it back."""
    states = sorted(STORE_DECLINED_STATES)
    rows = db.query(
        "SELECT store_id, state, reason FROM fulfillment_tasks WHERE order_id = ?"
        f" AND state IN ({', '.join('?' for _ in states)}) ORDER BY created_at",
        (order_id, *states),
    )
    return {
        r["store_id"]: f"already {r['state'].replace('_', ' ')} this order ({r['reason']})"
        for r in rows
    }


def _pickup_config(order: Mapping[str, object], config: RoutingConfig) -> RoutingConfig:
    chosen = order["pickup_store"]
    rules: list[RoutingRule] = []
    if chosen is not None:
        rules.append(
            RoutingRule(name="customer-chosen-store", filters=RuleFilters(stores=[str(chosen)]))
        )
    if chosen is None or order["allow_brokering"]:
        rules.append(
            RoutingRule(
                name="nearest-store-with-stock",
                sort=[SortKey.distance, SortKey.priority],
            )
        )
    return config.model_copy(update={"rules": rules})


def route_lines(
    db: Database,
    order_id: str,
    lines: Mapping[str, int],
    *,
    config: RoutingConfig = DEFAULT_CONFIG,
    now: float,
    actor: str,
    cause: str,
) -> RoutingOutcome:
    """Place ``lines`` of a registered order; runs inside the caller's transaction.

    Claims each chosen store's capacity slot under its row lock and reserves stock with
    conditional updates; when capacity or stock moved since the decision, gives back what it
    reserved and decides again on fresh numbers.
    """
    order = db.query_one("SELECT * FROM fulfillment_orders WHERE order_id = ?", (order_id,))
    if order is None:
        raise OrderError(f"order {order_id} was never submitted for fulfillment")
    kind = TaskKind(order["kind"])
    destination = (
        (float(order["dest_lat"]), float(order["dest_lon"]))
        if order["dest_lat"] is not None
        else None
    )
    rule_config = config
    if kind is TaskKind.pickup:
        rule_config = _pickup_config(order, config)
        if order["pickup_store"] is not None:
            # "Nearest" for a chosen-store pickup means nearest to that store.
            chosen = network.store_row(db, order["pickup_store"])
            if chosen is not None:
                destination = (float(chosen["lat"]), float(chosen["lon"]))
    excluded = declined_by(db, order_id)
    with db.transaction():
        for _ in range(RESERVE_ATTEMPTS):
            candidates = network.load_candidates(
                db, lines, now=now, rejection_window_s=config.rejection_window_days * 86400
            )
            if destination is not None:  # nearest first, so explanations list them first
                candidates.sort(key=lambda c: great_circle_km(c.lat, c.lon, *destination))
            decision = decide(
                lines,
                candidates,
                rule_config,
                destination=destination,
                excluded=excluded,
                # A pickup is collected in one place; a ship order splits only if the
                # customer accepted parcels from several stores.
                allow_split=kind is TaskKind.ship and bool(order["allow_brokering"]),
            )
            if not decision.placed:
                return _to_manual_queue(db, order_id, lines, decision, now=now, actor=actor,
                                        cause=cause)  # fmt: skip
            reserved: list[tuple[str, dict[str, int]]] = []
            # In store-ID order, so concurrent routers take the row locks without deadlock.
            for alloc in sorted(decision.allocations, key=lambda a: a.store_id):
                if not network.claim_capacity(db, alloc.store_id, now):
                    break
                if not network.reserve(db, alloc.store_id, alloc.lines):
                    break
                reserved.append((alloc.store_id, alloc.lines))
            else:
                return _create_tasks(db, order_id, kind, decision, now=now, actor=actor,
                                     cause=cause)  # fmt: skip
            for store_id, taken in reserved:
                network.release(db, store_id, taken)
        decision = RoutingDecision(rule=None)
        moved = f"{cause}; stock or capacity kept changing while reserving"
        return _to_manual_queue(db, order_id, lines, decision, now=now, actor=actor,
                                cause=moved)  # fmt: skip


def _create_tasks(db: Database, order_id: str, kind: TaskKind, decision: RoutingDecision, *,
                  now: float, actor: str, cause: str) -> RoutingOutcome:  # fmt: skip
    outcome = RoutingOutcome(order_id, rule=decision.rule)
    for alloc in decision.allocations:
        store = network.store_row(db, alloc.store_id)
        assert store is not None  # candidates come from the stores table
        task_id = uuid.uuid4().hex
        accept_by = now + int(store["acceptance_deadline_min"]) * 60
        db.execute(
            "INSERT INTO fulfillment_tasks (id, order_id, store_id, kind, state, version, rule,"
            " created_at, updated_at, accept_by) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
            (task_id, order_id, alloc.store_id, kind.value, TaskState.brokered.value,
             decision.rule, now, now, accept_by),
        )  # fmt: skip
        db.executemany(
            "INSERT INTO fulfillment_task_items (task_id, sku, quantity) VALUES (?, ?, ?)",
            [(task_id, sku, qty) for sku, qty in sorted(alloc.lines.items())],
        )
        detail = {
            "lines": alloc.lines,
            "distance_km": None if alloc.distance_km is None else round(alloc.distance_km, 1),
            # The nearest stores passed over and why; the full list is kept for the manual
            # queue only, where ops need it (a chain's every store on every order is too much).
            "passed_over": dict(list(decision.considered().items())[:AUDIT_PASSED_OVER]),
        }
        record(db, task_id=task_id, order_id=order_id, now=now, actor=actor, action="route",
               from_state=None, to_state=TaskState.brokered.value,
               reason=f"{cause}; rule {decision.rule} chose {alloc.store_id}",
               detail=detail)  # fmt: skip
        outcome.task_ids.append(task_id)
    return outcome


def _to_manual_queue(db: Database, order_id: str, lines: Mapping[str, int],
                     decision: RoutingDecision, *, now: float, actor: str,
                     cause: str) -> RoutingOutcome:  # fmt: skip
    considered = decision.considered()
    reason = f"{cause}: {decision.reason}" if considered else f"{cause}: no store is eligible"
    db.execute(
        "INSERT INTO fulfillment_manual_queue (order_id, created_at, reason, lines, considered)"
        " VALUES (?, ?, ?, ?, ?)",
        (order_id, now, reason, json.dumps(dict(lines)), json.dumps(considered)),
    )
    entry_id = int(
        db.scalar("SELECT max(id) FROM fulfillment_manual_queue WHERE order_id = ?", (order_id,))
    )
    record(db, task_id=None, order_id=order_id, now=now, actor=actor, action="manual_queue",
           from_state=None, to_state=None, reason=reason,
           detail={"lines": dict(lines), "considered": considered,
                   "manual_queue_id": entry_id})  # fmt: skip
    return RoutingOutcome(order_id, manual_queue_id=entry_id)


def record(db: Database, *, task_id: str | None, order_id: str, now: float, actor: str,
           action: str, from_state: str | None, to_state: str | None, reason: str | None,
           request_id: str | None = None, detail: object = None) -> None:  # fmt: skip
    """One audit row: who did what to which task, when, why, and from which state to which."""
    db.execute(
        "INSERT INTO fulfillment_audit (task_id, order_id, at, actor, action, from_state,"
        " to_state, reason, request_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (task_id, order_id, now, actor, action, from_state, to_state, reason, request_id,
         None if detail is None else json.dumps(detail, sort_keys=True)),
    )  # fmt: skip


def _close_manual_entry(
    db: Database, entry_id: int, *, actor: str, resolution: str, now: float
) -> dict:
    """Mark an open manual-queue entry resolved and return it; LookupError when none is open."""
    entry = db.query_one(
        "SELECT * FROM fulfillment_manual_queue WHERE id = ? AND resolved_at IS NULL",
        (entry_id,),
    )
    if entry is None:
        raise LookupError(f"no open manual-queue entry {entry_id}")
    db.execute(
        "UPDATE fulfillment_manual_queue SET resolved_at = ?, resolved_by = ?, resolution = ?"
        " WHERE id = ?",
        (now, actor, resolution, entry_id),
    )
    return entry


def retry_manual(db: Database, entry_id: int, *, actor: str,
                 config: RoutingConfig = DEFAULT_CONFIG,
                 now: float | None = None) -> RoutingOutcome:  # fmt: skip
    """Ops asks for another routing attempt (stock arrived, a store got capacity back)."""
    now = time.time() if now is None else now
    with db.transaction():
        entry = _close_manual_entry(db, entry_id, actor=actor, resolution="retried", now=now)
        outcome = route_lines(db, entry["order_id"], json.loads(entry["lines"]), config=config,
                              now=now, actor=actor,
                              cause=f"retry of manual-queue entry {entry_id}")  # fmt: skip
        progress.sync_order_status(db, entry["order_id"])
    tasks.publish(db, outcome.task_ids, event="created")
    return outcome


def dismiss_manual(db: Database, entry_id: int, *, actor: str, resolution: str,
                   now: float | None = None) -> None:  # fmt: skip
    """Ops settled an entry outside the system (refund, special order)."""
    now = time.time() if now is None else now
    with db.transaction():
        entry = _close_manual_entry(db, entry_id, actor=actor, resolution=resolution, now=now)
        record(db, task_id=None, order_id=entry["order_id"], now=now, actor=actor,
               action="manual_resolved", from_state=None, to_state=None,
               reason=resolution, detail={"manual_queue_id": entry_id})  # fmt: skip
        progress.sync_order_status(db, entry["order_id"])
