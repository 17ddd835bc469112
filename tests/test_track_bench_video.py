"""`storelens bench tracking --video V --gt GT`: real-video scoring and its ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from storelens.cli import app
from storelens.edge.config import load_config
from storelens.tools.bench.tracking import TrackBenchError
from storelens.tools.bench.tracking_video import parse_splits, run_video_bench, score

GT = Path(__file__).parent / "data" / "tracking" / "vtest_gt.txt"
SAMPLE = Path(__file__).parent.parent / "firmware_config" / "sample.yaml"


def _write(path: Path, rows: list[tuple[int, int, float, float]]) -> Path:
    """MOT rows (frame, id, x, y) of 20x50 boxes."""
    path.write_text("".join(f"{f},{i},{x},{y},20,50,1,1,1\n" for f, i, x, y in rows))
    return path


def _two_walkers(frames: int = 40) -> list[tuple[int, int, float, float]]:
    rows = []
    for f in range(1, frames + 1):
        rows.append((f, 1, 10.0 + 3 * f, 100.0))
        rows.append((f, 2, 300.0 - 3 * f, 300.0))
    return rows


def test_a_perfect_hypothesis_scores_one(tmp_path: Path) -> None:
    gt = _write(tmp_path / "gt.txt", _two_walkers())
    hyp = _write(tmp_path / "hyp.txt", [(f, i + 10, x, y) for f, i, x, y in _two_walkers()])
    r = score(gt, hyp, 1, 40, tmp_path)
    assert r["mota"] == r["idf1"] == 1.0 and r["hota"] > 0.99
    assert r["id_switches"] == 0 and r["people"] == r["people_true"] == 2


def test_an_identity_switch_costs_idf1_and_counts(tmp_path: Path) -> None:
    gt = _write(tmp_path / "gt.txt", _two_walkers())
    # Person 1 gets a new number halfway: a fragment, one switch, three people counted.
    hyp = [(f, 3 if i == 1 and f > 20 else i, x, y) for f, i, x, y in _two_walkers()]
    r = score(gt, _write(tmp_path / "hyp.txt", hyp), 1, 40, tmp_path)
    assert r["id_switches"] == 1 and r["idf1"] < 0.9 and r["mota"] < 1.0
    assert r["people"] == 3 and r["people_error"] == 0.5
    # The second half alone has no switch: splits are scored on their own.
    half = score(gt, _write(tmp_path / "hyp2.txt", hyp), 21, 40, tmp_path)
    assert half["id_switches"] == 0 and half["idf1"] == 1.0


def test_distractor_rows_are_neither_missed_nor_counted(tmp_path: Path) -> None:
    rows = _two_walkers()
    gt = tmp_path / "gt.txt"
    gt.write_text(
        "".join(f"{f},{i},{x},{y},20,50,1,{8 if i == 2 else 1},1\n" for f, i, x, y in rows)
    )
    hyp = _write(tmp_path / "hyp.txt", [(f, i, x, y) for f, i, x, y in rows if i == 1])
    r = score(gt, hyp, 1, 40, tmp_path)
    assert r["mota"] == 1.0 and r["people_true"] == 1


def test_splits_are_parsed_and_bad_ones_rejected() -> None:
    assert parse_splits("dev:1-10,test:11-20", 20) == {
        "all": (1, 20),
        "dev": (1, 10),
        "test": (11, 20),
    }
    for bad in ("dev", "dev:0-5", "dev:5-2", ":1-2", "dev:a-b"):
        with pytest.raises(TrackBenchError, match="bad split"):
            parse_splits(bad, 20)


def test_the_committed_ground_truth_is_a_mot_file_with_people_and_distractors() -> None:
    rows = np.loadtxt(GT, delimiter=",")
    assert rows.shape[1] == 9 and rows[:, 0].min() >= 1 and rows[:, 0].max() <= 795
    assert set(np.unique(rows[:, 7])) == {1.0, 8.0}
    people = np.unique(rows[rows[:, 7] == 1][:, 1])
    assert 15 <= len(people) <= 60
    # One box per person and frame.
    keys = rows[:, 0] * 1000 + rows[:, 1]
    assert len(np.unique(keys)) == len(rows)


def test_the_cli_needs_ground_truth_with_a_video(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "tracking", "--video", "x.avi"])
    assert result.exit_code == 2 and "--gt" in result.output
    result = runner.invoke(
        app,
        ["bench", "tracking", "--video", "x.avi", "--gt", str(tmp_path / "no.txt")],
    )
    assert result.exit_code == 1 and "not found" in result.output


@pytest.mark.slow
def test_the_real_video_bench_scores_every_stride_from_one_detector_pass(
    tmp_path: Path, sample_video: Path
) -> None:
    config = load_config(SAMPLE)
    cache = tmp_path / "dets.npz"
    result = run_video_bench(
        str(sample_video),
        GT,
        config,
        detect_every=(1, 2),
        splits="dev:1-397",
        cache=cache,
        peers=False,
    )
    assert cache.exists() and result["frames"] == 795
    ours = result["variants"]["storelens/1"]
    assert set(ours) >= {"all", "dev", "visits", "wall_s"}
    # Loose floors (the README has the measured numbers): a broken tracker scores far lower.
    assert ours["all"]["mota"] > 0.7 and ours["all"]["idf1"] > 0.5
    # The sample config has re-association off: the bench also scores it on.
    assert set(result["variants"]) == {
        f"{v}/{k}" for v in ("storelens", "storelens+stitch") for k in (1, 2)
    }
    again = run_video_bench(
        str(sample_video), GT, config, detect_every=(1,), cache=cache, peers=False
    )
    assert again["variants"]["storelens/1"]["all"] == ours["all"]  # same boxes from the cache
    json.dumps(result)
