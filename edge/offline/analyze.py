"""Offline analysis of a video with a device config: events, MOT tracks, annotated video."""

from __future__ import annotations

import itertools
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from storelens.contract.events import LineCrossing, VisitStarted, ZoneVisit
from storelens.edge.camera.pipeline import CameraPipeline, PipelineEvent
from storelens.edge.config import CameraConfig, DeviceConfig
from storelens.edge.detect import Detections, Detector
from storelens.edge.detect.motion import MotionGate
from storelens.edge.detect.stride import DetectStride
from storelens.edge.offline.annotate import VideoAnnotator
from storelens.edge.offline.mot import MotWriter
from storelens.edge.sources.frames import FrameSource

MOT_HISTORY = 256  # frames back that late-confirmed sightings can still be written to
MOT_FILL_GAP_S = 1.0  # interpolate a track's boxes across detector gaps up to this long
# (frames done, frames expected or None, people in view now)
ProgressCallback = Callable[[int, int | None, int], None]


@dataclass
class ZoneDwell:
    visits: int
    mean_s: float
    median_s: float


@dataclass
class AnalysisSummary:
    frames: int = 0
    wall_s: float = 0.0
    visits: int = 0
    events: int = 0
    zone_dwell: dict[str, list[float]] = field(default_factory=dict)
    crossings: Counter[tuple[str, str]] = field(default_factory=Counter)
    interrupted: bool = False

    @property
    def effective_fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def add(self, event: PipelineEvent) -> None:
        self.events += 1
        if isinstance(event, VisitStarted):
            self.visits += 1
        elif isinstance(event, ZoneVisit):
            self.zone_dwell.setdefault(event.zone, []).append(event.dwell_s)
        elif isinstance(event, LineCrossing):
            self.crossings[(event.line, event.direction)] += 1

    def dwell(self, zone: str) -> ZoneDwell:
        times = self.zone_dwell.get(zone, [])
        if not times:
            return ZoneDwell(0, 0.0, 0.0)
        return ZoneDwell(len(times), statistics.fmean(times), statistics.median(times))

    def as_dict(self, camera: CameraConfig) -> dict:
        return {
            "frames": self.frames,
            "detect_every": camera.detect_every,
            "effective_fps": round(self.effective_fps, 2),
            "visits": self.visits,
            "events": self.events,
            "zones": {
                z.name: {k: round(v, 2) for k, v in vars(self.dwell(z.name)).items()}
                for z in camera.zones
            },
            "lines": {
                ln.name: {d: self.crossings[(ln.name, d)] for d in ("in", "out")}
                for ln in camera.lines
            },
        }


def camera_for(
    config: DeviceConfig, video: str, *, camera_id: str | None = None, fps: float | None = None
) -> CameraConfig:
    """The config's camera (first, or ``camera_id``) re-pointed at ``video`` for analysis."""
    if camera_id is None:
        camera = config.cameras[0]
    else:
        matches = [c for c in config.cameras if c.id == camera_id]
        if not matches:
            raise ValueError(f"no camera {camera_id!r} in the config")
        camera = matches[0]
    update: dict = {"source": video, "loop": False, "realtime": False}
    if fps is not None:
        update["source_fps"] = fps
    return camera.model_copy(update=update)


def analyze(
    video: str,
    config: DeviceConfig,
    *,
    camera_id: str | None = None,
    events_out: Path | None = None,
    mot_out: Path | None = None,
    annotated: Path | None = None,
    max_frames: int | None = None,
    fps: float | None = None,
    detect_every: int | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[AnalysisSummary, CameraConfig]:
    camera = camera_for(config, video, camera_id=camera_id, fps=fps)
    if detect_every is not None:
        camera = camera.with_detect_every(detect_every)
    m = config.model
    detector = Detector.from_config(m)
    source = FrameSource(camera.source, source_fps=camera.source_fps, target_fps=camera.fps)
    seq = itertools.count()
    pipeline = CameraPipeline(
        camera,
        config.tracker,
        device=config.device,
        next_seq=lambda: next(seq),
        attire=config.privacy.attire if config.privacy else False,
        fps=source.target_fps or source.fps,
    )
    expected = source.frame_count
    if max_frames is not None:
        expected = min(expected, max_frames) if expected else max_frames
    summary = AnalysisSummary()
    events_file = events_out.open("w") if events_out else None
    rate = source.target_fps or source.fps
    mot = None
    if mot_out:
        mot = MotRecorder(MotWriter(mot_out, fill_gaps=round(MOT_FILL_GAP_S * rate)))
    video_out = (
        VideoAnnotator(annotated, source.target_fps or source.fps, camera) if annotated else None
    )
    gate = MotionGate() if camera.motion_gate else None
    stride = DetectStride(camera.detect_every)
    detections = Detections.empty()
    last_ts = None
    started = time.perf_counter()
    try:
        try:
            for frame, ts in source:
                if max_frames is not None and summary.frames >= max_frames:
                    break
                due = stride.due()
                if due and (gate is None or gate.needs_detection(frame, ts.timestamp())):
                    t0 = time.perf_counter()
                    detections = detector.detect(frame)
                    pipeline.stats.note_inference((time.perf_counter() - t0) * 1000)
                events = pipeline.process(frame, ts, detections if due else None)
                summary.frames += 1
                last_ts = ts
                _record(events, summary, events_file)
                if mot:
                    mot.record(summary.frames, ts, pipeline)
                if video_out:
                    video_out.write(frame, pipeline.last_tracked)
                if progress:
                    progress(summary.frames, expected, len(pipeline.last_tracked))
        except KeyboardInterrupt:  # live sources run until stopped: still sum up
            summary.interrupted = True
        if last_ts is not None:
            _record(pipeline.flush(last_ts), summary, events_file)
    finally:
        summary.wall_s = time.perf_counter() - started
        source.close()
        for sink in (events_file, mot, video_out):
            if sink is not None:
                sink.close()
    return summary, camera


class MotRecorder:
    """Feeds a pipeline's tracks of each frame to a MOT writer, late confirmations included."""

    def __init__(self, writer: MotWriter) -> None:
        self.writer = writer
        self._frame_of: dict[float, int] = {}  # frame time (ms) -> MOT frame, recent frames

    def record(self, frame: int, ts: datetime, pipeline: CameraPipeline) -> None:
        self._frame_of[round(ts.timestamp(), 3)] = frame
        self.writer.write(frame, pipeline.last_tracked)
        for when, person in pipeline.confirmed_late:
            earlier = self._frame_of.get(round(when.timestamp(), 3))
            if earlier is not None:
                self.writer.write(earlier, [person])
        while len(self._frame_of) > MOT_HISTORY:
            self._frame_of.pop(next(iter(self._frame_of)))

    def close(self) -> None:
        self.writer.close()


def _record(events: list[PipelineEvent], summary: AnalysisSummary, out) -> None:
    for event in events:
        summary.add(event)
        if out is not None:
            out.write(event.model_dump_json() + "\n")


def print_summary(summary: AnalysisSummary, camera: CameraConfig, console) -> None:
    """The end-of-run table: frames, speed, visits, dwell per zone, crossings per line."""
    from rich.table import Table

    table = Table(title=f"storelens analyze: camera {camera.id}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("frames", str(summary.frames) + (" (interrupted)" if summary.interrupted else ""))
    table.add_row("effective fps", f"{summary.effective_fps:.1f}")
    table.add_row("visits", str(summary.visits))
    for zone in camera.zones:
        d = summary.dwell(zone.name)
        table.add_row(
            f"zone {zone.name}",
            f"{d.visits} visits, dwell mean {d.mean_s:.1f} s, median {d.median_s:.1f} s",
        )
    for line in camera.lines:
        n_in = summary.crossings[(line.name, "in")]
        n_out = summary.crossings[(line.name, "out")]
        table.add_row(f"line {line.name}", f"in {n_in}, out {n_out}")
    table.add_row("events", str(summary.events))
    console.print(table)
