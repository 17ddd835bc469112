"""The README's demo on exactly what `make demo` installs: a clean virtual environment with
`.[edge,cloud]` and nothing else (no dev extra), from a copy of the checkout.

The rest of the suite runs with the dev extra, which hid a demo and a bench that needed a
dev-only package (httpx) at run time. Here the demo runs headless for 90 s, as the README shows,
and its summary must show every step of its story; while it runs, headless Chromium opens the
ops page it prints (the live store's visitors and dwell); the benches that broke the same way
run too.
pip uses this machine's own package sources and cache, so the install takes well under a minute
when the wheels are cached.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import REPO, free_port

# The first test also waits for the install, which may take the pip timeout below on a busy
# machine (it took 43 s on a quiet CI and over 300 s with 2 workers and 8 users on 2 cores).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DEV_ONLY = ("pytest", "playwright", "ruff", "hypothesis", "schemathesis")


def _checkout_copy(dest: Path) -> Path:
    """The files a fresh clone has (tracked, plus new ones not yet committed)."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"],
            capture_output=True, check=True,
        ).stdout.decode().split("\0")  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        ignore = shutil.ignore_patterns(".venv", "var", "*.egg-info", "__pycache__", "artifacts")
        shutil.copytree(REPO, dest, ignore=ignore)
        return dest
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkout copy, its virtual environment's bin) with `pip install -e .[edge,cloud]`."""
    if not os.environ.get("STORELENS_ASSETS"):
        pytest.skip("STORELENS_ASSETS is not set (the demo would download its sample files)")
    root = tmp_path_factory.mktemp("fresh")
    checkout = _checkout_copy(root / "storelens")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
    # The base interpreter, not this venv's: nothing of the dev install may leak in.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "-e", f"{checkout}[edge,cloud]"],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    return checkout, venv / "bin"


def _run(bin_dir: Path, cwd: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(bin_dir / "storelens"), *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def test_the_install_has_no_dev_packages(fresh) -> None:
    _, bin_dir = fresh
    for name in DEV_ONLY:
        probe = subprocess.run(
            [str(bin_dir / "python"), "-c", f"import {name}"], capture_output=True, text=True
        )
        assert probe.returncode != 0, f"{name} is installed: the test would not see a dev need"


@dataclass
class RunningDemo:
    proc: subprocess.Popen
    port: int
    lines: list[str]  # its stderr so far (banner, progress, errors)
    reader: threading.Thread
    workdir: Path

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if text in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"the demo never printed {text!r}:\n" + "".join(self.lines)[-3000:])


@pytest.fixture(scope="module")
def demo(fresh) -> Iterator[RunningDemo]:
    """`storelens demo --duration 90` from the fresh install, running in the background."""
    checkout, bin_dir = fresh
    port = free_port()
    workdir = checkout / "var" / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.Popen(
        [str(bin_dir / "storelens"), "demo", "--duration", "90", "--port", str(port),
         "--workdir", str(workdir)],
        cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))
    reader.start()
    try:
        yield RunningDemo(proc, port, lines, reader, workdir)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)
        reader.join(10)


@pytest.mark.browser
def test_ops_page_shows_the_live_store_while_the_demo_runs(
    demo: RunningDemo, artifacts: Path
) -> None:
    """/ops opened from the URL and login the demo prints: the default period holds the
    stores' today, and the live store's visitors and zone dwell of today appear within a
    refresh (seeded history ends before today, so today is the sample video alone)."""
    from test_browser import CHROMIUM, CHROMIUM_ARGS, _require_chromium

    _require_chromium()
    from playwright.sync_api import sync_playwright

    ops = demo.wait_for("/ops    login:", timeout=180).split()
    url, user, password = ops[1], ops[3], ops[5]
    assert url == f"http://127.0.0.1:{demo.port}/ops"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.fill("#login input[name=username]", user)
        page.fill("#login input[name=password]", password)
        page.click("#login button[type=submit]")
        page.wait_for_selector('section[data-chart="devices"][data-state="ready"]', timeout=60_000)
        page.wait_for_function("() => !document.body.dataset.loading", timeout=60_000)
        today = datetime.now(ZoneInfo("Europe/Paris")).date().isoformat()
        assert page.input_value("input[name=end]") == today
        assert page.locator(".kpi[data-kpi=visitors] .value").inner_text() not in ("0", "–")
        # The live device is one row, reporting; no phantom box beside it.
        live = page.locator("#plot-devices tbody tr", has_text="sample-edge")
        assert live.count() == 1 and "ok" in live.inner_text()
        assert page.locator("#plot-devices tbody tr", has_text="sample-store").count() == 1
        # Today at the sample store only: what the sample video produced.
        for box in page.locator("input[name=store]").all():
            if box.get_attribute("value") != "sample-store":
                box.uncheck()
        page.fill("input[name=start]", today)
        visitors, zones = 0, []
        for _ in range(12):  # a refresh every 5 s for a minute at most
            page.click("#filters button[type=submit]")
            page.wait_for_function("() => !document.body.dataset.loading", timeout=60_000)
            text = page.locator(".kpi[data-kpi=visitors] .value").inner_text()
            visitors = int(text.replace(",", "")) if text[:1].isdigit() else 0
            zones = page.evaluate(
                "() => (document.getElementById('plot-dwell').data || [{}])[0].x || []"
            )
            if visitors > 0 and zones:
                break
            time.sleep(5)
        assert visitors > 0, "no live visitors on the ops page"
        assert set(zones) & {"west_walk", "plaza", "east_road"}, zones
        assert page.locator('section[data-chart="dwell"]').get_attribute("data-empty") is None
        page.screenshot(path=str(artifacts / "ops-live-demo.png"), full_page=True)
        browser.close()


def test_demo_headless_shows_its_whole_story(demo: RunningDemo) -> None:
    """The suite's one full-length demo run (test_demo.py checks how it stops and fails)."""
    out, _ = demo.proc.communicate(timeout=400)
    demo.reader.join(10)
    err = "".join(demo.lines)
    assert demo.proc.returncode == 0, f"{err[-4000:]}\n{out[-2000:]}"
    summary = json.loads(out)  # stdout is the JSON alone: `| jq` works
    assert summary["failed_steps"] == [] and summary["errors"] == [], summary
    assert summary["ran_s"] >= 90, summary
    assert summary["events_ingested"] >= 10 and summary["footfall_in"] >= 1, summary
    assert summary["zone_visits"] >= 1 and summary["device_statuses"] >= 1, summary
    # Six swipes in 90 s (8 s, then every 15 s); about one in four finds a person at the reader.
    assert summary["swipes_sent"] >= 5 and summary["swipes_linked"] >= 1, summary
    assert summary["recommendations_served"] >= 1 and summary["offers_served"] >= 1, summary
    assert summary["orders_placed"] == 1 and summary["fulfillment_tasks"] == 1, summary
    assert summary["tasks_pushed"] >= 1, summary
    assert summary["dead_letters"] == 0 and summary["outbox_lost"] == 0, summary
    assert summary["outbox_pending"] == 0, summary
    assert summary["events_ingested"] <= summary["events_published"], summary
    assert "error:" not in err and f"http://127.0.0.1:{demo.port}/ops" in err
    # Headless: the banner and progress on stderr (stdout is the JSON above alone).
    assert "login: admin / " in err and f"http://127.0.0.1:{demo.port}/pos#token=" in err
    # Everything it started has stopped: no broker or agent left on the demo's files.
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(demo.workdir) not in ps
    assert (demo.workdir / "credentials.json").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "args",
    [
        shlex.split(command)
        for command in (
            "contract schema",
            "cloud seed --db sqlite:///seed.db --members 100 --instore-days 2",
            "analyze asset:media/vtest.avi --config firmware_config/sample.yaml --max-frames 30",
            "bench tracking --json tracking.json",
            "bench api --rate 20 --seconds 1 --members 100 --workers 1 --json api.json",
        )
    ],
    ids=["contract-schema", "cloud-seed", "analyze", "bench-tracking", "bench-api"],
)
def test_readme_commands_run_on_the_demo_install(fresh, args: list[str]) -> None:
    """README commands that need more than the core (the benches needed httpx and motmetrics
    from the dev extra); a short bench api run is enough to reach every import it makes."""
    checkout, bin_dir = fresh
    proc = _run(bin_dir, checkout, *args, timeout=300)
    assert proc.returncode == 0, f"{proc.stderr[-3000:]}\n{proc.stdout[-1000:]}"
    if "--json" in args:
        assert json.loads((checkout / args[-1]).read_text())
