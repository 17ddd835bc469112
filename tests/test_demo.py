"""`storelens demo --duration S`: the whole loop headless, from a fresh directory.

Real processes: a private Mosquitto, the API with in-process ingest on SQLite, the edge agent
on the sample video in real time with card swipes, and the web-shop webhook. Checks what the
demo prints, that video events reached the cloud, a swiped member got recommendations, the
online order became a ship-from-store task for the sample store, and nothing is left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import free_port, wait_for


def test_demo_headless_runs_the_whole_loop(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-c", "from storelens.cli import app; app()", "demo",
         "--duration", "40", "--port", str(port), "--workdir", str(workdir), "--members", "200"],
        capture_output=True, text=True, timeout=150, env=os.environ.copy(),
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, f"{out[-2000:]}\n{proc.stderr[-3000:]}"
    assert f"http://127.0.0.1:{port}/ops" in out and "login: admin / " in out
    assert f"http://127.0.0.1:{port}/pos#token=" in out
    summary = json.loads(out.strip().splitlines()[-1])

    assert summary["events_ingested"] >= 10, summary  # the video produced visits and zones
    assert summary["zone_visits"] >= 1 and summary["footfall_in"] >= 1, summary
    assert summary["dead_letters"] == 0, summary
    assert summary["outbox_pending"] == 0 and summary["outbox_lost"] == 0, summary
    # Every event the device got acknowledged is stored (status reports are not event rows).
    assert summary["events_ingested"] <= summary["events_published"], summary
    assert summary["swipes_sent"] >= 2 and summary["recommendations_served"] >= 1, summary
    assert summary["orders_placed"] == 1 and summary["fulfillment_tasks"] >= 1, summary
    assert "warning:" not in proc.stderr, proc.stderr[-2000:]

    # Everything it started has stopped: no broker or agent left on the demo's files.
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(workdir) not in ps
    assert (workdir / "credentials.json").stat().st_mode & 0o077 == 0


def test_demo_stopped_with_sigterm_stops_everything_it_started(tmp_path: Path) -> None:
    """`kill` (or make passing on SIGTERM) stops the demo like Ctrl-C: the agent and the
    broker, which run in sessions of their own, must not outlive it."""
    workdir = tmp_path / "demo"
    log = (tmp_path / "demo.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from storelens.cli import app; app()", "demo",
         "--duration", "300", "--port", str(free_port()), "--workdir", str(workdir),
         "--members", "50"],
        stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
    )  # fmt: skip

    def running() -> list[str]:
        ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
        return [line for line in ps.splitlines() if str(workdir) in line]

    try:
        # Its agent and broker are up (they name the demo's directory on their command line).
        wait_for(lambda: any(" edge run " in line for line in running()), timeout=120)
        wait_for(lambda: any("mosquitto" in line for line in running()), timeout=10)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    wait_for(lambda: not running(), timeout=10)
    assert "events_ingested" in (tmp_path / "demo.log").read_text().splitlines()[-1]
