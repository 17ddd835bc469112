"""Order progress: one status per order, from its tasks and manual-queue entries, written back
to the orders domain so the web shop and ops see where each order stands."""

from __future__ import annotations

from collections.abc import Iterable

from storelens.cloud.db import Database
from storelens.cloud.fulfillment.states import TaskState

# Task states -> the orders domain's status words, least advanced first.
_PROGRESS: list[tuple[TaskState, str]] = [
    (TaskState.brokered, "brokered"),
    (TaskState.accepted, "in_fulfillment"),
    (TaskState.picked, "in_fulfillment"),
    (TaskState.packed, "in_fulfillment"),
    (TaskState.ready_for_pickup, "ready_for_pickup"),
    (TaskState.shipped, "shipped"),
    (TaskState.picked_up, "picked_up"),
    (TaskState.delivered, "delivered"),
]
_RANK = {state: i for i, (state, _) in enumerate(_PROGRESS)}
_NAME = dict(_PROGRESS)


def order_status(states: Iterable[TaskState], open_manual_entries: int) -> str:
    """The least advanced live task decides (a split order is shipped when all parts are);
    open manual-queue work makes the order "unfulfillable" until ops resolve it."""
    live = [s for s in states if s not in (TaskState.rejected, TaskState.timed_out)]
    progressing = [s for s in live if s in _RANK]
    if open_manual_entries:
        return "unfulfillable"
    if progressing:
        return _NAME[min(progressing, key=_RANK.__getitem__)]
    if live:
        return "cancelled"  # every live task was cancelled or its pickup expired
    return "routing"


def current_status(db: Database, order_id: str) -> str:
    states = [
        TaskState(r["state"])
        for r in db.query("SELECT state FROM fulfillment_tasks WHERE order_id = ?", (order_id,))
    ]
    manual = db.scalar(
        "SELECT count(*) FROM fulfillment_manual_queue WHERE order_id = ? AND resolved_at IS NULL",
        (order_id,),
    )
    return order_status(states, int(manual or 0))


def sync_order_status(db: Database, order_id: str) -> str:
    """Compute the status and store it on the online order, when the orders domain has it
    (orders submitted straight to the router, as in tests, have no online order row)."""
    status = current_status(db, order_id)
    if db.scalar("SELECT count(*) FROM online_orders WHERE id = ?", (order_id,)):
        from storelens.cloud.commerce import orders

        orders.set_status(db, order_id, status)
    return status
