"""Offline analysis of a whole store: every camera of a device config, frame by frame in
lockstep, through the same pipelines and (with ``store_visits``) the same fusion as the agent.

File sources of one store are read side by side: frame k of every camera is taken to be the
same moment (true for the crops of one video, and for recordings started together).
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storelens.contract.events import LineCrossing, VisitEnded, VisitStarted, ZoneVisit
from storelens.edge.config import DeviceConfig
from storelens.edge.detect import Detector
from storelens.edge.detect.stride import DetectStride
from storelens.edge.pipeline import CameraPipeline
from storelens.edge.sources import FrameSource, open_source
from storelens.edge.store_visits import StoreVisits


@dataclass
class StoreSummary:
    """What a store's events add up to (the numbers compared across camera layouts)."""

    frames: int = 0
    visits: int = 0
    crossings: Counter[tuple[str, str]] = field(default_factory=Counter)
    zone_dwell: dict[str, list[float]] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    paths: list[list[list[float]]] = field(default_factory=list)
    cameras_per_visit: Counter[int] = field(default_factory=Counter)
    events: list[Any] = field(default_factory=list)
    fusion: dict[str, int] = field(default_factory=dict)

    def add(self, event: Any) -> None:
        self.events.append(event)
        if isinstance(event, VisitStarted):
            self.visits += 1
        elif isinstance(event, LineCrossing):
            self.crossings[(event.line, event.direction)] += 1
        elif isinstance(event, ZoneVisit):
            self.zone_dwell.setdefault(event.zone, []).append(event.dwell_s)
        elif isinstance(event, VisitEnded):
            self.durations.append(event.duration_s)
            self.paths.append(event.path)
            self.cameras_per_visit[len(event.cameras or [event.camera])] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "visits": self.visits,
            "crossings": {f"{line}:{d}": n for (line, d), n in sorted(self.crossings.items())},
            "zones": {
                z: {"visits": len(v), "median_dwell_s": round(statistics.median(v), 2)}
                for z, v in sorted(self.zone_dwell.items())
            },
            "median_visit_s": round(statistics.median(self.durations), 2) if self.durations else 0,
            "cameras_per_visit": dict(sorted(self.cameras_per_visit.items())),
            "fusion": self.fusion,
        }


def _lockstep(sources: list[FrameSource]) -> Iterator[list[tuple[Any, Any]]]:
    iterators = [iter(s) for s in sources]
    while True:
        frames = []
        for it in iterators:
            item = next(it, None)
            if item is None:
                return
            frames.append(item)
        yield frames


def analyze_store(
    config: DeviceConfig,
    *,
    max_frames: int | None = None,
    detector: Detector | None = None,
    start: datetime | None = None,
) -> StoreSummary:
    """``start``: the time of every source's first frame (default now), so runs compare."""
    m = config.model
    detector = detector or Detector.from_config(m)
    cameras = [c.model_copy(update={"loop": False, "realtime": False}) for c in config.cameras]
    start = start or datetime.now(UTC)
    sources = [open_source(c, start=start) for c in cameras]
    summary = StoreSummary()
    seq = itertools.count()
    fused = StoreVisits(config, lambda: next(seq)) if config.store_visits else None
    part_seq = itertools.count()  # fused: the pipelines' own numbers are replaced
    pipelines = [
        CameraPipeline(
            cam,
            config.tracker,
            device=config.device,
            next_seq=(lambda: next(part_seq)) if fused else (lambda: next(seq)),
            fps=src.target_fps or src.fps,
        )
        for cam, src in zip(cameras, sources, strict=True)
    ]
    strides = [DetectStride(c.detect_every, phase=i) for i, c in enumerate(cameras)]
    try:
        for frames in _lockstep(sources):
            if max_frames is not None and summary.frames >= max_frames:
                break
            summary.frames += 1
            for pipe, stride, (frame, ts) in zip(pipelines, strides, frames, strict=True):
                dets = detector.detect(frame) if stride.due() else None
                events = pipe.process(frame, ts, dets)
                if fused is not None:
                    events = fused.push(pipe.camera.id, ts.timestamp(), events,
                                        pipe.sightings(), frame)  # fmt: skip
                for e in events:
                    summary.add(e)
        if fused is not None:
            for e in fused.drain():
                summary.add(e)
        for pipe in pipelines:
            events = pipe.flush()
            for e in fused.route(pipe.camera.id, events) if fused else events:
                summary.add(e)
        if fused is not None:
            for e in fused.flush():
                summary.add(e)
            summary.fusion = {
                "store_visits": fused.started,
                "joined_overlap": fused.joined_overlap,
                "joined_handoff": fused.joined_handoff,
                "ambiguous_handoffs": fused.ambiguous_handoffs,
            }
    finally:
        for s in sources:
            s.close()
    return summary
