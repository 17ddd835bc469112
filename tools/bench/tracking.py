"""Tracker accuracy (MOTA, IDF1) on a simulated camera: association quality alone.

The sample video has no ground truth, so the scene is simulated, deterministically from a
seed: a 640x480 camera at 10 fps watches people enter at random times from the left, right
and bottom edges and walk across at 50-110 px/s (scaled with perspective), some paths
crossing, some people stopping a few seconds to browse before walking on. A person's box is
about 40x100 px, taller nearer the camera (larger y). The detector is simulated from the true
boxes: Gaussian jitter of a few pixels, random misses (~10 %), more misses for a person
hidden behind one nearer the camera (larger y2, IoU above ~0.3), short-lived false positives
and confidences mostly above 0.5 with some low ones (ByteTrack's second association).

``PersonTracker`` with the given config adapted by ``for_stride(config, k, fps)`` then runs as the
agent drives it: ``update`` on detection frames (``DetectStride``: frames 0, k, 2k, ...) and
``predict`` on the frames in between; its output on every frame is scored with
``motmetrics`` (IoU distance, matches need IoU >= 0.5). Only what the tracker outputs live
counts: a track comes out once confirmed (``confirm_s``) and moved (``confirm_move``), so the
first few frames of every person are misses by design (offline analysis recovers them later
through ``confirmed_late``; that replay is not scored here).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import supervision as sv

from storelens.edge.config import TrackerConfig
from storelens.edge.detect import Detections
from storelens.edge.detect.stride import DetectStride
from storelens.edge.track.tracker import PersonTracker, TrackedPerson, for_stride

MATCH_IOU = 0.5  # a hypothesis matches a true box at IoU >= this (motmetrics max_iou 0.5)
METRICS = {
    "mota": "mota",
    "idf1": "idf1",
    "id_switches": "num_switches",
    "fragmentations": "num_fragmentations",
    "precision": "precision",
    "recall": "recall",
}


class TrackBenchError(RuntimeError):
    """The bench cannot run (a missing dependency)."""


def require_motmetrics() -> ModuleType:
    try:
        import motmetrics
    except ImportError:
        raise TrackBenchError(
            "the tracking bench needs motmetrics: pip install 'motmetrics>=1.4' "
            "(the edge extra has it)"
        ) from None
    return motmetrics


@dataclass(frozen=True)
class Scene:
    """What is simulated; the defaults are the bench's scene."""

    seconds: float = 90.0
    fps: float = 10.0
    width: int = 640
    height: int = 480
    people_per_minute: float = 16.0
    crossing: bool = True  # False: a path that would overlap another person's is redrawn
    stop_chance: float = 0.3  # share of people who stop 2-6 s on their way
    jitter_px: float = 3.0  # sigma of the detector's box corners
    miss_rate: float = 0.10
    occluded_miss_rate: float = 0.5  # for a person behind a nearer one (IoU > occlusion_iou)
    occlusion_iou: float = 0.3
    false_positives_per_minute: float = 4.0  # each lasts 0.3-1.5 s
    low_confidence_rate: float = 0.15  # detections with confidence 0.35-0.5


@dataclass
class Simulation:
    """Per frame: the true (id, box) pairs and the simulated detections."""

    scene: Scene
    truth: list[list[tuple[int, np.ndarray]]]
    detections: list[Detections]
    people: int
    crossings: int  # pairs of people whose boxes overlapped with IoU > occlusion_iou
    false_positives: int


def _box(scene: Scene, x: float, y_feet: float) -> np.ndarray:
    """A person's box with feet at (x, y_feet): 80 px tall at mid-frame, 120 at the bottom."""
    h = 80.0 + 40.0 * (y_feet - scene.height / 2) / (scene.height / 2)
    w = 0.4 * h
    return np.array([x - w / 2, y_feet - h, x + w / 2, y_feet], np.float64)


def _visible(scene: Scene, box: np.ndarray) -> np.ndarray | None:
    """The box clipped to the frame, or None when less than half of it is inside."""
    clipped = np.clip(box, [0, 0, 0, 0], [scene.width, scene.height, scene.width, scene.height])
    area = (box[2] - box[0]) * (box[3] - box[1])
    inside = max(clipped[2] - clipped[0], 0) * max(clipped[3] - clipped[1], 0)
    return clipped if inside >= 0.5 * area else None


def _walk(scene: Scene, rng: np.random.Generator, start: int) -> list[tuple[int, np.ndarray]]:
    """One person's visible boxes from frame ``start`` on: enter at an edge, cross, leave."""
    w, h = scene.width, scene.height
    edge = rng.choice(["left", "right", "bottom"], p=[0.4, 0.4, 0.2])
    y0 = rng.uniform(0.55 * h, 0.97 * h)
    if edge == "bottom":
        a = np.array([rng.uniform(0.2 * w, 0.8 * w), h + 60.0])
        b = np.array([-40.0 if rng.random() < 0.5 else w + 40.0, rng.uniform(0.5 * h, 0.7 * h)])
    else:
        y1 = float(np.clip(y0 + rng.uniform(-0.15 * h, 0.15 * h), 0.5 * h, 0.97 * h))
        a, b = np.array([-40.0, y0]), np.array([w + 40.0, y1])
        if edge == "right":
            a, b = b, a
    length = float(np.hypot(*(b - a)))
    speed = rng.uniform(50.0, 110.0)  # px/s for a 100 px tall person
    stop_at, stop_s = math.inf, 0.0
    if rng.random() < scene.stop_chance:
        stop_at, stop_s = rng.uniform(0.3, 0.7) * length, rng.uniform(2.0, 6.0)
    boxes: list[tuple[int, np.ndarray]] = []
    travelled, paused, frame, dt = 0.0, 0.0, start, 1.0 / scene.fps
    total_frames = round(scene.seconds * scene.fps)
    while travelled <= length and frame < total_frames:
        x, y = a + (b - a) * (travelled / length)
        box = _box(scene, x, y)
        seen = _visible(scene, box)
        if seen is not None:
            boxes.append((frame, seen))
        scale = (box[3] - box[1]) / 100.0
        if travelled >= stop_at and paused < stop_s:
            paused += dt
        else:
            travelled += speed * scale * dt
        frame += 1
    return boxes


def _overlaps(path: list[tuple[int, np.ndarray]], by_frame: dict[int, list[np.ndarray]]) -> bool:
    for frame, box in path:
        others = by_frame.get(frame)
        if others and sv.box_iou_batch(box[None], np.array(others)).max() > 0:
            return True
    return False


def simulate(scene: Scene, seed: int) -> Simulation:
    """The scene's ground truth and detections, the same for the same seed."""
    rng = np.random.default_rng(seed)
    frames = round(scene.seconds * scene.fps)
    count = max(1, round(scene.people_per_minute * scene.seconds / 60.0))
    starts = np.sort(rng.uniform(0, max(frames - 5 * scene.fps, 1), count)).astype(int)
    paths: dict[int, list[tuple[int, np.ndarray]]] = {}
    by_frame: dict[int, list[np.ndarray]] = {}
    for start in starts:
        for _ in range(50):  # without crossings, redraw paths that would overlap another
            path = _walk(scene, rng, int(start))
            if path and (scene.crossing or not _overlaps(path, by_frame)):
                break
        else:
            continue
        person = len(paths) + 1
        paths[person] = path
        for frame, box in path:
            by_frame.setdefault(frame, []).append(box)

    truth: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(frames)]
    for person, path in paths.items():
        for frame, box in path:
            truth[frame].append((person, box))

    crossed: set[tuple[int, int]] = set()
    detections: list[Detections] = []
    false_boxes: list[tuple[int, int, np.ndarray]] = []  # first frame, last frame, box
    fp_chance = scene.false_positives_per_minute / (60.0 * scene.fps)
    false_positives = 0
    for frame in range(frames):
        people = truth[frame]
        boxes = np.array([box for _, box in people]).reshape(-1, 4)
        iou = sv.box_iou_batch(boxes, boxes)
        xyxy: list[np.ndarray] = []
        conf: list[float] = []
        for i, (person, box) in enumerate(people):
            overlapping = [
                j for j in range(len(people)) if j != i and iou[i, j] > scene.occlusion_iou
            ]
            for j in overlapping:
                crossed.add((min(person, people[j][0]), max(person, people[j][0])))
            behind = any(boxes[j, 3] > box[3] for j in overlapping)  # a nearer one hides it
            miss = scene.occluded_miss_rate if behind else scene.miss_rate
            if rng.random() < miss:
                continue
            xyxy.append(box + rng.normal(0.0, scene.jitter_px, 4) if scene.jitter_px else box)
            low = rng.random() < (scene.low_confidence_rate * (2 if behind else 1))
            conf.append(rng.uniform(0.35, 0.5) if low else rng.uniform(0.55, 0.95))
        if rng.random() < fp_chance:
            y_feet = rng.uniform(0.5 * scene.height, scene.height)
            fp = _box(scene, rng.uniform(30, scene.width - 30), y_feet)
            fp = np.clip(fp, 0, [scene.width, scene.height, scene.width, scene.height])
            false_boxes.append((frame, frame + int(rng.uniform(0.3, 1.5) * scene.fps), fp))
            false_positives += 1
        for first, last, fp in false_boxes:
            if first <= frame <= last:
                xyxy.append(fp + rng.normal(0.0, max(scene.jitter_px, 1.0), 4))
                conf.append(rng.uniform(0.35, 0.7))
        false_boxes = [f for f in false_boxes if f[1] > frame]
        detections.append(
            Detections(
                np.array(xyxy, np.float32).reshape(-1, 4), np.array(conf, np.float32).reshape(-1)
            )
        )
    return Simulation(scene, truth, detections, len(paths), len(crossed), false_positives)


def track(sim: Simulation, config: TrackerConfig, detect_every: int) -> list[list[TrackedPerson]]:
    """The tracker's output on every frame, driven as the agent drives it with stride k."""
    tracker = PersonTracker(
        for_stride(config, detect_every, sim.scene.fps),
        sim.scene.fps / detect_every,
        detect_every,
        frame_size=(sim.scene.width, sim.scene.height),
    )
    stride = DetectStride(detect_every)
    out = []
    for frame, detections in enumerate(sim.detections):
        t = frame / sim.scene.fps
        out.append(tracker.update(detections, t) if stride.due() else tracker.predict(t))
    return out


def _distances(truth: np.ndarray, hyps: np.ndarray) -> np.ndarray:
    """motmetrics' IoU distance (1 - IoU, NaN where IoU < MATCH_IOU).

    Computed here because ``motmetrics.distances.iou_matrix`` 1.4 calls ``np.asfarray``,
    which NumPy 2 removed.
    """
    dist = 1.0 - sv.box_iou_batch(truth, hyps).astype(np.float64)
    dist[dist > 1.0 - MATCH_IOU] = np.nan
    return dist


def score(sim: Simulation, tracked: list[list[TrackedPerson]]) -> dict[str, float | int]:
    """CLEAR MOT and identity metrics of the tracker output over every frame."""
    mm = require_motmetrics()
    acc = mm.MOTAccumulator(auto_id=True)
    for truth, people in zip(sim.truth, tracked, strict=True):
        gt = np.array([box for _, box in truth], np.float64).reshape(-1, 4)
        hyp = np.array([p.xyxy for p in people], np.float64).reshape(-1, 4)
        acc.update([pid for pid, _ in truth], [p.track_id for p in people], _distances(gt, hyp))
    summary = mm.metrics.create().compute(acc, metrics=list(METRICS.values()), name="track")
    row = summary.iloc[0]
    result: dict[str, float | int] = {}
    for key, name in METRICS.items():
        value = float(row[name])
        result[key] = int(value) if name.startswith("num_") else round(value, 4)
    return result


def run_track_bench(
    seed: int = 1,
    seconds: float = 90.0,
    detect_every: tuple[int, ...] = (1, 2, 3),
    config: TrackerConfig | None = None,
    scene: Scene | None = None,
) -> dict[str, Any]:
    """Simulate once (``scene``, default: the bench's scene of ``seconds``), then track and
    score for each stride; the bench's JSON result."""
    require_motmetrics()
    config = config or TrackerConfig()
    scene = scene or Scene(seconds=seconds)
    sim = simulate(scene, seed)
    results: dict[str, dict[str, Any]] = {}
    for k in detect_every:
        started = time.perf_counter()
        tracked = track(sim, config, k)
        results[str(k)] = {
            **score(sim, tracked),
            "match_iou": round(for_stride(config, k, sim.scene.fps).match_iou, 4),
            "wall_s": round(time.perf_counter() - started, 3),
        }
    return {
        "seed": seed,
        "seconds": scene.seconds,
        "fps": scene.fps,
        "frames": len(sim.truth),
        "people": sim.people,
        "crossings": sim.crossings,
        "false_positives": sim.false_positives,
        "true_boxes": sum(len(t) for t in sim.truth),
        "detections": sum(len(d) for d in sim.detections),
        "tracker": config.type,
        "match_iou_for_scoring": MATCH_IOU,
        "detect_every": results,
    }
