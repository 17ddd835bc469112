"""A POS alert raised while ingesting reaches the POS when ingest and the API are separate
processes (the docker-compose layout: `storelens cloud serve` beside `storelens cloud
ingest`, one Mosquitto). Scoring runs inside the ingest worker; the till's SSE stream is held
by the API; the only way between them is the broker."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from conftest import free_port, wait_port
from personalization_chain import KEY_HEX, build_chain

from storelens.cloud.db import connect
from storelens.cloud.ingest import device_registry
from storelens.cloud.personalization import scoring
from storelens.contract import topics
from storelens.contract.envelope import Envelope, encode_envelope
from storelens.contract.events import ZoneVisit

CLI = [sys.executable, "-c", "from storelens.cli import app; app()", "cloud"]


def _sse(url: str, token: str, out: queue.Queue, stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "GET", f"{url}/api/v1/pos/stream", params={"keepalive_s": 0.2}, headers=headers
        ) as resp,
    ):
        out.put(("status", resp.status_code))
        event: dict[str, str] = {}
        for line in resp.iter_lines():
            if stop.is_set():
                return
            if line == "":
                if "data" in event:
                    out.put((event.get("event", ""), json.loads(event["data"])))
                event = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                event[field] = value.strip()


def _next(q: queue.Queue, kind: str, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            item = q.get(timeout=0.2)
        except queue.Empty:
            continue
        if item[0] == kind:
            return item[1]
    return None


def test_an_alert_raised_by_a_separate_ingest_worker_reaches_the_api_stream(
    tmp_path: Path, broker
) -> None:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    db = connect(url)
    chain = build_chain(db)
    db.execute("DELETE FROM member_scores")
    device_registry.register_device(db, "paris", "edge-1")
    ann = chain.member("ann")
    now = time.time()
    for _ in range(3):  # enough points that one long visit crosses the alert threshold
        scoring.award(db, ann["id"], "online_order", at=now - 60)

    env = {**os.environ, "STORELENS_PSEUDONYM_KEY": KEY_HEX, "STORELENS_MQTT_HOST": broker.host,
           "STORELENS_MQTT_PORT": str(broker.port)}  # fmt: skip
    port = free_port()
    logs = {name: (tmp_path / f"{name}.log").open("ab") for name in ("api", "ingest")}
    procs = [
        subprocess.Popen([*CLI, "serve", "--db", url, "--port", str(port), "--no-ingest"],
                         env=env, stdout=logs["api"], stderr=subprocess.STDOUT),
        subprocess.Popen([*CLI, "ingest", "--db", url, "--client-id", f"i-{uuid.uuid4().hex[:6]}"],
                         env=env, stdout=logs["ingest"], stderr=subprocess.STDOUT),
    ]  # fmt: skip
    stop = threading.Event()
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-1")
    try:
        wait_port(port, timeout=60)
        api = f"http://127.0.0.1:{port}"
        stream: queue.Queue = queue.Queue()
        threading.Thread(
            target=_sse, args=(api, chain.tokens["paris"], stream, stop), daemon=True
        ).start()
        assert _next(stream, "status", 20) == 200

        exited = datetime.fromtimestamp(now - 5, UTC)
        visit = ZoneVisit(
            device="edge-1", camera="cam-1", seq=1, ts=exited, visit_id=uuid.uuid4(),
            member=ann["token"], key_id="k1", zone="z_bags",
            entered_at=datetime.fromtimestamp(now - 365, UTC), exited_at=exited, dwell_s=360.0,
        )  # fmt: skip
        payload = encode_envelope(Envelope(store="paris", device="edge-1", events=[visit]))
        device.connect(broker.host, broker.port)
        device.loop_start()
        # Until the worker holds its subscription a QoS 1 message may find nobody: resend
        # (the same event ID, stored once) until it is stored.
        deadline = time.monotonic() + 60
        while not db.scalar("SELECT count(*) FROM events WHERE member IS NOT NULL"):
            assert time.monotonic() < deadline, "the ingest worker stored nothing"
            device.publish(topics.events("paris", "edge-1"), payload, qos=1)
            time.sleep(1.0)

        alert = _next(stream, "member_alert", 15)
        raised = db.scalar("SELECT count(*) FROM score_actions WHERE member_id = ?", (ann["id"],))
        assert raised, "scoring raised no alert at all: the test's premise is broken"
        assert alert is not None, "the alert scoring raised in the ingest worker reached nobody"
        assert alert["payload"]["member_id"] == ann["id"]
        assert alert["store"] == "paris"
    finally:
        stop.set()
        device.loop_stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs.values():
            log.close()
        db.close()
