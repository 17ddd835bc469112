"""Where online orders enter fulfillment.

The package declares `route_new_order` as an ``order_created`` hook (`HOOKS` in
`fulfillment/__init__.py`, collected by `cloud/db/schema.py`), so an order is routed inside
the transaction that stores it: an order never exists unrouted, and a routing crash leaves no
half-created order. The routing rules are those of the process serving the database
(`Services.routing`, from ``Settings.fulfillment_rules``, read by the API at start); elsewhere
(CLI) from the file named by ``STORELENS_FULFILLMENT_RULES`` (YAML or JSON), else the built-in
default (`storelens.cloud.services.routing`).
"""

from __future__ import annotations

from storelens.cloud import services
from storelens.cloud.db import Database
from storelens.cloud.fulfillment import router
from storelens.cloud.fulfillment.states import TaskKind


def forget_member(db: Database, member_id: str, _token: str) -> None:
    """Forget-me: drop what fulfillment copied about the person (who to notify, where to
    ship); tasks and the audit trail stay, as the orders themselves do, without a name."""
    orders_of = (
        "SELECT id FROM online_orders WHERE member_id = ? OR customer_account IN"
        " (SELECT id FROM customer_accounts WHERE member_id = ?)"
    )
    db.execute(
        "UPDATE fulfillment_orders SET recipient = NULL, dest_lat = NULL, dest_lon = NULL"
        f" WHERE order_id IN ({orders_of})",
        (member_id, member_id),
    )
    db.execute(
        f"UPDATE fulfillment_notifications SET recipient = NULL WHERE order_id IN ({orders_of})",
        (member_id, member_id),
    )


def order_to_route(db: Database, order_id: str) -> router.OrderToRoute:
    order = db.query_one("SELECT * FROM online_orders WHERE id = ?", (order_id,))
    if order is None:
        raise router.OrderError(f"unknown order {order_id}")
    items = db.query(
        "SELECT sku, qty FROM online_order_items WHERE order_id = ? ORDER BY line", (order_id,)
    )
    lines: dict[str, int] = {}
    for item in items:
        lines[item["sku"]] = lines.get(item["sku"], 0) + int(item["qty"])
    account = order["customer_account"]
    has_position = order["ship_lat"] is not None and order["ship_lon"] is not None
    return router.OrderToRoute(
        order_id=order_id,
        lines=lines,
        kind=TaskKind(order["fulfillment_type"]),
        destination=(float(order["ship_lat"]), float(order["ship_lon"])) if has_position else None,
        pickup_store=order["pickup_store"],
        allow_brokering=bool(order["allow_brokering"]),
        # The web shop shows messages in the customer's account; guests see the order page.
        channel="account" if account else "order_page",
        recipient=account or order["external_id"] or order_id,
    )


def route_new_order(db: Database, order_id: str) -> None:
    """The orders hook: route inside the order's transaction (which also sets the order's
    status); `submit_order` pushes the new tasks.

    Nested in the order's transaction, that push goes out just before the commit; the card
    carries the whole task, so a POS never has to read it back, and a commit failure (the only
    way to lose the task now) fails the webhook call, which the web shop retries with its
    idempotency key.
    """
    from storelens.cloud.commerce import orders

    try:
        router.submit_order(db, order_to_route(db, order_id), config=services.routing(db))
    except router.OrderError as exc:  # answered as the orders domain's 422, order not stored
        raise orders.OrderError(str(exc)) from exc
