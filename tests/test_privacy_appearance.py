"""Appearance descriptors stay in the tracker's memory: the agent runs on the sample video
against a real Mosquitto with re-association on, every descriptor computed is marked, and no
published payload, outbox row or file the device writes carries a mark."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import Broker
from test_agent_e2e import Collector

from storelens.edge.agent import Agent
from storelens.edge.config import parse_config
from storelens.edge.outbox import Outbox
from storelens.edge.track import appearance

pytestmark = pytest.mark.slow
FRAMES = 80
MARK = 0.0123456789  # first value of every descriptor in this test: findable as text or bytes
MARKS = [
    b"0123456",  # any decimal rendering of the mark
    struct.pack("<f", MARK),
    struct.pack(">f", MARK),
    struct.pack("<d", float(np.float32(MARK))),
    struct.pack("<d", MARK),
]
FORBIDDEN_KEYS = {"looks", "descriptor", "appearance", "embedding", "histogram", "hist"}


@pytest.fixture
def clip(tmp_path: Path, sample_video: Path) -> Path:
    import cv2

    out = tmp_path / "clip.avi"
    cap = cv2.VideoCapture(str(sample_video))
    writer = None
    for _ in range(FRAMES):
        ok, frame = cap.read()
        assert ok
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
        writer.write(frame)
    assert writer is not None
    writer.release()
    cap.release()
    return out


def _keys(value, key=None):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from _keys(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v, key)


def test_appearance_descriptors_never_leave_memory(
    tmp_path: Path, clip: Path, sample_model: Path, broker: Broker, monkeypatch
) -> None:
    real = appearance.describe
    made: list[np.ndarray] = []

    def marked(frame: np.ndarray, xyxy: np.ndarray) -> np.ndarray | None:
        looks = real(frame, xyxy)
        if looks is not None:
            looks = looks.copy()
            looks[0] = MARK
            made.append(looks)
        return looks

    monkeypatch.setattr(appearance, "describe", marked)
    work = tmp_path / "device"
    work.mkdir()
    cfg = parse_config(
        {
            "store": "s1",
            "device": "d1",
            "mqtt": {"host": broker.host, "port": broker.port},
            "model": {"path": str(sample_model), "confidence": 0.2, "threads": 1},
            "tracker": {"stitch_s": 4, "high_confidence": 0.45},
            "cameras": [{"id": "plaza", "source": str(clip), "source_fps": 10}],
            "privacy": {"key_id": "k1", "key_env": "STORELENS_TEST_KEY", "attire": True},
            "outbox": {"path": str(work / "outbox.db"), "batch_interval_s": 0.2},
            "status_interval_s": 1,
        }
    )
    monkeypatch.setenv("STORELENS_TEST_KEY", "ab" * 32)
    collector = Collector(broker.port)
    collector.start()
    agent = Agent(cfg, max_frames=FRAMES, drain_s=5)
    runner = threading.Thread(target=agent.run)
    runner.start()
    runner.join(120)
    collector.stop()
    assert not runner.is_alive()
    assert agent.frames == FRAMES
    assert len(made) > 20, "descriptors were computed (else this test proves nothing)"

    messages = collector.snapshot()
    events = [m for m in messages if "/events" in m[0]]
    assert events, "the run published events"
    for topic, payload in messages:
        for mark in MARKS:
            assert mark not in payload, (topic, mark)
        try:
            body = json.loads(payload)
        except ValueError:
            continue
        for key, _ in _keys(body):
            assert str(key).lower() not in FORBIDDEN_KEYS, (topic, key)
    rows = [
        r.body
        for kind in ("events", "status")
        for r in Outbox(work / "outbox.db").take(kind, 10_000, 1 << 30)
    ]
    for body in rows:
        text = body if isinstance(body, bytes) else str(body).encode()
        assert not any(mark in text for mark in MARKS)
    for path in [*work.rglob("*"), *tmp_path.glob("*")]:
        if path.is_file() and path.suffix != ".avi":
            data = path.read_bytes()
            for mark in MARKS:
                assert mark not in data, (path, mark)
