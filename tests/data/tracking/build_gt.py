"""Regenerate the automatic part of the vtest tracking ground truth (see README.md here).

    python tests/data/tracking/build_gt.py detect   # multi-scale detections -> cache .npz
    python tests/data/tracking/build_gt.py link     # hindsight association + edits -> GT txt
    python tests/data/tracking/build_gt.py render   # review PNGs of the GT boxes and IDs

Independent of the tracker under test: no `trackers` code, no PersonTracker; detections come
from the full frame plus four overlapping tiles at ~1.7x the bench's input scale, and the
association runs offline with the whole clip known (both directions, global stitching).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from storelens.assets import resolve
from storelens.edge.detect import Detector

HERE = Path(__file__).parent
VIDEO = "asset:media/vtest.avi"
MODEL = "asset:models/yolox_nano.onnx"
CACHE = Path(os.environ.get("GT_CACHE", "/tmp/storelens-gt-detections.npz"))
GT = HERE / "vtest_gt.txt"
EDITS = HERE / "vtest_gt_edits.txt"
FPS = 10.0

CONF = 0.35  # fused detections kept from here (the bench's detector goes down to 0.2)
TILE_W, TILE_H = 448, 336  # 2x2 overlapping tiles of the 768x576 frame
LINK_IOU = 0.3  # frame-to-frame link of a box to a tracklet's predicted box
MAX_GAP_S = 2.5  # tracklets are stitched across gaps up to this long
STITCH_DIST = 0.6  # ... when the extrapolated feet meet within this many box heights
MIN_TRACK_S = 1.0  # shorter tracks are dropped (detector flicker)
MIN_MOVE = 0.5  # tracks whose feet never move this many box heights are dropped (the sign)


def _tiles(w: int, h: int) -> list[tuple[int, int]]:
    return [(x, y) for y in (0, h - TILE_H) for x in (0, w - TILE_W)]


def _fuse(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted box fusion lite: NMS clusters at IoU 0.55, each cluster's score-weighted mean."""
    if len(boxes) == 0:
        return boxes.reshape(-1, 4), scores
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    used = np.zeros(len(boxes), bool)
    out_b, out_s = [], []
    for i in range(len(boxes)):
        if used[i]:
            continue
        iou = _iou(boxes[i], boxes)
        members = (iou >= 0.55) & ~used
        used |= members
        w = scores[members]
        out_b.append((boxes[members] * w[:, None]).sum(0) / w.sum())
        out_s.append(float(scores[i]))
    return np.array(out_b, np.float32), np.array(out_s, np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def detect() -> None:
    detector = Detector(resolve(MODEL), confidence=0.2, nms_iou=0.45, threads=2)
    cap = cv2.VideoCapture(str(resolve(VIDEO)))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        h, w = frame.shape[:2]
        parts = [detector.detect(frame)]
        boxes = [parts[0].xyxy]
        scores = [parts[0].confidence]
        for x, y in _tiles(w, h):
            d = detector.detect(np.ascontiguousarray(frame[y : y + TILE_H, x : x + TILE_W]))
            b = d.xyxy + np.array([x, y, x, y], np.float32)
            # A box cut by an inner tile border is half a person: the full frame has it whole.
            inner = (
                ((d.xyxy[:, 0] < 3) & (x > 0))
                | ((d.xyxy[:, 2] > TILE_W - 3) & (x + TILE_W < w))
                | ((d.xyxy[:, 1] < 3) & (y > 0))
                | ((d.xyxy[:, 3] > TILE_H - 3) & (y + TILE_H < h))
            )
            boxes.append(b[~inner])
            scores.append(d.confidence[~inner])
        flipped = detector.detect(np.ascontiguousarray(frame[:, ::-1]))
        fb = flipped.xyxy.copy()
        fb[:, [0, 2]] = w - flipped.xyxy[:, [2, 0]]
        boxes.append(fb)
        scores.append(flipped.confidence)
        b, s = _fuse(np.concatenate(boxes), np.concatenate(scores))
        frames.append(np.concatenate([b, s[:, None]], 1) if len(s) else np.empty((0, 5)))
        if len(frames) % 100 == 0:
            print(f"{len(frames)} frames", file=sys.stderr)
    np.savez_compressed(CACHE, *frames)
    print(f"{len(frames)} frames -> {CACHE}", file=sys.stderr)


def _load_cache() -> list[np.ndarray]:
    data = np.load(CACHE)
    return [data[f"arr_{i}"] for i in range(len(data.files))]


class _Tracklet:
    def __init__(self, tid: int, frame: int, box: np.ndarray) -> None:
        self.id = tid
        self.boxes: dict[int, np.ndarray] = {frame: box}

    @property
    def first(self) -> int:
        return min(self.boxes)

    @property
    def last(self) -> int:
        return max(self.boxes)

    def velocity(self, end: str, span: int = 5) -> np.ndarray:
        frames = sorted(self.boxes)
        pick = frames[-span:] if end == "last" else frames[:span]
        if len(pick) < 2:
            return np.zeros(4)
        return (self.boxes[pick[-1]] - self.boxes[pick[0]]) / (pick[-1] - pick[0])

    def at(self, frame: int) -> np.ndarray:
        """Box at ``frame``, extrapolated from the nearer end at that end's velocity."""
        if frame >= self.last:
            return self.boxes[self.last] + self.velocity("last") * (frame - self.last)
        return self.boxes[self.first] + self.velocity("first") * (frame - self.first)


def _forward_link(dets: list[np.ndarray]) -> list[_Tracklet]:
    """Greedy-free (Hungarian) frame-to-frame linking, one frame of look-back only."""
    tracklets: list[_Tracklet] = []
    active: list[_Tracklet] = []
    for f, det in enumerate(dets):
        det = det[det[:, 4] >= CONF] if len(det) else det
        boxes = det[:, :4] if len(det) else np.empty((0, 4))
        matched_t, matched_d = set(), set()
        if active and len(boxes):
            pred = np.array([t.at(f) for t in active])
            cost = np.array([1 - _iou(p, boxes) for p in pred])
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols, strict=True):
                if cost[r, c] <= 1 - LINK_IOU:
                    active[r].boxes[f] = boxes[c]
                    matched_t.add(r)
                    matched_d.add(c)
        active = [t for i, t in enumerate(active) if i in matched_t]
        for c in range(len(boxes)):
            if c not in matched_d:
                t = _Tracklet(len(tracklets) + 1, f, boxes[c])
                tracklets.append(t)
                active.append(t)
    return tracklets


def _stitch(tracklets: list[_Tracklet]) -> list[_Tracklet]:
    """Join an ending tracklet to a later-starting one when both extrapolations meet."""
    max_gap = round(MAX_GAP_S * FPS)
    while True:
        ends = sorted(tracklets, key=lambda t: t.last)
        best = None
        for a in ends:
            for b in tracklets:
                gap = b.first - a.last
                if b is a or not 1 <= gap <= max_gap:
                    continue
                mid = (a.last + b.first) / 2
                pa, pb = a.at(round(mid)), b.at(round(mid))
                h = max(pa[3] - pa[1], pb[3] - pb[1], 1)
                feet = lambda q: np.array([(q[0] + q[2]) / 2, q[3]])  # noqa: E731
                d = float(np.hypot(*(feet(pa) - feet(pb)))) / h
                size = abs(np.log((pa[3] - pa[1]) / max(pb[3] - pb[1], 1)))
                if d <= STITCH_DIST and size < 0.4 and (best is None or d < best[0]):
                    best = (d, a, b)
        if best is None:
            return tracklets
        _, a, b = best
        a.boxes.update(b.boxes)
        tracklets.remove(b)


def _interpolate(t: _Tracklet) -> None:
    frames = sorted(t.boxes)
    for f0, f1 in zip(frames, frames[1:], strict=False):
        for f in range(f0 + 1, f1):
            w = (f - f0) / (f1 - f0)
            t.boxes[f] = (1 - w) * t.boxes[f0] + w * t.boxes[f1]


def _moved(t: _Tracklet) -> bool:
    frames = sorted(t.boxes)
    feet = np.array([[(t.boxes[f][0] + t.boxes[f][2]) / 2, t.boxes[f][3]] for f in frames])
    h = np.median([t.boxes[f][3] - t.boxes[f][1] for f in frames])
    return float(np.hypot(*(feet.max(0) - feet.min(0)))) >= MIN_MOVE * h


def _apply_edits(tracks: dict[int, dict[int, np.ndarray]]) -> None:
    """The reviewed corrections (vtest_gt_edits.txt), applied in order. Commands:
    ``merge A B`` (B's boxes become A's), ``delete A``, ``split A F NEW`` (A's boxes from frame
    F on become NEW), ``cut A F0 F1`` (drop A's boxes in frames F0..F1). Frames from 1."""
    if not EDITS.exists():
        return
    for raw in EDITS.read_text().splitlines():
        line = raw.split("#", 1)[0].split()
        if not line:
            continue
        cmd, *args = line
        n = [int(a) for a in args]
        if cmd == "merge":
            tracks[n[0]].update(tracks.pop(n[1]))
        elif cmd == "delete":
            del tracks[n[0]]
        elif cmd == "split":
            moved = {f: b for f, b in tracks[n[0]].items() if f >= n[1]}
            for f in moved:
                del tracks[n[0]][f]
            tracks[n[2]] = moved
        elif cmd == "cut":
            tracks[n[0]] = {f: b for f, b in tracks[n[0]].items() if not n[1] <= f <= n[2]}
        else:
            raise SystemExit(f"unknown edit {raw!r}")


def link() -> None:
    dets = _load_cache()
    tracklets = _stitch(_forward_link(dets))
    keep = []
    for t in tracklets:
        _interpolate(t)
        if len(t.boxes) >= MIN_TRACK_S * FPS and _moved(t):
            keep.append(t)
    keep.sort(key=lambda t: (t.first, t.id))
    # Automatic IDs are numbered by first appearance; edits refer to these numbers.
    tracks = {i + 1: {f + 1: b for f, b in t.boxes.items()} for i, t in enumerate(keep)}
    _apply_edits(tracks)
    rows = []
    for tid, boxes in tracks.items():
        for f, b in boxes.items():
            x1, y1, x2, y2 = (float(v) for v in b)
            rows.append((f, tid, f"{f},{tid},{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f},1,1,1"))
    rows.sort()
    GT.write_text("".join(r[2] + "\n" for r in rows))
    print(f"{len(tracks)} people, {len(rows)} boxes -> {GT}", file=sys.stderr)
    for tid, boxes in sorted(tracks.items()):
        fs = sorted(boxes)
        a, b = boxes[fs[0]], boxes[fs[-1]]
        print(
            f"id {tid:3d} frames {fs[0]:4d}-{fs[-1]:4d} "
            f"from ({(a[0] + a[2]) / 2:4.0f},{a[3]:4.0f}) to ({(b[0] + b[2]) / 2:4.0f},{b[3]:4.0f})"
        )


def render(every: int, out: Path, start: int, end: int) -> None:
    """Frames with the GT boxes and IDs, four to a PNG, for visual review."""
    rows = np.loadtxt(GT, delimiter=",")
    out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(resolve(VIDEO)))
    sheet: list[np.ndarray] = []
    f = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        f += 1
        if f < start or f > end or (f - start) % every:
            continue
        for r in rows[rows[:, 0] == f]:
            x, y, w, h = r[2:6]
            colour = tuple(int(c) for c in np.random.default_rng(int(r[1])).integers(60, 255, 3))
            cv2.rectangle(frame, (int(x), int(y)), (int(x + w), int(y + h)), colour, 2)
            cv2.putText(frame, str(int(r[1])), (int(x), int(y) - 3), 0, 0.6, colour, 2)
        cv2.putText(frame, f"frame {f}", (10, 25), 0, 0.8, (0, 0, 255), 2)
        sheet.append(frame)
        if len(sheet) == 4:
            top, bottom = np.hstack(sheet[:2]), np.hstack(sheet[2:])
            cv2.imwrite(str(out / f"review_{f:04d}.png"), np.vstack([top, bottom]))
            sheet = []


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["detect", "link", "render"])
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--start", type=int, default=1)
    parser.add_argument("--end", type=int, default=10**6)
    parser.add_argument("--out", type=Path, default=Path("/tmp/storelens-gt-review"))
    a = parser.parse_args()
    if a.step == "detect":
        detect()
    elif a.step == "link":
        link()
    else:
        render(a.every, a.out, a.start, a.end)
