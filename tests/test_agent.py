"""Agent parts without a broker: camera feeds (drop vs block, reopen with back-off), the
inference loop with a failing camera, swipes, the publisher's envelopes and commands, and a
SIGTERM that drains cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import free_port, write_moving_box_clip

from storelens.contract import parse_envelope
from storelens.contract.commands import OptOutList
from storelens.edge.agent import Agent
from storelens.edge.cards import Swipe
from storelens.edge.config import CameraConfig, parse_config
from storelens.edge.detect import Detections
from storelens.edge.outbox import Outbox
from storelens.edge.publish import Publisher
from storelens.edge.sources.camera_feed import CameraFeed
from storelens.pseudonym import generate_key_file

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def frames(n: int):
    for i in range(n):
        yield np.zeros((4, 4, 3), np.uint8), T0 + timedelta(seconds=i / 10)


class FlakyOpener:
    """Fails ``failures`` times, then serves ``n`` frames."""

    def __init__(self, failures: int, n: int) -> None:
        self.failures, self.n, self.calls = failures, n, 0

    def __call__(self, camera: CameraConfig):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(f"cannot open {camera.source}")
        return frames(self.n)


def test_feed_reopens_with_backoff_and_reports_offline() -> None:
    cam = CameraConfig(id="c", source="clip.avi")
    opener = FlakyOpener(failures=2, n=5)
    feed = CameraFeed(cam, threading.Event(), opener=opener, reopen_min_s=0.05)
    feed.start()
    time.sleep(0.02)
    assert not feed.online and "cannot open" in (feed.error or "")
    got = []
    deadline = time.monotonic() + 5
    while not feed.exhausted and time.monotonic() < deadline:
        item = feed.take()
        if item is not None:
            got.append(item[1])
        time.sleep(0.005)
    feed.stop()
    assert opener.calls == 3 and feed.reopens == 2
    assert len(got) == 5 and feed.dropped == 0  # a file played fast blocks, never drops
    assert got == sorted(got)


def test_live_feed_drops_instead_of_queueing() -> None:
    cam = CameraConfig(id="c", source="clip.avi", realtime=True)
    feed = CameraFeed(cam, threading.Event(), opener=lambda c: frames(50))
    feed.start()
    feed.join(5)
    assert feed.finished and feed.dropped == 49
    item = feed.take()
    assert item is not None and item[1] == T0 + timedelta(seconds=4.9)  # only the newest
    assert feed.take() is None


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_moving_box_clip(tmp_path_factory.mktemp("tiny") / "tiny.avi", 40)


class NoPeople:
    dynamic_batch = False

    def __init__(self) -> None:
        self.calls = 0

    def detect_many(self, frames):
        self.calls += 1
        return [Detections.empty() for _ in frames]


def device(tmp_path: Path, cameras: list[dict], **extra) -> dict:
    key = tmp_path / "k.key"
    generate_key_file(key)
    return {
        "store": "s1",
        "device": "d1",
        "cameras": cameras,
        "readers": [{"type": "tcp", "id": "kiosk", "port": 0}],
        "privacy": {"key_id": "k1", "key_file": str(key)},
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "status_interval_s": 0.2,
        **extra,
    }


def test_agent_survives_a_dead_camera_and_reports_it(tmp_path: Path, tiny_clip: Path) -> None:
    cfg = parse_config(
        device(
            tmp_path,
            [
                {"id": "good", "source": str(tiny_clip), "source_fps": 10},
                {"id": "dead", "source": str(tmp_path / "missing.avi")},
            ],
        )
    )
    detector = NoPeople()
    agent = Agent(cfg, publish=False, detector=detector)
    runner = threading.Thread(target=agent.run)
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while agent.frames < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.frames == 40 and runner.is_alive()  # one camera down: still running
        status = agent.status()
        cams = {c.camera: c for c in status.cameras}
        assert not cams["dead"].online and cams["good"].fps >= 0
        assert agent.feeds[1].error and "missing.avi" in agent.feeds[1].error
        assert status.readers[0].reader == "kiosk"
        agent._swipes.put(Swipe("kiosk", "ab" * 32, "k1", time.time()))
        time.sleep(0.3)
    finally:
        agent.request_stop()
        runner.join(20)
    assert not runner.is_alive()
    ob = Outbox(tmp_path / "outbox.db")
    kinds = {json.loads(r.body)["type"] for r in ob.take("events", 1000, 1 << 30)}
    assert "card_swipe" in kinds
    statuses = [json.loads(r.body) for r in ob.take("status", 1000, 1 << 30)]
    assert len(statuses) >= 2
    assert statuses[-1]["cameras"][1] == {
        "camera": "dead",
        "online": False,
        "fps": 0.0,
        "inference_ms": 0.0,
        "dropped_frames": 0,
    }
    seqs = sorted(
        json.loads(r.body)["seq"] for k in ("events", "status") for r in ob.take(k, 1000, 1 << 30)
    )
    assert seqs == list(range(1, len(seqs) + 1))


def test_publisher_envelope_and_commands(tmp_path: Path) -> None:
    cfg = parse_config(device(tmp_path, [{"id": "c", "source": "0"}]))
    ob = Outbox(tmp_path / "outbox.db")
    got = []
    pub = Publisher(cfg, ob, on_command=got.append)
    from storelens.contract.events import OccupancySnapshot

    ob.put(
        [
            OccupancySnapshot(device="d1", seq=ob.next_seq(), ts=T0, camera="c", total=i)
            for i in range(3)
        ]
    )
    env = parse_envelope(pub.envelope_bytes(ob.take("events", 10, 1 << 20)))
    assert env.store == "s1" and [e.total for e in env.events] == [0, 1, 2]
    cmd = pub._cmd
    for payload in (
        b"{not json",
        b'{"type": "reboot"}',
        b'{"type": "optout_list", "key_id": "k1", "tokens": ["x"]}',
    ):
        pub._on_message(None, None, SimpleNamespace(topic=cmd, payload=payload))
    assert got == []  # malformed commands are ignored, not fatal
    good = OptOutList(key_id="k1", tokens=["cd" * 32]).model_dump_json().encode()
    pub._on_message(None, None, SimpleNamespace(topic=cmd, payload=good))
    assert got == [OptOutList(key_id="k1", tokens=["cd" * 32])]


def test_sigterm_drains_and_keeps_undelivered_events(tmp_path: Path, tiny_clip: Path) -> None:
    cfg = device(
        tmp_path,
        [{"id": "c", "source": str(tiny_clip), "source_fps": 10, "loop": True, "realtime": True}],
        mqtt={"host": "127.0.0.1", "port": free_port()},  # nobody listens: all stays local
    )
    path = tmp_path / "device.yaml"
    path.write_text(json.dumps(cfg))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from storelens.cli import app; app()",
            "edge",
            "run",
            "--config",
            str(path),
            "--drain-s",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    db = tmp_path / "outbox.db"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (db.exists() and Outbox(db).depth >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "remain in the outbox" in out
    assert Outbox(db).depth >= 3


class WalkingPerson:
    """One person walking right, 3 px per frame, as the tiny clip draws it."""

    dynamic_batch = False

    def __init__(self) -> None:
        self.i = 0

    def detect_many(self, frames):
        out = []
        for _ in frames:
            x = 3.0 * (self.i % 40)
            self.i += 1
            out.append(
                Detections(
                    np.array([[x, 30, x + 20, 100]], np.float32), np.array([0.9], np.float32)
                )
            )
        return out


def test_swipe_links_then_opt_out_unlinks_the_open_visit(tmp_path: Path, tiny_clip: Path) -> None:
    cam = {"id": "c", "source": str(tiny_clip), "source_fps": 20, "realtime": True}
    cfg = device(tmp_path, [cam])
    cfg["readers"] = [
        {
            "type": "tcp",
            "id": "till",
            "port": 0,
            "camera": "c",
            "zone": [[0, 0], [160, 0], [160, 120], [0, 120]],
        }
    ]
    agent = Agent(parse_config(cfg), publish=False, detector=WalkingPerson())
    runner = threading.Thread(target=agent.run)
    runner.start()
    token = "ab" * 32
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            agent.pipelines and agent.pipelines["c"].visits_in_view()
        ):
            time.sleep(0.02)
        assert agent.pipelines["c"].visits_in_view() == 1
        agent._swipes.put(Swipe("till", token, "k1", time.time()))
        time.sleep(0.3)
        agent._on_command(OptOutList(key_id="k1", tokens=[token]))
    finally:
        runner.join(20)
    ob = Outbox(tmp_path / "outbox.db")
    events = [json.loads(r.body) for r in ob.take("events", 1000, 1 << 30)]
    swipe = next(e for e in events if e["type"] == "card_swipe")
    assert swipe["reason"] == "linked" and swipe["member"] == token
    ended = [e for e in events if e["type"] == "visit_ended" and e["visit_id"] == swipe["visit_id"]]
    assert ended and "member" not in ended[0]  # unlinked once the member opted out
    assert json.loads((tmp_path / "outbox.optout.json").read_text()) == {"k1": [token]}


@pytest.mark.parametrize("limit", [0, 1, 5, 12, 13, 31, 32])
def test_camera_bench_search_finds_the_largest_count(limit: int) -> None:
    from storelens.tools.bench.cameras import largest_passing

    tried: list[int] = []

    def ok(n: int) -> bool:
        tried.append(n)
        return n <= limit

    assert largest_passing(ok, 32) == limit
    assert len(tried) <= 12  # doubling then bisection, not a linear scan
