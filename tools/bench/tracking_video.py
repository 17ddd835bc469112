"""Tracker accuracy on a real video against MOTChallenge ground truth.

The detector runs once per frame (its boxes are cached in memory, optionally in an .npz
file); then every variant tracks from the same boxes: storelens' pipeline at each detection
stride (as configured, and with re-association, ``storelens+stitch``, when the config has it
off), and each tracker `trackers` ships with its default settings (the peers). Our rows are
what ``storelens analyze --mot-out`` writes (late-confirmed sightings and short detector
gaps filled in); a peer's are its confirmed output, held on frames the detector skips.

Scoring is `trackers.eval` (Roboflow's port of TrackEval, checked there against TrackEval's
numbers): CLEAR (MOTA, ID switches), Identity (IDF1) and HOTA at IoU 0.5, over the whole
clip and over each part of ``splits`` (frame ranges), so a setting tuned on one part can be
checked on the other. People counted: distinct IDs the variant output in the range, against
the ground truth's distinct IDs; for storelens also the visits it reported.
"""

from __future__ import annotations

import itertools
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import supervision as sv

from storelens.assets import resolve
from storelens.contract.events import VisitStarted
from storelens.edge.camera.pipeline import CameraPipeline
from storelens.edge.config import DeviceConfig
from storelens.edge.detect import Detections, Detector
from storelens.edge.detect.stride import DetectStride
from storelens.edge.offline.analyze import MOT_FILL_GAP_S, MotRecorder, camera_for
from storelens.edge.offline.mot import MotWriter
from storelens.edge.sources.frames import FrameSource
from storelens.tools.bench.tracking import TrackBenchError

MATCH_IOU = 0.5
STITCH_S = 4.0  # the re-association window of the "storelens+stitch" rows


def _peers() -> dict[str, Callable[..., Any]]:
    """Every tracker the installed `trackers` ships for boxes (McByte needs masks: left out)."""
    import trackers

    names = {
        "sort": "SORTTracker",
        "bytetrack": "ByteTrackTracker",
        "ocsort": "OCSORTTracker",
        "botsort": "BoTSORTTracker",
        "cbiou": "CBIoUTracker",
    }
    return {key: getattr(trackers, cls) for key, cls in names.items() if hasattr(trackers, cls)}


def load_detections(path: Path) -> list[Detections]:
    data = np.load(path)
    frames = [data[f"arr_{i}"] for i in range(len(data.files))]
    return [Detections(f[:, :4].astype(np.float32), f[:, 4].astype(np.float32)) for f in frames]


def save_detections(path: Path, detections: list[Detections]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [np.concatenate([d.xyxy, d.confidence[:, None]], 1) for d in detections]
    np.savez_compressed(path, *rows)


def detect_all(video: str, config: DeviceConfig, cache: Path | None) -> list[Detections]:
    """The detector's boxes for every frame of ``video`` (from ``cache`` if it exists)."""
    if cache is not None and cache.exists():
        return load_detections(cache)
    m = config.model
    detector = Detector.from_config(m)
    source = FrameSource(video)
    try:
        detections = [detector.detect(frame) for frame, _ in source]
    finally:
        source.close()
    if cache is not None:
        save_detections(cache, detections)
    return detections


def run_ours(
    video: str, config: DeviceConfig, detections: list[Detections], k: int, out: Path
) -> int:
    """storelens' pipeline with detections on every k-th frame; MOT rows to ``out``; visits."""
    camera = camera_for(config, video).with_detect_every(k)
    source = FrameSource(camera.source, source_fps=camera.source_fps)
    seq = itertools.count()
    pipeline = CameraPipeline(
        camera, config.tracker, device=config.device, next_seq=lambda: next(seq), fps=source.fps
    )
    stride = DetectStride(k)
    mot = MotRecorder(MotWriter(out, fill_gaps=round(MOT_FILL_GAP_S * source.fps)))
    visits = 0
    last_ts = None
    try:
        for n, ((frame, ts), dets) in enumerate(zip(source, detections, strict=False), start=1):
            events = pipeline.process(frame, ts, dets if stride.due() else None)
            visits += sum(isinstance(e, VisitStarted) for e in events)
            mot.record(n, ts, pipeline)
            last_ts = ts
        if last_ts is not None:
            pipeline.flush(last_ts)
    finally:
        source.close()
        mot.close()
    return visits


def run_peer(
    make: Callable[..., Any], video: str, detections: list[Detections], k: int, out: Path
) -> None:
    """A `trackers` tracker with default settings, fed the detections of every k-th frame."""
    source = FrameSource(video)
    tracker = make(frame_rate=source.fps / k)
    held = sv.Detections.empty()
    try:
        with out.open("w") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for n, ((frame, _), dets) in enumerate(zip(source, detections, strict=False), 1):
                if (n - 1) % k == 0:
                    sv_dets = sv.Detections(
                        xyxy=dets.xyxy.reshape(-1, 4),
                        confidence=dets.confidence,
                        class_id=np.zeros(len(dets), int),
                    )
                    result = tracker.update(sv_dets, frame)
                    keep = result.tracker_id >= 0 if result.tracker_id is not None else []
                    held = result[keep] if len(result) else result
                for box, tid in zip(held.xyxy, held.tracker_id if len(held) else [], strict=True):
                    x1, y1, x2, y2 = (float(v) for v in box)
                    f.write(f"{n},{int(tid) + 1},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f}")
                    f.write(",1,-1,-1,-1\n")
    finally:
        source.close()


def _rows(path: Path) -> np.ndarray:
    rows = np.loadtxt(path, delimiter=",", ndmin=2) if path.stat().st_size else np.empty((0, 10))
    return rows.reshape(-1, rows.shape[1] if rows.size else 10)


def _write_range(rows: np.ndarray, first: int, last: int, out: Path) -> int:
    """Rows of frames first..last renumbered from frame 1; the number of distinct IDs with a
    scored row (MOT class 1 where the file has classes: ground truth distractors are not)."""
    part = rows[(rows[:, 0] >= first) & (rows[:, 0] <= last)].copy()
    part[:, 0] -= first - 1
    with out.open("w") as f:
        for r in part:
            f.write(f"{int(r[0])},{int(r[1])}," + ",".join(f"{v:g}" for v in r[2:]) + "\n")
    scored = part[part[:, 7] == 1] if part.shape[1] > 7 and (part[:, 7] > 0).any() else part
    return len(np.unique(scored[:, 1])) if len(scored) else 0


def score(gt: Path, hyp: Path, first: int, last: int, work: Path) -> dict[str, Any]:
    """MOTA, IDF1, HOTA, ID switches and people counted over frames first..last."""
    from trackers.eval import evaluate_mot_sequence

    gt_part, hyp_part = work / "gt.txt", work / "hyp.txt"
    people_true = _write_range(_rows(gt), first, last, gt_part)
    people = _write_range(_rows(hyp), first, last, hyp_part)
    r = evaluate_mot_sequence(
        gt_part, hyp_part, metrics=["CLEAR", "HOTA", "Identity"], threshold=MATCH_IOU
    )
    assert r.CLEAR is not None and r.HOTA is not None and r.Identity is not None
    return {
        "mota": round(r.CLEAR.MOTA, 4),
        "idf1": round(r.Identity.IDF1, 4),
        "hota": round(r.HOTA.HOTA, 4),
        "id_switches": int(r.CLEAR.IDSW),
        "recall": round(r.CLEAR.CLR_Re, 4),
        "precision": round(r.CLEAR.CLR_Pr, 4),
        "people": people,
        "people_true": people_true,
        "people_error": round(people / people_true - 1, 4) if people_true else None,
    }


def parse_splits(spec: str, frames: int) -> dict[str, tuple[int, int]]:
    """``dev:1-397,heldout:398-795`` -> {name: (first, last)}; 'all' is always added."""
    splits = {"all": (1, frames)}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, span = part.partition(":")
        a, _, b = span.partition("-")
        try:
            first, last = int(a), int(b)
        except ValueError:
            raise TrackBenchError(f"bad split {part!r}: expected NAME:FIRST-LAST") from None
        if not name or not 1 <= first <= last:
            raise TrackBenchError(f"bad split {part!r}: expected NAME:FIRST-LAST, 1 <= FIRST")
        splits[name] = (first, last)
    return splits


def run_video_bench(
    video: str,
    gt: Path,
    config: DeviceConfig,
    *,
    detect_every: tuple[int, ...] = (1, 2, 3),
    splits: str = "",
    cache: Path | None = None,
    peers: bool = True,
) -> dict[str, Any]:
    """Detect once, track with each variant, score each over each split; the JSON result."""
    try:
        import trackers.eval  # noqa: F401
    except ImportError:
        raise TrackBenchError("real-video scoring needs trackers>=2.6 (the edge extra)") from None
    if not gt.is_file():
        raise TrackBenchError(f"ground truth {gt} not found")
    video = str(resolve(video)) if video.startswith("asset:") else video
    started = time.perf_counter()
    detections = detect_all(video, config, cache)
    detect_s = time.perf_counter() - started
    ranges = parse_splits(splits, len(detections))
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="storelens-trackbench-") as tmp:
        work = Path(tmp)
        variants: list[tuple[str, Callable[[Path], int | None]]] = []
        ours = {"storelens": config}
        if config.tracker.stitch_s == 0:  # also with re-association, as it measures best
            tracker = config.tracker.model_copy(update={"stitch_s": STITCH_S})
            ours["storelens+stitch"] = config.model_copy(update={"tracker": tracker})
        for label, cfg in ours.items():
            for k in detect_every:
                run = lambda out, c=cfg, k=k: run_ours(video, c, detections, k, out)  # noqa: E731
                variants.append((f"{label}/{k}", run))
        if peers:
            for name, make in _peers().items():
                for k in detect_every:
                    peer = lambda out, m=make, k=k: run_peer(m, video, detections, k, out)  # noqa: E731
                    variants.append((f"{name}/{k}", peer))
        for name, run in variants:
            t0 = time.perf_counter()
            hyp = work / (name.replace("/", "_") + ".txt")
            visits = run(hyp)
            row: dict[str, Any] = {
                split: score(gt, hyp, *span, work) for split, span in ranges.items()
            }
            if visits is not None:
                row["visits"] = visits
            row["wall_s"] = round(time.perf_counter() - t0, 2)
            results[name] = row
    return {
        "video": video,
        "ground_truth": str(gt),
        "frames": len(detections),
        "detections": int(sum(len(d) for d in detections)),
        "detect_s": round(detect_s, 2),
        "splits": {k: list(v) for k, v in ranges.items()},
        "tracker": config.tracker.model_dump(),
        "match_iou": MATCH_IOU,
        "variants": results,
    }
