"""End to end on the first seconds of the sample video: `storelens analyze` and `bench edge`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from storelens.cli import app
from storelens.contract.events import EVENT_TYPES
from storelens.edge.config import load_config
from storelens.edge.offline.analyze import analyze, camera_for

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CONFIG = REPO / "firmware_config" / "sample.yaml"
FRAMES = 60


def test_analyze_finds_and_tracks_people(tmp_path: Path) -> None:
    events, mot, video, summary = (
        tmp_path / "events.jsonl",
        tmp_path / "mot.txt",
        tmp_path / "annotated.mp4",
        tmp_path / "summary.json",
    )
    result = CliRunner().invoke(
        app,
        [
            "analyze",
            "asset:media/vtest.avi",
            "--config",
            str(SAMPLE_CONFIG),
            "--max-frames",
            str(FRAMES),
            "--events-out",
            str(events),
            "--mot-out",
            str(mot),
            "--annotated",
            str(video),
            "--json",
            str(summary),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "visits" in result.output and "zone plaza" in result.output

    stats = json.loads(summary.read_text())
    assert stats["frames"] == FRAMES
    assert stats["visits"] >= 3

    rows = np.loadtxt(mot, delimiter=",")
    assert rows[:, 0].min() >= 1 and rows[:, 0].max() <= FRAMES
    ids, counts = np.unique(rows[:, 1], return_counts=True)
    assert len(ids) >= 3
    assert (counts >= 20).sum() >= 3  # people followed over seconds, not flickers
    per_frame = np.bincount(rows[:, 0].astype(int))
    assert per_frame[30:].max() >= 3  # several people at once (the scene has 3-6)
    for tid in ids:  # within one track the feet move smoothly (no jumps between people)
        track = rows[rows[:, 1] == tid]
        feet = np.c_[track[:, 2] + track[:, 4] / 2, track[:, 3] + track[:, 5]]
        steps = np.hypot(*np.diff(feet, axis=0).T) / np.diff(track[:, 0])
        assert steps.max() < 40, tid

    lines = events.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]
    for item in parsed:
        EVENT_TYPES[item["type"]].model_validate(item)
    started = [p for p in parsed if p["type"] == "visit_started"]
    assert len(started) == stats["visits"]
    assert len({p["visit_id"] for p in started}) == len(started)
    ended = [p for p in parsed if p["type"] == "visit_ended"]
    assert len(ended) == len(started)  # the end of the run closes every visit
    assert any(len(p["path"]) >= 2 for p in ended)

    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    cap.release()


def test_analyze_reports_bad_inputs_cleanly(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["analyze", str(tmp_path / "nope.avi"), "-c", str(SAMPLE_CONFIG)])
    assert missing.exit_code == 1 and "file not found" in " ".join(missing.output.split())
    bad = tmp_path / "bad.yaml"
    bad.write_text("store: s\ndevice: d\ncameras: [{id: c, source: x, zones: 3}]\n")
    invalid = runner.invoke(app, ["analyze", "x.avi", "-c", str(bad)])
    assert invalid.exit_code == 2 and "cameras[0].zones" in " ".join(invalid.output.split())
    model = tmp_path / "model.yaml"
    text = SAMPLE_CONFIG.read_text().replace("asset:models/yolox_nano.onnx", str(bad))
    model.write_text(text)
    broken = runner.invoke(app, ["analyze", "asset:media/vtest.avi", "-c", str(model)])
    assert broken.exit_code == 1
    assert "not a loadable ONNX model" in " ".join(broken.output.split())


def test_bench_edge_writes_the_four_numbers(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "edge",
            "--config",
            str(SAMPLE_CONFIG),
            "--json",
            str(out),
            "--max-frames",
            "15",
            "--rounds",
            "2",
            "--motion-gate",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["decode_fps"] > data["bound_fps"] > 0
    assert data["pipeline_fps"] > 0
    assert abs(data["ratio"] - data["pipeline_fps"] / data["bound_fps"]) < 0.01
    assert data["environment"]["layout"] == "yolox"
    assert data["gated_pipeline_fps"] > 0 and 0 <= data["gated_skipped_fraction"] <= 1
    assert data["track_scene_ms_per_frame"] > 0 and 0 < data["same_pass_ratio"] < 1
    assert len(data["ratio_rounds"]) == 2 and data["events"] > 0


def test_camera_for_points_the_config_at_the_video() -> None:
    cfg = load_config(SAMPLE_CONFIG)
    cam = camera_for(cfg, "/videos/other.mp4", fps=25.0)
    assert cam.source == "/videos/other.mp4" and cam.source_fps == 25.0
    assert not cam.loop and not cam.realtime and cam.zones == cfg.cameras[0].zones
    with pytest.raises(ValueError, match="no camera 'nope'"):
        camera_for(cfg, "x.mp4", camera_id="nope")


def test_interrupted_analysis_still_closes_visits(tmp_path: Path) -> None:
    def stop_at_25(done: int, total: int | None, people: int) -> None:
        if done == 25:
            raise KeyboardInterrupt

    events = tmp_path / "events.jsonl"
    summary, _ = analyze(
        "asset:media/vtest.avi",
        load_config(SAMPLE_CONFIG),
        events_out=events,
        progress=stop_at_25,
    )
    assert summary.interrupted and summary.frames == 25
    kinds = [json.loads(line)["type"] for line in events.read_text().splitlines()]
    assert kinds.count("visit_started") == kinds.count("visit_ended") >= 1
