"""The API skeleton: auth (ops roles, POS store scoping), health, metrics, errors, OpenAPI."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient

from storelens.cloud.api import principals as auth
from storelens.cloud.api.app import create_app
from storelens.cloud.commerce import stores
from storelens.cloud.ingest import dead_letters, device_registry
from storelens.cloud.settings import Settings
from storelens.contract import topics
from storelens.tools.bench.ingest import envelopes, realistic_events


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Production scrypt cost is ~50 ms a hash; tests hash dozens of passwords.
    monkeypatch.setitem(auth._SCRYPT, "n", 2**8)


KEY_HEX = "ab" * 32


@pytest.fixture
def client(db, monkeypatch):
    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", KEY_HEX)
    app = create_app(Settings.from_env({}, db_url="unused"), db=db)
    stores.upsert_store(db, stores.Store(id="s1", name="One", lat=48.85, lon=2.35))
    stores.upsert_store(db, stores.Store(id="s2", name="Two", lat=45.76, lon=4.83))
    auth.create_user(db, "boss", "correct horse", "admin")
    auth.create_user(db, "ana", "analyst pass", "analyst")
    with TestClient(app) as c:
        yield c


def login(client: TestClient, user: str, password: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def test_health_and_readiness(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"


def test_login_roles_and_token_storage(client, db) -> None:
    assert (
        client.post("/api/v1/auth/login", json={"username": "boss", "password": "nope"}).status_code
        == 401
    )
    assert (
        client.post("/api/v1/auth/login", json={"username": "ghost", "password": "x"}).status_code
        == 401
    )
    admin = login(client, "boss", "correct horse")
    analyst = login(client, "ana", "analyst pass")
    assert client.get("/api/v1/auth/me", headers=admin).json()["role"] == "admin"
    # Only hashes are stored: the bearer value is not in the table.
    token = admin["Authorization"].split()[1]
    assert db.scalar("SELECT count(*) FROM auth_tokens WHERE token_sha256 = ?", (token,)) == 0
    assert "correct horse" not in str(db.query("SELECT * FROM ops_users"))
    # Analysts read, admins write.
    assert client.get("/api/v1/devices", headers=analyst).status_code == 200
    body = {"store": "s1", "device": "cam-1"}
    assert client.post("/api/v1/devices", json=body, headers=analyst).status_code == 403
    assert client.post("/api/v1/devices", json=body, headers=admin).status_code == 201
    assert client.get("/api/v1/devices").status_code == 401
    assert (
        client.get("/api/v1/devices", headers={"Authorization": "Bearer junk"}).status_code == 401
    )


def test_pos_token_is_scoped_to_its_store(client) -> None:
    admin = login(client, "boss", "correct horse")
    r = client.post(
        "/api/v1/auth/pos-tokens", json={"store": "s1", "device_name": "till-1"}, headers=admin
    )
    assert r.status_code == 201
    pos = {"Authorization": f"Bearer {r.json()['token']}"}
    assert client.get("/api/v1/stores/s1/inventory", headers=pos).status_code == 200
    assert (
        client.post(
            "/api/v1/stores/s2/inventory/adjustments",
            json={"changes": [{"sku": "A1", "delta_on_hand": 5}]},
            headers=pos,
        ).status_code
        == 403
    )
    # POS tokens are not ops tokens.
    assert client.get("/api/v1/devices", headers=pos).status_code == 403
    assert (
        client.post(
            "/api/v1/auth/pos-tokens", json={"store": "nope", "device_name": "x"}, headers=admin
        ).status_code
        == 400
    )
    assert client.delete("/api/v1/auth/pos-tokens/s1/till-1", headers=admin).json() == {
        "revoked": 1
    }
    assert client.get("/api/v1/stores/s1/inventory", headers=pos).status_code == 401


def test_errors_404_422_and_pagination(client) -> None:
    admin = login(client, "boss", "correct horse")
    assert client.get("/api/v1/orders/o_missing", headers=admin).status_code == 404
    assert client.get("/api/v1/members/m_missing", headers=admin).status_code == 404
    assert client.get("/api/v1/stores/zz", headers=admin).status_code == 404
    bad = client.put(
        "/api/v1/stores/s3", json={"id": "s3", "name": "x", "lat": 123, "lon": 0}, headers=admin
    )
    assert bad.status_code == 422
    page = client.get("/api/v1/stores?limit=1", headers=admin).json()
    assert [s["id"] for s in page["items"]] == ["s1"] and page["next_offset"] == 1
    page = client.get("/api/v1/stores?limit=1&offset=1", headers=admin).json()
    assert [s["id"] for s in page["items"]] == ["s2"]
    assert client.get("/api/v1/stores?limit=0", headers=admin).status_code == 422


def test_metrics_and_openapi_documents_fields(client, db) -> None:
    dead_letters.dead_letter(db, "storelens/v1/s1/x/events", "bad_json", "x", b"{")
    text = client.get("/metrics").text
    assert 'storelens_dead_letters{reason="bad_json"} 1.0' in text
    assert "storelens_http_request_seconds" in text
    assert "storelens_ingest_events_total" in text
    spec = client.get("/openapi.json").json()
    assert (
        "/api/v1/orders" in spec["paths"] and "/api/v1/members/{member_id}/profile" in spec["paths"]
    )
    member = spec["components"]["schemas"]["MemberOut"]["properties"]
    assert member["tracking"]["description"]


def test_in_process_ingest_worker(db, broker) -> None:
    stores.upsert_store(db, stores.Store(id="s1", name="One", lat=48.85, lon=2.35))
    device_registry.register_device(db, "s1", "box-1")
    settings = Settings(
        db_url="unused",
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        ingest_in_process=True,
        mqtt_client_id="api-ingest",
    )
    with TestClient(create_app(settings, db=db)) as c:
        worker = c.app.state.ingest
        assert worker.wait_ready()
        assert c.get("/readyz").json()["checks"]["ingest"] == "ok"
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="api-test-pub")
        pub.connect(broker.host, broker.port)
        pub.loop_start()
        raw = envelopes("s1", "box-1", realistic_events("box-1", 50), 50)[0]
        pub.publish(topics.events("s1", "box-1"), raw, qos=1).wait_for_publish(10)
        pub.disconnect()
        pub.loop_stop()
        deadline = time.monotonic() + 20
        while db.scalar("SELECT count(*) FROM events") < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert db.scalar("SELECT count(*) FROM events") == 50
        assert "storelens_ingest_events_total" in c.get("/metrics").text
    assert not worker.healthy()  # stopped with the app


def test_api_tokens_logout_and_missing_card_key(client, db, monkeypatch) -> None:
    admin = login(client, "boss", "correct horse")
    r = client.post("/api/v1/auth/api-tokens", json={"username": "ana"}, headers=admin)
    assert r.status_code == 201 and r.json()["expires_at"] is None
    integration = {"Authorization": f"Bearer {r.json()['token']}"}
    assert client.get("/api/v1/auth/me", headers=integration).json()["subject"] == "ana"
    assert (
        client.post(
            "/api/v1/auth/api-tokens", json={"username": "nobody"}, headers=admin
        ).status_code
        == 404
    )
    assert client.post("/api/v1/auth/logout", headers=integration).status_code == 204
    assert client.get("/api/v1/auth/me", headers=integration).status_code == 401
    # Without a pseudonym key the member endpoints say so instead of failing obscurely.
    monkeypatch.delenv("STORELENS_PSEUDONYM_KEY")
    client.app.state.settings = Settings.from_env({}, db_url="unused")
    r = client.post("/api/v1/members", json={"card_number": "12345678"}, headers=admin)
    assert r.status_code == 503 and "not configured" in r.json()["detail"]


def test_password_hashes_carry_their_cost_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap = auth.hash_password("correct horse")  # made at the test fixture's cost
    monkeypatch.setitem(auth._SCRYPT, "n", 2**14)  # the production cost
    stored = auth.hash_password("correct horse")
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", 2**14, 8, 1)
    assert len(bytes.fromhex(salt)) == 16 and stored != auth.hash_password("correct horse")
    assert auth.check_password("correct horse", stored)
    assert auth.check_password("correct horse", cheap)  # older parameters still verify
    assert not auth.check_password("correct horsE", stored)
    assert not auth.check_password("x", "not$a$hash")


CORE_TAGS = {"auth", "devices", "members", "catalog", "stores", "orders", "sales"}


def test_openapi_describes_every_field_of_the_core_api(client) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    todo: list[dict] = []
    for path in spec["paths"].values():
        for op in path.values():
            if CORE_TAGS & set(op.get("tags", [])):
                todo.append(op)
    seen: set[str] = set()
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            name = ref.rsplit("/", 1)[-1]
            if ref.startswith("#/components/schemas/") and name not in seen:
                seen.add(name)
                todo.append(schemas[name])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    assert {"MemberOut", "OrderIn", "SaleOut", "DeviceOut", "InventoryLevel"} <= seen
    undocumented = [
        f"{name}.{field}"
        for name in sorted(seen - {"HTTPValidationError", "ValidationError"})
        for field, prop in schemas[name].get("properties", {}).items()
        if "description" not in prop
    ]
    assert undocumented == []
