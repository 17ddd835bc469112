"""Store visits: the cameras of one device fused on the floor plan, one visit per person.

Each camera's pipeline keeps its own visits ("parts" here). This layer sits between the
pipelines and the outbox and decides which parts are one person:

- A new part is *pending* for ``decide_s`` (and until it has ``min_overlap`` sightings, or
  ends): its events are held while its floor positions are compared with the people other
  cameras see at the same moments. When the median distance
  over at least ``min_overlap`` simultaneous sightings is within ``same_person_m``, it is the
  same person seen by overlapping cameras and joins that store visit (two candidates: the
  clearly nearer one, else appearance, else a new visit). A store visit with a live part on
  the new part's camera is no candidate (one person, one track per camera), except for a
  glimpse (a part that ended before it was decided) matching no other: that camera's track
  in the visit swapped people, and the glimpse is of someone already counted.
- Otherwise a store visit whose person was last seen by another camera inside a configured
  hand-off area, toward this camera, at most ``window_s`` before and ``handoff_m`` away from
  where this part appeared, is a hand-off candidate. One candidate: joined. Several:
  appearance decides when one is clearly closer (``appearance_margin``); else the hand-off
  is ambiguous, a new store visit starts, and `ambiguous_handoffs` counts it.
- Otherwise a new store visit (a random UUID) starts.
- A store visit ends once all its parts ended and no hand-off can continue it any more.

Every event leaves with the store visit's ID, member token and staff flag, renumbered from the
device sequence (held and replaced events would leave gaps otherwise). The parts' own
visit_started / visit_ended events are replaced by one pair per store visit, whose
visit_ended carries one floor path (the person's positions from all cameras, averaged while
several see them), the zones from every camera, the cameras and the hand-off count.

Cameras deliver frames on their own clocks and at their own rates (live cameras drop frames
when the box is busy, a stream may lag another), so the layer works on *frame timestamps*, not
on arrival order: `push` hands it one camera frame's events and sightings, which wait in a
bounded reorder buffer (one queue per camera, merged by time) until every camera that
delivers has reached that time, or they are ``reorder_s`` older than the newest frame (a
camera that lags more, or went offline, holds the others back no longer; its late frames are
fused when they come). Another camera's position at a sighting's time is interpolated between
its own sightings around that time, so cameras at different frame rates still compare the
person at the same moment. Events of a store visit may leave up to ``decide_s + reorder_s``
after they happened.

Positions and appearance descriptors live only in memory and are dropped with the visit.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from storelens.contract.events import (
    CardSwipe,
    OccupancySnapshot,
    VisitEnded,
    VisitStarted,
    ZoneVisit,
)
from storelens.edge.config import DeviceConfig, HandoffConfig, StoreVisitsConfig
from storelens.edge.scene import FloorPath, FloorPlan
from storelens.edge.scene.zones import as_polygon, in_polygon
from storelens.edge.track import appearance

if TYPE_CHECKING:
    # The camera stage produces sightings; only the type is needed here, and a runtime import
    # would load the detector (ONNX Runtime) into every agent, camera-less ones included.
    from storelens.edge.camera.pipeline import Sighting

SAME_MOMENT_S = 0.15  # sightings of two cameras this close in time are simultaneous
INTERPOLATE_GAP_S = 0.6  # a camera's position between two sightings at most this far apart
TRACK_S = 8.0  # floor history kept per part, for matching
APPEARANCE_EVERY_S = 0.5
MAX_BUFFERED_PER_CAMERA = 256  # frames; bounds memory whatever the clocks do
CLOCK_STEP_S = 0.05  # resolution of a camera clock estimate
CLOCK_SAMPLES = 25  # a camera's offset: median of its latest samples
CLOCK_MIN_SAMPLES = 3  # ... once it has this many
CLOCK_MIN_SIGHTINGS = 5  # simultaneous sightings a sample needs
CLOCK_MIN_MOVE_M = 0.5  # and this much walking (a standing person fits any shift)


@dataclass
class _Frame:
    """One camera frame waiting in the reorder buffer: its events and where its people were
    (floor metres, and an appearance descriptor when one was due)."""

    t: float
    events: list[Any]
    seen: list[tuple[uuid.UUID, float, float, np.ndarray | None]]


class _StoreVisit:
    def __init__(self, started_at: datetime, tolerance: float) -> None:
        self.visit_id = uuid.uuid4()
        self.started_at = started_at
        self.start_t = started_at.timestamp()
        self.last_seen = started_at
        self.last_t = self.start_t
        self.last_floor: tuple[float, float] | None = None
        self.last_camera: str | None = None
        self.member: str | None = None
        self.key_id: str | None = None
        self.staff: bool | None = None
        self.cameras: list[str] = []
        self.handoffs = 0
        self.parts: list[_Part] = []
        self.path = FloorPath(tolerance)
        self.path_t = -math.inf
        self.latest: dict[str, tuple[float, float, float]] = {}
        self.zones: list[str] = []
        self.attire: dict | None = None
        self.appearance: np.ndarray | None = None
        self.close_after: float | None = None

    @property
    def all_ended(self) -> bool:
        return all(p.ended for p in self.parts)

    def add_point(self, t: float, x: float, y: float) -> None:
        if t > self.path_t:
            self.path.add(x, y, t)
            self.path_t = t


class _Part:
    """One camera pipeline's visit."""

    def __init__(self, camera: str, visit_id: uuid.UUID, started_at: datetime) -> None:
        self.camera = camera
        self.visit_id = visit_id
        self.started_at = started_at
        self.store: _StoreVisit | None = None
        self.held: list[Any] = []
        self.track: deque[tuple[float, float, float]] = deque()
        self.appearance: np.ndarray | None = None
        self.appearance_next_t = -math.inf
        self.member: tuple[str, str] | None = None
        self.staff = False
        self.ended = False

    @property
    def first_t(self) -> float:
        return self.track[0][0] if self.track else self.started_at.timestamp()

    @property
    def last_t(self) -> float:
        return self.track[-1][0] if self.track else self.started_at.timestamp()

    def position_at(self, t: float) -> tuple[float, float] | None:
        """Where this camera saw the person at ``t``: interpolated between its sightings just
        before and after (at most `INTERPOLATE_GAP_S` apart), else its sighting within
        `SAME_MOMENT_S` of ``t``; None when it did not see them then."""
        after: tuple[float, float, float] | None = None
        for tt, x, y in reversed(self.track):
            if tt >= t:
                after = (tt, x, y)
                continue
            if tt < t - max(SAME_MOMENT_S, INTERPOLATE_GAP_S):
                break
            before = (tt, x, y)
            if after is not None and after[0] - tt <= INTERPOLATE_GAP_S:
                w = (t - tt) / (after[0] - tt) if after[0] > tt else 0.0
                return (x + w * (after[1] - x), y + w * (after[2] - y))
            if t - tt <= SAME_MOMENT_S and (after is None or after[0] - t > t - tt):
                return (before[1], before[2])
            break
        if after is not None and after[0] - t <= SAME_MOMENT_S:
            return (after[1], after[2])
        return None


class StoreVisits:
    """Fuses camera pipelines' events into store visits (see the module docstring)."""

    def __init__(self, config: DeviceConfig, next_seq: Callable[[], int]) -> None:
        if config.store_visits is None:
            raise ValueError("the device config has no store_visits section")
        self.config: StoreVisitsConfig = config.store_visits
        self.device = config.device
        self.next_seq = next_seq
        self.floors = {c.id: FloorPlan(c.floor) for c in config.cameras if c.floor is not None}
        tolerances = [c.floor.path_tolerance_m for c in config.cameras if c.floor is not None]
        self.tolerance = min(tolerances) if tolerances else 0.25
        self._handoffs: dict[tuple[str, str], list[tuple[HandoffConfig, np.ndarray]]] = {}
        for h in self.config.handoffs:
            pairs = [(h.from_camera, h.to_camera)]
            if h.both_ways:
                pairs.append((h.to_camera, h.from_camera))
            for pair in pairs:
                self._handoffs.setdefault(pair, []).append((h, as_polygon(h.area)))
        self._parts: dict[uuid.UUID, _Part] = {}
        self._visits: dict[uuid.UUID, _StoreVisit] = {}
        self._ready: list[Any] = []  # decided outside route/tick (card swipes)
        # The reorder buffer (see the module docstring): per camera, frames in arrival order.
        self.reorder_s = self.config.reorder_s
        self._order = {c.id: i for i, c in enumerate(config.cameras)}
        self._queues: dict[str, deque[_Frame]] = {c.id: deque() for c in config.cameras}
        self._latest: dict[str, float] = {}  # newest frame time pushed per camera
        self._fused_t = -math.inf  # newest frame time fused (released)
        self._first_t = math.inf  # the first frame time pushed
        self._describe_next: dict[uuid.UUID, float] = {}  # appearance throttle per part
        # Card swipes (and staff badges) for a part still in the buffer: applied when it comes.
        self._early: dict[uuid.UUID, dict[str, Any]] = {}
        self.late_frames = 0  # frames fused after newer ones (a camera beyond reorder_s)
        # Cameras' clocks, learned from people seen by two at once: seconds a camera's frame
        # times run ahead of the reference camera's (the first with a floor).
        self.clock_offsets: dict[str, float] = {}
        self._reference = next((c.id for c in config.cameras if c.floor is not None), None)
        self._clock_samples: dict[str, deque[float]] = {}
        self.started = 0
        self.joined_overlap = 0
        self.joined_handoff = 0
        self.ambiguous_handoffs = 0

    # -- frames in (reorder buffer) -------------------------------------------------------

    def push(
        self,
        camera: str,
        t: float,
        events: Iterable[Any],
        sightings: Sequence[Sighting],
        frame: np.ndarray | None,
    ) -> list[Any]:
        """One camera frame (its pipeline's events, the people it placed, the image for the
        in-memory appearance descriptors) at frame time ``t``; returns the store's events
        that can leave now. The frame itself is not kept."""
        if camera not in self._queues:
            raise ValueError(f"unknown camera {camera!r}")
        t -= self.clock_offsets.get(camera, 0.0)  # onto the reference camera's clock
        floor = self.floors.get(camera)
        seen: list[tuple[uuid.UUID, float, float, np.ndarray | None]] = []
        if floor is not None:
            for sight in sightings:
                x, y = floor.point(sight.anchor)
                descriptor = None
                if frame is not None and t >= self._describe_next.get(sight.visit_id, -math.inf):
                    descriptor = appearance.describe(frame, sight.box)
                    self._describe_next[sight.visit_id] = t + APPEARANCE_EVERY_S
                seen.append((sight.visit_id, x, y, descriptor))
        queue = self._queues[camera]
        queue.append(_Frame(t, list(events), seen))
        self._latest[camera] = max(t, self._latest.get(camera, -math.inf))
        self._first_t = min(self._first_t, t)
        out = self._release()
        while len(queue) > MAX_BUFFERED_PER_CAMERA:  # clocks gone wild: memory stays bounded
            out += self._release(upto=queue[0].t)
        return out

    def drain(self) -> list[Any]:
        """Fuse every buffered frame (the streams stop, or the device shuts down)."""
        return self._release(upto=math.inf)

    def _releasable(self, t: float) -> bool:
        """Whether no camera still delivering can send a frame older than ``t``: every
        camera that sent a frame within ``reorder_s`` of the newest is at ``t`` already, or
        ``t`` is more than ``reorder_s`` older than the newest frame."""
        newest = max(self._latest.values())
        if t <= newest - self.reorder_s:
            return True
        # A camera not heard from yet counts as at the first frame's time: at start-up the
        # others wait for it up to reorder_s, not for ever.
        clocks = [self._latest.get(c, self._first_t) for c in self._queues]
        return all(latest >= t for latest in clocks if latest >= newest - self.reorder_s)

    def _release(self, upto: float | None = None) -> list[Any]:
        """Fuse buffered frames oldest first (per camera in arrival order), those at or
        before ``upto`` or releasable; tick after the last frame of each moment."""
        out: list[Any] = []
        while True:
            heads = [(q[0].t, self._order[c], c) for c, q in self._queues.items() if q]
            if not heads:
                break
            t, _, camera = min(heads)
            if not ((upto is not None and t <= upto) or self._releasable(t)):
                break
            frame = self._queues[camera].popleft()
            if t < self._fused_t:
                self.late_frames += 1
            out += self.route(camera, frame.events)
            self._observe(camera, t, frame.seen)
            later = [q[0].t for q in self._queues.values() if q]
            if not later or min(later) > t:
                self._fused_t = max(self._fused_t, t)
                out += self.tick(self._fused_t)
        return out

    # -- events in, events out ------------------------------------------------------------

    def route(self, camera: str, events: Iterable[Any]) -> list[Any]:
        """A camera pipeline's events -> the store's (some held until their part is decided)."""
        out: list[Any] = []
        for event in events:
            if isinstance(event, OccupancySnapshot):
                out.append(self._snapshot(camera, event))
                continue
            if isinstance(event, VisitStarted):
                self._parts[event.visit_id] = _Part(camera, event.visit_id, event.ts)
                early = self._early.pop(event.visit_id, None)
                if early is not None:  # swiped while its frames were in the buffer
                    out += self._apply_early(self._parts[event.visit_id], early)
                continue
            part = self._parts.get(getattr(event, "visit_id", None))  # type: ignore[arg-type]
            if part is None:  # not a visit this layer saw start: pass on as it is
                out.append(event.model_copy(update={"seq": self.next_seq()}))
                continue
            if getattr(event, "staff", None):  # learned by the camera (staff-only zone)
                part.staff = True
                if part.store is not None:
                    part.store.staff = True
            if isinstance(event, VisitEnded):
                part.ended = True
                self._describe_next.pop(part.visit_id, None)
                if part.store is None:
                    out += self._decide(part)
                visit = part.store
                assert visit is not None
                visit.attire = visit.attire or event.attire
                if visit.all_ended:
                    visit.close_after = max(event.ts.timestamp(), self._closing_time(visit))
                continue
            if part.store is None:
                part.held.append(event)
            else:
                out.append(self._relabel(event, part.store))
        return out

    def _observe(
        self, camera: str, t: float, seen: Iterable[tuple[uuid.UUID, float, float, Any]]
    ) -> None:
        """Where a camera's people were on the floor at frame time ``t``."""
        for visit_id, x, y, descriptor in seen:
            part = self._parts.get(visit_id)
            if part is None or part.ended:
                continue
            part.track.append((t, x, y))
            while part.track and part.track[0][0] < t - TRACK_S:
                part.track.popleft()
            if descriptor is not None:
                part.appearance = appearance.blend(part.appearance, descriptor)
            visit = part.store
            if visit is not None:
                self._seen(visit, camera, t, x, y)
                visit.appearance = appearance.blend(visit.appearance, part.appearance)

    def tick(self, t: float) -> list[Any]:
        """Decide parts held long enough and end store visits nobody can continue."""
        out, self._ready = self._ready, []
        for part in sorted(self._pending(), key=lambda p: p.first_t):
            # A part seen fewer than min_overlap times waits for more sightings or its end
            # (the tracker's lost-track buffer), whichever comes first.
            seen_enough = len(part.track) >= self.config.min_overlap
            if t - part.first_t >= self.config.decide_s and seen_enough:
                out += self._decide(part)
        pending_from = min((p.first_t for p in self._pending()), default=math.inf)
        for visit in list(self._visits.values()):
            if visit.all_ended and visit.close_after is not None and t >= visit.close_after:
                if pending_from <= visit.last_t + SAME_MOMENT_S:
                    continue  # a held part seen while this person was: it may be them
                out += self._end(visit)
        return out

    def flush(self) -> list[Any]:
        """End of the streams: decide every held part, end every store visit. (`drain` the
        buffer before routing the pipelines' closing events.)"""
        out = self.drain()
        out, self._ready = out + self._ready, []
        for early in self._early.values():  # the person's frames never came: not linked
            for swipe in early.get("swipes", []):
                update = {"seq": self.next_seq(), "visit_id": None, "reason": "nobody_in_zone"}
                out.append(swipe.model_copy(update=update))
        self._early.clear()
        self._describe_next.clear()
        for part in sorted(self._pending(), key=lambda p: p.first_t):
            out += self._decide(part)
        for visit in list(self._visits.values()):
            out += self._end(visit)
        self._parts.clear()
        return out

    # -- card swipes and consent ---------------------------------------------------------

    def set_member(self, part_visit_id: uuid.UUID, member: str, key_id: str) -> bool:
        part = self._parts.get(part_visit_id)
        if part is None:
            if not self._buffered(part_visit_id):
                return False
            self._early.setdefault(part_visit_id, {})["member"] = (member, key_id)
            return True
        if part.store is None:
            self._ready += self._decide(part)  # the swipe needs the store visit's ID now
        assert part.store is not None
        part.store.member, part.store.key_id = member, key_id
        return True

    def set_staff(self, part_visit_id: uuid.UUID) -> bool:
        part = self._parts.get(part_visit_id)
        if part is None:
            if not self._buffered(part_visit_id):
                return False
            self._early.setdefault(part_visit_id, {})["staff"] = True
            return True
        part.staff = True
        if part.store is not None:
            part.store.staff = True
        return True

    def swipe(self, event: CardSwipe) -> CardSwipe | None:
        """A card swipe linked to a part -> linked to the part's store visit. None: the part's
        frames are still in the reorder buffer; the swipe leaves with them (or unlinked)."""
        if event.visit_id is not None and event.visit_id in self._early:
            self._early[event.visit_id].setdefault("swipes", []).append(event)
            return None
        part = self._parts.get(event.visit_id) if event.visit_id else None
        if part is None or part.store is None:
            return event
        return event.model_copy(update={"visit_id": part.store.visit_id})

    def _buffered(self, part_visit_id: uuid.UUID) -> bool:
        """Whether a pipeline visit's start is still in the reorder buffer."""
        return any(
            isinstance(e, VisitStarted) and e.visit_id == part_visit_id
            for q in self._queues.values()
            for f in q
            for e in f.events
        )

    def _apply_early(self, part: _Part, early: dict[str, Any]) -> list[Any]:
        out: list[Any] = []
        if early.get("staff"):
            part.staff = True
        if "member" in early:
            part.member = early["member"]
            out += self._decide(part)  # the swipe needs the store visit's ID now
            assert part.store is not None
            part.store.member, part.store.key_id = early["member"]
        visit_id = part.store.visit_id if part.store is not None else None
        for swipe in early.get("swipes", []):
            update = {"seq": self.next_seq(), "visit_id": visit_id}
            if visit_id is None:
                update["reason"] = "nobody_in_zone"
            out.append(swipe.model_copy(update=update))
        return out

    def forget_members(self, tokens: set[str], key_id: str) -> int:
        cleared = 0
        for visit in self._visits.values():
            if visit.member in tokens and visit.key_id == key_id:
                visit.member = visit.key_id = None
                cleared += 1
        return cleared

    def visit_of(self, part_visit_id: uuid.UUID) -> uuid.UUID | None:
        part = self._parts.get(part_visit_id)
        return part.store.visit_id if part and part.store else None

    @property
    def open_visits(self) -> int:
        return len(self._visits)

    # -- deciding ---------------------------------------------------------------------------

    def _pending(self) -> list[_Part]:
        return [p for p in self._parts.values() if p.store is None]

    def _decide(self, part: _Part) -> list[Any]:
        out: list[Any] = []
        visit = self._overlap_match(part)
        if visit is not None:
            self.joined_overlap += 1
            self._learn_clock(part, visit)
        else:
            visit, ambiguous = self._handoff_match(part)
            if visit is not None:
                visit.handoffs += 1
                self.joined_handoff += 1
            elif ambiguous:
                self.ambiguous_handoffs += 1
        if visit is None:
            # On the reference camera's clock, as the visit's path and last sighting are (a
            # camera whose clock runs ahead would start it late and shorten it).
            skew = timedelta(seconds=self.clock_offsets.get(part.camera, 0.0))
            visit = _StoreVisit(part.started_at - skew, self.tolerance)
            self._visits[visit.visit_id] = visit
            self.started += 1
            out.append(
                VisitStarted(
                    device=self.device,
                    seq=self.next_seq(),
                    ts=visit.started_at,
                    camera=part.camera,
                    visit_id=visit.visit_id,
                )
            )
        part.store = visit
        visit.parts.append(part)
        visit.close_after = None
        if part.camera not in visit.cameras:
            visit.cameras.append(part.camera)
        if part.member is not None:
            visit.member, visit.key_id = part.member
        if part.staff:
            visit.staff = True
        for t, x, y in part.track:
            self._seen(visit, part.camera, t, x, y)
        visit.appearance = appearance.blend(visit.appearance, part.appearance)
        out += [self._relabel(e, visit) for e in part.held]
        part.held = []
        return out

    def _overlap_match(self, part: _Part) -> _StoreVisit | None:
        found: list[tuple[float, _StoreVisit]] = []
        busy: list[tuple[float, _StoreVisit]] = []
        for visit in self._visits.values():
            tracked_here = any(p.camera == part.camera and not p.ended for p in visit.parts)
            if tracked_here and not part.ended:
                continue  # one person is one track per camera
            others = [p for p in visit.parts if p.camera != part.camera]
            dists = []
            for t, x, y in part.track:
                for other in others:
                    pos = other.position_at(t)
                    if pos is not None:
                        dists.append(math.hypot(pos[0] - x, pos[1] - y))
            # A part that ended before it had ``min_overlap`` sightings (a person glimpsed at
            # the edge of a view, box cut by the border) is judged on what it has: left
            # alone it would count as one more visitor. So is one whose counterparts all
            # left their views: a slower camera sees few frames of a short overlap, and no
            # more simultaneous sightings can come (two, then, not one: it goes on).
            enough = self.config.min_overlap
            if part.ended:
                enough = 1
            elif others and all(o.ended or o.last_t < part.last_t - INTERPOLATE_GAP_S
                                for o in others):  # fmt: skip
                enough = min(enough, 2)
            if len(dists) >= enough:
                d = statistics.median(dists)
                if d <= self.config.same_person_m:
                    (busy if tracked_here else found).append((d, visit))
        # A glimpse (ended before it was decided) where another camera sees a person of a
        # visit this camera also tracks elsewhere: one of this camera's tracks swapped
        # people, and the glimpse is of someone already counted, not one more visitor.
        found = found or busy
        if not found:
            return None
        found.sort(key=lambda f: f[0])
        if len(found) == 1 or found[0][0] <= 0.6 * found[1][0]:
            return found[0][1]
        return self._by_appearance(part, [v for _, v in found[:2]])

    def _learn_clock(self, part: _Part, visit: _StoreVisit) -> None:
        """The time shift that best lays this part's floor track over the reference camera's
        track of the same person: one sample of how far apart the two clocks are. A camera's
        offset is the median of its last `CLOCK_SAMPLES` samples, within ``max_clock_skew_s``.
        Only moving people tell (someone standing still matches at any shift)."""
        bound = self.config.max_clock_skew_s
        ref = self._reference
        if bound <= 0 or ref is None or len(part.track) < CLOCK_MIN_SIGHTINGS:
            return
        (_, x0, y0), (_, x1, y1) = part.track[0], part.track[-1]
        if math.hypot(x1 - x0, y1 - y0) < CLOCK_MIN_MOVE_M:
            return
        pairs = [(part, o) for o in visit.parts if part.camera != ref and o.camera == ref]
        pairs += [(o, part) for o in visit.parts if part.camera == ref and o.camera != ref]
        for moving, reference in pairs:
            best: tuple[float, float] | None = None
            for k in range(-round(bound / CLOCK_STEP_S), round(bound / CLOCK_STEP_S) + 1):
                lag = k * CLOCK_STEP_S
                dists = [
                    math.hypot(pos[0] - x, pos[1] - y)
                    for t, x, y in moving.track
                    if (pos := reference.position_at(t + lag)) is not None
                ]
                if len(dists) >= CLOCK_MIN_SIGHTINGS:
                    d = statistics.median(dists)
                    if best is None or d < best[0]:
                        best = (d, lag)
            if best is None:
                continue
            # Seen at the reference's t + lag: this camera's clock runs ahead by -lag, on top
            # of the offset already taken off its times.
            camera = moving.camera
            samples = self._clock_samples.setdefault(camera, deque(maxlen=CLOCK_SAMPLES))
            samples.append(self.clock_offsets.get(camera, 0.0) - best[1])
            if len(samples) >= CLOCK_MIN_SAMPLES:
                offset = max(-bound, min(bound, statistics.median(samples)))
                self.clock_offsets[camera] = round(offset, 3)

    def _handoff_match(self, part: _Part) -> tuple[_StoreVisit | None, bool]:
        """(the visit this part continues, whether candidates were too alike to choose)."""
        if not part.track:
            return None, False
        t0, x0, y0 = part.track[0]
        found = []
        for visit in self._visits.values():
            if visit.last_camera is None or visit.last_floor is None:
                continue
            if visit.last_camera == part.camera or visit.last_t > t0 + SAME_MOMENT_S:
                continue  # still in view elsewhere, or a person of this camera
            for h, area in self._handoffs.get((visit.last_camera, part.camera), []):
                gap = t0 - visit.last_t
                near = math.dist(visit.last_floor, (x0, y0)) <= self.config.handoff_m
                if gap <= h.window_s and near and in_polygon(area, visit.last_floor):
                    found.append(visit)
                    break
        if len(found) == 1:
            return found[0], False
        if not found:
            return None, False
        chosen = self._by_appearance(part, found)
        return chosen, chosen is None

    def _by_appearance(self, part: _Part, visits: list[_StoreVisit]) -> _StoreVisit | None:
        scored = []
        for visit in visits:
            d = appearance.distance(part.appearance, visit.appearance)
            if d is None:
                return None
            scored.append((d, visit))
        scored.sort(key=lambda s: s[0])
        if scored[1][0] - scored[0][0] >= self.config.appearance_margin:
            return scored[0][1]
        return None

    def _closing_time(self, visit: _StoreVisit) -> float:
        """When no hand-off can continue the visit any more."""
        wait = 0.0
        if visit.last_camera is not None and visit.last_floor is not None:
            for (src, _), items in self._handoffs.items():
                if src != visit.last_camera:
                    continue
                for h, area in items:
                    if in_polygon(area, visit.last_floor):
                        wait = max(wait, h.window_s + self.config.decide_s)
        return visit.last_t + wait

    # -- output -----------------------------------------------------------------------------

    def _seen(self, visit: _StoreVisit, camera: str, t: float, x: float, y: float) -> None:
        visit.latest[camera] = (t, x, y)
        now = [(px, py) for pt, px, py in visit.latest.values() if t - pt <= SAME_MOMENT_S]
        mx = sum(p[0] for p in now) / len(now)
        my = sum(p[1] for p in now) / len(now)
        visit.add_point(t, mx, my)
        if t >= visit.last_t:
            visit.last_t = t
            visit.last_seen = datetime.fromtimestamp(t, UTC)
            visit.last_floor = (mx, my)
            visit.last_camera = camera

    def _snapshot(self, camera: str, event: OccupancySnapshot) -> OccupancySnapshot:
        """A camera's snapshot with each person counted once per store: someone seen by
        several cameras counts in the ``total`` of the first of them still seeing them (so
        the totals of one instant add up to the people in the store). Zones and queues stay
        per camera: each zone belongs to one camera."""
        elsewhere = 0
        for part in self._parts.values():
            if part.camera != camera or part.ended:
                continue
            if part.store is None:  # not decided yet: counted elsewhere if it is likely them
                elsewhere += self._seen_elsewhere(part)
                continue
            if part.store.staff:
                continue
            primary = next((p.camera for p in part.store.parts if not p.ended), camera)
            elsewhere += primary != camera
        total = max(0, event.total - elsewhere)
        return event.model_copy(update={"seq": self.next_seq(), "total": total})

    def _seen_elsewhere(self, part: _Part) -> bool:
        """Whether another camera's decided person stands where this held part is now."""
        if not part.track:
            return False
        t, x, y = part.track[-1]
        for other in self._parts.values():
            if other.camera == part.camera or other.ended or other.store is None:
                continue
            pos = other.position_at(t)
            if pos is not None and math.hypot(pos[0] - x, pos[1] - y) <= self.config.same_person_m:
                return True
        return False

    def _relabel(self, event: Any, visit: _StoreVisit) -> Any:
        update: dict[str, Any] = {
            "seq": self.next_seq(),
            "visit_id": visit.visit_id,
            "member": visit.member,
            "key_id": visit.key_id,
        }
        if visit.staff:
            update["staff"] = True
        if isinstance(event, ZoneVisit) and event.zone not in visit.zones:
            visit.zones.append(event.zone)
        return event.model_copy(update=update)

    def _end(self, visit: _StoreVisit) -> list[Any]:
        for part in visit.parts:
            self._parts.pop(part.visit_id, None)
        del self._visits[visit.visit_id]
        duration = max(0.0, visit.last_t - visit.start_t)
        return [
            VisitEnded(
                device=self.device,
                seq=self.next_seq(),
                ts=visit.last_seen,
                camera=visit.last_camera or visit.cameras[0],
                visit_id=visit.visit_id,
                member=visit.member,
                key_id=visit.key_id,
                staff=visit.staff,
                started_at=visit.started_at,
                duration_s=round(duration, 3),
                path=visit.path.simplified(self.tolerance, visit.start_t),
                zones=visit.zones,
                attire=visit.attire,
                cameras=visit.cameras,
                handoffs=visit.handoffs,
            )
        ]


class FusedView:
    """A camera pipeline as card fusion sees it while cameras are fused: the person at the
    reader is found in the camera, the member token goes to their store visit."""

    def __init__(self, pipeline: Any, visits: StoreVisits) -> None:
        self.pipeline = pipeline
        self.visits = visits

    def people_in(self, polygon_points: Sequence[Sequence[float]]) -> Sequence[Any]:
        return self.pipeline.people_in(polygon_points)

    def set_member(self, visit_id: uuid.UUID, member_token: str, key_id: str) -> bool:
        return self.visits.set_member(visit_id, member_token, key_id)

    def set_staff(self, visit_id: uuid.UUID) -> bool:
        return self.visits.set_staff(visit_id)
