"""`storelens demo --broker amqtt`: the whole loop on the embedded broker, as on a machine
without Mosquitto (the `auto` fallback itself is covered in test_ingest_amqtt.py).

Shorter than test_demo.py (30 s): two swipes (at 8 s and 23 s) and the order (at 20 s) fit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port


@pytest.mark.slow
def test_demo_headless_over_the_embedded_amqtt_broker(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-c", "from storelens.cli import app; app()", "demo", "--broker",
         "amqtt", "--duration", "30", "--port", str(port), "--workdir", str(workdir),
         "--members", "200"],
        capture_output=True, text=True, timeout=150, env=os.environ.copy(),
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "Broker: amqtt (embedded, MQTT 3.1.1)" in proc.stderr
    assert not (workdir / "broker" / "mosquitto.conf").exists()
    summary = json.loads(proc.stdout)
    assert summary["failed_steps"] == [] and summary["errors"] == [], summary

    assert summary["events_ingested"] >= 10, summary
    assert summary["zone_visits"] >= 1 and summary["footfall_in"] >= 1, summary
    assert summary["dead_letters"] == 0, summary
    assert summary["outbox_pending"] == 0 and summary["outbox_lost"] == 0, summary
    assert summary["events_ingested"] <= summary["events_published"], summary
    assert summary["swipes_sent"] >= 2 and summary["recommendations_served"] >= 1, summary
    assert summary["orders_placed"] == 1 and summary["fulfillment_tasks"] >= 1, summary
    assert summary["tasks_pushed"] >= 1 and summary["offers_served"] >= 1, summary
    assert "error:" not in proc.stderr, proc.stderr[-2000:]
    # The broker's errors go to its log, not the terminal; it logged no failure.
    log = (workdir / "broker" / "amqtt.log").read_text()
    assert " ERROR " not in log and "Traceback" not in proc.stderr, log[-2000:]
