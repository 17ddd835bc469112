"""MOTChallenge writer: the exact text format standard scorers read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storelens.edge.offline.mot import MotWriter, mot_row
from storelens.edge.track.tracker import TrackedPerson


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


def test_late_rows_are_written_in_frame_order(tmp_path: Path) -> None:
    path = tmp_path / "mot.txt"
    with MotWriter(path, window=5) as mot:
        for frame in range(1, 11):
            mot.write(frame, [person(1, (0, 0, 10, 20))])
            if frame == 6:  # track 2 confirmed now, seen since frame 3
                for earlier in (3, 4, 5):
                    mot.write(earlier, [person(2, (50, 0, 60, 20))])
        mot.write(2, [person(3, (0, 0, 1, 1))])  # beyond the window: not written
    rows = np.loadtxt(path, delimiter=",")
    keys = [(int(f), int(i)) for f, i in rows[:, :2]]
    assert keys == sorted(keys)
    assert [k for k in keys if k[1] == 3] == [(3, 3), (4, 3), (5, 3)]
    assert mot.rows == 13 and mot.dropped == 1


def test_short_gaps_are_interpolated_long_ones_are_not(tmp_path: Path) -> None:
    path = tmp_path / "mot.txt"
    with MotWriter(path, fill_gaps=3) as mot:
        mot.write(1, [person(1, (0, 0, 10, 20), 0.9)])
        mot.write(4, [person(1, (30, 0, 40, 20), 0.6)])  # 2 frames missing: filled
        mot.write(9, [person(1, (80, 0, 90, 20))])  # 4 missing: more than 3, left empty
    rows = np.loadtxt(path, delimiter=",")
    assert rows[:, 0].tolist() == [1, 2, 3, 4, 9]
    np.testing.assert_allclose(rows[1:3, 2], [10, 20])  # x moves linearly
    assert rows[1, 6] == pytest.approx(0.6)
    assert mot.filled == 2
