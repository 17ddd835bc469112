"""MOTChallenge writer: the exact text format standard scorers read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from storelens.edge.mot import MotWriter, mot_row
from storelens.edge.track import TrackedPerson


def person(track_id: int, xyxy: tuple[float, float, float, float], conf: float = 0.875):
    return TrackedPerson(track_id, np.array(xyxy, np.float32), conf)


def test_rows_are_frame_id_xywh_conf_and_three_minus_ones(tmp_path: Path) -> None:
    path = tmp_path / "out" / "mot.txt"
    with MotWriter(path) as mot:
        mot.write(1, [person(0, (10, 20, 50, 120)), person(4, (100.5, 0, 130.25, 80))])
        mot.write(2, [])
        mot.write(3, [person(0, (12, 20, 52, 121))])
    lines = path.read_text().splitlines()
    assert lines == [
        "1,1,10.00,20.00,40.00,100.00,0.8750,-1,-1,-1",
        "1,5,100.50,0.00,29.75,80.00,0.8750,-1,-1,-1",
        "3,1,12.00,20.00,40.00,101.00,0.8750,-1,-1,-1",
    ]
    assert mot.rows == 3
    parsed = np.loadtxt(path, delimiter=",")
    assert parsed.shape == (3, 10)


def test_frames_count_from_one() -> None:
    with pytest.raises(ValueError):
        mot_row(0, person(0, (0, 0, 1, 1)))
