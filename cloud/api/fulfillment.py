"""Fulfillment API: the store's task queue and task moves for the mobile POS, the manual queue
and order journeys for ops.

Task moves answer 409 when the task is not in a state that allows the move or another clerk
moved it first (the body says which), 422 for a malformed request, 404 for a task that is not
the calling store's. Repeating a move with the same ``request_id`` (or ``Idempotency-Key``
header) returns the current task without applying it twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from storelens.cloud.api.deps import Caller, get_db, require_ops, require_pos
from storelens.cloud.db import Database
from storelens.cloud.fulfillment import router as fulfillment_router
from storelens.cloud.fulfillment import tasks, workflow
from storelens.cloud.fulfillment.deadlines import DeadlineSweeper
from storelens.cloud.fulfillment.states import Action, RejectReason
from storelens.cloud.services import routing

# Text reaches SQL as given; PostgreSQL refuses NUL bytes, so they are a 422 here, not a 500.
NO_NUL = r"^[^\x00]*$"
BIGINT_MAX = 2**63 - 1
TaskId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="Task ID.")]
EntryId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="Row ID.")]
OrderId = Annotated[str, Path(min_length=1, max_length=128, pattern=NO_NUL)]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Loads the routing rules (a broken file stops the service here, not at the first order)
    and runs the deadline sweeper beside the API (every replica may: moves are idempotent)."""
    settings = app.state.settings
    config = app.state.services.routing  # what the order hook routes with too
    sweeper = None
    if settings.fulfillment_sweep_s > 0:
        sweeper = DeadlineSweeper(app.state.db, interval_s=settings.fulfillment_sweep_s,
                                  config=config)  # fmt: skip
        sweeper.start()
    try:
        yield
    finally:
        if sweeper is not None:
            sweeper.stop()


router = APIRouter(prefix="/fulfillment", tags=["fulfillment"], lifespan=_lifespan)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class StepIn(_Body):
    request_id: str | None = Field(
        None,
        max_length=128,
        pattern=NO_NUL,
        description="Client request ID: a repeat changes nothing.",
    )
    version: int | None = Field(
        None, ge=1, le=BIGINT_MAX, description="Task version the clerk saw; a newer one is a 409."
    )
    clerk: str | None = Field(None, max_length=64, pattern=NO_NUL, description="Clerk's name.")
    note: str | None = Field(None, max_length=500, pattern=NO_NUL)


class RejectIn(StepIn):
    reason: RejectReason
    sku: str | None = Field(None, max_length=64, pattern=NO_NUL, description="Default: every line.")
    quantity: int | None = Field(None, ge=1, le=1_000_000, description="Damaged units.")


class ShipIn(StepIn):
    carrier: str = Field(min_length=1, max_length=64, pattern=NO_NUL)
    tracking_number: str = Field(min_length=1, max_length=128, pattern=NO_NUL)


class CancelIn(_Body):
    reason: str = Field(min_length=1, max_length=500, pattern=NO_NUL)


class DismissIn(_Body):
    resolution: str = Field(
        min_length=1, max_length=500, pattern=NO_NUL, description="What ops did instead."
    )


def _http(exc: Exception) -> HTTPException:
    if isinstance(exc, workflow.TaskNotFound | LookupError):
        return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))
    if isinstance(exc, workflow.TransitionConflict):
        return HTTPException(status.HTTP_409_CONFLICT, str(exc))
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))


def _actor(caller: Caller, clerk: str | None) -> str:
    who = caller.principal.subject
    if caller.store is not None:
        who = f"{caller.store}/{who}"
    return f"{who}:{clerk}" if clerk else who


def _move(db: Database, caller: Caller, task_id: str, action: Action, body: StepIn,
          idempotency_key: str | None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    req = workflow.Request(
        action,
        actor=_actor(caller, body.clerk),
        request_id=body.request_id or idempotency_key,
        expected_version=body.version,
        note=body.note,
        **extra,
    )
    try:
        result = workflow.apply(db, task_id, req, store_id=caller.store, config=routing(db))
    except (workflow.WorkflowError, fulfillment_router.OrderError) as exc:
        raise _http(exc) from None
    return {
        "task": result.task,
        "replayed": result.replayed,
        "rerouted_to": result.rerouted_to,
        "manual_queue_id": result.manual_queue_id,
    }


@router.get("/tasks", summary="The store's open fulfillment tasks, most urgent first")
def list_tasks(
    store: str | None = Query(
        None, max_length=64, pattern=NO_NUL, description="Ops only; a POS sees its own store."
    ),
    limit: int = Query(200, ge=1, le=1000),
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_pos(allow_ops="analyst")),
) -> list[dict[str, Any]]:
    store_id = caller.store or store
    if store_id is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "name the store (?store=...)")
    return tasks.open_tasks(db, store_id, limit=limit)


@router.get("/tasks/{task_id}", summary="One task with its lines and shelf locations")
def get_task(
    task_id: TaskId,
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_pos(allow_ops="analyst")),
) -> dict[str, Any]:
    card = tasks.get_task(db, task_id)
    if card is None or (caller.store is not None and card["store_id"] != caller.store):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no task {task_id} at this store")
    return card


def _step_endpoint(action: Action) -> Callable[..., dict[str, Any]]:
    def endpoint(
        task_id: TaskId,
        body: StepIn | None = None,
        idempotency_key: str | None = Header(None, max_length=128),
        db: Database = Depends(get_db),
        caller: Caller = Depends(require_pos()),
    ) -> dict[str, Any]:
        return _move(db, caller, task_id, action, body or StepIn(), idempotency_key)

    endpoint.__name__ = f"task_{action.value}"
    return endpoint


for _action, _path, _summary in [
    (Action.accept, "accept", "Accept a brokered task"),
    (Action.pick, "pick", "Mark the task's items picked from the shelves"),
    (Action.pack, "pack", "Mark a ship task packed"),
    (Action.deliver, "deliver", "Mark a shipped task delivered"),
    (Action.ready, "ready", "Mark a pickup ready; the customer is notified"),
    (Action.picked_up, "picked-up", "The customer collected the pickup"),
]:
    router.post(f"/tasks/{{task_id}}/{_path}", summary=_summary)(_step_endpoint(_action))


@router.post("/tasks/{task_id}/reject", summary="Reject a task; it is re-routed elsewhere")
def reject_task(task_id: TaskId, body: RejectIn,
                idempotency_key: str | None = Header(None, max_length=128),
                db: Database = Depends(get_db),
                caller: Caller = Depends(require_pos())) -> dict[str, Any]:  # fmt: skip
    return _move(db, caller, task_id, Action.reject, body, idempotency_key,
                 reason=body.reason.value, sku=body.sku, quantity=body.quantity)  # fmt: skip


@router.post("/tasks/{task_id}/ship", summary="Hand a packed task to the carrier")
def ship_task(task_id: TaskId, body: ShipIn,
              idempotency_key: str | None = Header(None, max_length=128),
              db: Database = Depends(get_db),
              caller: Caller = Depends(require_pos())) -> dict[str, Any]:  # fmt: skip
    return _move(db, caller, task_id, Action.ship, body, idempotency_key,
                 carrier=body.carrier, tracking_number=body.tracking_number)  # fmt: skip


@router.get("/manual-queue", summary="Orders no routing rule could place (ops)")
def manual_queue(include_resolved: bool = False, limit: int = Query(200, ge=1, le=1000),
                 db: Database = Depends(get_db),
                 _: Caller = Depends(require_ops("analyst"))) -> list[dict[str, Any]]:  # fmt: skip
    return tasks.manual_entries(db, include_resolved=include_resolved, limit=limit)


@router.post("/manual-queue/{entry_id}/retry", summary="Route a queued order again (admin)")
def retry_manual(entry_id: EntryId, db: Database = Depends(get_db),
                 caller: Caller = Depends(require_ops("admin"))) -> dict[str, Any]:  # fmt: skip
    try:
        outcome = fulfillment_router.retry_manual(
            db, entry_id, actor=caller.principal.subject, config=routing(db)
        )
    except LookupError as exc:
        raise _http(exc) from None
    return {"task_ids": outcome.task_ids, "manual_queue_id": outcome.manual_queue_id,
            "rule": outcome.rule}  # fmt: skip


@router.post("/manual-queue/{entry_id}/dismiss", summary="Settle a queued order by hand (admin)")
def dismiss_manual(entry_id: EntryId, body: DismissIn, db: Database = Depends(get_db),
                   caller: Caller = Depends(require_ops("admin"))) -> dict[str, str]:  # fmt: skip
    try:
        fulfillment_router.dismiss_manual(
            db, entry_id, actor=caller.principal.subject, resolution=body.resolution
        )
    except LookupError as exc:
        raise _http(exc) from None
    return {"status": "resolved"}


@router.get("/orders/{order_id}/journey", summary="An order's tasks, audit trail and messages")
def order_journey(order_id: OrderId, db: Database = Depends(get_db),
                  _: Caller = Depends(require_ops("analyst"))) -> dict[str, Any]:  # fmt: skip
    journey = tasks.journey(db, order_id)
    if journey is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"order {order_id} has no fulfillment")
    return journey


@router.post("/orders/{order_id}/cancel", summary="Cancel an order's open tasks (admin)")
def cancel_order(order_id: OrderId, body: CancelIn, db: Database = Depends(get_db),
                 caller: Caller = Depends(require_ops("admin"))) -> dict[str, Any]:  # fmt: skip
    try:
        results = workflow.cancel_order(
            db, order_id, actor=caller.principal.subject, reason=body.reason
        )
    except workflow.WorkflowError as exc:
        raise _http(exc) from None
    return {"cancelled": [r.task["id"] for r in results if not r.replayed]}


@router.get("/notifications", summary="Customer messages waiting for the messaging service")
def pending_notifications(
    limit: int = Query(100, ge=1, le=1000),
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("admin")),
) -> list[dict[str, Any]]:
    return tasks.pending_notifications(db, limit=limit)


@router.post("/notifications/{notification_id}/sent", summary="The message was delivered")
def notification_sent(
    notification_id: EntryId,
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("admin")),
) -> dict[str, str]:
    import time

    if not tasks.mark_sent(db, notification_id, now=time.time()):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no notification {notification_id}")
    return {"status": "sent"}
