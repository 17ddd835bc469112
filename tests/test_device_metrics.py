"""Fleet health on Prometheus: per device and camera gauges on the API's /metrics (bounded
labels, retired devices gone), and a standalone ingest worker's own metrics endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import free_port, wait_for
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from storelens.cloud.api.app import create_app
from storelens.cloud.commerce import stores
from storelens.cloud.ingest import device_registry
from storelens.cloud.settings import Settings
from storelens.contract.events import CameraStatus, DeviceStatus


def _samples(text: str) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_device_health_per_device_and_camera_on_metrics(db, db_url: str) -> None:
    stores.upsert_store(db, stores.Store(id="paris", name="Paris", lat=48.8, lon=2.3))
    device_registry.register_device(db, "paris", "box-1")
    device_registry.register_device(db, "paris", "box-2")
    seen = time.time() - 30
    status = DeviceStatus(
        device="box-1", seq=1, ts=datetime.fromtimestamp(seen, UTC), uptime_s=3600,
        cameras=[CameraStatus(camera="door", online=True, fps=9.5, inference_ms=8.2),
                 CameraStatus(camera="aisle", online=False, fps=0.0)],
        outbox_depth=412, outbox_bytes=90_000, lost_events=3, outbox_age_s=95.5,
    )  # fmt: skip
    heard = time.time() - 30  # last_seen is when the cloud heard the status
    device_registry.apply_status(db, "paris", [status], received_at=heard)
    app = create_app(Settings(db_url=db_url), db=db)
    with TestClient(app) as client:
        metrics = _samples(client.get("/metrics").text)
        box1 = (("device", "box-1"), ("store", "paris"))
        door = (("camera", "door"), ("device", "box-1"), ("store", "paris"))
        aisle = (("camera", "aisle"), ("device", "box-1"), ("store", "paris"))
        assert metrics["storelens_camera_fps"][door] == 9.5
        assert metrics["storelens_camera_inference_ms"][door] == pytest.approx(8.2)
        assert metrics["storelens_camera_up"][aisle] == 0
        assert metrics["storelens_device_outbox_depth"][box1] == 412
        assert metrics["storelens_device_outbox_bytes"][box1] == 90_000
        assert metrics["storelens_device_lost_events"][box1] == 3
        assert metrics["storelens_device_outbox_age_seconds"][box1] == 95.5
        assert metrics["storelens_device_last_seen_timestamp_seconds"][box1] == pytest.approx(heard)
        assert 25 < metrics["storelens_device_status_age_seconds"][box1] < 300
        # A device never heard from has no last-seen series; labels are store/device/camera.
        assert (("device", "box-2"), ("store", "paris")) not in metrics.get(
            "storelens_device_last_seen_timestamp_seconds", {}
        )
        for name, series in metrics.items():
            if name.startswith(("storelens_device_", "storelens_camera_")):
                for labels in series:
                    assert {k for k, _ in labels} <= {"store", "device", "camera"}, name
        # Retired: its series are gone at the next scrape.
        device_registry.unregister_device(db, "paris", "box-1")
        after = _samples(client.get("/metrics").text)
        assert door not in after.get("storelens_camera_fps", {})


def test_standalone_ingest_worker_serves_its_metrics(broker, tmp_path) -> None:
    port = free_port()
    env = {**os.environ, "STORELENS_DB_URL": f"sqlite:///{tmp_path / 'w.db'}"}
    cli = str(Path(sys.executable).parent / "storelens")
    proc = subprocess.Popen(
        [cli, "cloud", "ingest", "--mqtt-host", broker.host,
         "--mqtt-port", str(broker.port), "--metrics-port", str(port),
         "--metrics-host", "127.0.0.1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        text = ""

        def scraped() -> bool:
            nonlocal text
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    text = r.read().decode()
            except OSError:
                return False
            return True

        wait_for(scraped, timeout=60)
        names = {f.name for f in text_string_to_metric_families(text)}
        assert {"storelens_ingest_events", "storelens_ingest_lag_seconds",
                "storelens_ingest_batch_seconds"} <= names  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(30)
