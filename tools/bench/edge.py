"""`storelens bench edge`: how close the full pipeline runs to decode + inference speed.

Three measurements in one process: decoding alone, decoding plus inference (the physical
bound of this model on this machine), and the full pipeline (decode, detect, track, zones,
lines, events serialised). The bound and pipeline passes (and a motion-gated pass) each
read the whole video, but take turns a chunk of frames at a time, so on a shared machine
they see the same load; separate back-to-back passes can differ by 20% from load alone.
``same_pass_ratio`` times decode + detect against the whole within the pipeline pass itself.
"""

from __future__ import annotations

import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from storelens.edge.camera.pipeline import CameraPipeline
from storelens.edge.config import CameraConfig, DeviceConfig
from storelens.edge.detect import Detections, Detector
from storelens.edge.detect.motion import MotionGate
from storelens.edge.offline.analyze import camera_for
from storelens.edge.sources.frames import FrameSource

CHUNK = 25  # frames per turn: about a second of work, short against changes in load

FrameStep = Callable[[np.ndarray, datetime], None]


class Lane:
    """One timed pass over the video, advanced a chunk at a time (decoding is timed too)."""

    def __init__(self, camera: CameraConfig, max_frames: int | None, step: FrameStep) -> None:
        self.source = FrameSource(camera.source, source_fps=camera.source_fps)
        self._frames = iter(self.source)
        self.max_frames = max_frames
        self.step = step
        self.count = 0
        self.elapsed = 0.0
        self.done = False

    def advance(self, n: int) -> None:
        started = time.perf_counter()
        for _ in range(n):
            if self.max_frames is not None and self.count >= self.max_frames:
                self.done = True
                break
            item = next(self._frames, None)
            if item is None:
                self.done = True
                break
            self.step(*item)
            self.count += 1
        self.elapsed += time.perf_counter() - started
        if self.done:
            self.source.close()

    @property
    def fps(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0


def run_lanes(lanes: list[Lane], chunk: int = CHUNK) -> None:
    while not all(lane.done for lane in lanes):
        for lane in lanes:
            if not lane.done:
                lane.advance(chunk)


@dataclass
class PipelineStep:
    """Detect (unless the motion gate says nothing moved), then the whole camera pipeline."""

    pipeline: CameraPipeline
    detector: Detector
    gate: MotionGate | None = None
    events: int = 0
    scene_s: float = 0.0  # time after detection: track, zones, lines, events as JSON
    frames: int = 0
    _last: Detections = field(default_factory=Detections.empty)

    def __call__(self, frame: np.ndarray, ts: datetime) -> None:
        if self.gate is None or self.gate.needs_detection(frame, ts.timestamp()):
            self._last = self.detector.detect(frame)
        started = time.perf_counter()
        for event in self.pipeline.process(frame, ts, self._last):
            event.model_dump_json()  # the outbox stores JSON: count its cost too
            self.events += 1
        self.scene_s += time.perf_counter() - started
        self.frames += 1


@dataclass(frozen=True)
class Round:
    bound_fps: float
    pipeline_fps: float
    ratio: float
    scene_ms: float
    same_pass_ratio: float
    events: int
    gated_fps: float | None
    skipped: float | None


def _round(
    camera: CameraConfig,
    config: DeviceConfig,
    detector: Detector,
    max_frames: int | None,
    gated: bool,
) -> Round:
    def pipeline_step(gate: MotionGate | None) -> PipelineStep:
        seq = itertools.count()
        pipe = CameraPipeline(
            camera, config.tracker, device=config.device, next_seq=lambda: next(seq)
        )
        return PipelineStep(pipe, detector, gate)

    full = pipeline_step(None)
    bound = Lane(camera, max_frames, lambda frame, ts: detector.detect(frame))
    lanes = [bound, Lane(camera, max_frames, full)]
    gated_step = pipeline_step(MotionGate()) if gated else None
    if gated_step is not None:
        lanes.append(Lane(camera, max_frames, gated_step))
    run_lanes(lanes)
    full.events += len(full.pipeline.flush())  # visits still open at the end
    pipeline_fps = lanes[1].fps
    gate = gated_step.gate if gated_step else None
    return Round(
        bound_fps=bound.fps,
        pipeline_fps=pipeline_fps,
        ratio=pipeline_fps / bound.fps if bound.fps else 0.0,
        scene_ms=1000 * full.scene_s / max(full.frames, 1),
        same_pass_ratio=1 - full.scene_s / lanes[1].elapsed if lanes[1].elapsed else 0.0,
        events=full.events,
        gated_fps=lanes[2].fps if gated_step else None,
        skipped=gate.skipped / max(1, gate.checked) if gate else None,
    )


def run_bench(
    video: str,
    config: DeviceConfig,
    *,
    max_frames: int | None = None,
    rounds: int = 1,
    motion_gate: bool | None = None,
) -> dict:
    camera = camera_for(config, video)
    m = config.model
    detector = Detector.from_config(m)
    decode = Lane(camera, max_frames, lambda frame, ts: None)
    run_lanes([decode])
    gated = camera.motion_gate if motion_gate is None else motion_gate
    done = sorted(
        (_round(camera, config, detector, max_frames, gated) for _ in range(rounds)),
        key=lambda r: r.ratio,
    )
    mid = done[len(done) // 2]  # the median round, with its own fps figures
    result: dict = {
        "decode_fps": round(decode.fps, 1),
        "bound_fps": round(mid.bound_fps, 1),
        "pipeline_fps": round(mid.pipeline_fps, 1),
        "ratio": round(mid.ratio, 3),
        "events": mid.events,
        "track_scene_ms_per_frame": round(mid.scene_ms, 3),
        "same_pass_ratio": round(statistics.median(r.same_pass_ratio for r in done), 3),
    }
    if rounds > 1:
        result["ratio_rounds"] = [round(r.ratio, 3) for r in done]
    if mid.gated_fps is not None and mid.skipped is not None:
        result["gated_pipeline_fps"] = round(mid.gated_fps, 1)
        result["gated_ratio"] = round(mid.gated_fps / mid.bound_fps, 3) if mid.bound_fps else 0.0
        result["gated_skipped_fraction"] = round(mid.skipped, 3)
    result["environment"] = {
        "video": video,
        "frames_per_pass": max_frames,
        "rounds": rounds,
        "model": m.path,
        "layout": detector.layout.value,
        "ort_threads": m.threads,
        "providers": detector.providers,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    return result
