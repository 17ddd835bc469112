"""The fulfillment task workflow: what a store does with a task routed to it.

Ship from store::

    brokered --accept--> accepted --pick--> picked --pack--> packed --ship--> shipped
                                                       (carrier, tracking number)  |
                                                                            deliver v
                                                                               delivered
Pick up in store::

    brokered --accept--> accepted --pick--> picked --ready--> ready_for_pickup --picked_up-->
    picked_up        (ready records a customer notification on the order's channel and
                      starts the pickup deadline)

Ways out::

    brokered | accepted | picked --reject(reason)--> rejected   -> lines re-routed, never back
    brokered | accepted | picked --cancel-->         cancelled  -> stock released
    brokered --time_out (sweeper, acceptance deadline)--> timed_out -> lines re-routed
    ready_for_pickup --expire (sweeper, pickup deadline)--> expired -> stock released; the
                                             order is cancelled or re-offered (configuration)

Rejection reasons change stock before re-routing: ``not_in_stock`` leaves nothing available
to promise for the SKU at that store, ``damaged`` writes the quantity off, ``no_capacity``
cuts the store's capacity for today to its current load.

Every transition is validated against `states.MOVES` (no skipping), idempotent (a repeated
request ID, or the same actor asking again for the state the task is already in, changes
nothing), concurrency-safe (``UPDATE ... WHERE state = ? AND version = ?``; the loser gets a
`TransitionConflict`, HTTP 409) and audited (who, when, why, from, to).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from storelens.cloud.db import Database, IntegrityError
from storelens.cloud.fulfillment import network, progress, router, tasks
from storelens.cloud.fulfillment.rules import DEFAULT_CONFIG, RoutingConfig
from storelens.cloud.fulfillment.states import (
    MOVES,
    Action,
    RejectReason,
    TaskKind,
    TaskState,
    next_action_hint,
)

DEADLOCK_ATTEMPTS = 3
try:
    from psycopg.errors import DeadlockDetected, SerializationFailure

    _RETRYABLE: tuple[type[Exception], ...] = (DeadlockDetected, SerializationFailure)
except ImportError:  # a SQLite-only install: writers are serialized, nothing to retry
    _RETRYABLE = ()


class WorkflowError(Exception):
    """Base of the workflow's refusals."""


class TaskNotFound(WorkflowError, LookupError):
    """No such task (or not one of the asking store's)."""


class TransitionConflict(WorkflowError):
    """The task is not in a state that allows the move, or someone else moved it first."""


class InvalidTransition(WorkflowError, ValueError):
    """The request itself is wrong (missing carrier, a pickup move on a ship task, ...)."""


@dataclass
class TransitionResult:
    task: dict
    replayed: bool = False  # True when nothing changed because this request was seen already
    rerouted_to: list[str] = field(default_factory=list)  # new task IDs after a rejection
    manual_queue_id: int | None = None


@dataclass(frozen=True)
class Request:
    """One clerk's (or the system's) request to move a task."""

    action: Action
    actor: str
    reason: str | None = None
    request_id: str | None = None
    expected_version: int | None = None
    carrier: str | None = None
    tracking_number: str | None = None
    sku: str | None = None  # reject: which SKU is missing or damaged (default: every line)
    quantity: int | None = None  # reject damaged: how many units (default: the line's)
    note: str | None = None  # free text from the clerk, kept in the audit log


def apply(
    db: Database,
    task_id: str,
    req: Request,
    *,
    store_id: str | None = None,
    config: RoutingConfig = DEFAULT_CONFIG,
    now: float | None = None,
) -> TransitionResult:
    """Move one task. ``store_id`` limits the move to that store's tasks (POS callers).
    Pushes the changed task and any re-routed ones to the POS after commit."""
    now = time.time() if now is None else now
    _validate(req)
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            with db.transaction():
                result = _apply_locked(db, task_id, req, store_id=store_id, config=config,
                                       now=now)  # fmt: skip
            break
        except _RETRYABLE:
            # Two rejections re-routing into each other's store lock the same inventory rows
            # in opposite order; PostgreSQL aborts one, which simply runs again.
            if attempt == DEADLOCK_ATTEMPTS:
                raise
    if not result.replayed:
        tasks.publish(db, [task_id], event=req.action.value)
        tasks.publish(db, result.rerouted_to, event="created")
    return result


def _validate(req: Request) -> None:
    if not req.actor:
        raise InvalidTransition("every transition needs an actor (who)")
    if req.action is Action.ship and not (req.carrier and req.tracking_number):
        raise InvalidTransition("shipping needs a carrier and a tracking number")
    if req.action is Action.reject:
        if req.reason not in set(RejectReason):
            allowed = ", ".join(r.value for r in RejectReason)
            raise InvalidTransition(f"reject needs a reason: one of {allowed}")
        if req.quantity is not None and (req.quantity <= 0 or req.sku is None):
            raise InvalidTransition("a damaged quantity must be positive and name its SKU")
    elif req.sku is not None or req.quantity is not None:
        raise InvalidTransition("sku and quantity belong to a rejection only")


def _apply_locked(db: Database, task_id: str, req: Request, *, store_id: str | None,
                  config: RoutingConfig, now: float) -> TransitionResult:  # fmt: skip
    task = db.query_one("SELECT * FROM fulfillment_tasks WHERE id = ?", (task_id,))
    if task is None or (store_id is not None and task["store_id"] != store_id):
        raise TaskNotFound(f"no task {task_id}" + (f" at store {store_id}" if store_id else ""))
    state, kind = TaskState(task["state"]), TaskKind(task["kind"])
    move = MOVES[req.action]

    if req.request_id is not None:
        prior = db.query_one(
            "SELECT action FROM fulfillment_audit WHERE task_id = ? AND request_id = ?",
            (task_id, req.request_id),
        )
        if prior is not None:
            if prior["action"] != req.action.value:
                raise TransitionConflict(
                    f"request {req.request_id} was already used to {prior['action']} this task"
                )
            return TransitionResult(_card(db, task_id), replayed=True)

    if kind not in move.kinds:
        raise InvalidTransition(f"{req.action.value} does not apply to a {kind.value} task")
    if state not in move.sources:
        if state is move.target:
            last = db.query_one(
                "SELECT actor, at FROM fulfillment_audit WHERE task_id = ? AND to_state = ?"
                " ORDER BY id DESC LIMIT 1",
                (task_id, state.value),
            )
            if last is not None and last["actor"] == req.actor and req.request_id is None:
                return TransitionResult(_card(db, task_id), replayed=True)
            by = f" by {last['actor']}" if last else ""
            raise TransitionConflict(f"task {task_id} is already {state.value}{by}")
        hint = ", ".join(a.value for a in next_action_hint(state, kind)) or "nothing"
        raise TransitionConflict(
            f"cannot {req.action.value} task {task_id}: it is {state.value} (allowed next: {hint})"
        )
    version = int(task["version"])
    if req.expected_version is not None and req.expected_version != version:
        raise TransitionConflict(
            f"task {task_id} changed since you loaded it (your version {req.expected_version},"
            f" now {version}); reload and try again"
        )

    target = move.target
    pickup_by = now + config.pickup_hold_hours * 3600 if req.action is Action.ready else None
    changed = db.execute(
        "UPDATE fulfillment_tasks SET state = ?, version = version + 1, updated_at = ?,"
        " carrier = COALESCE(?, carrier), tracking_number = COALESCE(?, tracking_number),"
        " pickup_by = COALESCE(?, pickup_by), reason = COALESCE(?, reason)"
        " WHERE id = ? AND state = ? AND version = ?",
        (target.value, now, req.carrier, req.tracking_number, pickup_by, req.reason,
         task_id, state.value, version),
    )  # fmt: skip
    if changed != 1:
        raise TransitionConflict(f"task {task_id} was changed by someone else just now; reload")
    try:
        router.record(db, task_id=task_id, order_id=task["order_id"], now=now, actor=req.actor,
                      action=req.action.value, from_state=state.value, to_state=target.value,
                      reason=req.reason, request_id=req.request_id,
                      detail=_detail(req))  # fmt: skip
    except IntegrityError as exc:  # the same request ID raced itself in two threads
        raise TransitionConflict(f"request {req.request_id} is already being applied") from exc

    result = TransitionResult(task={})
    lines = _lines(db, task_id)
    store = task["store_id"]
    if req.action is Action.reject:
        network.release(db, store, lines)
        _apply_rejection_stock(db, store, lines, req, now)
        _reroute(db, task, lines, result, config=config, now=now,
                 cause=f"{store} rejected: {req.reason}")  # fmt: skip
    elif req.action is Action.time_out:
        network.release(db, store, lines)
        _reroute(db, task, lines, result, config=config, now=now,
                 cause=f"{store} did not accept in time")  # fmt: skip
    elif req.action is Action.cancel:
        network.release(db, store, lines)
    elif req.action in (Action.ship, Action.picked_up):
        network.consume(db, store, lines)
        if req.action is Action.ship:
            _notify(db, task, "shipped", now,
                    f"Your order {task['order_id']} is on its way: {req.carrier}"
                    f" {req.tracking_number}.")  # fmt: skip
    elif req.action is Action.ready:
        assert pickup_by is not None
        until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(pickup_by))
        _notify(db, task, "ready_for_pickup", now,
                f"Your order {task['order_id']} is ready for pickup at store {store}"
                f" until {until}.")  # fmt: skip
    elif req.action is Action.expire:
        network.release(db, store, lines)
        if config.pickup_expiry == "reoffer":
            _notify(db, task, "pickup_expired", now,
                    f"Your order {task['order_id']} was not collected in time; we are"
                    " preparing it again.")  # fmt: skip
            _reroute(db, task, lines, result, config=config, now=now,
                     cause="pickup deadline passed; order re-offered")  # fmt: skip
        else:
            _notify(db, task, "order_cancelled", now,
                    f"Your order {task['order_id']} was not collected in time and has been"
                    " cancelled.")  # fmt: skip
    progress.sync_order_status(db, task["order_id"])
    result.task = _card(db, task_id)
    return result


def _detail(req: Request) -> dict | None:
    detail = {
        k: v
        for k, v in {
            "carrier": req.carrier,
            "tracking_number": req.tracking_number,
            "sku": req.sku,
            "quantity": req.quantity,
            "expected_version": req.expected_version,
            "note": req.note,
        }.items()
        if v is not None
    }
    return detail or None


def _lines(db: Database, task_id: str) -> dict[str, int]:
    rows = db.query(
        "SELECT sku, quantity FROM fulfillment_task_items WHERE task_id = ?", (task_id,)
    )
    return {r["sku"]: int(r["quantity"]) for r in rows}


def _card(db: Database, task_id: str) -> dict:
    card = tasks.get_task(db, task_id)
    assert card is not None
    return card


def _apply_rejection_stock(db: Database, store: str, lines: dict[str, int], req: Request,
                           now: float) -> None:  # fmt: skip
    reason = RejectReason(req.reason)
    if req.sku is not None and req.sku not in lines:
        raise InvalidTransition(f"{req.sku} is not on this task")
    skus = [req.sku] if req.sku is not None else sorted(lines)
    if reason is RejectReason.not_in_stock:
        for sku in skus:
            network.mark_out_of_stock(db, store, sku)
    elif reason is RejectReason.damaged:
        for sku in skus:
            network.write_off(db, store, sku, req.quantity or lines[sku])
    elif reason is RejectReason.no_capacity:
        network.cut_capacity(db, store, now)


def _reroute(db: Database, task: dict, lines: dict[str, int], result: TransitionResult, *,
             config: RoutingConfig, now: float, cause: str) -> None:  # fmt: skip
    outcome = router.route_lines(db, task["order_id"], lines, config=config, now=now,
                                 actor="router", cause=cause)  # fmt: skip
    result.rerouted_to = outcome.task_ids
    result.manual_queue_id = outcome.manual_queue_id


def _notify(db: Database, task: dict, kind: str, now: float, message: str) -> None:
    """Record a customer message on the order's channel; a delivery worker sends it and sets
    ``sent_at`` (the row is the durable outbox, so a crash loses no message)."""
    order = db.query_one(
        "SELECT channel, recipient FROM fulfillment_orders WHERE order_id = ?", (task["order_id"],)
    )
    channel = order["channel"] if order else "email"
    recipient = order["recipient"] if order else None
    db.execute(
        "INSERT INTO fulfillment_notifications (order_id, task_id, channel, recipient, kind,"
        " message, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (task["order_id"], task["id"], channel, recipient, kind, message, now),
    )


def cancel_order(db: Database, order_id: str, *, actor: str, reason: str,
                 now: float | None = None) -> list[TransitionResult]:  # fmt: skip
    """Cancel every task of the order that can still be cancelled (the customer withdrew)."""
    now = time.time() if now is None else now
    cancellable = sorted(s.value for s in MOVES[Action.cancel].sources)
    rows = db.query(
        "SELECT id FROM fulfillment_tasks WHERE order_id = ?"
        f" AND state IN ({', '.join('?' for _ in cancellable)})",
        (order_id, *cancellable),
    )
    return [
        apply(db, r["id"], Request(Action.cancel, actor=actor, reason=reason), now=now)
        for r in rows
    ]
