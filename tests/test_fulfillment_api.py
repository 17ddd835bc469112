"""Fulfillment over HTTP: the POS task queue and moves (store scoping, 409 on a lost race,
idempotency keys, 422 on bad input), pushes to the POS, ops endpoints, the background
deadline sweeper and the scenario command."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from storelens.cloud.api import principals as auth
from storelens.cloud.api.app import create_app
from storelens.cloud.commerce import orders
from storelens.cloud.fulfillment import deadlines, tasks
from storelens.cloud.settings import Settings
from storelens.tools.scenario import seed_network

OBERKAMPF = {"name": "C", "address": "12 rue Oberkampf", "lat": 48.8646, "lon": 2.3784}


@pytest.fixture
def pushed(monkeypatch) -> list[tuple[str, str, dict]]:  # noqa: ANN001
    from storelens.cloud import push

    sent: list[tuple[str, str, dict]] = []
    monkeypatch.setattr(
        push.PushHub, "publish",
        lambda _hub, store, kind, payload: sent.append((store, kind, payload)),
    )  # fmt: skip
    return sent


@pytest.fixture
def client(db, monkeypatch, pushed):  # noqa: ANN001, ANN201
    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", "ab" * 32)
    seed_network(db)
    auth.create_user(db, "boss", "correct horse", "admin")
    auth.create_user(db, "ana", "analyst pass", "analyst")
    settings = Settings.from_env({}, db_url="unused", fulfillment_sweep_s=0)  # swept by hand
    app = create_app(settings, db=db)
    with TestClient(app) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ops(client: TestClient, user: str = "boss", password: str = "correct horse") -> dict:
    r = client.post("/api/v1/auth/login", json={"username": user, "password": password})
    return bearer(r.json()["token"])


def order(db, key: str, items: list[dict]) -> str:  # noqa: ANN001
    body = orders.OrderIn(fulfillment_type="ship", shipping=OBERKAMPF, items=items)
    return orders.create_order(db, body, idempotency_key=key)[0]


def test_pos_task_queue_and_moves(client: TestClient, db, pushed) -> None:  # noqa: ANN001
    till1 = bearer(auth.create_pos_token(db, "paris-rivoli", "till-1"))
    till2 = bearer(auth.create_pos_token(db, "paris-rivoli", "till-2"))
    bercy = bearer(auth.create_pos_token(db, "paris-bercy", "tablet"))
    order_id = order(db, "k1", [{"sku": "JEANS-32", "qty": 2}, {"sku": "TSHIRT-M", "qty": 1}])
    assert [(s, k, p["event"]) for s, k, p in pushed] == [("paris-rivoli", "task", "created")]

    queue = client.get("/api/v1/fulfillment/tasks", headers=till1).json()
    (task,) = queue
    assert task["order_id"] == order_id and task["state"] == "brokered"
    assert task["deadline"] == task["accept_by"] and task["next_actions"][0] == "accept"
    assert [(i["sku"], i["quantity"], i["shelf_location"]) for i in task["items"]] == [
        ("JEANS-32", 2, "B1-4"),
        ("TSHIRT-M", 1, "A3-2"),
    ]
    assert client.get("/api/v1/fulfillment/tasks", headers=bercy).json() == []
    url = f"/api/v1/fulfillment/tasks/{task['id']}"
    assert client.post(f"{url}/accept", headers=bercy).status_code == 404  # not its task
    assert client.get("/api/v1/fulfillment/tasks").status_code == 401

    r = client.post(
        f"{url}/accept", json={"clerk": "lea"}, headers={**till1, "Idempotency-Key": "a1"}
    )
    assert r.status_code == 200 and r.json()["task"]["state"] == "accepted"
    assert pushed[-1][2]["event"] == "accept" and pushed[-1][2]["task"]["state"] == "accepted"
    lost = client.post(f"{url}/accept", json={"clerk": "tom"}, headers=till2)
    assert lost.status_code == 409
    assert "already accepted by paris-rivoli/till-1:lea" in lost.json()["detail"]
    again = client.post(
        f"{url}/accept", json={"clerk": "lea"}, headers={**till1, "Idempotency-Key": "a1"}
    )
    assert again.status_code == 200 and again.json()["replayed"]

    skip = client.post(f"{url}/pack", headers=till1)
    assert skip.status_code == 409 and "allowed next: reject, pick, cancel" in skip.json()["detail"]
    assert client.post(f"{url}/pick", json={"version": 1}, headers=till1).status_code == 409
    assert client.post(f"{url}/pick", json={"version": 2}, headers=till1).status_code == 200
    assert client.post(f"{url}/reject", json={"reason": "bored"}, headers=till1).status_code == 422
    assert client.post(f"{url}/pick", json={"surprise": 1}, headers=till1).status_code == 422
    assert client.post(f"{url}/pick", json={"note": "a\x00b"}, headers=till1).status_code == 422
    assert client.post("/api/v1/fulfillment/tasks/x/pick", headers=till1).status_code == 422

    r = client.post(
        f"{url}/reject",
        json={"reason": "damaged", "sku": "JEANS-32", "quantity": 1, "note": "torn"},
        headers=till1,
    )
    assert r.status_code == 200, r.text
    (new_id,) = r.json()["rerouted_to"]
    (moved,) = client.get("/api/v1/fulfillment/tasks", headers=bercy).json()
    assert moved["id"] == new_id and pushed[-1][0] == "paris-bercy"

    nurl = f"/api/v1/fulfillment/tasks/{new_id}"
    for step in ("accept", "pick", "pack"):
        assert client.post(f"{nurl}/{step}", headers=bercy).status_code == 200
    assert client.post(f"{nurl}/ship", json={"carrier": "UPS"}, headers=bercy).status_code == 422
    shipped = client.post(
        f"{nurl}/ship", json={"carrier": "UPS", "tracking_number": "1Z999"}, headers=bercy
    )
    assert shipped.json()["task"]["state"] == "shipped"

    analyst = ops(client, "ana", "analyst pass")
    journey = client.get(f"/api/v1/fulfillment/orders/{order_id}/journey", headers=analyst).json()
    assert journey["status"] == "shipped"
    assert [a["action"] for a in journey["audit"]] == [
        "route", "accept", "pick", "reject", "route", "accept", "pick", "pack", "ship"
    ]  # fmt: skip
    reject = journey["audit"][3]
    assert reject["actor"] == "paris-rivoli/till-1" and reject["reason"] == "damaged"
    assert reject["detail"]["note"] == "torn"
    assert client.get(f"/api/v1/orders/{order_id}", headers=analyst).json()["status"] == "shipped"
    assert client.get("/api/v1/fulfillment/orders/nope/journey", headers=analyst).status_code == 404
    # POS devices cannot read ops endpoints.
    assert client.get("/api/v1/fulfillment/manual-queue", headers=till1).status_code == 403
    # The messaging service drains the customer-notification outbox.
    admin = ops(client)
    (note,) = client.get("/api/v1/fulfillment/notifications", headers=admin).json()
    assert note["order_id"] == order_id and note["kind"] == "shipped" and "1Z999" in note["message"]
    sent = f"/api/v1/fulfillment/notifications/{note['id']}/sent"
    assert client.post(sent, headers=admin).status_code == 200
    assert client.post(sent, headers=admin).status_code == 200  # a retry is harmless
    assert client.get("/api/v1/fulfillment/notifications", headers=admin).json() == []
    assert (
        client.post("/api/v1/fulfillment/notifications/999/sent", headers=admin).status_code == 404
    )


def test_manual_queue_and_cancel_for_ops(client: TestClient, db) -> None:  # noqa: ANN001
    admin, analyst = ops(client), ops(client, "ana", "analyst pass")
    stuck = order(db, "k1", [{"sku": "JEANS-32", "qty": 40}])
    (entry,) = client.get("/api/v1/fulfillment/manual-queue", headers=analyst).json()
    assert entry["order_id"] == stuck and set(entry["considered"]) >= {"paris-rivoli"}
    url = f"/api/v1/fulfillment/manual-queue/{entry['id']}"
    assert client.post(f"{url}/retry", headers=analyst).status_code == 403
    retry = client.post(f"{url}/retry", headers=admin).json()
    assert retry["task_ids"] == [] and retry["manual_queue_id"] != entry["id"]
    new = f"/api/v1/fulfillment/manual-queue/{retry['manual_queue_id']}"
    r = client.post(f"{new}/dismiss", json={"resolution": "refunded"}, headers=admin)
    assert r.status_code == 200
    assert client.post(f"{new}/dismiss", json={"resolution": "x"}, headers=admin).status_code == 404
    assert client.get("/api/v1/fulfillment/manual-queue", headers=analyst).json() == []

    live = order(db, "k2", [{"sku": "TSHIRT-M", "qty": 1}])
    r = client.post(
        f"/api/v1/fulfillment/orders/{live}/cancel", json={"reason": "customer"}, headers=admin
    )
    assert len(r.json()["cancelled"]) == 1
    assert tasks.journey(db, live)["status"] == "cancelled"


def test_background_sweeper_reroutes_overdue_tasks(db) -> None:  # noqa: ANN001
    seed_network(db)
    order_id = order(db, "k1", [{"sku": "TSHIRT-M", "qty": 1}])
    (task,) = tasks.order_tasks(db, order_id)
    db.execute(
        "UPDATE fulfillment_tasks SET accept_by = ? WHERE id = ?", (time.time() - 1, task["id"])
    )
    sweeper = deadlines.DeadlineSweeper(db, interval_s=0.05)
    sweeper.start()
    try:
        deadline = time.monotonic() + 10
        while tasks.get_task(db, task["id"])["state"] != "timed_out":
            assert time.monotonic() < deadline, "the sweeper never re-routed the task"
            time.sleep(0.05)
    finally:
        sweeper.stop()
    assert len(tasks.order_tasks(db, order_id)) == 2


def test_scenario_command_prints_every_journey(tmp_path) -> None:  # noqa: ANN001
    from storelens.cli import app

    url = f"sqlite:///{tmp_path / 's.db'}"
    result = CliRunner().invoke(app, ["cloud", "scenario", "ship-from-store", "--db", url],
                                env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.output
    for label in ("rejected-then-rerouted", "lyon-delivery", "split-shipment",
                  "click-and-collect", "unplaceable", "not-accepted-in-time"):  # fmt: skip
        assert label in out
    assert "not_in_stock" in out and "time_out" in out and "manual_queue" in out
    assert "-> delivered" in out and "-> picked_up" in out and "-> unfulfillable" in out
    again = CliRunner().invoke(app, ["cloud", "scenario", "ship-from-store", "--db", url])
    assert again.exit_code == 2 and "needs an empty database" in again.output


def test_rules_file_from_settings(db, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from storelens.cloud.fulfillment.rules import RoutingConfigError

    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", "ab" * 32)
    seed_network(db)
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: versailles-only\n    filters: {stores: [versailles]}\n")
    settings = Settings.from_env(
        {"STORELENS_FULFILLMENT_RULES": str(rules)}, db_url="unused", fulfillment_sweep_s=0
    )
    with TestClient(create_app(settings, db=db)):  # the app's rules, not a process global
        order_id = order(db, "k1", [{"sku": "TSHIRT-M", "qty": 1}])
    (task,) = tasks.order_tasks(db, order_id)
    assert task["store_id"] == "versailles" and task["rule"] == "versailles-only"
    rules.write_text("rules:\n  - name: x\n    sort: [cheapest]\n")
    with (
        pytest.raises(RoutingConfigError, match="cheapest"),
        TestClient(create_app(settings, db=db)),
    ):
        pass
