"""Read side of fulfillment: task cards for the POS, order journeys for ops, and the push of
task changes to the store's POS devices."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from storelens.cloud import services
from storelens.cloud.db import Database
from storelens.cloud.fulfillment import network, progress
from storelens.cloud.fulfillment.states import OPEN_STATES, TaskKind, TaskState, next_action_hint

log = logging.getLogger(__name__)

PUSH_KIND = "task"


def _in_list(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def task_items(db: Database, task_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    if not task_ids:
        return {}
    rows = db.query(
        "SELECT task_id, sku, quantity FROM fulfillment_task_items"
        f" WHERE task_id IN ({_in_list(task_ids)}) ORDER BY task_id, sku",
        task_ids,
    )
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in task_ids}
    for r in rows:
        out[r["task_id"]].append({"sku": r["sku"], "quantity": int(r["quantity"])})
    return out


def _cards(db: Database, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tasks as the POS shows them: lines with shelf hints, deadline and the next moves."""
    items = task_items(db, [r["id"] for r in rows])
    skus = {i["sku"] for lines in items.values() for i in lines}
    names = network.product_names(db, skus)
    shelves: dict[str, dict[str, str | None]] = {}
    for r in rows:
        shelves.setdefault(r["store_id"], {})
    for store_id in shelves:
        store_skus = {i["sku"] for r in rows if r["store_id"] == store_id for i in items[r["id"]]}
        shelves[store_id] = network.shelf_locations(db, store_id, store_skus)
    cards = []
    for r in rows:
        state, kind = TaskState(r["state"]), TaskKind(r["kind"])
        deadline = r["accept_by"] if state is TaskState.brokered else r["pickup_by"]
        cards.append(
            {
                "id": r["id"],
                "order_id": r["order_id"],
                "store_id": r["store_id"],
                "kind": kind.value,
                "state": state.value,
                "version": int(r["version"]),
                "rule": r["rule"],
                "created_at": r["created_at"],
                "updated_at": r["updated_at"],
                "deadline": deadline,
                "accept_by": r["accept_by"],
                "pickup_by": r["pickup_by"],
                "carrier": r["carrier"],
                "tracking_number": r["tracking_number"],
                "reason": r["reason"],
                "next_actions": [a.value for a in next_action_hint(state, kind)],
                "items": [
                    {
                        **i,
                        "name": names.get(i["sku"]),
                        "shelf_location": shelves[r["store_id"]].get(i["sku"]),
                    }
                    for i in items[r["id"]]
                ],
            }
        )
    return cards


def get_task(db: Database, task_id: str) -> dict[str, Any] | None:
    row = db.query_one("SELECT * FROM fulfillment_tasks WHERE id = ?", (task_id,))
    return _cards(db, [row])[0] if row else None


def open_tasks(db: Database, store_id: str, *, limit: int = 200) -> list[dict[str, Any]]:
    """The store's work queue, most urgent deadline first (tasks without one last)."""
    states = sorted(OPEN_STATES)
    rows = db.query(
        "SELECT * FROM fulfillment_tasks WHERE store_id = ?"
        f" AND state IN ({_in_list(states)})"
        " ORDER BY CASE WHEN state = 'brokered' THEN accept_by ELSE pickup_by END IS NULL,"
        " CASE WHEN state = 'brokered' THEN accept_by ELSE pickup_by END, created_at"
        " LIMIT ?",
        (store_id, *states, limit),
    )
    return _cards(db, rows)


def order_tasks(db: Database, order_id: str) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT * FROM fulfillment_tasks WHERE order_id = ? ORDER BY created_at, id", (order_id,)
    )
    return _cards(db, rows)


def audit_log(db: Database, order_id: str) -> list[dict[str, Any]]:
    rows = db.query("SELECT * FROM fulfillment_audit WHERE order_id = ? ORDER BY id", (order_id,))
    for r in rows:
        r["detail"] = json.loads(r["detail"]) if r["detail"] else None
    return rows


def manual_entries(db: Database, *, include_resolved: bool = False, limit: int = 200,
                   order_id: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    where, params = [], []
    if not include_resolved:
        where.append("resolved_at IS NULL")
    if order_id is not None:
        where.append("order_id = ?")
        params.append(order_id)
    sql = "SELECT * FROM fulfillment_manual_queue"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = db.query(sql + " ORDER BY id LIMIT ?", (*params, limit))
    for r in rows:
        r["lines"] = json.loads(r["lines"])
        r["considered"] = json.loads(r["considered"])
    return rows


def notifications(db: Database, order_id: str) -> list[dict[str, Any]]:
    return db.query(
        "SELECT * FROM fulfillment_notifications WHERE order_id = ? ORDER BY id", (order_id,)
    )


def pending_notifications(db: Database, *, limit: int = 100) -> list[dict[str, Any]]:
    """Customer messages not yet handed to the messaging service, oldest first (the table is
    the outbox: a sender polls it and marks each message sent)."""
    return db.query(
        "SELECT * FROM fulfillment_notifications WHERE sent_at IS NULL ORDER BY id LIMIT ?",
        (limit,),
    )


def mark_sent(db: Database, notification_id: int, *, now: float) -> bool:
    """Idempotent: True when the message exists (sent now or before)."""
    db.execute(
        "UPDATE fulfillment_notifications SET sent_at = ? WHERE id = ? AND sent_at IS NULL",
        (now, notification_id),
    )
    return bool(
        db.scalar("SELECT count(*) FROM fulfillment_notifications WHERE id = ?", (notification_id,))
    )


def journey(db: Database, order_id: str) -> dict[str, Any] | None:
    """Everything that happened to one order: its tasks, audit trail, queue entries, messages."""
    order = db.query_one("SELECT * FROM fulfillment_orders WHERE order_id = ?", (order_id,))
    if order is None:
        return None
    tasks = order_tasks(db, order_id)
    return {
        "order_id": order_id,
        "kind": order["kind"],
        "pickup_store": order["pickup_store"],
        "allow_brokering": bool(order["allow_brokering"]),
        "status": progress.current_status(db, order_id),
        "tasks": tasks,
        "manual_queue": manual_entries(db, order_id=order_id, include_resolved=True),
        "notifications": notifications(db, order_id),
        "audit": audit_log(db, order_id),
    }


def publish(db: Database, task_ids: Iterable[str], *, event: str) -> None:
    """Push task cards to their stores' POS devices once the surrounding transaction (for
    example an order webhook's) commits; a failed push only logs, because the POS lists its
    tasks on (re)connect and the state is already durable."""
    ids = list(dict.fromkeys(task_ids))
    if ids:
        db.after_commit(lambda: _push_cards(db, ids, event))


def _push_cards(db: Database, task_ids: list[str], event: str) -> None:
    if services.served_by(db) is None:  # no serving process (a CLI scenario): no POS listens
        return
    for task_id in task_ids:
        card = get_task(db, task_id)
        if card is None:
            continue
        try:
            services.announce(db, card["store_id"], PUSH_KIND, {"event": event, "task": card})
        except Exception:
            log.warning("push of task %s to store %s failed", task_id, card["store_id"],
                        exc_info=True)  # fmt: skip
