"""One camera's pipeline after detection: tracks -> visits, zone stays, crossings, occupancy.

Detection happens outside (the agent batches inference across cameras); this class turns
each frame's person boxes into contract events. Visits are keyed by random UUIDs; tracker
numbers never leave this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from storelens.contract.events import (
    LineCrossing,
    OccupancySnapshot,
    VisitEnded,
    VisitStarted,
    ZoneVisit,
)
from storelens.edge.camera.stats import CameraStats
from storelens.edge.config import CameraConfig, TrackerConfig
from storelens.edge.detect import Detections
from storelens.edge.scene import (
    CountingLine,
    FloorPath,
    FloorPlan,
    LineSide,
    OccupancyClock,
    Zone,
    ZonePresence,
    ZoneStay,
)
from storelens.edge.scene.checkout import TillTimer
from storelens.edge.scene.zones import Presence, as_polygon, in_polygon
from storelens.edge.track.attire import AttireVotes, attire_of
from storelens.edge.track.tracker import (
    PersonTracker,
    TrackedPerson,
    for_rate,
)

PipelineEvent = VisitStarted | VisitEnded | ZoneVisit | LineCrossing | OccupancySnapshot
DEFAULT_FPS = 10.0  # when neither the caller nor the config knows the source rate
ATTIRE_SAMPLE_S = 1.0
RECENT_S = 1.0  # `people_in` also returns people missed by the detector this long ago


@dataclass(frozen=True)
class PersonInView:
    """A person currently in a camera's view, for linking a card swipe to a visit."""

    visit_id: uuid.UUID
    anchor: tuple[float, float]
    box: tuple[float, float, float, float]
    last_seen: datetime


@dataclass(frozen=True)
class Sighting:
    """A person a camera sees now: its pipeline's visit, feet in image pixels, the box.

    Made here, fused across cameras in `storelens.edge.fusion.store_visits`."""

    visit_id: uuid.UUID
    anchor: tuple[float, float]
    box: tuple[float, float, float, float]


class _Visit:
    def __init__(
        self,
        track_id: int,
        ts: datetime,
        t: float,
        camera: CameraConfig,
        lines: list[CountingLine],
    ) -> None:
        self.visit_id = uuid.uuid4()
        self.track_id = track_id
        self.started_at = ts
        self.started_t = t
        self.last_seen = ts
        self.last_seen_t = t
        self.anchor = (0.0, 0.0)
        self.box = (0.0, 0.0, 0.0, 0.0)
        self.member: str | None = None
        self.key_id: str | None = None
        self.staff = False
        self.path = FloorPath(camera.floor.path_tolerance_m if camera.floor else 0.25)
        self.presence = {z.name: ZonePresence(z) for z in camera.zones}
        self.tills = {z.name: TillTimer(z) for z in camera.zones if z.service_area is not None}
        self.sides = [LineSide(line) for line in lines]
        self.zones_visited: list[str] = []
        self.attire = AttireVotes()
        self.attire_next_t = t


class CameraPipeline:
    """Turns one camera's per-frame detections into events (see the module docstring)."""

    def __init__(
        self,
        camera: CameraConfig,
        tracker: TrackerConfig,
        *,
        device: str,
        next_seq: Callable[[], int],
        attire: bool = False,
        fps: float | None = None,
        staff_signal: bool = False,
        learn_staff_zones: bool = False,
    ) -> None:
        self.camera = camera
        # With a staff signal on the device, snapshots count staff apart (and total excludes
        # them); without one, nothing about staff is sent, as before contract 1.2.
        self.staff_signal = staff_signal or learn_staff_zones
        self.staff_zones = (
            {z.name for z in camera.zones if z.kind == "staff_only"} if learn_staff_zones else set()
        )
        self.device = device
        self.next_seq = next_seq
        self.attire = attire
        self.fps = fps or camera.source_fps or camera.fps or DEFAULT_FPS
        # Unknown rate (live camera, no fps in config): measured from the first two frames.
        self._fps_known = bool(fps or camera.source_fps or camera.fps)
        # With a detection stride the tracker only sees every k-th frame: its rate is fps / k
        # and its IoU gate is widened for longer steps in time (see ``for_rate``).
        self.detect_every = camera.detect_every
        self._tracker_base = tracker
        self.tracker_config = for_rate(tracker, self.fps / self.detect_every)
        self.tracker = PersonTracker(
            self.tracker_config, self.fps / self.detect_every, self.detect_every
        )
        self.zones = [Zone(z) for z in camera.zones]
        self.zone_kinds = {z.name: z.kind for z in camera.zones}
        self.lines = [CountingLine(ln) for ln in camera.lines]
        self.floor = FloorPlan(camera.floor) if camera.floor else None
        self.occupancy = OccupancyClock(camera.occupancy_interval_s)
        self.stats = CameraStats(camera.id)
        self._visits: dict[int, _Visit] = {}
        self._t0: float | None = None
        self._frame_t: float | None = None
        self.last_tracked: list[TrackedPerson] = []
        # Earlier sightings of tracks that became visits in the last frame (frame time,
        # person): replayed into the new visits, and for offline track output (MOT).
        self.confirmed_late: list[tuple[datetime, TrackedPerson]] = []

    # -- identity of a visit ------------------------------------------------------------

    def _person(self, visit: _Visit) -> dict[str, object]:
        return {
            "device": self.device,
            "camera": self.camera.id,
            "visit_id": visit.visit_id,
            "member": visit.member,
            "key_id": visit.key_id,
            "staff": True if visit.staff else None,
        }

    def set_member(self, visit_id: uuid.UUID, member_token: str, key_id: str) -> bool:
        """Tag a visit with a member pseudonym; later events of the visit carry it."""
        for visit in self._visits.values():
            if visit.visit_id == visit_id:
                visit.member, visit.key_id = member_token, key_id
                return True
        return False

    def set_staff(self, visit_id: uuid.UUID) -> bool:
        """Mark a visit as staff (badge at a reader); later events of the visit say so."""
        for visit in self._visits.values():
            if visit.visit_id == visit_id:
                visit.staff = True
                return True
        return False

    def forget_members(self, tokens: set[str], key_id: str) -> int:
        """Untag open visits of members who opted out; their later events carry no pseudonym."""
        cleared = 0
        for visit in self._visits.values():
            if visit.member in tokens and visit.key_id == key_id:
                visit.member, visit.key_id = None, None
                cleared += 1
        return cleared

    def people_in(self, polygon_points: Sequence[Sequence[float]]) -> list[PersonInView]:
        """People whose feet are inside ``polygon_points`` (image pixels), seen recently."""
        polygon = as_polygon(polygon_points)
        latest = max((v.last_seen_t for v in self._visits.values()), default=0.0)
        return [
            PersonInView(v.visit_id, v.anchor, v.box, v.last_seen)
            for v in self._visits.values()
            if latest - v.last_seen_t <= RECENT_S and in_polygon(polygon, v.anchor)
        ]

    def visits_in_view(self) -> int:
        return len(self._visits)

    def sightings(self) -> list[Sighting]:
        """People placed on the last processed frame (detected or predicted), for fusing the
        store's cameras on the floor (`storelens.edge.fusion.store_visits`)."""
        return [
            Sighting(v.visit_id, v.anchor, v.box)
            for v in self._visits.values()
            if v.last_seen_t == self._frame_t
        ]

    # -- frames ---------------------------------------------------------------------------

    def process(
        self, frame_bgr: np.ndarray | None, ts: datetime, detections: Detections | None
    ) -> list[PipelineEvent]:
        """One frame: update tracks and scene state, return the events it produced.

        ``detections`` None: the detector skipped this frame (detection stride); the tracker
        predicts where the people of its last update are now, and zones, lines and visits
        run on those positions as on any frame.
        """
        if ts.tzinfo is None:
            raise ValueError("frame timestamps must be timezone-aware (UTC)")
        self.stats.note_frame()
        t = ts.timestamp()
        self._frame_t = t
        if self._t0 is None:
            self._t0 = t
        elif not self._fps_known:
            self._measure_fps(t)
        t0 = self._t0
        if detections is None:
            tracked = self.tracker.predict(t - t0)
            self.confirmed_late = []
        else:
            tracked = self.tracker.update(detections, t - t0, frame_bgr)
            shown = {p.track_id for p in tracked}
            self.confirmed_late = [
                (datetime.fromtimestamp(t0 + rel, UTC), p)
                for rel, p in self.tracker.confirmed_late
                if p.track_id in shown  # withheld now (on a static object): not a person yet
            ]
        self.last_tracked = tracked
        late: dict[int, list[tuple[datetime, TrackedPerson]]] = {}
        for when, person in self.confirmed_late:
            late.setdefault(person.track_id, []).append((when, person))
        events: list[PipelineEvent] = []
        seen: set[int] = set()
        for person in tracked:
            seen.add(person.track_id)
            visit = self._visits.get(person.track_id)
            if visit is None:
                # The visit began at the first sighting, before motion confirmed the track:
                # replay those sightings so the start time, zones, crossings and path hold.
                earlier = late.get(person.track_id, [])
                start = earlier[0][0] if earlier else ts
                visit = _Visit(person.track_id, start, start.timestamp(), self.camera, self.lines)
                self._visits[person.track_id] = visit
                events.append(VisitStarted(seq=self.next_seq(), ts=start, **self._person(visit)))
                for when, sighting in earlier:
                    self._observe(visit, sighting, when, when.timestamp(), None, events)
            self._observe(visit, person, ts, t, frame_bgr, events)

        alive = self.tracker.alive_ids()
        for track_id in list(self._visits):
            if track_id in seen:
                continue
            visit = self._visits[track_id]
            if track_id not in alive:
                events += self._end(visit)
                continue
            for presence in visit.presence.values():
                self._stay_event(visit, presence.tick(t), events)

        if self.occupancy.due(t):
            events.append(self.snapshot(ts))
        return events

    def _measure_fps(self, t: float) -> None:
        """Second frame of a source of unknown rate: rebuild the tracker for the real rate.

        Safe because no track can be confirmed after one frame, so nothing is lost.
        """
        self._fps_known = True
        dt = t - (self._t0 or t)
        if dt > 0 and 1.0 <= 1.0 / dt <= 120.0 and abs(1.0 / dt / self.fps - 1) > 0.2:
            self.fps = 1.0 / dt
            self.tracker_config = for_rate(self._tracker_base, self.fps / self.detect_every)
            self.tracker = PersonTracker(
                self.tracker_config, self.fps / self.detect_every, self.detect_every
            )
            self.tracker.update(Detections.empty(), 0.0)

    def _observe(
        self,
        visit: _Visit,
        person: TrackedPerson,
        ts: datetime,
        t: float,
        frame: np.ndarray | None,
        events: list[PipelineEvent],
    ) -> None:
        anchor = person.anchor
        visit.anchor = anchor
        x1, y1, x2, y2 = (float(v) for v in person.xyxy)
        visit.box = (x1, y1, x2, y2)
        visit.last_seen, visit.last_seen_t = ts, t
        if self.floor is not None:
            x, y = self.floor.point(anchor)
            visit.path.add(x, y, t)
        for zone in self.zones:
            presence = visit.presence[zone.name]
            stay = presence.observe(t, zone.contains(anchor))
            till = visit.tills.get(zone.name)
            if till is not None and presence.state is not Presence.OUTSIDE:
                till.observe(t, anchor)
            if zone.name in self.staff_zones and presence.stayed_s(t) >= zone.config.min_dwell_s:
                visit.staff = True  # only staff stay in a staff-only zone
            self._stay_event(visit, stay, events)
            if till is not None and presence.state is Presence.OUTSIDE:
                till.reset()  # a brush past the edge, or a stay too short to count
        for side in visit.sides:
            direction = side.observe(anchor)
            if direction is not None:
                events.append(
                    LineCrossing(
                        seq=self.next_seq(),
                        ts=ts,
                        line=side.line.name,
                        direction=direction,
                        entrance=side.line.config.entrance,
                        **self._person(visit),
                    )
                )
        if self.attire and frame is not None and not visit.attire.full and t >= visit.attire_next_t:
            names = attire_of(frame, person.xyxy)
            if names is not None:
                visit.attire.add(names)
                visit.attire_next_t = t + ATTIRE_SAMPLE_S

    def _stay_event(
        self, visit: _Visit, stay: ZoneStay | None, events: list[PipelineEvent]
    ) -> None:
        if stay is None:
            return
        if stay.zone in self.staff_zones:
            visit.staff = True  # only staff stay in a staff-only zone; this event says so too
        exited = datetime.fromtimestamp(stay.exited_t, UTC)
        if stay.zone not in visit.zones_visited:
            visit.zones_visited.append(stay.zone)
        till = visit.tills.get(stay.zone)
        queue_s, service_s = till.split(stay) if till is not None else (None, None)
        events.append(
            ZoneVisit(
                seq=self.next_seq(),
                ts=exited,
                zone=stay.zone,
                entered_at=datetime.fromtimestamp(stay.entered_t, UTC),
                exited_at=exited,
                dwell_s=round(stay.dwell_s, 3),
                kind=self.zone_kinds.get(stay.zone),
                queue_s=None if queue_s is None else round(queue_s, 3),
                service_s=None if service_s is None else round(service_s, 3),
                **self._person(visit),
            )
        )

    def _end(self, visit: _Visit) -> list[PipelineEvent]:
        events: list[PipelineEvent] = []
        for presence in visit.presence.values():
            self._stay_event(visit, presence.close(), events)
        tolerance = self.camera.floor.path_tolerance_m if self.camera.floor else 0.25
        events.append(
            VisitEnded(
                seq=self.next_seq(),
                ts=visit.last_seen,
                started_at=visit.started_at,
                duration_s=round(max(0.0, visit.last_seen_t - visit.started_t), 3),
                path=visit.path.simplified(tolerance, visit.started_t),
                zones=visit.zones_visited,
                attire=visit.attire.result() if self.attire else None,
                **self._person(visit),
            )
        )
        del self._visits[visit.track_id]
        return events

    def snapshot(self, ts: datetime) -> OccupancySnapshot:
        """People in view and per zone now (in a zone = inside or within its exit grace)."""
        counts = {z.name: 0 for z in self.zones}
        queues = {z.name: 0 for z in self.zones if z.config.service_area is not None}
        staff = 0
        for visit in self._visits.values():
            if visit.staff:
                staff += 1
                continue
            for name, presence in visit.presence.items():
                counts[name] += presence.is_inside
            for name, till in visit.tills.items():
                queues[name] += visit.presence[name].is_inside and till.waiting
        return OccupancySnapshot(
            device=self.device,
            seq=self.next_seq(),
            ts=ts,
            camera=self.camera.id,
            total=len(self._visits) - staff,
            zones=counts,
            queues=queues or None,
            staff=staff if self.staff_signal else None,
        )

    def flush(self, ts: datetime | None = None) -> list[PipelineEvent]:
        """End of stream: close every open visit and reset tracking.

        Visits end at their last sighting, not at ``ts``: the person was not seen after it.
        """
        events: list[PipelineEvent] = []
        for visit in list(self._visits.values()):
            events += self._end(visit)
        self.tracker.reset()
        self._t0 = None
        self.last_tracked = []
        self.confirmed_late = []
        return events
