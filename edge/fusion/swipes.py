"""Card swipe -> the person standing in the reader's zone at that moment.

Rules, in order:
1. a member on the cloud's opt-out list is never linked (``opted_out``);
2. a reader not placed in a camera's view cannot link (``no_camera``);
3. nobody in the reader zone (``nobody_in_zone``);
4. one person in the zone: linked;
5. several: the one nearest the reader is linked only when the choice is clear (nearest
   distance at most ``clear_ratio`` times the runner-up's), else ``ambiguous``.
A linked visit is tagged with the member pseudonym, so its later events carry it.

The opt-out list arrives as a retained `OptOutList` on the device's cmd topic; the last list
per key is kept on disk so a device that restarts without a network still honours it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from storelens.contract.commands import OptOutList
from storelens.contract.events import CardSwipe
from storelens.edge.cards.reader import Swipe
from storelens.edge.config import ReaderConfig

log = logging.getLogger(__name__)


class PersonNearReader(Protocol):
    visit_id: uuid.UUID
    anchor: tuple[float, float]


class CameraView(Protocol):
    """What fusion needs from a camera pipeline."""

    def people_in(
        self, polygon_points: Sequence[Sequence[float]]
    ) -> Sequence[PersonNearReader]: ...

    def set_member(self, visit_id: uuid.UUID, member_token: str, key_id: str) -> bool: ...

    def set_staff(self, visit_id: uuid.UUID) -> bool: ...


class OptOutRegistry:
    """Member tokens that must never be linked, per key id; persisted as JSON."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._tokens: dict[str, frozenset[str]] = {}
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
                self._tokens = {k: frozenset(v) for k, v in data.items()}
            except (OSError, ValueError, AttributeError, TypeError) as exc:
                # A corrupt file must not stop the agent; the retained list comes back on connect.
                log.error(
                    "opt-out list %s unreadable (%s); waiting for the cloud's list", path, exc
                )

    def update(self, optouts: OptOutList) -> None:
        with self._lock:
            self._tokens[optouts.key_id] = frozenset(optouts.tokens)
            snapshot = {k: sorted(v) for k, v in self._tokens.items()}
        log.info("opt-out list for key %s: %d members", optouts.key_id, len(optouts.tokens))
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(snapshot))
            os.replace(tmp, self.path)

    def known(self, key_id: str) -> bool:
        with self._lock:
            return key_id in self._tokens

    def opted_out(self, token: str, key_id: str) -> bool:
        with self._lock:
            return token in self._tokens.get(key_id, frozenset())


@dataclass(frozen=True)
class ReaderPlacement:
    camera: str
    zone: list[list[float]]
    position: tuple[float, float]
    clear_ratio: float


def _centroid(points: Sequence[Sequence[float]]) -> tuple[float, float]:
    """Area centroid of a simple polygon (shoelace), vertex mean if degenerate."""
    area = cx = cy = 0.0
    n = len(points)
    for i in range(n):
        x0, y0 = points[i]
        x1, y1 = points[(i + 1) % n]
        cross = x0 * y1 - x1 * y0
        area += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    if abs(area) < 1e-9:
        return (sum(p[0] for p in points) / n, sum(p[1] for p in points) / n)
    return (cx / (3 * area), cy / (3 * area))


class CardFusion:
    """Links swipes to visits; see the module docstring for the rules."""

    def __init__(
        self,
        device: str,
        readers: Sequence[ReaderConfig],
        optouts: OptOutRegistry,
        *,
        require_optout_list: bool = False,
        staff_readers: Sequence[str] = (),
    ) -> None:
        self.device = device
        self.staff_readers = frozenset(staff_readers)
        self.staff_marked = 0  # staff badges linked to the person at the reader
        self.optouts = optouts
        self.require_optout_list = require_optout_list
        self._placements: dict[str, ReaderPlacement] = {}
        for r in readers:
            if r.camera is not None and r.zone is not None:
                pos = tuple(r.position) if r.position else _centroid(r.zone)
                self._placements[r.id] = ReaderPlacement(
                    r.camera, [list(p) for p in r.zone], (pos[0], pos[1]), r.clear_ratio
                )
        self._warned_no_list: set[str] = set()

    def resolve(
        self, swipe: Swipe, cameras: Mapping[str, CameraView], next_seq: Callable[[], int]
    ) -> CardSwipe | None:
        """The card-swipe event for ``swipe``, tagging the linked visit when there is one.

        A staff badge (or any card at a staff reader) is not a member swipe: the person at the
        reader is marked as staff and no event is sent (None)."""
        if swipe.staff or swipe.reader in self.staff_readers:
            self._mark_staff(swipe, cameras)
            return None
        common = {
            "device": self.device,
            "ts": datetime.fromtimestamp(swipe.at, UTC),
            "reader": swipe.reader,
            "member": swipe.member,
            "key_id": swipe.key_id,
        }
        place = self._placements.get(swipe.reader)
        camera = place.camera if place else None
        if self._blocked(swipe):
            return CardSwipe(seq=next_seq(), camera=camera, reason="opted_out", **common)
        view = cameras.get(camera) if camera else None
        if place is None or view is None:
            return CardSwipe(seq=next_seq(), reason="no_camera", **common)
        people = list(view.people_in(place.zone))
        visit_id, reason = _choose(people, place)
        if visit_id is not None and not view.set_member(visit_id, swipe.member, swipe.key_id):
            visit_id, reason = None, "nobody_in_zone"  # the visit ended in the meantime
        return CardSwipe(seq=next_seq(), camera=camera, visit_id=visit_id, reason=reason, **common)

    def _mark_staff(self, swipe: Swipe, cameras: Mapping[str, CameraView]) -> None:
        place = self._placements.get(swipe.reader)
        view = cameras.get(place.camera) if place else None
        if place is None or view is None:
            log.info("staff badge at reader %s: no camera sees it", swipe.reader)
            return
        visit_id, reason = _choose(list(view.people_in(place.zone)), place)
        if visit_id is not None and view.set_staff(visit_id):
            self.staff_marked += 1
        else:
            log.info("staff badge at reader %s: not linked (%s)", swipe.reader, reason)

    def _blocked(self, swipe: Swipe) -> bool:
        if self.optouts.opted_out(swipe.member, swipe.key_id):
            return True
        if not self.optouts.known(swipe.key_id):
            if swipe.key_id not in self._warned_no_list:
                self._warned_no_list.add(swipe.key_id)
                log.warning(
                    "no opt-out list for key %s yet; %s",
                    swipe.key_id,
                    "not linking swipes" if self.require_optout_list else "linking regardless",
                )
            return self.require_optout_list
        return False


def _choose(
    people: Sequence[PersonNearReader], place: ReaderPlacement
) -> tuple[uuid.UUID | None, str]:
    if not people:
        return None, "nobody_in_zone"
    if len(people) == 1:
        return people[0].visit_id, "linked"
    px, py = place.position
    ranked = sorted(people, key=lambda p: math.hypot(p.anchor[0] - px, p.anchor[1] - py))
    d0 = math.hypot(ranked[0].anchor[0] - px, ranked[0].anchor[1] - py)
    d1 = math.hypot(ranked[1].anchor[0] - px, ranked[1].anchor[1] - py)
    if d0 <= place.clear_ratio * d1:
        return ranked[0].visit_id, "linked"
    return None, "ambiguous"
