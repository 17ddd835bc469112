"""Routing: each rule's filter and sort, fall-through, split, the manual queue, stock
reservation, and the configuration file; decisions unit-tested, then end to end on both
storage backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storelens.cloud.fulfillment import router, tasks
from storelens.cloud.fulfillment.rules import (
    RoutingConfig,
    RoutingConfigError,
    RoutingRule,
    RuleFilters,
    SortKey,
    StoreCandidate,
    decide,
    great_circle_km,
    load_config,
)
from storelens.cloud.fulfillment.states import TaskKind
from storelens.tools.scenario import seed_network

PARIS = (48.8566, 2.3522)


def store(
    sid: str,
    lat: float,
    lon: float,
    *,
    stock: dict[str, int] | None = None,
    capacity: int = 10,
    priority: int = 0,
    rejection_rate: float = 0.0,
) -> StoreCandidate:
    return StoreCandidate(sid, lat, lon, capacity, priority, rejection_rate, stock or {"A": 5})


NEAR = store("near", 48.86, 2.35)  # ~0.4 km from PARIS
MID = store("mid", 48.80, 2.13)  # Versailles, ~17 km
FAR = store("far", 45.76, 4.86)  # Lyon, ~392 km


def one_rule(**kw: object) -> RoutingConfig:
    filters = kw.pop("filters", RuleFilters())
    return RoutingConfig(rules=[RoutingRule(name="r", filters=filters, **kw)])  # type: ignore[arg-type]


def test_great_circle_distance_matches_known_city_pair() -> None:
    # Paris - London is 343.5 km on the great circle.
    assert great_circle_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343.5, abs=1.0)
    assert great_circle_km(*PARIS, *PARIS) == 0.0


def test_distance_rule_filters_by_maximum_and_sorts_nearest_first() -> None:
    cfg = one_rule(filters=RuleFilters(max_distance_km=50), sort=[SortKey.distance])
    d = decide({"A": 1}, [FAR, MID, NEAR], cfg, destination=PARIS)
    assert [a.store_id for a in d.allocations] == ["near"]
    assert d.allocations[0].distance_km == pytest.approx(0.4, abs=0.3)
    assert "far" in d.considered() and "km away, rule allows 50 km" in d.considered()["far"][0]


def test_inventory_balance_prefers_the_deepest_shelf() -> None:
    shallow = store("shallow", 48.86, 2.35, stock={"A": 2, "B": 9})
    deep = store("deep", 48.80, 2.13, stock={"A": 8, "B": 8})
    cfg = one_rule(sort=[SortKey.inventory_balance, SortKey.distance])
    d = decide({"A": 2, "B": 1}, [shallow, deep], cfg, destination=PARIS)
    assert d.allocations[0].store_id == "deep"


def test_priority_sort_prefers_the_higher_configured_priority() -> None:
    low = store("low", 48.86, 2.35, priority=0)
    high = store("high", 45.76, 4.86, priority=5)
    d = decide({"A": 1}, [low, high], one_rule(sort=[SortKey.priority]), destination=PARIS)
    assert d.allocations[0].store_id == "high"


def test_available_to_promise_below_the_quantity_disqualifies() -> None:
    empty = store("near", 48.86, 2.35, stock={"A": 1})
    d = decide({"A": 2}, [empty, MID], one_rule(), destination=PARIS)
    assert d.allocations[0].store_id == "mid"
    assert "A (needs 2, available 1)" in d.considered()["near"][0]


def test_capacity_zero_takes_nothing() -> None:
    closed = store("near", 48.86, 2.35, capacity=0)
    d = decide({"A": 1}, [closed, MID], one_rule(), destination=PARIS)
    assert d.allocations[0].store_id == "mid"
    assert "no capacity today" in d.considered()["near"][0]


def test_rejection_rate_filter() -> None:
    flaky = store("near", 48.86, 2.35, rejection_rate=0.6)
    cfg = one_rule(filters=RuleFilters(max_rejection_rate=0.25))
    d = decide({"A": 1}, [flaky, MID], cfg, destination=PARIS)
    assert d.allocations[0].store_id == "mid"
    assert "rejection rate 60%" in d.considered()["near"][0]


def test_fall_through_to_the_next_rule_when_none_qualifies() -> None:
    cfg = RoutingConfig(
        rules=[
            RoutingRule(name="local", filters=RuleFilters(max_distance_km=5)),
            RoutingRule(name="national", sort=[SortKey.distance]),
        ]
    )
    d = decide({"A": 1}, [MID, FAR], cfg, destination=PARIS)
    assert d.rule == "national" and d.allocations[0].store_id == "mid"
    assert any(v.rule == "local" for v in d.verdicts)


def test_split_only_when_allowed_and_needed() -> None:
    a = store("a", 48.86, 2.35, stock={"A": 2})
    b = store("b", 48.80, 2.13, stock={"B": 1, "A": 1})
    whole = store("whole", 45.76, 4.86, stock={"A": 3, "B": 3})
    lines = {"A": 3, "B": 1}
    no_split = RoutingConfig(
        rules=[RoutingRule(name="near", filters=RuleFilters(max_distance_km=50))]
    )
    assert not decide(lines, [a, b], no_split, destination=PARIS).placed
    split = RoutingConfig(
        rules=[RoutingRule(name="near", filters=RuleFilters(max_distance_km=50), split=True)]
    )
    d = decide(lines, [a, b], split, destination=PARIS)
    assert {x.store_id: x.lines for x in d.allocations} == {"a": {"A": 2}, "b": {"A": 1, "B": 1}}
    # Not needed: one store holds everything, so no split even under a split rule.
    d = decide(lines, [a, b, whole], one_rule(split=True), destination=PARIS)
    assert [x.store_id for x in d.allocations] == ["whole"]
    # Pickups never split.
    assert not decide(lines, [a, b], split, destination=PARIS, allow_split=False).placed


def test_split_respects_the_store_limit() -> None:
    stores = [store(f"s{i}", 48.86 + i / 100, 2.35, stock={"A": 1}) for i in range(4)]
    assert not decide(
        {"A": 4}, stores, one_rule(split=True, max_stores=3), destination=PARIS
    ).placed
    assert (
        len(
            decide(
                {"A": 4}, stores, one_rule(split=True, max_stores=4), destination=PARIS
            ).allocations
        )
        == 4
    )


def test_excluded_stores_never_get_the_order_back() -> None:
    d = decide(
        {"A": 1}, [NEAR, MID], one_rule(), destination=PARIS, excluded={"near": "rejected it"}
    )
    assert d.allocations[0].store_id == "mid"


def test_no_rule_places_it_every_store_has_a_reason() -> None:
    d = decide({"A": 99}, [NEAR, MID, FAR], one_rule(split=True), destination=PARIS)
    assert not d.placed
    assert set(d.considered()) == {"near", "mid", "far"}


def test_config_files_are_validated(tmp_path: Path) -> None:
    good = tmp_path / "rules.yaml"
    good.write_text(
        "rules:\n  - name: local\n    filters: {max_distance_km: 30}\n"
        "    sort: [distance, priority]\n  - name: anywhere\n    split: true\n"
    )
    cfg = load_config(good)
    assert [r.name for r in cfg.rules] == ["local", "anywhere"] and cfg.rules[1].split
    as_json = tmp_path / "rules.json"
    as_json.write_text(json.dumps({"rules": [{"name": "x", "sort": ["inventory_balance"]}]}))
    assert load_config(as_json).rules[0].sort == [SortKey.inventory_balance]
    for text, needle in [
        ("rules:\n  - name: a\n    filterz: {}\n", "filterz"),
        ("rules:\n  - name: a\n  - name: a\n", "repeated: a"),
        ("rules:\n  - name: a\n    sort: [cheapest]\n", "cheapest"),
        ("rules: []\n", "rules"),
        ("rules: [", "not valid"),
    ]:
        good.write_text(text)
        with pytest.raises(RoutingConfigError, match=needle):
            load_config(good)
    with pytest.raises(RoutingConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


# -- end to end on the database -------------------------------------------------------


STOCK = {
    "paris-rivoli": {"TSHIRT-M": (5, 1, "A3"), "JEANS-32": (1, 0, "B1")},
    "paris-bercy": {"TSHIRT-M": (9, 1, "T7"), "JEANS-32": (2, 0, "D2")},
    "versailles": {"TSHIRT-M": (2, 0, "1-1"), "BACKPACK": (3, 0, "3-1")},
    "lyon-part-dieu": {"TSHIRT-M": (50, 0, "R4"), "JEANS-32": (50, 0, "R5")},
}


def submit(db, order_id: str, lines: dict[str, int], dest=(48.8646, 2.3784), **kw):  # noqa: ANN001, ANN201
    return router.submit_order(db, router.OrderToRoute(order_id, lines, destination=dest, **kw))


def atp(db, store_id: str, sku: str) -> int:  # noqa: ANN001
    return db.scalar(
        "SELECT on_hand - reserved - safety_stock FROM inventory WHERE store = ? AND sku = ?",
        (store_id, sku),
    )


def test_routing_reserves_stock_and_creates_a_brokered_task(db) -> None:  # noqa: ANN001
    seed_network(db, stock=STOCK)
    before = atp(db, "paris-rivoli", "TSHIRT-M")
    out = submit(db, "o1", {"TSHIRT-M": 2})
    assert out.rule == "nearby-reliable" and len(out.task_ids) == 1
    (card,) = tasks.order_tasks(db, "o1")
    assert card["store_id"] == "paris-rivoli" and card["state"] == "brokered"
    assert card["items"][0] == {
        "sku": "TSHIRT-M",
        "quantity": 2,
        "name": "Organic T-shirt M",
        "shelf_location": "A3",
    }
    assert card["deadline"] == pytest.approx(card["created_at"] + 60 * 60)
    assert atp(db, "paris-rivoli", "TSHIRT-M") == before - 2
    # The webhook replays: nothing is routed or reserved twice.
    again = submit(db, "o1", {"TSHIRT-M": 2})
    assert again.already_known and again.task_ids == out.task_ids
    assert atp(db, "paris-rivoli", "TSHIRT-M") == before - 2


def test_open_tasks_count_against_capacity(db) -> None:  # noqa: ANN001
    seed_network(db, stock=STOCK)
    db.execute("UPDATE stores SET fulfillment_capacity = 1 WHERE id = 'paris-rivoli'")
    submit(db, "o1", {"TSHIRT-M": 1})
    submit(db, "o2", {"TSHIRT-M": 1})
    stores_of = {o: tasks.order_tasks(db, o)[0]["store_id"] for o in ("o1", "o2")}
    assert stores_of == {"o1": "paris-rivoli", "o2": "paris-bercy"}


def test_recent_rejections_steer_orders_away(db) -> None:  # noqa: ANN001
    seed_network(db, stock=STOCK)
    from storelens.cloud.fulfillment import workflow
    from storelens.cloud.fulfillment.states import Action

    out = submit(db, "o1", {"TSHIRT-M": 1})
    workflow.apply(
        db, out.task_ids[0], workflow.Request(Action.reject, "clerk", reason="no_capacity")
    )
    db.execute("DELETE FROM fulfillment_capacity_cuts")  # only the rejection rate remains
    submit(db, "o2", {"TSHIRT-M": 1})
    # paris-rivoli is nearest but rejected 1 of its 1 recent tasks (> 30% in the first rule).
    assert tasks.order_tasks(db, "o2")[0]["store_id"] == "paris-bercy"


def test_split_order_reserves_at_each_store(db) -> None:  # noqa: ANN001
    seed_network(db, stock=STOCK)
    out = submit(db, "o1", {"JEANS-32": 3, "BACKPACK": 1})
    assert out.rule == "regional-split"
    parts = {
        t["store_id"]: {i["sku"]: i["quantity"] for i in t["items"]}
        for t in tasks.order_tasks(db, "o1")
    }
    assert parts == {
        "paris-rivoli": {"JEANS-32": 1},
        "paris-bercy": {"JEANS-32": 2},
        "versailles": {"BACKPACK": 1},
    }
    assert atp(db, "paris-rivoli", "JEANS-32") == 0 and atp(db, "paris-bercy", "JEANS-32") == 0


def test_no_split_when_the_customer_wants_one_parcel(db) -> None:  # noqa: ANN001
    seed_network(db, stock=STOCK)
    out = submit(db, "o1", {"JEANS-32": 3, "BACKPACK": 1}, allow_brokering=False)
    assert out.task_ids == [] and out.manual_queue_id is not None


def test_unplaceable_order_goes_to_the_manual_queue_with_reasons(db) -> None:  # noqa: ANN001
    seed_network(db, stock=STOCK)
    out = submit(db, "o1", {"BACKPACK": 10})
    assert out.task_ids == [] and out.manual_queue_id is not None
    (entry,) = tasks.manual_entries(db)
    assert entry["order_id"] == "o1" and entry["lines"] == {"BACKPACK": 10}
    assert "no routing rule could place the order" in entry["reason"]
    assert set(entry["considered"]) == {
        "paris-rivoli",
        "paris-bercy",
        "versailles",
        "lyon-part-dieu",
    }
    assert any("BACKPACK (needs 10, available 3)" in r for r in entry["considered"]["versailles"])
    assert atp(db, "versailles", "BACKPACK") == 3  # nothing reserved
    # Stock arrives; ops retry and the order is placed.
    db.execute("UPDATE inventory SET on_hand = 20 WHERE store = 'versailles' AND sku = 'BACKPACK'")
    retried = router.retry_manual(db, entry["id"], actor="ops-anna")
    assert len(retried.task_ids) == 1 and tasks.manual_entries(db) == []
    assert tasks.journey(db, "o1")["status"] == "brokered"


def test_pickup_stays_at_the_chosen_store_unless_brokering_is_allowed(db) -> None:  # noqa: ANN001
    seed_network(db, stock=STOCK)
    out = submit(
        db,
        "p1",
        {"JEANS-32": 2},
        dest=None,
        kind=TaskKind.pickup,
        pickup_store="versailles",
        allow_brokering=False,
    )
    assert out.manual_queue_id is not None  # Versailles has no jeans, no brokering allowed
    out = submit(
        db,
        "p2",
        {"JEANS-32": 2},
        dest=None,
        kind=TaskKind.pickup,
        pickup_store="versailles",
        allow_brokering=True,
    )
    (card,) = tasks.order_tasks(db, "p2")
    assert card["store_id"] == "paris-bercy" and card["kind"] == "pickup"  # nearest with stock
    out = submit(db, "p3", {"TSHIRT-M": 1}, kind=TaskKind.pickup)  # "nearest store" pickup
    assert tasks.order_tasks(db, "p3")[0]["store_id"] == "paris-rivoli"


def test_bad_orders_get_clear_errors_and_leave_nothing(db) -> None:  # noqa: ANN001
    seed_network(db, stock=STOCK)
    with pytest.raises(router.OrderError, match="positive integer"):
        submit(db, "x1", {"TSHIRT-M": 0})
    with pytest.raises(router.OrderError, match="shipping coordinates"):
        submit(db, "x2", {"TSHIRT-M": 1}, dest=None)
    with pytest.raises(router.OrderError, match="unknown pickup store"):
        submit(db, "x3", {"TSHIRT-M": 1}, kind=TaskKind.pickup, pickup_store="atlantis")
    assert db.scalar("SELECT count(*) FROM fulfillment_orders") == 0


def test_concurrent_routing_never_oversells_and_reservations_match_tasks(db_url: str) -> None:
    from storelens.cloud.db import connect
    from storelens.tools.bench.routing import run_bench

    # Few SKUs and shallow stock: the threads fight over the same last units.
    result = run_bench(db_url, stores=6, skus=8, orders=48, threads=3)
    assert result["concurrent"]["errors"] == [] and result["oversold_rows"] == 0
    db = connect(db_url, migrate=False)
    try:
        reserved = {
            (r["store"], r["sku"]): r["reserved"]
            for r in db.query("SELECT store, sku, reserved FROM inventory WHERE reserved > 0")
        }
        promised = {
            (r["store_id"], r["sku"]): r["q"]
            for r in db.query(
                "SELECT t.store_id, i.sku, sum(i.quantity) AS q FROM fulfillment_tasks t"
                " JOIN fulfillment_task_items i ON i.task_id = t.id"
                " WHERE t.state = 'brokered' GROUP BY t.store_id, i.sku"
            )
        }
        assert reserved == promised
        assert db.scalar("SELECT count(*) FROM fulfillment_orders") == 96
    finally:
        db.close()


def test_documented_example_rules_load() -> None:
    example = Path(__file__).resolve().parent.parent / "docs" / "fulfillment-rules.example.yaml"
    cfg = load_config(example)
    assert cfg.rules[-1].filters.stores == ["paris-rivoli", "lyon-part-dieu"]


def test_concurrent_routing_never_exceeds_a_stores_daily_capacity(db_url: str) -> None:
    """Threads (each with its own connection) race for a store's last task slots: the
    capacity is claimed behind the store's row lock, so exactly ``capacity`` tasks exist."""
    import threading

    from storelens.cloud.db import connect

    db = connect(db_url)
    try:
        seed_network(
            db,
            stores=[{"id": "solo", "name": "Solo", "lat": 48.86, "lon": 2.35,
                     "fulfillment_capacity": 3, "acceptance_deadline_min": 60}],
            stock={"solo": {"A": (1000, 0, "A1")}},
            products=[{"sku": "A", "name": "A", "category": "c", "price": 1.0}],
        )  # fmt: skip
        errors: list[str] = []

        def worker(t: int) -> None:
            try:
                for i in range(5):
                    order = router.OrderToRoute(f"o{t}-{i}", {"A": 1}, destination=PARIS)
                    router.submit_order(db, order)
            except Exception as exc:  # reported below, not swallowed
                errors.append(repr(exc))

        pool = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        assert errors == []
        assert db.scalar("SELECT count(*) FROM fulfillment_tasks WHERE store_id = 'solo'") == 3
        assert db.scalar("SELECT count(*) FROM fulfillment_manual_queue") == 17
        assert db.scalar("SELECT reserved FROM inventory WHERE store = 'solo'") == 3
    finally:
        db.close()
