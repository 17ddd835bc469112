"""Offline analysis of a whole store: every camera of a device config, frame by frame in
lockstep, through the same pipelines and (with ``store_visits``) the same fusion as the agent.

File sources of one store are read side by side in frame-time order: each source's frames are
stamped from its own frame rate (a camera's ``fps`` may subsample it) from a common start,
plus an optional per-camera clock offset, so the crops of one video can be played as cameras
at different rates and on clocks that disagree, as live cameras are.
"""

from __future__ import annotations

import heapq
import itertools
import statistics
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from storelens.contract.events import LineCrossing, VisitEnded, VisitStarted, ZoneVisit
from storelens.edge.camera.pipeline import CameraPipeline
from storelens.edge.config import DeviceConfig
from storelens.edge.detect import Detector
from storelens.edge.detect.stride import DetectStride
from storelens.edge.fusion.store_visits import StoreVisits
from storelens.edge.sources.frames import FrameSource, open_source


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
    fusion: dict[str, Any] = field(default_factory=dict)

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


def _by_time(
    sources: list[FrameSource], max_frames: int | None
) -> Iterator[tuple[int, Any, datetime]]:
    """(source index, frame, ts) of every source, oldest first (ties: source order), each
    source stopping after ``max_frames``; all stop when the first source ends (its
    recording is over)."""
    iterators = [iter(s) for s in sources]
    read = [0] * len(sources)
    heap: list[tuple[datetime, int, Any]] = []
    for i, it in enumerate(iterators):
        item = next(it, None)
        if item is None:
            return
        heapq.heappush(heap, (item[1], i, item[0]))
    while heap:
        ts, i, frame = heapq.heappop(heap)
        yield i, frame, ts
        read[i] += 1
        if max_frames is not None and read[i] >= max_frames:
            continue
        item = next(iterators[i], None)
        if item is None:
            return
        heapq.heappush(heap, (item[1], i, item[0]))


def analyze_store(
    config: DeviceConfig,
    *,
    max_frames: int | None = None,
    detector: Detector | None = None,
    start: datetime | None = None,
    clock_offsets: Mapping[str, float] | None = None,
) -> StoreSummary:
    """``start``: the time of every source's first frame (default now), so runs compare;
    ``clock_offsets``: seconds added to a camera's frame times (a clock that runs ahead)."""
    m = config.model
    detector = detector or Detector.from_config(m)
    cameras = [c.model_copy(update={"loop": False, "realtime": False}) for c in config.cameras]
    unknown = sorted(set(clock_offsets or {}) - {c.id for c in cameras})
    if unknown:
        raise ValueError(f"clock offsets for unknown camera(s): {', '.join(unknown)}")
    start = start or datetime.now(UTC)
    offsets = clock_offsets or {}
    sources = [
        open_source(c, start=start + timedelta(seconds=offsets.get(c.id, 0.0))) for c in cameras
    ]
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
    frames = [0] * len(cameras)
    try:
        for i, frame, ts in _by_time(sources, max_frames):
            frames[i] += 1
            pipe, stride = pipelines[i], strides[i]
            dets = detector.detect(frame) if stride.due() else None
            events = pipe.process(frame, ts, dets)
            if fused is not None:
                events = fused.push(pipe.camera.id, ts.timestamp(), events, pipe.sightings(),
                                    frame)  # fmt: skip
            for e in events:
                summary.add(e)
        summary.frames = max(frames)
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
                "late_frames": fused.late_frames,
                "clock_offsets_s": dict(fused.clock_offsets),
            }
    finally:
        for s in sources:
            s.close()
    return summary
