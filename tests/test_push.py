"""Push to POS devices: SSE to the web POS (real HTTP server), the same messages on MQTT for
native apps (real broker), fan-out across API replicas, keep-alives and Last-Event-ID resume."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Iterator

import httpx
import paho.mqtt.client as mqtt
import pytest
import uvicorn
from conftest import free_port, wait_port
from personalization_chain import KEY_HEX, build_chain

from storelens.cloud import push
from storelens.cloud.api.app import create_app
from storelens.cloud.db import connect
from storelens.cloud.services import Services
from storelens.cloud.settings import Settings
from storelens.contract import topics


@pytest.fixture
def hub() -> push.PushHub:
    return push.PushHub()


@pytest.fixture
def server(tmp_path, monkeypatch, hub) -> Iterator[tuple[str, dict[str, str]]]:
    """A real uvicorn server (SSE needs a real socket) and the POS tokens of two stores."""
    yield from _server(tmp_path, monkeypatch, hub)


@pytest.fixture
def short_server(tmp_path, monkeypatch, hub) -> Iterator[tuple[str, dict[str, str]]]:
    """Streams that re-check their token every 0.2 s and live at most 2 s."""
    yield from _server(tmp_path, monkeypatch, hub, push_token_check_s=0.2, push_stream_max_s=2.0)


def _server(tmp_path, monkeypatch, hub, **settings) -> Iterator[tuple[str, dict[str, str]]]:  # noqa: ANN001
    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", KEY_HEX)
    db = connect(f"sqlite:///{tmp_path / 'push.db'}")
    chain = build_chain(db)
    # One process: every push in these tests is raised here, so none goes through a broker.
    config = Settings.from_env({}, db_url="unused", push_mqtt=False, **settings)
    app = create_app(config, services=Services(config, db, hub))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_port(port)
    yield f"http://127.0.0.1:{port}", chain.tokens
    srv.should_exit = True
    thread.join(10)
    db.close()


def _read_sse(url: str, token: str, out: queue.Queue, stop: threading.Event,
              last_event_id: str | None = None) -> None:  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "GET", f"{url}/api/v1/pos/stream", params={"keepalive_s": 0.2}, headers=headers
        ) as resp,
    ):
        out.put(("status", resp.status_code, resp.headers.get("content-type", "")))
        event: dict[str, str] = {}
        for line in resp.iter_lines():
            if stop.is_set():
                return
            if line.startswith(":"):
                out.put(("comment", line[1:].strip(), ""))
            elif line == "":
                if "data" in event:
                    out.put(("event", event.get("event", ""), event))
                event = {}
            else:
                field, _, value = line.partition(":")
                event[field] = value.strip()
    out.put(("end", "", ""))


def _wait(q: queue.Queue, kind: str, timeout: float = 10.0) -> tuple:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            item = q.get(timeout=0.2)
        except queue.Empty:
            continue
        if item[0] == kind:
            return item
    raise AssertionError(f"no {kind} within {timeout}s")


def _wait_clients(hub: push.PushHub, store: str, n: int) -> None:
    deadline = time.monotonic() + 10
    while hub.client_count(store) < n:
        assert time.monotonic() < deadline, "SSE client never subscribed"
        time.sleep(0.02)


def test_sse_reaches_the_store_pos_with_keepalive_and_resume(server, hub) -> None:
    url, tokens = server
    q: queue.Queue = queue.Queue()
    stop = threading.Event()
    reader = threading.Thread(target=_read_sse, args=(url, tokens["paris"], q, stop), daemon=True)
    reader.start()
    status = _wait(q, "status")
    assert status[1] == 200 and status[2].startswith("text/event-stream")
    _wait_clients(hub, "paris", 1)
    hub.publish("lyon", "task", {"task_id": "t-lyon"})  # another store: not for this POS
    sent = hub.publish("paris", "member_alert", {"message": "member in Handbags for 6 min"})
    _, kind, event = _wait(q, "event")
    assert kind == "member_alert" and event["id"] == sent.id
    data = json.loads(event["data"])
    assert data["payload"]["message"] == "member in Handbags for 6 min" and data["store"] == "paris"
    assert _wait(q, "comment")[1] == "keep-alive"
    stop.set()
    hub.publish("paris", "task", {"wake": "reader"})
    reader.join(5)
    _wait_clients(hub, "paris", 0)

    # Reconnect with Last-Event-ID: the messages sent meanwhile come first, in order.
    missed = [hub.publish("paris", "task", {"n": n}) for n in range(2)]
    q2: queue.Queue = queue.Queue()
    stop2 = threading.Event()
    args = (url, tokens["paris"], q2, stop2, sent.id)
    threading.Thread(target=_read_sse, args=args, daemon=True).start()
    got = [_wait(q2, "event")[2]["id"] for _ in range(3)]
    assert got[1:] == [m.id for m in missed]
    stop2.set()
    hub.publish("paris", "task", {"wake": "reader"})


def test_stream_is_store_scoped_and_authenticated(server) -> None:
    url, tokens = server
    with httpx.Client(timeout=5) as client:
        r = client.get(f"{url}/api/v1/pos/stream")
        assert r.status_code == 401
        r = client.get(f"{url}/api/v1/pos/stream", params={"store": "paris"},
                       headers={"Authorization": f"Bearer {tokens['lyon']}"})  # fmt: skip
        assert r.status_code == 403


def test_revoking_a_token_closes_its_stream(short_server, hub, tmp_path) -> None:
    from storelens.cloud.api import principals as auth

    url, tokens = short_server
    q: queue.Queue = queue.Queue()
    stop = threading.Event()
    threading.Thread(target=_read_sse, args=(url, tokens["paris"], q, stop), daemon=True).start()
    assert _wait(q, "status")[1] == 200
    _wait_clients(hub, "paris", 1)
    db = connect(f"sqlite:///{tmp_path / 'push.db'}")  # the server's database
    assert auth.revoke_pos_device(db, "paris", "till-paris") == 1
    _wait(q, "end", timeout=3)  # within the check interval, not at the next push
    _wait_clients(hub, "paris", 0)
    hub.publish("paris", "task", {"task_id": "after-revocation"})
    assert all(item[0] != "event" for item in list(q.queue))
    with httpx.Client(timeout=5) as client:  # and it cannot come back
        r = client.get(f"{url}/api/v1/pos/stream",
                       headers={"Authorization": f"Bearer {tokens['paris']}"})  # fmt: skip
        assert r.status_code == 401


def test_a_stream_ends_at_its_maximum_lifetime(short_server, hub) -> None:
    url, tokens = short_server
    q: queue.Queue = queue.Queue()
    stop = threading.Event()
    started = time.monotonic()
    threading.Thread(target=_read_sse, args=(url, tokens["lyon"], q, stop), daemon=True).start()
    assert _wait(q, "status")[1] == 200
    _wait(q, "end", timeout=6)
    assert 1.9 <= time.monotonic() - started < 6
    _wait_clients(hub, "lyon", 0)


def _native_app(port: int, topic: str, received: queue.Queue) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    subscribed = threading.Event()
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, m: received.put((m.topic, m.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert subscribed.wait(10)
    return client


def test_mqtt_native_apps_and_replicas(broker) -> None:
    replica_a, replica_b = push.PushHub(), push.PushHub()
    for h in (replica_a, replica_b):
        h.connect_mqtt(broker.host, broker.port)
        assert h.wait_connected(10)
    native: queue.Queue = queue.Queue()
    app = _native_app(broker.port, topics.pos("paris", "+"), native)
    time.sleep(0.3)  # the hubs' own subscriptions settle

    async def scenario() -> tuple[list, list]:
        sub_a, _ = replica_a.subscribe("paris")
        sub_b, _ = replica_b.subscribe("paris")
        # Garbage on a POS topic is dropped; the hubs keep working.
        app.publish(topics.pos("paris", "task"), b"not json", qos=1)
        msg = replica_a.publish("paris", "task", {"task_id": "t-1", "order": "o-9"})
        got_b = await sub_b.next(10)
        got_a = await sub_a.next(10)
        extra_a = await sub_a.next(1.0)  # the broker's echo must not deliver twice
        extra_b = await sub_b.next(0.2)
        sub_a.close()
        sub_b.close()
        return [msg, got_a, extra_a], [got_b, extra_b]

    (msg, got_a, extra_a), (got_b, extra_b) = asyncio.run(scenario())
    assert got_a is not None and got_a.id == msg.id and extra_a is None
    assert got_b is not None and got_b.id == msg.id and got_b.payload["task_id"] == "t-1"
    assert extra_b is None
    deadline = time.monotonic() + 10
    payloads = []
    while time.monotonic() < deadline and not payloads:
        topic, raw = native.get(timeout=10)
        if raw != b"not json":
            payloads.append((topic, json.loads(raw)))
    topic, body = payloads[0]
    assert topic == "storelens/v1/paris/pos/task"
    assert body["id"] == msg.id and body["kind"] == "task" and body["payload"]["order"] == "o-9"
    with pytest.raises(ValueError):
        replica_a.publish("paris", "not_a_kind", {})
    app.loop_stop()
    app.disconnect()
    for h in (replica_a, replica_b):
        h.close()


def test_app_relays_pushes_through_the_broker_when_configured(broker, tmp_path, monkeypatch,
                                                              hub) -> None:  # fmt: skip
    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", KEY_HEX)
    settings = Settings.from_env({}, db_url="unused", push_mqtt=True, mqtt_port=broker.port)
    db = connect(f"sqlite:///{tmp_path / 'relay.db'}")
    app_hub = create_app(settings, db=db).state.services.push
    assert app_hub is not hub and app_hub.wait_connected(10)
    other_replica = push.PushHub()
    other_replica.connect_mqtt(broker.host, broker.port)
    assert other_replica.wait_connected(10)
    time.sleep(0.3)

    async def scenario() -> push.PushMessage | None:
        sub, _ = app_hub.subscribe("lyon")
        other_replica.publish("lyon", "coupon_issued", {"code": "ABC"})
        got = await sub.next(10)
        sub.close()
        return got

    got = asyncio.run(scenario())
    assert got is not None and got.kind == "coupon_issued" and got.payload == {"code": "ABC"}
    for h in (app_hub, other_replica):
        h.close()
    db.close()
