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
LINK_MISSES = 1  # frames a tracklet may go without a box and still link
MAX_GAP_S = 3.0  # tracklets are stitched across gaps up to this long
STITCH_DIST = 0.5  # ... when the extrapolated feet meet within this many box heights
STITCH_DIST_PER_S = 0.2  # ... plus this many per second of gap
STITCH_LOOKS = 0.35  # ... and their colour histograms are this close (Bhattacharyya)
MIN_TRACK_S = 1.0  # shorter tracks are dropped (detector flicker)


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
        self.hist: np.ndarray | None = None

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
    """Hungarian frame-to-frame linking on IoU with the predicted box; a tracklet survives
    ``LINK_MISSES`` frames without a box (a single missed detection does not split it)."""
    tracklets: list[_Tracklet] = []
    active: list[_Tracklet] = []
    for f, det in enumerate(dets):
        det = det[det[:, 4] >= CONF] if len(det) else det
        boxes = det[:, :4] if len(det) else np.empty((0, 4))
        matched_d: set[int] = set()
        if active and len(boxes):
            pred = np.array([t.at(f) for t in active])
            cost = np.array([1 - _iou(p, boxes) for p in pred])
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols, strict=True):
                if cost[r, c] <= 1 - LINK_IOU:
                    active[r].boxes[f] = boxes[c]
                    matched_d.add(c)
        active = [t for t in active if f - t.last <= LINK_MISSES]
        for c in range(len(boxes)):
            if c not in matched_d:
                t = _Tracklet(len(tracklets) + 1, f, boxes[c])
                tracklets.append(t)
                active.append(t)
    return tracklets


def _appearance(tracklets: list[_Tracklet]) -> None:
    """Each tracklet's mean HSV histogram of torso and legs (hindsight: all its frames)."""
    by_frame: dict[int, list[_Tracklet]] = {}
    for t in tracklets:
        for f in t.boxes:
            by_frame.setdefault(f, []).append(t)
    sums: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(str(resolve(VIDEO)))
    f = -1
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        f += 1
        hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
        for t in by_frame.get(f, []):
            x1, y1, x2, y2 = (int(v) for v in t.boxes[f])
            x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, 767), min(y2, 575)
            w, h = x2 - x1, y2 - y1
            if w < 6 or h < 20:
                continue
            parts = []
            for a, b in ((0.2, 0.5), (0.55, 0.9)):
                patch = hsv[y1 + int(a * h) : y1 + int(b * h), x1 + w // 4 : x2 - w // 4]
                hist = cv2.calcHist([patch], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256])
                parts.append(hist.ravel() / max(hist.sum(), 1))
            sums[t.id] = sums.get(t.id, 0) + np.concatenate(parts)
    for t in tracklets:
        s = sums.get(t.id)
        t.hist = None if s is None else (s / s.sum()).astype(np.float32)


def _bhattacharyya(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None:
        return 0.5
    return float(np.sqrt(max(0.0, 1 - np.sum(np.sqrt(a * b)))))


def _stitch(tracklets: list[_Tracklet]) -> list[_Tracklet]:
    """Join an ending tracklet to a later-starting one when both extrapolations meet and
    they look alike; the cheapest join first, until none is left."""
    max_gap = round(MAX_GAP_S * FPS)
    feet = lambda q: np.array([(q[0] + q[2]) / 2, q[3]])  # noqa: E731
    while True:
        best = None
        for a in tracklets:
            for b in tracklets:
                gap = b.first - a.last
                if b is a or not 1 <= gap <= max_gap:
                    continue
                mid = round((a.last + b.first) / 2)
                pa, pb = a.at(mid), b.at(mid)
                ha, hb = max(pa[3] - pa[1], 1), max(pb[3] - pb[1], 1)
                d = float(np.hypot(*(feet(pa) - feet(pb)))) / max(ha, hb)
                looks = _bhattacharyya(a.hist, b.hist)
                gate = STITCH_DIST + STITCH_DIST_PER_S * gap / FPS
                if d > gate or abs(np.log(ha / hb)) > 0.4 or looks > STITCH_LOOKS:
                    continue
                cost = d / gate + looks / STITCH_LOOKS
                if best is None or cost < best[0]:
                    best = (cost, a, b)
        if best is None:
            return tracklets
        _, a, b = best
        a.boxes.update(b.boxes)
        if a.hist is not None and b.hist is not None:
            a.hist = (a.hist + b.hist) / 2
        tracklets.remove(b)


def _interpolate(t: _Tracklet) -> None:
    frames = sorted(t.boxes)
    for f0, f1 in zip(frames, frames[1:], strict=False):
        for f in range(f0 + 1, f1):
            w = (f - f0) / (f1 - f0)
            t.boxes[f] = (1 - w) * t.boxes[f0] + w * t.boxes[f1]


def _inside(boxes, region: list[int]) -> bool:
    """The track's median box centre lies in ``region`` and is at most ``region[4]`` tall."""
    b = np.median(np.array(list(boxes)), axis=0)
    x1, y1, x2, y2, max_h = region
    centre_in = x1 <= (b[0] + b[2]) / 2 <= x2 and y1 <= (b[1] + b[3]) / 2 <= y2
    return bool(centre_in and b[3] - b[1] <= max_h)


def _apply_edits(tracks: dict[int, dict[int, np.ndarray]]) -> set[tuple[int, int]]:
    """The reviewed corrections (vtest_gt_edits.txt), applied in order. Commands:
    ``static X1 Y1 X2 Y2 H`` (drop every track whose median box centre lies in that rectangle
    and is at most H px tall: a sign, a cone), ``merge A B`` (B's boxes become A's),
    ``delete A``, ``split A F NEW`` (A's boxes from frame F on become NEW), ``cut A F0 F1``
    (drop A's boxes in frames F0..F1), ``swap A B F`` (from frame F on, A's and B's boxes
    change places: two people whose identities the linking exchanged where they crossed),
    ``ignore F0 F1 X1 Y1 X2 Y2`` (boxes centred in that
    rectangle in frames F0..F1 become MOT class 8, distractors: neither a miss nor a false
    positive; for a group too entangled to annotate). Frames from 1. Returns the ignored
    (id of a track's box dict, frame) pairs."""
    ignored: set[tuple[int, int]] = set()  # (id of a track's box dict, frame)
    if not EDITS.exists():
        return ignored
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
        elif cmd == "ignore":  # F0 F1 X1 Y1 X2 Y2: boxes centred there become distractors
            f0, f1, x1, y1, x2, y2 = n
            for boxes in tracks.values():
                for f, b in boxes.items():
                    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
                    if f0 <= f <= f1 and x1 <= cx <= x2 and y1 <= cy <= y2:
                        ignored.add((id(boxes), f))
        elif cmd == "static":  # a thing the detector takes for a person: x1 y1 x2 y2
            for tid in [t for t, b in tracks.items() if _inside(b.values(), n)]:
                del tracks[tid]
        elif cmd == "split":
            moved = {f: b for f, b in tracks[n[0]].items() if f >= n[1]}
            for f in moved:
                del tracks[n[0]][f]
            tracks[n[2]] = moved
        elif cmd == "cut":
            tracks[n[0]] = {f: b for f, b in tracks[n[0]].items() if not n[1] <= f <= n[2]}
        elif cmd == "swap":  # A B F: from frame F on, A's and B's boxes change places
            a, b, f0 = n
            later_a = {f: x for f, x in tracks[a].items() if f >= f0}
            later_b = {f: x for f, x in tracks[b].items() if f >= f0}
            tracks[a] = {f: x for f, x in tracks[a].items() if f < f0} | later_b
            tracks[b] = {f: x for f, x in tracks[b].items() if f < f0} | later_a
        else:
            raise SystemExit(f"unknown edit {raw!r}")
    return ignored


def link() -> None:
    dets = _load_cache()
    tracklets = _forward_link(dets)
    _appearance(tracklets)
    tracklets = _stitch(tracklets)
    keep = []
    for t in tracklets:
        _interpolate(t)
        if len(t.boxes) >= MIN_TRACK_S * FPS:
            keep.append(t)
    keep.sort(key=lambda t: (t.first, t.id))
    # Automatic IDs are numbered by first appearance; edits refer to these numbers.
    tracks = {i + 1: {f + 1: b for f, b in t.boxes.items()} for i, t in enumerate(keep)}
    ignored_at = _apply_edits(tracks)
    ignored = set()
    for tid, boxes in tracks.items():  # joined tracks: fill the frames between the parts
        frames = sorted(boxes)
        for f0, f1 in zip(frames, frames[1:], strict=False):
            for f in range(f0 + 1, f1):
                w = (f - f0) / (f1 - f0)
                boxes[f] = (1 - w) * boxes[f0] + w * boxes[f1]
        ignored |= {(tid, f) for key, f in ignored_at if key == id(boxes)}
    rows = []
    for tid, boxes in tracks.items():
        for f, b in boxes.items():
            x1, y1, x2, y2 = (float(v) for v in b)
            cls = 8 if (tid, f) in ignored else 1  # MOT class 8: distractor, not scored
            box = f"{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f}"
            rows.append((f, tid, f"{f},{tid},{box},1,{cls},1"))
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


def render(frames: list[int], out: Path, name: str, crop: list[int] | None = None) -> None:
    """The given frames with the GT boxes and IDs, for review: nine whole frames to a PNG at
    3/4 size, or ``crop`` (x1,y1,x2,y2) of each at full size."""
    rows = np.loadtxt(GT, delimiter=",")
    out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(resolve(VIDEO)))
    wanted, shots, f = set(frames), {}, 0
    while wanted - set(shots):
        ok, frame = cap.read()
        if not ok:
            break
        f += 1
        if f not in wanted:
            continue
        for r in rows[rows[:, 0] == f]:
            x, y, w, h = r[2:6]
            colour = tuple(int(c) for c in np.random.default_rng(int(r[1])).integers(60, 255, 3))
            cv2.rectangle(frame, (int(x), int(y)), (int(x + w), int(y + h)), colour, 2)
            cv2.putText(frame, str(int(r[1])), (int(x), int(y) - 3), 0, 0.5, colour, 2)
        x0, y0 = (crop[0], crop[1]) if crop else (0, 0)
        cv2.putText(frame, f"frame {f}", (x0 + 5, y0 + 20), 0, 0.6, (0, 0, 255), 2)
        if crop:
            shots[f] = frame[crop[1] : crop[3], crop[0] : crop[2]].copy()
        else:
            shots[f] = cv2.resize(frame, None, fx=0.75, fy=0.75)
    pics = [shots[f] for f in frames if f in shots]
    cols = (4 if crop[2] - crop[0] < 300 else 2) if crop else 3
    for i in range(0, len(pics), cols * cols):
        group = pics[i : i + cols * cols]
        group += [np.zeros_like(group[0])] * (-len(group) % cols)
        grid = np.vstack([np.hstack(group[j : j + cols]) for j in range(0, len(group), cols)])
        cv2.imwrite(str(out / f"{name}_{i // (cols * cols)}.png"), grid)


def junctions(out: Path) -> None:
    """For review: every place a GT track ends inside the frame and another starts near it
    soon after, as a strip of crops (A red before, B green after); print the pairs."""
    rows = np.loadtxt(GT, delimiter=",")
    tracks = {int(t): rows[rows[:, 1] == t] for t in np.unique(rows[:, 1])}
    ends = {t: r[np.argmax(r[:, 0])] for t, r in tracks.items()}
    starts = {t: r[np.argmin(r[:, 0])] for t, r in tracks.items()}
    feet = lambda r: np.array([r[2] + r[4] / 2, r[3] + r[5]])  # noqa: E731
    pairs = []
    for a, e in ends.items():
        if e[0] >= rows[:, 0].max() or not 25 < feet(e)[0] < 743 or e[7] != 1:
            continue
        for b, s in starts.items():
            gap = s[0] - e[0]
            near = np.hypot(*(feet(s) - feet(e))) <= 1.5 * e[5]
            if b != a and -10 <= gap <= 40 and near and s[7] == 1:
                pairs.append((a, b, int(e[0]), int(s[0]), feet(e)))
    frames_needed = {f for _, _, fe, fs, _ in pairs for f in (fe - 4, fe, fs, fs + 4)}
    cap = cv2.VideoCapture(str(resolve(VIDEO)))
    frames: dict[int, np.ndarray] = {}
    f = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        f += 1
        if f in frames_needed:
            frames[f] = frame
    out.mkdir(parents=True, exist_ok=True)
    strips = []
    for n, (a, b, fe, fs, (x, y)) in enumerate(pairs):
        print(f"pair {n}: {a} ends {fe} -> {b} starts {fs} near ({x:.0f},{y:.0f})")
        crops = []
        for fr in (fe - 4, fe, fs, fs + 4):
            img = frames.get(fr, np.zeros((576, 768, 3), np.uint8)).copy()
            for r in rows[rows[:, 0] == fr]:
                colour = {a: (0, 0, 255), b: (0, 255, 0)}.get(int(r[1]), (160, 160, 160))
                x1, y1, w, h = (int(v) for v in r[2:6])
                cv2.rectangle(img, (x1, y1), (x1 + w, y1 + h), colour, 1)
            cx, cy = int(np.clip(x, 80, 688)), int(np.clip(y - 60, 100, 476))
            crop = img[cy - 100 : cy + 80, cx - 80 : cx + 80].copy()
            cv2.putText(crop, f"{n}:{fr}", (3, 14), 0, 0.45, (0, 255, 255), 1)
            crops.append(crop)
        strips.append(np.hstack(crops))
    for i in range(0, len(strips), 4):
        group = strips[i : i + 4]
        cv2.imwrite(str(out / f"junctions_{i // 4:02d}.png"), np.vstack(group))


def crossings(out: Path) -> None:
    """For review: every place two scored GT tracks' boxes overlap (IoU > 0.1; episodes
    closer than 5 frames are one), as a strip of crops 5 frames before, at the first and last
    overlapping frame, and 5 and 15 frames after (A red, B green); print them. A swap shows
    as red's clothes turning up in green's box after the crossing."""
    rows = np.loadtxt(GT, delimiter=",")
    rows = rows[rows[:, 7] == 1]
    by_frame = {int(f): rows[rows[:, 0] == f] for f in np.unique(rows[:, 0])}
    xyxy = lambda r: np.array([r[2], r[3], r[2] + r[4], r[3] + r[5]])  # noqa: E731
    touch: dict[tuple[int, int], list[int]] = {}
    for f, rs in by_frame.items():
        for i in range(len(rs)):
            others = rs[i + 1 :]
            if not len(others):
                continue
            iou = _iou(xyxy(rs[i]), np.array([xyxy(r) for r in others]))
            for j in np.nonzero(iou > 0.1)[0]:
                a, b = sorted((int(rs[i, 1]), int(others[j, 1])))
                touch.setdefault((a, b), []).append(f)
    episodes = []
    for (a, b), fs in touch.items():
        start = prev = fs[0]
        for f in fs[1:] + [None]:
            if f is not None and f - prev < 5:
                prev = f
                continue
            episodes.append((start, prev, a, b))
            if f is not None:
                start = prev = f
    episodes.sort()
    last = int(rows[:, 0].max())
    wanted = {f for f0, f1, _, _ in episodes for f in (f0 - 5, f0, f1, f1 + 5, f1 + 15)}
    cap = cv2.VideoCapture(str(resolve(VIDEO)))
    frames: dict[int, np.ndarray] = {}
    f = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        f += 1
        if f in wanted:
            frames[f] = frame
    out.mkdir(parents=True, exist_ok=True)
    strips = []
    for n, (f0, f1, a, b) in enumerate(episodes):
        mid = by_frame[f0][np.isin(by_frame[f0][:, 1], [a, b])]
        x = float(np.mean(mid[:, 2] + mid[:, 4] / 2))
        y = float(np.mean(mid[:, 3] + mid[:, 5]))
        print(f"crossing {n}: {a} and {b}, frames {f0}-{f1}, near ({x:.0f},{y:.0f})")
        crops = []
        for fr in (f0 - 5, f0, f1, f1 + 5, f1 + 15):
            fr = min(max(fr, 1), last)
            img = frames.get(fr, np.zeros((576, 768, 3), np.uint8)).copy()
            for r in by_frame.get(fr, []):
                colour = {a: (0, 0, 255), b: (0, 255, 0)}.get(int(r[1]))
                if colour is not None:
                    x1, y1, w, h = (int(v) for v in r[2:6])
                    cv2.rectangle(img, (x1, y1), (x1 + w, y1 + h), colour, 1)
            cx, cy = int(np.clip(x, 100, 668)), int(np.clip(y - 60, 100, 476))
            crop = cv2.resize(img[cy - 100 : cy + 80, cx - 100 : cx + 100], None, fx=1.5, fy=1.5)
            cv2.putText(crop, f"{n}:{fr}", (3, 16), 0, 0.5, (0, 255, 255), 1)
            crops.append(crop)
        strips.append(np.hstack(crops))
    for i in range(0, len(strips), 3):
        cv2.imwrite(str(out / f"crossings_{i // 3:02d}.png"), np.vstack(strips[i : i + 3]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=["detect", "link", "render", "junctions", "crossings"])
    parser.add_argument("--frames", default="1", help="frames to render: 5,10,20-40/5")
    parser.add_argument("--crop", help="x1,y1,x2,y2 of the frame to show at full size")
    parser.add_argument("--out", type=Path, default=Path("/tmp/storelens-gt-review"))
    a = parser.parse_args()
    if a.step == "detect":
        detect()
    elif a.step == "link":
        link()
    elif a.step == "junctions":
        junctions(a.out)
    elif a.step == "crossings":
        crossings(a.out)
    else:
        picked: list[int] = []
        for part in a.frames.split(","):
            span, _, step = part.partition("/")
            lo, _, hi = span.partition("-")
            picked += range(int(lo), int(hi or lo) + 1, int(step or 1))
        crop = [int(v) for v in a.crop.split(",")] if a.crop else None
        render(picked, a.out, a.frames.replace(",", "_").replace("/", "s"), crop)
