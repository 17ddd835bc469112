"""Privacy at the edge without a broker: what crosses the reader boundary, and visit IDs that
cannot be joined across runs or derived from tracker numbers. (The end-to-end check of every
MQTT payload is in test_agent_e2e.py.)"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np

from storelens.contract.events import CardSwipe
from storelens.edge.camera.pipeline import CameraPipeline
from storelens.edge.cards.reader import CardReader, Swipe
from storelens.edge.config import CameraConfig, TrackerConfig
from storelens.edge.detect import Detections
from storelens.pseudonym import PseudonymKey

KEY = PseudonymKey("k1", b"0123456789abcdef0123456789abcdef")
CARD = "6012345678901234"


class ScriptedReader(CardReader):
    def __init__(self, reads: list[str], out: list) -> None:
        super().__init__("till", KEY, out.append, dedupe_s=0)
        self.reads = reads

    def _serve(self) -> None:
        for raw in self.reads:
            self._accept(raw)


def test_only_the_pseudonym_crosses_the_reader_boundary() -> None:
    out: list[Swipe] = []
    ScriptedReader([f";{CARD}=2912101?", f"{CARD}"], out)._serve()
    # A staff badge is told from its raw number at the reader; only the flag goes on.
    assert [f.name for f in dataclasses.fields(Swipe)] == [
        "reader",
        "member",
        "key_id",
        "at",
        "staff",
    ]
    assert [s.member for s in out] == [KEY.token(CARD)] * 2
    for swipe in out:
        assert CARD not in repr(swipe)
        event = CardSwipe(
            device="d",
            seq=1,
            ts=datetime.now(UTC),
            reader=swipe.reader,
            member=swipe.member,
            key_id=swipe.key_id,
            reason="nobody_in_zone",
        )
        assert CARD not in event.model_dump_json()


def test_the_key_matters_and_is_never_printed() -> None:
    other = PseudonymKey("k2", b"another-secret-key-of-32-bytes!!")
    assert other.token(CARD) != KEY.token(CARD)
    assert "0123456789abcdef" not in repr(KEY)


def run_pipeline() -> list[uuid.UUID]:
    seq = itertools.count(1)
    pipe = CameraPipeline(
        CameraConfig(id="c", source="0", source_fps=10),
        TrackerConfig(),
        device="d",
        next_seq=lambda: next(seq),
    )
    t0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    frame = np.zeros((120, 160, 3), np.uint8)
    events = []
    for i in range(30):
        x = 3.0 * i
        dets = Detections(np.array([[x, 30, x + 20, 100]], np.float32), np.array([0.9], np.float32))
        events += pipe.process(frame, t0 + timedelta(seconds=i / 10), dets)
    events += pipe.flush()
    ids = [e.visit_id for e in events if e.type == "visit_started"]
    assert ids
    for e in events:
        assert "track" not in e.model_dump_json()
    return ids


def test_visit_ids_are_random_not_track_numbers() -> None:
    first, second = run_pipeline(), run_pipeline()
    assert set(first).isdisjoint(second)  # same scene, same tracks: unrelated IDs
    assert all(v.version == 4 for v in first + second)
    assert all(v.int > 1 << 64 for v in first)  # not a small counter in disguise
