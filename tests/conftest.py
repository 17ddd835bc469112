"""Shared fixtures: real servers on free ports, both storage backends, the shared assets."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "tests" / "artifacts"
PG_ADMIN_URL = os.environ.get("STORELENS_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def write_moving_box_clip(path: Path, frames: int) -> Path:
    """A small MJPG clip (160x120, 10 fps) of a light box sliding right: a camera source
    for agent tests that need frames, not people."""
    import cv2
    import numpy as np

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(frames):
        img = np.full((120, 160, 3), 40, np.uint8)
        cv2.rectangle(img, (i * 3, 30), (i * 3 + 20, 100), (200, 200, 200), -1)
        w.write(img)
    w.release()
    return path


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class Broker:
    """A private Mosquitto on a free port; `stop()`/`start()` simulate an outage."""

    port: int
    workdir: Path
    extra_conf: str = ""
    proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"max_queued_messages 100000\n{self.extra_conf}"
        )
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def make_test_ca(certs: Path) -> None:
    """A throwaway CA (ca.crt/ca.key) and a server certificate for 127.0.0.1 and localhost
    (server.crt/server.key) in ``certs``, made with the openssl CLI; EC keys are quick."""
    certs.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=certs)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=storelens test CA")  # fmt: skip
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (certs / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(free_port(), tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture
def pg_url(pg_available: bool) -> Iterator[str]:
    """A fresh PostgreSQL schema per test, dropped afterwards."""
    if not pg_available:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI ({PG_ADMIN_URL})")
        pytest.skip("PostgreSQL not reachable")
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_ADMIN_URL else "?"
    yield f"{PG_ADMIN_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once per storage backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'storelens.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def db(db_url: str):
    from storelens.cloud.db import connect

    database = connect(db_url)
    yield database
    database.close()


def _assets_root() -> Path | None:
    root = os.environ.get("STORELENS_ASSETS")
    if root and Path(root).is_dir():
        return Path(root)
    fallback = REPO.parent / "shared"  # developers' checkout layout; CI sets the variable
    return fallback if fallback.is_dir() else None


@pytest.fixture(scope="session", autouse=True)
def _assets_env() -> None:
    root = _assets_root()
    if root is not None:
        os.environ.setdefault("STORELENS_ASSETS", str(root))


@pytest.fixture(scope="session")
def sample_video() -> Path:
    from storelens.assets import SAMPLE_VIDEO, find_asset

    return find_asset(SAMPLE_VIDEO)


@pytest.fixture(scope="session")
def sample_model() -> Path:
    from storelens.assets import SAMPLE_MODEL, find_asset

    return find_asset(SAMPLE_MODEL)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# -- ingest workers ------------------------------------------------------------------------


def ingest_settings(broker: Broker, **kw: Any) -> Any:
    """Settings for an ingest worker on ``broker`` that commits small batches quickly."""
    from storelens.cloud.settings import Settings

    return Settings(
        db_url="unused", mqtt_host=broker.host, mqtt_port=broker.port, ingest_batch_seconds=0.02,
        **kw,
    )  # fmt: skip


@pytest.fixture
def worker(chain: Any, broker: Broker) -> Iterator[Any]:
    """A started ingest worker on the test's ``chain`` database (each module registers its
    stores and devices in its own ``chain`` fixture)."""
    from storelens.cloud.ingest.worker import IngestWorker

    w = IngestWorker(ingest_settings(broker), chain, client_id=f"w-{uuid.uuid4().hex[:6]}")
    w.start()
    assert w.wait_ready()
    yield w
    w.stop()


# -- parallel runs (`make test`: pytest-xdist, one worker per core, whole modules) -----------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, slow tests first: `--dist loadscope --no-loadscope-reorder` hands
    out whole modules in the order of their first test, so the long modules start at once and
    no long one starts last while the other worker idles. A serial run keeps file order."""
    _unique_node_ids(items)
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


def _unique_node_ids(items: list[pytest.Item]) -> None:
    """Every test has its own node ID, or the run stops. Under pytest 9, schemathesis's
    per-operation items all carried `::test_no_server_errors`: pytest-xdist then ran and
    reported one of the 83 without an error. Those items get their name (which holds the
    operation) as their ID; any other duplicate fails the collection."""
    for item in items:
        head, _, last = item.nodeid.rpartition("::")
        if "[" in item.name and "[" not in last:
            item._id = type(item._id).parse(f"{head}::{item.name}")  # pytest 9's NodeId
    seen: dict[str, int] = {}
    for item in items:
        seen[item.nodeid] = seen.get(item.nodeid, 0) + 1
    duplicates = sorted(n for n, count in seen.items() if count > 1)
    if duplicates:
        raise pytest.UsageError(f"tests share a node ID (xdist would drop some): {duplicates[:5]}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Which suites skipped and why, one line per test file and reason (after pytest's own
    per-test lines), so a missing prerequisite (README, "Run the tests") is not silent."""
    groups: dict[tuple[str, str], int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        path = report.nodeid.split("::")[0] or report.location[0]
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else "skipped"
        reason = reason.removeprefix("Skipped: ")
        groups[(path, reason)] = groups.get((path, reason), 0) + 1
    if not groups:
        return
    terminalreporter.section("skipped suites (see README, Run the tests)")
    for (path, reason), count in sorted(groups.items()):
        terminalreporter.write_line(f"{path}: {count} skipped: {reason}")
