"""`storelens bench export`: what INT8 dynamic quantization buys on this machine.

Exports one checkpoint twice (FP32 and INT8), then runs both through the edge detector on the
same video frames: per-frame latency (best of ``rounds`` alternating passes, since on a shared
machine the best pass is the least disturbed one), file sizes, and how many FP32 person boxes
the INT8 model still finds (IoU >= 0.5), which is what quantization may cost in accuracy.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

MATCH_IOU = 0.5


def read_frames(video: Path, count: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    try:
        while len(frames) < count:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"{video}: no frames could be decoded")
    return frames


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes, len(a) x len(b)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def box_recall(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float | None:
    """Share of reference boxes that some candidate box overlaps by MATCH_IOU or more."""
    total = sum(len(r) for r in reference)
    if total == 0:
        return None
    hits = 0
    for ref, cand in zip(reference, candidate, strict=True):
        if len(ref) and len(cand):
            hits += int((pairwise_iou(ref, cand).max(axis=1) >= MATCH_IOU).sum())
    return hits / total


def compare_models(
    fp32: Path,
    int8: Path,
    frames: list[np.ndarray],
    *,
    threads: int,
    rounds: int,
    confidence: float = 0.25,
    nms_iou: float = 0.45,
    person_class: int | None = None,
) -> dict[str, Any]:
    """Latency of both models on ``frames`` through the edge detector, and their agreement."""
    from storelens.edge.detect import Detector

    models = {
        key: Detector(
            path,
            confidence=confidence,
            nms_iou=nms_iou,
            threads=threads,
            person_class=person_class,
        )
        for key, path in (("fp32", fp32), ("int8", int8))
    }
    for det in models.values():
        det.detect(frames[0])  # first-run allocations stay out of the timing
    best = {key: float("inf") for key in models}
    boxes: dict[str, list[np.ndarray]] = {}
    for _ in range(rounds):
        for key, det in models.items():
            found = []
            started = time.perf_counter()
            for frame in frames:
                found.append(det.detect(frame).xyxy)
            best[key] = min(best[key], (time.perf_counter() - started) / len(frames))
            boxes[key] = found
    recall = box_recall(boxes["fp32"], boxes["int8"])
    return {
        "layout": str(models["fp32"].layout),
        "fp32_ms": round(best["fp32"] * 1000, 2),
        "int8_ms": round(best["int8"] * 1000, 2),
        "int8_speedup": round(best["fp32"] / best["int8"], 3),
        "fp32_bytes": fp32.stat().st_size,
        "int8_bytes": int8.stat().st_size,
        "fp32_boxes_per_frame": round(statistics.fmean(len(b) for b in boxes["fp32"]), 2),
        "int8_boxes_per_frame": round(statistics.fmean(len(b) for b in boxes["int8"]), 2),
        "int8_recall_of_fp32": None if recall is None else round(recall, 4),
    }


def bench_export(
    weights: Path,
    *,
    video: Path,
    imgsz: int,
    frames: int,
    threads: int,
    rounds: int,
    person_class: int | None = None,
) -> dict[str, Any]:
    from storelens.models.export import export_checkpoint, offline_environment

    offline_environment()
    import ultralytics  # noqa: F401  (seconds of import time stay out of export_s)

    images = read_frames(video, frames)
    with tempfile.TemporaryDirectory(prefix="storelens-bench-export-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        fp32 = export_checkpoint(weights, imgsz=imgsz, out=folder / "fp32.onnx")
        export_s = time.perf_counter() - started
        started = time.perf_counter()
        int8 = export_checkpoint(weights, imgsz=imgsz, int8=True, out=folder / "int8.onnx")
        export_int8_s = time.perf_counter() - started
        result = compare_models(
            fp32.model,
            int8.model,
            images,
            threads=threads,
            rounds=rounds,
            person_class=person_class,
        )
    return {
        "weights": str(weights),
        "imgsz": imgsz,
        "frames": len(images),
        "threads": threads,
        "rounds": rounds,
        "export_s": round(export_s, 2),
        "export_int8_s": round(export_int8_s, 2),
        **result,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
