"""Frame sources: timestamps from the frame rate, overrides, subsampling, looping, bad sources."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from storelens.edge.config import CameraConfig
from storelens.edge.sources.frames import FrameSource, SourceError, open_source

START = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten 64x48 frames at 20 fps, frame i filled with grey level 20*i."""
    path = tmp_path_factory.mktemp("media") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    return path


def offsets(source: FrameSource, limit: int = 1000) -> list[float]:
    out = []
    for _, ts in source:
        out.append(round((ts - START).total_seconds(), 4))
        if len(out) >= limit:
            break
    return out


def test_timestamps_follow_the_container_rate(clip: Path) -> None:
    with FrameSource(str(clip), start=START) as source:
        assert source.fps == 20.0 and (source.width, source.height) == (64, 48)
        assert source.frame_count == 10
        assert offsets(source) == [round(i * 0.05, 4) for i in range(10)]


def test_source_fps_overrides_the_container(clip: Path) -> None:
    with FrameSource(str(clip), source_fps=10.0, start=START) as source:
        assert offsets(source) == [round(i * 0.1, 4) for i in range(10)]


def test_target_fps_keeps_frames_evenly(clip: Path) -> None:
    with FrameSource(str(clip), target_fps=5.0, start=START) as source:
        assert offsets(source) == [0.0, 0.2, 0.4]  # 10 frames at 20 fps = 0.5 s
        assert source.frames_skipped == 7


def test_loop_replays_with_monotonic_time(clip: Path) -> None:
    camera = CameraConfig(id="c", source=str(clip), loop=True)
    with open_source(camera, start=START) as source:
        ts = offsets(source, limit=25)
        frames = []
    assert ts == [round(i * 0.05, 4) for i in range(25)]
    with open_source(camera, start=START) as source:
        for frame, _ in source:
            frames.append(int(frame[0, 0, 0]))
            if len(frames) == 12:
                break
    assert abs(frames[10] - frames[0]) <= 3  # back at the first frame after ten


def test_realtime_paces_a_file(clip: Path) -> None:
    started = time.monotonic()
    with FrameSource(str(clip), realtime=True) as source:
        count = sum(1 for _ in source)
    assert count == 10
    assert time.monotonic() - started >= 0.4  # 10 frames at 20 fps, first one immediate


def test_live_sources_use_the_wall_clock(clip: Path) -> None:
    # A URL-like name is treated as live; file:// makes it readable here.
    source = FrameSource(f"file://{clip}")
    before = datetime.now(UTC)
    _, ts = next(iter(source))
    source.close()
    assert source.live and before - timedelta(seconds=1) <= ts <= datetime.now(UTC)


def test_unopenable_sources_raise_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="file not found"):
        FrameSource(str(tmp_path / "missing.avi"))
    text = tmp_path / "notes.avi"
    text.write_text("not a video")
    with pytest.raises(SourceError, match="cannot open"):
        FrameSource(str(text))
    with pytest.raises(SourceError, match="unknown asset"):
        FrameSource("asset:media/nothing.avi")


def test_bench_lanes_take_turns_over_the_whole_video(clip: Path) -> None:
    from storelens.tools.bench.edge import Lane, run_lanes

    camera = CameraConfig(id="c", source=str(clip))
    calls: list[str] = []
    a = Lane(camera, None, lambda frame, ts: calls.append("a"))
    b = Lane(camera, 7, lambda frame, ts: calls.append("b"))
    run_lanes([a, b], chunk=3)
    assert (a.count, b.count) == (10, 7) and a.done and b.done
    assert "".join(calls) == "aaabbbaaabbbaaab" + "a"
    assert a.fps > 0 and b.fps > 0
