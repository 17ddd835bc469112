"""The two-camera store on real video: the sample video split into two overlapping crops
(two cameras, each with its own homography onto the same floor) reports the same visits,
entrance counts, zone visits and floor paths as the single camera, within the bench's stated
tolerance; and the shipped example config is what the generator writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from storelens.edge.config import load_config, parse_config
from storelens.edge.offline.split_cameras import HEADER, split
from storelens.tools.bench.two_cameras import TOLERANCE, run

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "firmware_config" / "sample.yaml"
EXAMPLE = ROOT / "firmware_config" / "two-cameras.yaml"
CROPS = {"left": (0, 0, 460, 576), "right": (300, 0, 468, 576)}


def test_the_example_is_generated_from_the_sample() -> None:
    data = split(load_config(SAMPLE), CROPS)
    text = HEADER + yaml.safe_dump(data, sort_keys=False, width=100, default_flow_style=None)
    assert EXAMPLE.read_text() == text, "regenerate with the command in its header"
    cfg = parse_config(data)
    assert [c.id for c in cfg.cameras] == ["left", "right"]
    assert [c.crop for c in cfg.cameras] == [list(CROPS["left"]), list(CROPS["right"])]
    # Own homographies, one floor: the same scene point maps to the same metres in both.
    from storelens.edge.scene import FloorPlan

    left, right = (FloorPlan(c.floor) for c in cfg.cameras)
    assert left.point((400.0, 300.0)) == pytest.approx(right.point((100.0, 300.0)), abs=1e-6)


@pytest.mark.slow
def test_two_cameras_report_what_one_camera_reports(sample_video, sample_model) -> None:
    result = run(load_config(SAMPLE), load_config(EXAMPLE))
    one, two = result["single_camera"], result["two_cameras"]
    assert one["frames"] == two["frames"] > 700
    assert result["equivalent"], (result["checks"], one, two, result["paths"])
    assert two["crossings"] == one["crossings"] or all(
        abs(two["crossings"].get(k, 0) - n) <= TOLERANCE["crossings_abs"]
        for k, n in one["crossings"].items()
    )
    assert two["cameras_per_visit"].get(2, 0) > 0  # people really were seen by both cameras
    assert two["fusion"]["joined_overlap"] > 0


@pytest.mark.parametrize("option,value,message", [
    ("--camera-fps", "right", "expected CAMERA=a number > 0"),
    ("--camera-fps", "right=0", "expected CAMERA=a number > 0"),
    ("--clock-offset", "right=soon", "expected CAMERA=a number of seconds"),
    ("--camera-fps", "middle=5", "frame rate for unknown camera(s): middle"),
])  # fmt: skip
def test_live_like_options_are_checked(tmp_path, option, value, message) -> None:
    from typer.testing import CliRunner

    from storelens.cli import app

    result = CliRunner().invoke(app, ["bench", "two-cameras", "--json", str(tmp_path / "o.json"),
                                      "--max-frames", "1", option, value])  # fmt: skip
    assert result.exit_code == 1 and message in result.output
