"""Linking a swipe to the person in the reader zone: clear, ambiguous, empty, opted out."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from storelens.contract.commands import OptOutList
from storelens.edge.cards.reader import Swipe
from storelens.edge.config import TcpReader
from storelens.edge.fusion.swipes import CardFusion, OptOutRegistry, _centroid

TOKEN = "ab" * 32
OTHER = "cd" * 32
ZONE = [[100.0, 100.0], [300.0, 100.0], [300.0, 300.0], [100.0, 300.0]]


@dataclass
class Person:
    visit_id: uuid.UUID
    anchor: tuple[float, float]


@dataclass
class FakeCamera:
    people: list[Person] = field(default_factory=list)
    members: dict[uuid.UUID, str] = field(default_factory=dict)

    def people_in(self, polygon_points: Sequence[Sequence[float]]) -> list[Person]:
        xs = [p[0] for p in polygon_points]
        ys = [p[1] for p in polygon_points]
        return [
            p
            for p in self.people
            if min(xs) <= p.anchor[0] <= max(xs) and min(ys) <= p.anchor[1] <= max(ys)
        ]

    def set_member(self, visit_id: uuid.UUID, member_token: str, key_id: str) -> bool:
        if any(p.visit_id == visit_id for p in self.people):
            self.members[visit_id] = member_token
            return True
        return False


def reader(**kw) -> TcpReader:
    base = {"type": "tcp", "id": "till", "port": 0, "camera": "cam1", "zone": ZONE}
    return TcpReader(**{**base, **kw})


def fusion(tmp_path: Path, optouts: list[str] | None = None, **kw) -> CardFusion:
    reg = OptOutRegistry(tmp_path / "optout.json")
    if optouts is not None:
        reg.update(OptOutList(key_id="k1", tokens=optouts))
    return CardFusion("box", [reader(**kw), TcpReader(type="tcp", id="loose", port=0)], reg)


def seqs():
    n = iter(range(1, 1000))
    return lambda: next(n)


def swipe(token: str = TOKEN, reader_id: str = "till") -> Swipe:
    return Swipe(reader_id, token, "k1", 1_790_000_000.0)


def test_single_person_is_linked_and_tagged(tmp_path: Path) -> None:
    p = Person(uuid.uuid4(), (200, 250))
    cam = FakeCamera([p, Person(uuid.uuid4(), (600, 600))])  # second one outside the zone
    ev = fusion(tmp_path, []).resolve(swipe(), {"cam1": cam}, seqs())
    assert ev.reason == "linked" and ev.visit_id == p.visit_id and ev.camera == "cam1"
    assert ev.member == TOKEN and ev.key_id == "k1" and ev.seq == 1
    assert cam.members == {p.visit_id: TOKEN}


def test_nobody_in_zone(tmp_path: Path) -> None:
    cam = FakeCamera([Person(uuid.uuid4(), (600, 600))])
    ev = fusion(tmp_path, []).resolve(swipe(), {"cam1": cam}, seqs())
    assert ev.reason == "nobody_in_zone" and ev.visit_id is None and not cam.members


def test_two_people_clear_choice_goes_to_nearest(tmp_path: Path) -> None:
    near = Person(uuid.uuid4(), (110, 110))
    far = Person(uuid.uuid4(), (290, 290))
    cam = FakeCamera([far, near])
    ev = fusion(tmp_path, [], position=[100, 100]).resolve(swipe(), {"cam1": cam}, seqs())
    assert ev.reason == "linked" and ev.visit_id == near.visit_id


def test_two_people_equally_near_is_ambiguous(tmp_path: Path) -> None:
    a = Person(uuid.uuid4(), (180, 200))
    b = Person(uuid.uuid4(), (220, 200))  # both ~20 px from the centroid (200, 200)
    cam = FakeCamera([a, b])
    ev = fusion(tmp_path, []).resolve(swipe(), {"cam1": cam}, seqs())
    assert ev.reason == "ambiguous" and ev.visit_id is None and not cam.members


def test_opted_out_member_is_never_linked(tmp_path: Path) -> None:
    p = Person(uuid.uuid4(), (200, 200))
    cam = FakeCamera([p])
    fu = fusion(tmp_path, [TOKEN])
    ev = fu.resolve(swipe(), {"cam1": cam}, seqs())
    assert ev.reason == "opted_out" and ev.visit_id is None and not cam.members
    assert fu.resolve(swipe(OTHER), {"cam1": cam}, seqs()).reason == "linked"


def test_optout_list_survives_restart_and_corruption(tmp_path: Path) -> None:
    OptOutRegistry(tmp_path / "optout.json").update(OptOutList(key_id="k1", tokens=[TOKEN]))
    reg = OptOutRegistry(tmp_path / "optout.json")
    assert reg.known("k1") and reg.opted_out(TOKEN, "k1") and not reg.opted_out(TOKEN, "k2")
    (tmp_path / "optout.json").write_text("{not json")
    assert not OptOutRegistry(tmp_path / "optout.json").known("k1")


def test_require_optout_list_blocks_linking_until_it_arrives(tmp_path: Path) -> None:
    reg = OptOutRegistry(None)
    fu = CardFusion("box", [reader()], reg, require_optout_list=True)
    cam = FakeCamera([Person(uuid.uuid4(), (200, 200))])
    assert fu.resolve(swipe(), {"cam1": cam}, seqs()).reason == "opted_out"
    reg.update(OptOutList(key_id="k1", tokens=[]))
    assert fu.resolve(swipe(), {"cam1": cam}, seqs()).reason == "linked"


def test_reader_without_camera(tmp_path: Path) -> None:
    ev = fusion(tmp_path, []).resolve(swipe(reader_id="loose"), {"cam1": FakeCamera()}, seqs())
    assert ev.reason == "no_camera" and ev.camera is None


def test_centroid() -> None:
    assert _centroid(ZONE) == pytest.approx((200.0, 200.0))
    assert _centroid([[0, 0], [1, 1], [2, 2]]) == pytest.approx((1.0, 1.0))
