"""The `storelens cloud ingest` process: two workers on one host get distinct MQTT client IDs
by default (the broker kept knocking one off for the other), and SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import Broker

from storelens.cloud.ingest.worker import default_client_id


def test_default_client_ids_differ_per_process_and_keep_the_prefix() -> None:
    ids = {default_client_id() for _ in range(3)}
    assert len(ids) == 3 and all(str(os.getpid()) in i for i in ids)
    assert default_client_id("shop-a").startswith("shop-a-")


def _ingest(broker: Broker, db: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, STORELENS_MQTT_HOST=broker.host, STORELENS_MQTT_PORT=str(broker.port))
    return subprocess.Popen(
        [sys.executable, "-c", "from storelens.cli import app; app()", "cloud", "ingest",
         "--db", f"sqlite:///{db}"],
        env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_two_workers_on_one_host_and_sigterm(broker: Broker, tmp_path: Path) -> None:
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [_ingest(broker, tmp_path / "ingest.db", log) for log in logs]
    try:
        deadline = time.monotonic() + 60
        while not all("ingest worker storelens-ingest-" in p.read_text() for p in logs):
            assert time.monotonic() < deadline, [p.read_text()[-500:] for p in logs]
            time.sleep(0.2)
        time.sleep(3)  # one ID for both would take each other's session every second
        broker_log = (broker.workdir / "mosquitto.log").read_text()
        assert "already connected, closing old connection" not in broker_log
        for p in procs:
            p.send_signal(signal.SIGTERM)
        assert [p.wait(30) for p in procs] == [0, 0]
        assert all("SIGTERM: finishing the batch" in p.read_text() for p in logs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
