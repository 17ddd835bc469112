"""A scripted ship-from-store day: seeds stores, products and stock, places online orders
through the orders domain (so routing runs on the real order hook), has one store reject,
walks the tasks through the workflow and prints each order's journey.

`storelens cloud scenario ship-from-store` runs it; tests reuse `seed_network`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from storelens.cloud.db import Database
from storelens.cloud.fulfillment import tasks, workflow
from storelens.cloud.fulfillment.deadlines import sweep
from storelens.cloud.fulfillment.states import Action
from storelens.cloud.services import routing

# Four stores around Paris and one in Lyon; coordinates are the real places.
STORES: list[dict[str, Any]] = [
    {"id": "paris-rivoli", "name": "Paris Rivoli", "lat": 48.8606, "lon": 2.3470,
     "fulfillment_capacity": 20, "acceptance_deadline_min": 60, "priority": 2},
    {"id": "paris-bercy", "name": "Paris Bercy", "lat": 48.8390, "lon": 2.3820,
     "fulfillment_capacity": 20, "acceptance_deadline_min": 60, "priority": 1},
    {"id": "versailles", "name": "Versailles", "lat": 48.8049, "lon": 2.1204,
     "fulfillment_capacity": 10, "acceptance_deadline_min": 90, "priority": 0},
    {"id": "lyon-part-dieu", "name": "Lyon Part-Dieu", "lat": 45.7606, "lon": 4.8597,
     "fulfillment_capacity": 20, "acceptance_deadline_min": 60, "priority": 1},
]  # fmt: skip
PRODUCTS: list[dict[str, Any]] = [
    {"sku": "TSHIRT-M", "name": "Organic T-shirt M", "category": "tops", "price": 19.9},
    {"sku": "JEANS-32", "name": "Slim jeans 32", "category": "denim", "price": 59.0},
    {"sku": "SNEAKER-42", "name": "Court sneaker 42", "category": "shoes", "price": 89.0},
    {"sku": "BACKPACK", "name": "Canvas backpack", "category": "bags", "price": 45.0},
]
# store -> sku -> (on hand, safety stock, shelf)
STOCK: dict[str, dict[str, tuple[int, int, str]]] = {
    "paris-rivoli": {"TSHIRT-M": (8, 1, "A3-2"), "JEANS-32": (4, 1, "B1-4"),
                     "SNEAKER-42": (3, 1, "C2-1")},
    "paris-bercy": {"TSHIRT-M": (12, 2, "T-07"), "JEANS-32": (6, 1, "D-02"),
                    "BACKPACK": (1, 0, "BAG-1")},
    "versailles": {"TSHIRT-M": (5, 1, "1-12"), "JEANS-32": (2, 0, "2-03"),
                   "BACKPACK": (2, 0, "3-01")},
    "lyon-part-dieu": {"TSHIRT-M": (10, 2, "R4"), "SNEAKER-42": (5, 1, "S2"),
                       "BACKPACK": (4, 1, "S9")},
}  # fmt: skip


def seed_network(db: Database, stores: list[dict[str, Any]] | None = None,
                 stock: dict[str, dict[str, tuple[int, int, str]]] | None = None,
                 products: list[dict[str, Any]] | None = None) -> None:  # fmt: skip
    """Write stores, products and absolute stock levels (idempotent: re-running resets)."""
    from storelens.cloud.commerce import catalog
    from storelens.cloud.commerce import stores as store_domain

    for s in STORES if stores is None else stores:
        store_domain.upsert_store(db, store_domain.Store(**s))
    items = PRODUCTS if products is None else products
    catalog.upsert_products(db, [catalog.Product(**p) for p in items])
    for store_id, levels in (STOCK if stock is None else stock).items():
        store_domain.set_inventory(
            db,
            store_id,
            [
                store_domain.InventoryLevel(
                    sku=sku, on_hand=on_hand, safety_stock=safety, shelf_location=shelf
                )
                for sku, (on_hand, safety, shelf) in levels.items()
            ],
        )


class ScenarioError(RuntimeError):
    pass


@dataclass
class ScenarioResult:
    orders: dict[str, str] = field(default_factory=dict)  # label -> order ID
    journeys: dict[str, dict[str, Any]] = field(default_factory=dict)


def _place(db: Database, label: str, body: dict[str, Any]) -> str:
    from storelens.cloud.commerce import orders

    order_id, _ = orders.create_order(db, orders.OrderIn(**body), idempotency_key=label)
    return order_id


def _open_task(db: Database, order_id: str, store: str | None = None) -> dict[str, Any]:
    for t in tasks.order_tasks(db, order_id):
        if t["state"] not in ("rejected", "timed_out", "cancelled") and (
            store is None or t["store_id"] == store
        ):
            return t
    raise LookupError(f"order {order_id} has no live task" + (f" at {store}" if store else ""))


def _walk(db: Database, task: dict[str, Any], steps: list[Action], clerk: str, now: float,
          **extra: Any) -> None:  # fmt: skip
    for n, action in enumerate(steps):
        kwargs = extra if action is Action.ship else {}
        workflow.apply(
            db,
            task["id"],
            workflow.Request(action, actor=f"{task['store_id']}/pos-1:{clerk}", **kwargs),
            store_id=task["store_id"],
            config=routing(db),
            now=now + 60 * (n + 1),
        )


def run(db: Database, *, now: float | None = None) -> ScenarioResult:
    """Seed, place six orders, play the stores' part, and return every order's journey."""
    now = time.time() if now is None else now
    if db.scalar("SELECT count(*) FROM fulfillment_orders") or db.scalar(
        "SELECT count(*) FROM online_orders"
    ):
        # Seeding sets absolute stock levels: on a live database it would wipe reservations.
        raise ScenarioError("the scenario needs an empty database (it seeds its own stores)")
    seed_network(db)
    result = ScenarioResult()
    ship_to = {"name": "C. Martin", "address": "12 rue Oberkampf", "city": "Paris",
               "postcode": "75011", "country": "FR", "lat": 48.8646, "lon": 2.3784}  # fmt: skip
    lyon = {"name": "J. Bernard", "address": "3 quai Saint-Antoine", "city": "Lyon",
            "postcode": "69002", "country": "FR", "lat": 45.7625, "lon": 4.8316}  # fmt: skip
    versailles = {"name": "P. Leroy", "address": "8 avenue de Paris", "city": "Versailles",
                  "postcode": "78000", "country": "FR", "lat": 48.8014, "lon": 2.1301}  # fmt: skip
    place = [
        ("rejected-then-rerouted", {"fulfillment_type": "ship", "shipping": ship_to,
                                    "customer_account": "c-martin",
                                    "items": [{"sku": "JEANS-32", "qty": 2}]}),
        ("lyon-delivery", {"fulfillment_type": "ship", "shipping": lyon,
                           "items": [{"sku": "TSHIRT-M", "qty": 1},
                                     {"sku": "SNEAKER-42", "qty": 1}]}),
        ("split-shipment", {"fulfillment_type": "ship", "shipping": ship_to,
                            "items": [{"sku": "SNEAKER-42", "qty": 2},
                                      {"sku": "BACKPACK", "qty": 2}]}),
        ("click-and-collect", {"fulfillment_type": "pickup", "pickup_store": "versailles",
                               "allow_brokering": False, "customer_account": "a-dubois",
                               "items": [{"sku": "BACKPACK", "qty": 1}]}),
        ("unplaceable", {"fulfillment_type": "ship", "shipping": ship_to,
                         "items": [{"sku": "JEANS-32", "qty": 40}]}),
        ("not-accepted-in-time", {"fulfillment_type": "ship", "shipping": versailles,
                                  "items": [{"sku": "TSHIRT-M", "qty": 1}]}),
    ]  # fmt: skip
    for label, body in place:
        result.orders[label] = _place(db, label, body)

    # The nearest store finds the jeans shelf empty: the order moves to the next best store.
    first = _open_task(db, result.orders["rejected-then-rerouted"])
    workflow.apply(
        db,
        first["id"],
        workflow.Request(
            Action.reject,
            actor=f"{first['store_id']}/pos-1:lea",
            reason="not_in_stock",
            note="shelf B1-4 empty",
        ),  # fmt: skip
        store_id=first["store_id"],
        config=routing(db),
        now=now + 120,
    )
    second = _open_task(db, result.orders["rejected-then-rerouted"])
    _walk(db, second, [Action.accept, Action.pick, Action.pack, Action.ship], "sam", now + 180,
          carrier="Colissimo", tracking_number="6A12345678901")  # fmt: skip

    lyon_task = _open_task(db, result.orders["lyon-delivery"])
    _walk(db, lyon_task,
          [Action.accept, Action.pick, Action.pack, Action.ship, Action.deliver], "max",
          now + 300, carrier="Chronopost", tracking_number="XY987654321FR")  # fmt: skip

    for n, part in enumerate(tasks.order_tasks(db, result.orders["split-shipment"])):
        _walk(db, part, [Action.accept, Action.pick, Action.pack], "kim", now + 400 + 300 * n)

    pickup = _open_task(db, result.orders["click-and-collect"])
    _walk(db, pickup, [Action.accept, Action.pick, Action.ready, Action.picked_up], "noa",
          now + 500)  # fmt: skip

    # Nobody at a store accepts within its deadline: the sweeper re-routes what is left.
    sweep(db, now=now + 3 * 3600, config=routing(db))
    for label, order_id in result.orders.items():
        journey = tasks.journey(db, order_id)
        assert journey is not None
        result.journeys[label] = journey
    return result


def render(result: ScenarioResult) -> Any:
    """One rich table per order: every audit row with store, move and reason."""
    from rich.console import Group
    from rich.table import Table

    tables = []
    for label, journey in result.journeys.items():
        store_of = {t["id"]: t["store_id"] for t in journey["tasks"]}
        start = min((a["at"] for a in journey["audit"]), default=0.0)
        title = f"{label}: order {journey['order_id']} ({journey['kind']}) -> {journey['status']}"
        table = Table(title=title, title_justify="left")
        for col in ("t+min", "store", "action", "from -> to", "who", "why"):
            table.add_column(col, overflow="fold")
        for a in journey["audit"]:
            moved = f"{a['from_state'] or '-'} -> {a['to_state'] or '-'}"
            detail = a["detail"] or {}
            why = [a["reason"] or ""]
            if detail.get("note"):
                why.append(f"({detail['note']})")
            if a["action"] == "manual_queue":
                why += [
                    f"{store}: {reasons[-1]}" for store, reasons in detail["considered"].items()
                ]
            table.add_row(f"{(a['at'] - start) / 60:.0f}", store_of.get(a["task_id"], "-"),
                          a["action"], moved, a["actor"], "\n".join(why))  # fmt: skip
        tables.append(table)
    return Group(*tables)
