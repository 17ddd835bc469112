"""Multi-person tracking: a small interface over roboflow `trackers` (ByteTrack or OC-SORT).

Times are in seconds from the frame timestamps, so the lost-track buffer and the Kalman
steps stay right when the source drops frames or runs at a different rate than planned.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from dataclasses import dataclass

import numpy as np
import supervision as sv
from trackers import OCSORTTracker
from trackers.utils.state_representations import XYXYStateEstimator

from storelens.edge.config import TrackerConfig
from storelens.edge.detect import Detections
from storelens.edge.track import appearance, reassociate
from storelens.edge.track.crossing import CrossingTracker
from storelens.edge.track.static_objects import StaticObjects, box_iou

PENDING_MAX = 100  # sightings kept per track awaiting motion confirmation
# Between detections (detection stride) people move on at their recent velocity for at most
# this long; a velocity is only measured across detection gaps up to VELOCITY_GAP_S.
PREDICT_MAX_S = 1.0
VELOCITY_GAP_S = 1.0
LOOKS_EVERY_S = 0.5  # a visible person's appearance descriptor is refreshed this often
LOOKS_MAX_OVERLAP = 0.1  # ... from boxes overlapping no other more than this (IoU)
EDGE_PX = 8  # a track lost this close to the image border left the view
# ... if walking out: faster than this (box heights a second) toward that border. Walking
# is 0.3 (a shuffle) to 0.7 and more, and a box cut by the border moves at about half that
# (only its far side moves); a standing person's filtered velocity jitters below (under 0.1
# in the simulated scene), and they must keep their track when the detector misses them.
WALK_OUT_MIN = 0.1

# `trackers` counts its lost buffer in frames at 30 fps and converts with the real rate.
_TRACKERS_REFERENCE_FPS = 30.0
# The motion model runs on a clock of its own: one Kalman step is 1 / MOTION_REFERENCE_FPS
# seconds of real time, whatever the camera's rate or detection stride (the library scales F
# and Q with the elapsed steps). The shipped noise and IoU gate were measured at this rate
# (the sample video's 10 fps), so there nothing changes; a camera at 5 fps now moves people
# twice as far per update, as detections on every 2nd frame of a 10 fps one do.
MOTION_REFERENCE_FPS = 10.0


@dataclass(frozen=True)
class TrackedPerson:
    """A confirmed track seen in the current frame (box from the matched detection)."""

    track_id: int
    xyxy: np.ndarray  # float32 [x1, y1, x2, y2] in frame pixels
    confidence: float

    @property
    def anchor(self) -> tuple[float, float]:
        """Bottom-centre of the box: where the feet touch the floor."""
        x1, _, x2, y2 = self.xyxy
        return float((x1 + x2) / 2), float(y2)


def confirm_frames(confirm_s: float, fps: float) -> int:
    """Consecutive detections a new track needs before it counts (at least 2: no ghosts)."""
    return max(2, math.ceil(confirm_s * fps - 1e-9))


def for_rate(config: TrackerConfig, update_fps: float) -> TrackerConfig:
    """Tracker settings for detections arriving ``update_fps`` times a second.

    Updates k times further apart than ``MOTION_REFERENCE_FPS``'s move a walker's box k times
    further, so its overlap with the track's prediction shrinks and a fixed IoU gate splits
    tracks (more visits than people). The gate is divided by sqrt(k) (never tightened for
    faster updates). On the sample video (10 fps), detections on every 2nd frame gave 34
    visits with the fixed gate and 30 with this one, against 31 on every frame; every 3rd: 46
    vs 36. Time, not the stride, sets it: a 5 fps camera needs the same as stride 2 at 10.
    """
    if not update_fps > 0:
        raise ValueError(f"tracker needs a positive update rate, got {update_fps}")
    step = MOTION_REFERENCE_FPS / update_fps
    if step <= 1 + 1e-9:
        return config
    return config.model_copy(update={"match_iou": config.match_iou / math.sqrt(step)})


def for_stride(
    config: TrackerConfig, detect_every: int, camera_fps: float = MOTION_REFERENCE_FPS
) -> TrackerConfig:
    """``for_rate`` for detections on every ``detect_every``-th frame of a ``camera_fps``
    camera."""
    return for_rate(config, camera_fps / max(detect_every, 1))


class PersonTracker:
    """Assigns persistent IDs to person detections; only confirmed tracks come out.

    A track is confirmed once it has been matched on ``confirm_s`` worth of consecutive frames
    and its feet have moved (``confirm_move``); a confirmed track survives
    ``lost_track_buffer_s`` without detections (occlusions). Boxes sitting on a learned static
    object are withheld (see ``StaticObjects``). A new library track that continues one lost
    in the last ``stitch_s`` keeps the lost one's number (``reassociate``); its visit stays
    open meanwhile. Track numbers out are the library's numbers of each person's first track.
    """

    def __init__(
        self,
        config: TrackerConfig,
        fps: float,
        detect_every: int = 1,
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        """``fps``: rate of updates (detections); ``detect_every``: camera frames per update
        (checked, kept for callers; the motion model no longer needs it); ``frame_size``:
        (width, height) in pixels when known before the first frame (else taken from the
        frames given to `update`).

        The library's Kalman filter steps in units of 1 / ``MOTION_REFERENCE_FPS`` seconds
        from the frame times (its F and Q scale with the step), so its motion model is the
        same at every detection stride and camera rate. Run one step per update instead, its
        process noise was tuned for steps half (a third) as long: on the sample video that
        cost 16 IDF1 points at detect_every 2 on the dev split, and a camera at half the
        rate fragmented people (the two-camera bench's right camera at 5 fps).
        """
        if not fps > 0:
            raise ValueError(f"tracker needs a positive frame rate, got {fps}")
        if detect_every < 1:
            raise ValueError(f"detect_every must be at least 1, got {detect_every}")
        self.config = config
        self.fps = fps
        self._kalman_fps = MOTION_REFERENCE_FPS  # the library's frame rate: a fixed clock
        buffer = max(1, round(config.lost_track_buffer_s * _TRACKERS_REFERENCE_FPS))
        common = {
            "lost_track_buffer": buffer,
            "frame_rate": self._kalman_fps,
            "minimum_consecutive_frames": confirm_frames(config.confirm_s, fps),
            "minimum_iou_threshold": config.match_iou,
            "high_conf_det_threshold": config.high_confidence,
        }
        if config.type == "ocsort":
            self._tracker: CrossingTracker | OCSORTTracker = OCSORTTracker(**common)
        else:
            # ByteTrack, plus direction consistency and confidence-scaled measurement noise
            # so people passing close keep their identities (``crossing``).
            self._tracker = CrossingTracker(
                track_activation_threshold=config.high_confidence, **common
            )
        self.static = StaticObjects()
        self._last_t: float | None = None
        self._origin: dict[int, tuple[float, float, float]] = {}  # unmoved: anchor, first t
        self._moved: set[int] = set()
        self._shown: dict[int, float] = {}  # confirmed track -> last time it was output
        # Sightings of a track while it waits for motion confirmation, so offline analysis
        # can still report them once it is confirmed (``confirmed_late``).
        self._pending: dict[int, deque[tuple[float, TrackedPerson]]] = {}
        self.confirmed_late: list[tuple[float, TrackedPerson]] = []
        # The library reports a new track's first frames unnumbered (-1); keep them to trace
        # a newly numbered track back to where it was first seen.
        self._tentative: deque[tuple[float, np.ndarray, np.ndarray]] = deque(
            maxlen=common["minimum_consecutive_frames"]
        )
        self._born: set[int] = set()
        self._updates = 0
        # For predict(): people output by the last update, their last box and velocity.
        self._last_people: list[TrackedPerson] = []
        self._seen_at: dict[int, tuple[float, np.ndarray]] = {}
        self._velocity: dict[int, np.ndarray] = {}  # px/s of the box centre
        # Re-association: library track -> the number it is output under, the last box of
        # each output number and appearance descriptors (memory only; see ``appearance``).
        self._alias: dict[int, int] = {}
        self._last_box: dict[int, np.ndarray] = {}
        self._looks: dict[int, tuple[float, np.ndarray]] = {}
        self.rejoined = 0  # new tracks joined to a lost one so far
        self._frame_size = frame_size  # (w, h), known once a frame came
        self._frames_seen = False  # whether frames came (to compare looks)
        self.walked_out = 0  # lost tracks dropped at the border so far (``_drop_walked_out``)

    def update(
        self, detections: Detections, t: float, frame: np.ndarray | None = None
    ) -> list[TrackedPerson]:
        """Feed one frame's detections at time ``t`` (seconds, non-decreasing).

        ``frame`` (BGR, optional): lets re-association compare what people look like; without
        it, it goes by motion alone with a tighter gate.
        """
        if self._last_t is not None and t <= self._last_t:
            # Equal or backward timestamps would make the library skip or warn; nudge forward.
            t = self._last_t + 1e-3
        self._last_t = t
        self.confirmed_late = []
        xyxy = np.asarray(detections.xyxy, np.float32).reshape(-1, 4)
        conf = np.asarray(detections.confidence, np.float32).reshape(-1)
        # A broken model can emit NaN or inverted boxes; they would poison the Kalman state.
        sane = (
            np.isfinite(xyxy).all(axis=1)
            & np.isfinite(conf)
            & (xyxy[:, 2] > xyxy[:, 0])
            & (xyxy[:, 3] > xyxy[:, 1])
        )
        if not sane.all():
            xyxy, conf = xyxy[sane], conf[sane]
        sv_dets = sv.Detections(xyxy=xyxy, confidence=conf, class_id=np.zeros(len(conf), int))
        if frame is not None:
            self._frame_size = (frame.shape[1], frame.shape[0])
            self._frames_seen = True
        self._drop_walked_out()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out = self._tracker.update(sv_dets, timestamp=t)
        people = []
        if out.tracker_id is not None and len(out):
            conf = out.confidence if out.confidence is not None else np.ones(len(out))
            self._rejoin(out, t, frame)
            for i, tid in enumerate(out.tracker_id):
                if tid < 0:
                    continue
                box = out.xyxy[i].astype(np.float32)
                person = TrackedPerson(self._alias.get(int(tid), int(tid)), box, float(conf[i]))
                if int(tid) not in self._born:
                    self._born.add(int(tid))
                    self._trace_back(person)
                on_static = len(self.static.boxes) > 0 and self.static.touch(box, t)
                if self._has_moved(person, t) and not on_static:
                    self._shown[person.track_id] = t
                    people.append(person)
            unnumbered = out.tracker_id < 0
            self._tentative.append((t, out.xyxy[unnumbered], conf[unnumbered]))
        else:
            self._tentative.append((t, np.empty((0, 4)), np.empty((0,))))
        self._note_motion(people, t)
        if frame is not None and self.config.stitch_s > 0:
            self._sample_looks(people, frame, t)
        self._updates += 1
        if self._updates % 256 == 0:  # forget tracks the library dropped (bounded memory)
            library = {int(x.tracker_id) for x in self._tracker.tracks if x.tracker_id >= 0}
            self._alias = {k: v for k, v in self._alias.items() if k in library}
            self._born &= library
            kept = self._library_ids() | self._recently_shown(t)
            self._origin = {k: v for k, v in self._origin.items() if k in kept}
            self._pending = {k: v for k, v in self._pending.items() if k in kept}
            self._moved &= kept
            self._shown = {k: v for k, v in self._shown.items() if k in kept}
            self._seen_at = {k: v for k, v in self._seen_at.items() if k in kept}
            self._velocity = {k: v for k, v in self._velocity.items() if k in kept}
            self._last_box = {k: v for k, v in self._last_box.items() if k in kept}
            self._looks = {k: v for k, v in self._looks.items() if k in kept}
            self.static.forget_old(t)
        return people

    def _stitch_window(self) -> float:
        """How long after its last sighting a lost track may still be continued. Motion alone
        is weak evidence after long: until frames come to compare looks, only tracks lost
        within the library's own buffer."""
        if not self._frames_seen:
            return min(self.config.stitch_s, self.config.lost_track_buffer_s)
        return self.config.stitch_s

    def _recently_shown(self, t: float) -> set[int]:
        hold = max(self.config.lost_track_buffer_s, self._stitch_window())
        return {tid for tid, last in self._shown.items() if last >= t - hold}

    def _rejoin(self, out: sv.Detections, t: float, frame: np.ndarray | None) -> None:
        """Give each newly numbered library track the number of the lost track it continues."""
        if self.config.stitch_s <= 0:
            return
        ids = [int(x) for x in out.tracker_id]
        new = [i for i, tid in enumerate(ids) if tid >= 0 and tid not in self._born]
        if not new:
            return
        present = {self._alias.get(tid, tid) for tid in ids if tid >= 0 and tid in self._born}
        if frame is not None:
            self._frame_size = (frame.shape[1], frame.shape[0])
        window = self._stitch_window()
        # A lost track can only continue as a new one that began after it was last seen.
        began = {}
        for i in new:
            chain = self._earlier_sightings(ids[i], out.xyxy[i])
            began[i] = chain[0][0] if chain else t
        lost = [
            reassociate.Lost(
                tid,
                last,
                self._last_box[tid],
                self._velocity.get(tid),
                self._looks[tid][1] if tid in self._looks else None,
            )
            for tid, last in self._shown.items()
            if tid not in present and 0 < t - last <= window and self._may_rejoin(tid)
        ]
        if not lost:
            return
        born = []
        for i in new:
            if self._left_view(out.xyxy[i]):
                continue  # walked in from outside the view: not someone hidden inside it
            looks = appearance.describe(frame, out.xyxy[i]) if frame is not None else None
            born.append(reassociate.Born(ids[i], out.xyxy[i].astype(np.float32), looks))
        lost_at = {m.track_id: m.t for m in lost}
        joined = {
            new_id: old_id
            for new_id, old_id in reassociate.match(lost, born, t).items()
            if lost_at[old_id] < began[ids.index(new_id)]
        }
        if not joined:
            return
        for new_id, old_id in joined.items():
            self._alias[new_id] = old_id
            self.rejoined += 1
        # The library may still hold the lost track; it must not come back as a second copy.
        gone = set(joined.values())
        self._tracker.tracks = [
            x
            for x in self._tracker.tracks
            if self._alias.get(x.tracker_id, x.tracker_id) not in gone or x.tracker_id in joined
        ]

    def _drop_walked_out(self) -> None:
        """Forget library tracks lost at the image border while walking out through it.

        The library keeps a lost track for ``lost_track_buffer_s`` wherever it was lost; one
        lost where a person left the view is matched by the next person who walks in at the
        same spot, and their two visits become one. The faster the camera, the sooner a
        newcomer's first box comes while the leaver's prediction is still there: in the
        simulated scene at 30 fps this joined people the same scene kept apart at 10
        updates a second. Only tracks moving out through that border go; one missed while
        standing (or walking along) the border is kept.
        """
        if self._frame_size is None:
            return
        kept = []
        for track in self._tracker.tracks:
            tid = int(track.tracker_id)
            if (
                tid >= 0
                and track.time_since_update > 0
                and self._walking_out(self._alias.get(tid, tid))
            ):
                self.walked_out += 1
                continue
            kept.append(track)
        self._tracker.tracks = kept

    def _walking_out(self, track_id: int) -> bool:
        """Whether the person's last box touches a border of the image and they walk out
        through it (faster than `WALK_OUT_MIN`)."""
        box, v = self._last_box.get(track_id), self._velocity.get(track_id)
        if box is None or v is None or self._frame_size is None:
            return False
        w, h = self._frame_size
        m = EDGE_PX
        fast = WALK_OUT_MIN * max(float(box[3] - box[1]), 1.0)
        return bool(
            (box[0] <= m and v[0] < -fast)
            or (box[2] >= w - m and v[0] > fast)
            or (box[1] <= m and v[1] < -fast)
            or (box[3] >= h - m and v[1] > fast)
        )

    def _left_view(self, box: np.ndarray) -> bool:
        """At the image border: a track lost there walked out of view, one born there walked
        in; neither was hidden (whoever comes in is someone else, or a new visit)."""
        if self._frame_size is None:
            return False
        w, h = self._frame_size
        m = EDGE_PX
        return bool(box[0] <= m or box[1] <= m or box[2] >= w - m or box[3] >= h - m)

    def _sample_looks(self, people: list[TrackedPerson], frame: np.ndarray, t: float) -> None:
        """Refresh the descriptors of people seen clear of others (occluded boxes mislead)."""
        if not people:
            return
        boxes = np.array([p.xyxy for p in people], np.float32)
        for i, person in enumerate(people):
            last = self._looks.get(person.track_id)
            if last is not None and t - last[0] < LOOKS_EVERY_S:
                continue
            if len(people) > 1:
                overlap = box_iou(person.xyxy, np.delete(boxes, i, axis=0))
                if overlap.max() > LOOKS_MAX_OVERLAP:
                    continue
            looks = appearance.blend(
                last[1] if last is not None else None, appearance.describe(frame, person.xyxy)
            )
            if looks is not None:
                self._looks[person.track_id] = (t, looks)

    def _note_motion(self, people: list[TrackedPerson], t: float) -> None:
        """Velocity of each person output now: the library's Kalman estimate where it has one
        in corner coordinates (filtered over all updates), else measured between updates and
        smoothed (detector box jitter)."""
        self._last_people = people
        kalman = self._kalman_velocities()
        for person in people:
            self._last_box[person.track_id] = person.xyxy
            centre = (person.xyxy[:2] + person.xyxy[2:]) / 2
            prev = self._seen_at.get(person.track_id)
            self._seen_at[person.track_id] = (t, centre)
            if person.track_id in kalman:
                self._velocity[person.track_id] = kalman[person.track_id]
                continue
            if prev is None or not 0 < t - prev[0] <= VELOCITY_GAP_S:
                self._velocity.pop(person.track_id, None)
                continue
            measured = (centre - prev[1]) / (t - prev[0])
            old = self._velocity.get(person.track_id)
            self._velocity[person.track_id] = measured if old is None else (old + measured) / 2

    def _kalman_velocities(self) -> dict[int, np.ndarray]:
        """px/s of the box centre of each track matched in the last update, from the
        library's corner-state Kalman filter ([x1, y1, x2, y2, vx1, vy1, vx2, vy2] per camera
        frame)."""
        out = {}
        for track in self._tracker.tracks:
            estimator = getattr(track, "state_estimator", None)
            if track.tracker_id < 0 or track.time_since_update != 0:
                continue
            if not isinstance(estimator, XYXYStateEstimator):
                continue
            v = np.asarray(estimator.kf.state, np.float64).reshape(-1)[4:8] * self._kalman_fps
            tid = self._alias.get(int(track.tracker_id), int(track.tracker_id))
            out[tid] = np.array([(v[0] + v[2]) / 2, (v[1] + v[3]) / 2], np.float32)
        return out

    def predict(self, t: float) -> list[TrackedPerson]:
        """The people of the last update, moved on to time ``t`` without a detection.

        For frames the detector skips (``camera.detect_every``): the library's state is left
        alone (an update without detections would count as a miss and age tracks out), and
        each person's box is shifted by its recent velocity, for at most ``PREDICT_MAX_S``.
        """
        if self._last_t is None:
            return []
        dt = min(max(t - self._last_t, 0.0), PREDICT_MAX_S)
        moved = []
        for person in self._last_people:
            v = self._velocity.get(person.track_id)
            if v is None or dt == 0:
                moved.append(person)
                continue
            shift = np.concatenate((v, v)).astype(np.float32) * dt
            moved.append(TrackedPerson(person.track_id, person.xyxy + shift, person.confidence))
        return moved

    def _earlier_sightings(
        self, track_id: int, box: np.ndarray, min_iou: float = 0.3
    ) -> list[tuple[float, TrackedPerson]]:
        """The unnumbered boxes of the previous frames a newly numbered track grew from."""
        chain: list[tuple[float, TrackedPerson]] = []
        for t, boxes, confs in reversed(self._tentative):
            if len(boxes) == 0:
                break
            iou = box_iou(box, boxes)
            best = int(np.argmax(iou))
            if iou[best] < min_iou:
                break
            box = boxes[best].astype(np.float32)
            chain.append((t, TrackedPerson(track_id, box, float(confs[best]))))
        chain.reverse()
        return chain

    def _trace_back(self, person: TrackedPerson) -> None:
        """Link a newly numbered track to its unnumbered boxes of the previous frames."""
        chain = self._earlier_sightings(person.track_id, person.xyxy)
        if not chain:
            return
        if self.config.confirm_move <= 0 or person.track_id in self._moved:
            self.confirmed_late += chain
            return
        first_t, first = chain[0]
        self._origin[person.track_id] = (*first.anchor, first_t)
        self._pending.setdefault(person.track_id, deque(maxlen=PENDING_MAX)).extend(chain)

    def _has_moved(self, person: TrackedPerson, t: float) -> bool:
        """Motion confirmation: the feet moved ``confirm_move`` box heights since first seen.

        A detector's steady false positive (a sign, a mannequin, a poster) sits still for
        ever; a shopper walks into view. Once moved, a track stays confirmed when it stops.
        """
        need = self.config.confirm_move
        if need <= 0 or person.track_id in self._moved:
            return True
        x, y = person.anchor
        height = float(person.xyxy[3] - person.xyxy[1])
        ox, oy, first_t = self._origin.setdefault(person.track_id, (x, y, t))
        if math.hypot(x - ox, y - oy) >= need * max(height, 1.0):
            self._moved.add(person.track_id)
            del self._origin[person.track_id]
            self.confirmed_late += self._pending.pop(person.track_id, ())
            return True
        if t - first_t >= StaticObjects.AFTER_S:
            self.static.learn(person.xyxy, t)
        pending = self._pending.setdefault(person.track_id, deque(maxlen=PENDING_MAX))
        pending.append((t, person))
        return False

    def _library_ids(self) -> set[int]:
        """Output numbers of the tracks the library holds."""
        return {
            self._alias.get(int(t.tracker_id), int(t.tracker_id))
            for t in self._tracker.tracks
            if t.tracker_id >= 0
        }

    def alive_ids(self) -> set[int]:
        """Tracks that count as present: output within the lost-track buffer and still kept
        by the library, or within ``stitch_s`` while a new track may still continue them
        (hidden inside the view: one who walked out is not held)."""
        if self._last_t is None:
            return set()
        t = self._last_t
        kept = self._library_ids()
        buffer = t - self.config.lost_track_buffer_s
        stitch = t - self._stitch_window()
        return {
            tid
            for tid, last in self._shown.items()
            if (last >= buffer and tid in kept) or (last >= stitch and self._may_rejoin(tid))
        }

    def _may_rejoin(self, tid: int) -> bool:
        """A lost track a new one could still continue (moved, and hidden, not gone)."""
        box = self._last_box.get(tid)
        return tid in self._moved and box is not None and not self._left_view(box)

    def reset(self) -> None:
        self._tracker.reset()
        self._last_t = None
        self._origin.clear()
        self._pending.clear()
        self._tentative.clear()
        self._born.clear()
        self.confirmed_late = []
        self._moved.clear()
        self._shown.clear()
        self._last_people = []
        self._seen_at.clear()
        self._velocity.clear()
        self._alias.clear()
        self._last_box.clear()
        self._looks.clear()
        self.static = StaticObjects()
