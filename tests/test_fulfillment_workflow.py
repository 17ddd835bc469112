"""The task workflow on both backends: the ship and pickup paths, no skipping, idempotent
repeats, rejection for each reason with re-routing, deadlines, concurrent accepts, a service
restart mid-workflow, and routing on real order creation."""

from __future__ import annotations

import threading

import pytest

from storelens.cloud.db import connect
from storelens.cloud.fulfillment import deadlines, router, tasks, workflow
from storelens.cloud.fulfillment.rules import DEFAULT_CONFIG
from storelens.cloud.fulfillment.states import Action, TaskKind
from storelens.tools.scenario import seed_network

OBERKAMPF = (48.8646, 2.3784)  # nearest: paris-rivoli, then paris-bercy, then versailles
STOCK = {
    "paris-rivoli": {"TSHIRT-M": (5, 1, "A3"), "JEANS-32": (4, 1, "B1")},
    "paris-bercy": {"TSHIRT-M": (9, 1, "T7"), "JEANS-32": (3, 0, "D2")},
    "versailles": {"TSHIRT-M": (2, 0, "1-1"), "BACKPACK": (3, 0, "3-1")},
    "lyon-part-dieu": {"TSHIRT-M": (1, 0, "R4")},
}
T0 = 1_800_000_000.0


@pytest.fixture
def net(db):  # noqa: ANN001, ANN201
    seed_network(db, stock=STOCK)
    return db


def ship(db, order_id: str, lines: dict[str, int]) -> str:  # noqa: ANN001
    out = router.submit_order(
        db, router.OrderToRoute(order_id, lines, destination=OBERKAMPF), now=T0
    )
    assert len(out.task_ids) == 1
    return out.task_ids[0]


def move(
    db,
    task_id: str,
    action: Action,
    actor: str = "rivoli/pos-1:lea",
    *,  # noqa: ANN001
    at: float = T0 + 60,
    **kw,
) -> workflow.TransitionResult:  # noqa: ANN003
    return workflow.apply(db, task_id, workflow.Request(action, actor, **kw), now=at)


def stock(db, store: str, sku: str) -> dict:  # noqa: ANN001
    return db.query_one(
        "SELECT on_hand, reserved, safety_stock FROM inventory WHERE store = ? AND sku = ?",
        (store, sku),
    )


def live_task(db, order_id: str) -> dict:  # noqa: ANN001
    (card,) = [
        t for t in tasks.order_tasks(db, order_id) if t["state"] not in ("rejected", "timed_out")
    ]
    return card


def test_ship_path_end_to_end_with_audit_and_stock(net) -> None:  # noqa: ANN001
    db = net
    task = ship(db, "o1", {"JEANS-32": 2})
    assert stock(db, "paris-rivoli", "JEANS-32") == {"on_hand": 4, "reserved": 2, "safety_stock": 1}
    for action in (Action.accept, Action.pick, Action.pack):
        move(db, task, action)
    with pytest.raises(workflow.InvalidTransition, match="carrier and a tracking number"):
        move(db, task, Action.ship)
    move(db, task, Action.ship, carrier="Colissimo", tracking_number="6A123")
    assert stock(db, "paris-rivoli", "JEANS-32") == {"on_hand": 2, "reserved": 0, "safety_stock": 1}
    move(db, task, Action.deliver, actor="carrier-webhook")
    j = tasks.journey(db, "o1")
    assert j["status"] == "delivered" and j["tasks"][0]["tracking_number"] == "6A123"
    trail = [(a["action"], a["from_state"], a["to_state"], a["actor"]) for a in j["audit"]]
    assert trail == [
        ("route", None, "brokered", "router"),
        ("accept", "brokered", "accepted", "rivoli/pos-1:lea"),
        ("pick", "accepted", "picked", "rivoli/pos-1:lea"),
        ("pack", "picked", "packed", "rivoli/pos-1:lea"),
        ("ship", "packed", "shipped", "rivoli/pos-1:lea"),
        ("deliver", "shipped", "delivered", "carrier-webhook"),
    ]
    assert [n["kind"] for n in j["notifications"]] == ["shipped"]


def test_no_skipping_and_wrong_path_moves_are_refused(net) -> None:  # noqa: ANN001
    db = net
    task = ship(db, "o1", {"TSHIRT-M": 1})
    with pytest.raises(workflow.TransitionConflict, match="cannot pick .* it is brokered"):
        move(db, task, Action.pick)
    move(db, task, Action.accept)
    with pytest.raises(workflow.TransitionConflict, match=r"allowed next: reject, pick, cancel"):
        move(db, task, Action.pack)
    with pytest.raises(workflow.InvalidTransition, match="does not apply to a ship task"):
        move(db, task, Action.ready)
    with pytest.raises(workflow.InvalidTransition, match="reject needs a reason"):
        move(db, task, Action.reject, reason="bored")
    with pytest.raises(workflow.TaskNotFound):
        workflow.apply(db, task, workflow.Request(Action.pick, "x"), store_id="paris-bercy")
    assert tasks.get_task(db, task)["state"] == "accepted"


def test_repeats_do_not_double_apply(net) -> None:  # noqa: ANN001
    db = net
    task = ship(db, "o1", {"JEANS-32": 1})
    for action in (Action.accept, Action.pick, Action.pack):
        move(db, task, action)
    first = move(db, task, Action.ship, request_id="req-9", carrier="UPS", tracking_number="1Z")
    again = move(db, task, Action.ship, request_id="req-9", carrier="UPS", tracking_number="1Z")
    assert not first.replayed and again.replayed
    assert again.task["version"] == first.task["version"]
    assert stock(db, "paris-rivoli", "JEANS-32")["on_hand"] == 3  # consumed once
    # Same clerk, no request ID, task already there: a no-op, not a second audit row.
    assert move(db, task, Action.ship, carrier="UPS", tracking_number="1Z").replayed
    assert len([a for a in tasks.audit_log(db, "o1") if a["action"] == "ship"]) == 1
    with pytest.raises(workflow.TransitionConflict, match="already used to ship"):
        move(db, task, Action.deliver, request_id="req-9")
    with pytest.raises(workflow.TransitionConflict, match="changed since you loaded it"):
        move(db, task, Action.deliver, expected_version=2)


def test_reject_not_in_stock_zeroes_availability_and_reroutes_never_back(net) -> None:  # noqa: ANN001
    db = net
    first = ship(db, "o1", {"JEANS-32": 2})
    result = move(db, first, Action.reject, reason="not_in_stock", note="shelf empty")
    assert tasks.get_task(db, first)["state"] == "rejected"
    level = stock(db, "paris-rivoli", "JEANS-32")
    assert level["on_hand"] - level["reserved"] - level["safety_stock"] == 0
    (second,) = result.rerouted_to
    assert tasks.get_task(db, second)["store_id"] == "paris-bercy"
    reroute = tasks.audit_log(db, "o1")[-1]
    assert (
        reroute["action"] == "route" and "paris-rivoli rejected: not_in_stock" in reroute["reason"]
    )
    assert "already rejected" in reroute["detail"]["passed_over"]["paris-rivoli"][0]
    # Bercy also rejects; Rivoli (which rejected) must not get it back: manual queue.
    result = move(db, second, Action.reject, actor="bercy/pos-2:max", reason="no_capacity")
    assert result.rerouted_to == [] and result.manual_queue_id is not None
    (entry,) = tasks.manual_entries(db)
    assert entry["considered"]["paris-rivoli"][0].startswith("nearby-reliable: already rejected")
    assert tasks.journey(db, "o1")["status"] == "unfulfillable"
    assert stock(db, "paris-bercy", "JEANS-32")["reserved"] == 0  # released


def test_reject_damaged_writes_the_quantity_off(net) -> None:  # noqa: ANN001
    db = net
    first = ship(db, "o1", {"TSHIRT-M": 2})
    move(db, first, Action.accept)
    move(db, first, Action.pick)  # found damaged while picking
    result = move(db, first, Action.reject, reason="damaged", sku="TSHIRT-M", quantity=1)
    assert stock(db, "paris-rivoli", "TSHIRT-M") == {"on_hand": 4, "reserved": 0, "safety_stock": 1}
    assert tasks.get_task(db, result.rerouted_to[0])["store_id"] == "paris-bercy"
    with pytest.raises(workflow.InvalidTransition, match="not on this task"):
        move(db, result.rerouted_to[0], Action.reject, reason="damaged", sku="JEANS-32", quantity=1)


def test_reject_no_capacity_cuts_today_and_steers_new_orders_away(net) -> None:  # noqa: ANN001
    db = net
    first = ship(db, "o1", {"TSHIRT-M": 1})
    result = move(db, first, Action.reject, reason="no_capacity")
    assert tasks.get_task(db, result.rerouted_to[0])["store_id"] == "paris-bercy"
    assert (
        db.scalar(
            "SELECT capacity FROM fulfillment_capacity_cuts WHERE store_id = ?", ("paris-rivoli",)
        )
        == 0
    )
    # A fresh order (no rejection history of its own) still avoids Rivoli today.
    db.execute("DELETE FROM fulfillment_tasks WHERE id = ?", (first,))  # forget the rejection
    ship(db, "o2", {"TSHIRT-M": 1})
    assert live_task(db, "o2")["store_id"] == "paris-bercy"


def test_acceptance_deadline_reroutes_and_sweeps_once(net) -> None:  # noqa: ANN001
    db = net
    first = ship(db, "o1", {"TSHIRT-M": 1})
    deadline = tasks.get_task(db, first)["accept_by"]
    assert deadlines.sweep(db, now=deadline - 1).timed_out == []
    report = deadlines.sweep(db, now=deadline + 1)
    assert report.timed_out == [first] and len(report.rerouted_to) == 1
    assert tasks.get_task(db, first)["state"] == "timed_out"
    assert stock(db, "paris-rivoli", "TSHIRT-M")["reserved"] == 0
    assert tasks.get_task(db, report.rerouted_to[0])["store_id"] == "paris-bercy"
    assert deadlines.sweep(db, now=deadline + 2).timed_out == []  # nothing twice
    # The late clerk at Rivoli gets a clear conflict.
    with pytest.raises(workflow.TransitionConflict, match="it is timed_out"):
        move(db, first, Action.accept, at=deadline + 3)


def test_pickup_path_notifies_and_expires_back_to_stock(net) -> None:  # noqa: ANN001
    db = net
    out = router.submit_order(
        db,
        router.OrderToRoute(
            "p1",
            {"BACKPACK": 2},
            kind=TaskKind.pickup,
            pickup_store="versailles",
            recipient="anna@example.org",
        ),
        now=T0,
    )
    (task,) = out.task_ids
    for action in (Action.accept, Action.pick):
        move(db, task, action)
    with pytest.raises(workflow.InvalidTransition, match="does not apply to a pickup task"):
        move(db, task, Action.pack)
    card = move(db, task, Action.ready, at=T0 + 600).task
    assert card["pickup_by"] == T0 + 600 + DEFAULT_CONFIG.pickup_hold_hours * 3600
    (note,) = tasks.notifications(db, "p1")
    assert note["kind"] == "ready_for_pickup" and note["recipient"] == "anna@example.org"
    assert "versailles" in note["message"]
    report = deadlines.sweep(db, now=card["pickup_by"] + 1)
    assert report.expired == [task]
    assert stock(db, "versailles", "BACKPACK")["reserved"] == 0
    j = tasks.journey(db, "p1")
    assert j["status"] == "cancelled"
    assert [n["kind"] for n in j["notifications"]] == ["ready_for_pickup", "order_cancelled"]


def test_pickup_collected(net) -> None:  # noqa: ANN001
    db = net
    out = router.submit_order(
        db,
        router.OrderToRoute("p1", {"BACKPACK": 1}, kind=TaskKind.pickup, pickup_store="versailles"),
        now=T0,
    )
    for action in (Action.accept, Action.pick, Action.ready, Action.picked_up):
        move(db, out.task_ids[0], action)
    assert stock(db, "versailles", "BACKPACK") == {"on_hand": 2, "reserved": 0, "safety_stock": 0}
    assert tasks.journey(db, "p1")["status"] == "picked_up"


def test_concurrent_accepts_exactly_one_wins(net, db_url: str) -> None:  # noqa: ANN001
    task = ship(net, "o1", {"TSHIRT-M": 1})
    # Each clerk's request goes through its own connection, as two API workers would.
    clerks = [connect(db_url, migrate=False) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def accept(db, who: str) -> None:  # noqa: ANN001
        barrier.wait()
        try:
            workflow.apply(db, task, workflow.Request(Action.accept, who), now=T0 + 60)
            outcomes.append("won")
        except workflow.TransitionConflict as exc:
            outcomes.append(f"409: {exc}")

    threads = [
        threading.Thread(target=accept, args=(c, f"clerk-{i}")) for i, c in enumerate(clerks)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in clerks:
        c.close()
    assert sorted(o[:3] for o in outcomes) == ["409", "won"], outcomes
    assert any("already accepted" in o or "changed by someone else" in o for o in outcomes)
    audit = [a for a in tasks.audit_log(net, "o1") if a["action"] == "accept"]
    assert len(audit) == 1 and tasks.get_task(net, task)["version"] == 2


def test_restart_mid_workflow_loses_nothing(db_url: str) -> None:
    db = connect(db_url)
    seed_network(db, stock=STOCK)
    task = ship(db, "o1", {"JEANS-32": 1})
    move(db, task, Action.accept)
    move(db, task, Action.pick, request_id="pick-1")
    db.close()  # the service stops between two clerk actions

    db = connect(db_url)
    try:
        card = tasks.get_task(db, task)
        assert card["state"] == "picked" and card["version"] == 3
        assert move(db, task, Action.pick, request_id="pick-1").replayed  # retried after restart
        move(db, task, Action.pack)
        move(db, task, Action.ship, carrier="DHL", tracking_number="JD01")
        assert [a["action"] for a in tasks.audit_log(db, "o1")] == [
            "route",
            "accept",
            "pick",
            "pack",
            "ship",
        ]
        assert stock(db, "paris-rivoli", "JEANS-32") == {
            "on_hand": 3,
            "reserved": 0,
            "safety_stock": 1,
        }
    finally:
        db.close()


def test_orders_are_routed_when_created(net) -> None:  # noqa: ANN001
    from storelens.cloud.commerce import orders

    db = net
    body = orders.OrderIn(
        fulfillment_type="ship",
        customer_account="web-42",
        shipping=orders.ShippingAddress(
            name="C", address="12 rue Oberkampf", lat=OBERKAMPF[0], lon=OBERKAMPF[1]
        ),
        items=[orders.OrderItem(sku="TSHIRT-M", qty=1), orders.OrderItem(sku="TSHIRT-M", qty=1)],
    )
    order_id, created = orders.create_order(db, body, idempotency_key="k1")
    assert created and orders.get_order(db, order_id)["status"] == "brokered"
    (card,) = tasks.order_tasks(db, order_id)
    assert card["store_id"] == "paris-rivoli" and card["items"][0]["quantity"] == 2
    assert orders.create_order(db, body, idempotency_key="k1") == (order_id, False)
    assert len(tasks.order_tasks(db, order_id)) == 1
    move(db, card["id"], Action.accept)
    assert orders.get_order(db, order_id)["status"] == "in_fulfillment"
    assert (
        db.scalar("SELECT recipient FROM fulfillment_orders WHERE order_id = ?", (order_id,))
        == "web-42"
    )


def test_expired_pickup_is_reoffered_when_configured(net) -> None:  # noqa: ANN001
    db = net
    reoffer = DEFAULT_CONFIG.model_copy(update={"pickup_expiry": "reoffer"})
    out = router.submit_order(
        db,
        router.OrderToRoute("p1", {"BACKPACK": 1}, kind=TaskKind.pickup, pickup_store="versailles"),
        now=T0,
    )
    (task,) = out.task_ids
    for action in (Action.accept, Action.pick, Action.ready):
        workflow.apply(db, task, workflow.Request(action, "clerk"), config=reoffer, now=T0)
    report = deadlines.sweep(db, now=T0 + 73 * 3600, config=reoffer)
    assert report.expired == [task] and len(report.rerouted_to) == 1
    again = tasks.get_task(db, report.rerouted_to[0])
    assert again["store_id"] == "versailles" and again["state"] == "brokered"
    assert stock(db, "versailles", "BACKPACK")["reserved"] == 1  # released, then held again
    kinds = [n["kind"] for n in tasks.notifications(db, "p1")]
    assert kinds == ["ready_for_pickup", "pickup_expired"]
    assert tasks.journey(db, "p1")["status"] == "brokered"


def test_forget_me_drops_the_customer_from_fulfillment(net) -> None:  # noqa: ANN001
    from storelens.cloud.commerce import members, orders
    from storelens.pseudonym import PseudonymKey

    db = net
    member = members.enroll(
        db, PseudonymKey("k1", b"k" * 32),
        members.Enrollment(card_number="4000123412341234", account_id="web-7"),
    )  # fmt: skip
    body = orders.OrderIn(
        fulfillment_type="pickup", pickup_store="versailles", customer_account="web-7",
        items=[orders.OrderItem(sku="BACKPACK", qty=1)],
    )  # fmt: skip
    order_id, _ = orders.create_order(db, body)
    (card,) = tasks.order_tasks(db, order_id)
    for action in (Action.accept, Action.pick, Action.ready):
        move(db, card["id"], action)
    assert tasks.notifications(db, order_id)[0]["recipient"] == "web-7"
    members.forget(db, member["id"])
    assert tasks.notifications(db, order_id)[0]["recipient"] is None
    assert (
        db.scalar("SELECT recipient FROM fulfillment_orders WHERE order_id = ?", (order_id,))
        is None
    )
    assert tasks.get_task(db, card["id"])["state"] == "ready_for_pickup"  # the work goes on


def test_a_deadlocked_move_runs_again(net, monkeypatch) -> None:  # noqa: ANN001
    from psycopg.errors import DeadlockDetected

    task = ship(net, "o1", {"TSHIRT-M": 1})
    real, calls = workflow._apply_locked, []

    def deadlock_once(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 1:
            raise DeadlockDetected("deadlock detected")
        return real(*args, **kw)

    monkeypatch.setattr(workflow, "_apply_locked", deadlock_once)
    assert move(net, task, Action.accept).task["state"] == "accepted" and len(calls) == 2
