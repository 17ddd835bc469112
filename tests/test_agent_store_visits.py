"""The agent with two cameras of one store (two crops of the sample video, the shipped
example config) and the real detector: cameras fused into store visits in the outbox, events
numbered gap-free, and a badge at a staff reader marks the person it links as staff (no card
swipe leaves the device)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import yaml

from storelens.edge.agent import Agent
from storelens.edge.cards import Swipe
from storelens.edge.config import parse_config
from storelens.edge.outbox import Outbox
from storelens.pseudonym import generate_key_file

EXAMPLE = Path(__file__).resolve().parent.parent / "firmware_config" / "two-cameras.yaml"


def test_agent_fuses_two_cameras_and_marks_staff(
    tmp_path: Path, sample_video, sample_model
) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    key = tmp_path / "k.key"
    generate_key_file(key)
    whole_left = [[0, 0], [460, 0], [460, 576], [0, 576]]
    data.update({
        "readers": [{"type": "tcp", "id": "backdoor", "port": 0, "camera": "left",
                     "zone": whole_left, "clear_ratio": 1.0}],
        "privacy": {"key_id": "k1", "key_file": str(key)},
        "outbox": {"path": str(tmp_path / "outbox.db")},
        "staff": {"readers": ["backdoor"]},
        "status_interval_s": 0.5,
    })  # fmt: skip
    agent = Agent(parse_config(data), publish=False, max_frames=300)
    runner = threading.Thread(target=agent.run)
    runner.start()
    marked = 0
    try:
        deadline = time.monotonic() + 120
        while runner.is_alive() and time.monotonic() < deadline and not marked:
            pipe = agent.pipelines.get("left")
            if pipe is not None and agent.frames > 60 and pipe.visits_in_view() >= 1:
                agent._swipes.put(Swipe("backdoor", "ef" * 32, "k1", time.time()))
                marked = 1
            time.sleep(0.01)
        runner.join(120)
    finally:
        agent.request_stop()
        runner.join(20)
    ob = Outbox(tmp_path / "outbox.db")
    events = [json.loads(r.body) for r in ob.take("events", 10_000, 1 << 30)]
    statuses = [json.loads(r.body) for r in ob.take("status", 10_000, 1 << 30)]
    started = [e for e in events if e["type"] == "visit_started"]
    ended = [e for e in events if e["type"] == "visit_ended"]
    assert started and {e["visit_id"] for e in ended} == {e["visit_id"] for e in started}
    assert any(e.get("cameras") == ["left", "right"] or e.get("cameras") == ["right", "left"]
               for e in ended)  # fmt: skip
    assert not [e for e in events if e["type"] == "card_swipe"]  # a badge is no member swipe
    # The badge went to the person nearest the reader (clear_ratio 1: the nearest, always).
    assert marked and agent.fusion.staff_marked == 1
    assert sum(bool(e.get("staff")) for e in ended) == 1
    assert "ambiguous_handoffs" in statuses[-1]
    seqs = sorted(e["seq"] for e in events + statuses)
    assert seqs == list(range(1, len(seqs) + 1))
