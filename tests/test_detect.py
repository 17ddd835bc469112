"""Detector: each YOLO output layout on tiny ONNX models with known outputs, and bad files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from storelens.edge.detect import Detector, DetectorError, Layout

SIZE = 64  # model input 64x64: YOLOX/ultralytics grids of 8x8 + 4x4 + 2x2 = 84 anchors
ANCHORS = 84
FRAME = np.zeros((64, 128, 3), np.uint8)  # wider than tall: letterbox pads vertically


def constant_model(
    path: Path, output: np.ndarray, *, meta: dict[str, str] | None = None, dynamic: bool = False
) -> Path:
    """A model whose output is ``output`` broadcast over the batch, whatever the image.

    ``0 * mean(image)`` ties the output to the input so the batch dimension flows through.
    """
    batch = "batch" if dynamic else 1
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=1, axes=[1, 2, 3]),
        helper.make_node("Reshape", ["m", "shape"], ["m3"]),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
        helper.make_node("Add", ["z", "const"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        initializer=[
            numpy_helper.from_array(output[None].astype(np.float32), "const"),
            numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
            numpy_helper.from_array(np.zeros((1,), np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (meta or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def load(path: Path, **kw) -> Detector:
    return Detector(path, confidence=kw.pop("confidence", 0.3), nms_iou=0.5, threads=1, **kw)


def yolox_output() -> np.ndarray:
    out = np.zeros((ANCHORS, 85), np.float32)
    cell = 3 * 8 + 2  # stride-8 grid, gx=2, gy=3: centre (2.5*8, 3.5*8) = (20, 28)
    out[cell, :4] = [0.5, 0.5, math.log(2), math.log(3)]  # 16 x 24 px
    out[cell, 4], out[cell, 5] = 0.9, 0.9
    out[cell + 1, :4] = [0.0, 0.5, math.log(2), math.log(3)]  # overlaps: removed by NMS
    out[cell + 1, 4], out[cell + 1, 5] = 0.8, 0.8
    out[10, :4] = [0.5, 0.5, 1, 1]
    out[10, 4], out[10, 5 + 2] = 0.95, 0.95  # a car: not a person
    out[70, :4] = [0.5, 0.5, 0, 0]
    out[70, 4], out[70, 5] = 0.9, 0.2  # person below the threshold (0.18)
    return out


def test_yolox_layout_decodes_grid_and_maps_back(tmp_path: Path) -> None:
    det = load(constant_model(tmp_path / "yolox.onnx", yolox_output()))
    assert det.layout is Layout.YOLOX and det.person_class == 0
    found = det.detect(FRAME)
    assert len(found) == 1
    # input box (12, 16, 28, 40); image scaled by 0.5 and placed at the top-left
    np.testing.assert_allclose(found.xyxy[0], [24, 32, 56, 64], atol=1e-3)
    assert found.confidence[0] == pytest.approx(0.81, abs=1e-5)


def test_ultralytics_layout_uses_class_names(tmp_path: Path) -> None:
    out = np.zeros((4 + 2, ANCHORS), np.float32)
    out[:4, 5] = [32, 32, 16, 16]
    out[5, 5] = 0.9  # class 1 is 'person' in the names below
    out[:4, 6] = [33, 33, 16, 16]
    out[5, 6] = 0.7  # duplicate of the first
    out[:4, 7] = [10, 40, 8, 8]
    out[4, 7] = 0.99  # a car
    meta = {"names": "{0: 'car', 1: 'person'}", "imgsz": "[64, 64]", "stride": "32"}
    det = load(constant_model(tmp_path / "v8.onnx", out, meta=meta))
    assert det.layout is Layout.ULTRALYTICS and det.person_class == 1
    found = det.detect(FRAME)
    assert len(found) == 1
    # input (24, 24, 40, 40); scaled 0.5 and centred: 16 px of padding on top
    np.testing.assert_allclose(found.xyxy[0], [48, 16, 80, 48], atol=1e-3)
    assert found.confidence[0] == pytest.approx(0.9)


def test_end_to_end_layout_and_dynamic_batch(tmp_path: Path) -> None:
    out = np.zeros((300, 6), np.float32)
    out[0] = [24, 24, 40, 40, 0.8, 0]
    out[1] = [0, 20, 10, 30, 0.9, 3]  # other class
    out[2] = [30, 20, 50, 30, 0.1, 0]  # low score
    meta = {"names": "{0: 'person', 1: 'bicycle', 2: 'car', 3: 'motorcycle'}", "end2end": "True"}
    det = load(constant_model(tmp_path / "e2e.onnx", out, meta=meta, dynamic=True))
    assert det.layout is Layout.END_TO_END and det.dynamic_batch
    many = det.detect_many([FRAME, FRAME, FRAME])
    assert [len(d) for d in many] == [1, 1, 1]
    for d in many:
        np.testing.assert_allclose(d.xyxy[0], [48, 16, 80, 48], atol=1e-3)
    np.testing.assert_allclose(det.detect(FRAME).xyxy, many[0].xyxy)


def test_static_batch_loops(tmp_path: Path) -> None:
    det = load(constant_model(tmp_path / "yolox.onnx", yolox_output()))
    assert not det.dynamic_batch
    assert [len(d) for d in det.detect_many([FRAME, FRAME])] == [1, 1]


def test_explicit_person_class_overrides(tmp_path: Path) -> None:
    det = load(constant_model(tmp_path / "yolox.onnx", yolox_output()), person_class=2)
    assert det.person_class == 2
    found = det.detect(FRAME)
    assert len(found) == 1 and found.confidence[0] == pytest.approx(0.9025)


def test_sample_model_finds_people(sample_model: Path, sample_video: Path) -> None:
    import cv2

    cap = cv2.VideoCapture(str(sample_video))
    for _ in range(30):
        ok, frame = cap.read()
    cap.release()
    assert ok
    det = Detector(sample_model, confidence=0.3, nms_iou=0.45, threads=1)
    assert det.layout is Layout.YOLOX and (det.width, det.height) == (416, 416)
    found = det.detect(frame)
    assert 2 <= len(found) <= 12
    w = found.xyxy[:, 2] - found.xyxy[:, 0]
    h = found.xyxy[:, 3] - found.xyxy[:, 1]
    assert np.all(h > w)  # standing people are taller than wide
    assert found.xyxy.dtype == np.float32


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p / "missing.onnx", "file not found"),
        (lambda p: _write(p / "corrupt.onnx", b"\x08\x01garbage" * 50), "not a loadable ONNX"),
        (
            lambda p: constant_model(p / "odd.onnx", np.zeros((7, 9), np.float32)),
            "unknown output layout 1x7x9",
        ),
        (
            lambda p: constant_model(
                p / "cars.onnx",
                np.zeros((6, ANCHORS), np.float32),
                meta={"names": "{0: 'car', 1: 'truck'}"},
            ),
            "no 'person' class",
        ),
        (
            lambda p: constant_model(p / "three.onnx", np.zeros((7, ANCHORS), np.float32)),
            "person class is unknown",
        ),
    ],
)
def test_bad_model_files_fail_with_one_clear_message(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path)
    with pytest.raises(DetectorError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message and reason in message
    assert "\n" not in message


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_grey_frames_are_refused_clearly(tmp_path: Path) -> None:
    det = load(constant_model(tmp_path / "yolox.onnx", yolox_output()))
    with pytest.raises(ValueError, match="BGR frame"):
        det.detect(np.zeros((64, 128), np.uint8))


def test_parallel_runs_match_sequential_runs_on_a_fixed_batch_model(sample_model) -> None:
    import cv2

    from storelens.assets import SAMPLE_VIDEO, find_asset

    cap = cv2.VideoCapture(str(find_asset(SAMPLE_VIDEO)))
    frames = [cap.read()[1] for _ in range(4)]
    cap.release()
    one = Detector(sample_model, confidence=0.3, nms_iou=0.45, threads=1)
    two = Detector(sample_model, confidence=0.3, nms_iou=0.45, threads=1, parallel=2)
    assert not two.dynamic_batch
    for a, b in zip(one.detect_many(frames), two.detect_many(frames), strict=True):
        assert len(a) == len(b) > 0
        assert np.allclose(a.xyxy, b.xyxy, atol=1e-3)


def test_the_detector_a_device_config_describes_keeps_every_setting(sample_model: Path) -> None:
    """`Detector.from_config` is how the agent, analysis and the benches build the detector,
    so a setting such as `parallel` reaches every one of them."""
    from storelens.edge.config import ModelConfig

    model = ModelConfig(path=str(sample_model), confidence=0.5, nms_iou=0.3, threads=1,
                        parallel=2, person_class=0)  # fmt: skip
    detector = Detector.from_config(model)
    assert detector.path == sample_model and detector.parallel == 2
    assert (detector.confidence, detector.nms_iou) == (0.5, 0.3)
    with pytest.raises(DetectorError):
        Detector.from_config(ModelConfig(path=str(sample_model.with_name("missing.onnx"))))
