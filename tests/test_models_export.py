"""`storelens models export` on small YOLOs built from ultralytics' yaml files (no weights
download), checked by the edge detector. Needs the export extra (ultralytics, torch)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from storelens.cli import app

pytestmark = [pytest.mark.export, pytest.mark.slow]  # the exports build torch models

SIZE = 160  # input 160x160: 20x20 + 10x10 + 5x5 = 525 anchors
ANCHORS = 525
NAMES = {0: "cart", 1: "person"}  # person is not class 0: the detector must read the names
runner = CliRunner()


@pytest.fixture(scope="module")
def network_attempts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """ultralytics imported and run with every network attempt refused and recorded."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args[:2]))
        raise OSError("network disabled by the test")

    from storelens.models.export import ULTRALYTICS_ENV, offline_environment

    patch = pytest.MonkeyPatch()
    for key in ULTRALYTICS_ENV:
        patch.delenv(key, raising=False)  # so that undo() also removes what the exporter sets
    patch.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics-config")))
    patch.setattr(socket, "getaddrinfo", refuse)
    patch.setattr(socket, "create_connection", refuse)
    patch.setattr(socket.socket, "connect", refuse)
    try:
        offline_environment()  # what `storelens models export` does before importing ultralytics
        pytest.importorskip("ultralytics")
        yield attempts
    finally:
        patch.undo()


def build_checkpoint(folder: Path, cfg: str, stem: str) -> Path:
    """A randomly initialised YOLO with two classes, saved as an ultralytics checkpoint."""
    import ultralytics
    from ultralytics import YOLO

    spec = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models" / cfg).read_text())
    spec["nc"] = len(NAMES)
    path = folder / f"{stem}.yaml"  # the stem's "n" picks the nano scale
    path.write_text(yaml.safe_dump(spec))
    model = YOLO(str(path))
    model.model.names = dict(NAMES)
    model.save(path.with_suffix(".pt"))
    return path.with_suffix(".pt")


def export(*args: str | Path) -> str:
    result = runner.invoke(app, ["models", "export", *map(str, args)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def v11_checkpoint(network_attempts: list[str], workdir: Path) -> Path:
    return build_checkpoint(workdir, "11/yolo11.yaml", "yolo11n-shelf")


@pytest.fixture(scope="module")
def v11_onnx(v11_checkpoint: Path, workdir: Path) -> Path:
    export(v11_checkpoint, "--imgsz", SIZE, "--out", workdir / "models", "--name", "shelf-v11")
    return workdir / "models" / "shelf-v11.onnx"


@pytest.fixture(scope="module")
def e2e_onnx(network_attempts: list[str], workdir: Path) -> Path:
    checkpoint = build_checkpoint(workdir, "26/yolo26.yaml", "yolo26n-shelf")
    export(checkpoint, "--imgsz", SIZE, "--out", workdir / "models" / "shelf-26.onnx")
    return workdir / "models" / "shelf-26.onnx"


@pytest.fixture(scope="module")
def int8_onnx(v11_checkpoint: Path, v11_onnx: Path, workdir: Path) -> Path:
    export(v11_checkpoint, "--imgsz", SIZE, "--int8", "--out", workdir / "models")
    return workdir / "models" / "yolo11n-shelf-int8.onnx"


@pytest.fixture(scope="module")
def frame(sample_video: Path) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(sample_video))
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


def manifest_entry(model: Path) -> dict:
    book = json.loads((model.parent / "manifest.json").read_text())
    (entry,) = [e for e in book["models"] if e["file"] == model.name]
    return entry


def onnx_metadata(model: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(model).metadata_props}


def assert_detections(det: object, frame: np.ndarray) -> None:
    """Untrained weights find garbage, but it must come out well-formed and inside the frame."""
    found = det.detect(frame)  # type: ignore[attr-defined]
    assert found.xyxy.dtype == np.float32 and found.xyxy.shape == (len(found), 4)
    assert found.confidence.shape == (len(found),)
    assert np.isfinite(found.xyxy).all() and np.isfinite(found.confidence).all()
    h, w = frame.shape[:2]
    assert (found.xyxy[:, [0, 2]] >= 0).all() and (found.xyxy[:, [0, 2]] <= w).all()
    assert (found.xyxy[:, [1, 3]] >= 0).all() and (found.xyxy[:, [1, 3]] <= h).all()


def test_ultralytics_layout_export_runs_in_the_detector(
    v11_onnx: Path, frame: np.ndarray, network_attempts: list[str]
) -> None:
    from storelens.edge.detect import Detector, Layout

    entry = manifest_entry(v11_onnx)
    assert entry["name"] == "shelf-v11" and entry["layout"] == "ultralytics"
    assert (entry["input_width"], entry["input_height"]) == (SIZE, SIZE)
    assert entry["classes"] == ["cart", "person"] and entry["int8"] is False
    assert entry["stride"] == 32
    from storelens.assets import sha256_of

    assert entry["sha256"] == sha256_of(v11_onnx)
    meta = onnx_metadata(v11_onnx)
    assert meta["layout"] == "ultralytics" and meta["imgsz"] == f"[{SIZE}, {SIZE}]"
    assert meta["names"] == str(NAMES) and meta["stride"] == "32"

    det = Detector(v11_onnx, confidence=0.01, nms_iou=0.5, threads=1)
    assert det.layout is Layout.ULTRALYTICS
    assert det.person_class == 1  # from the class names, not the COCO default
    assert (det.width, det.height) == (SIZE, SIZE)
    blank = np.zeros((1, 3, SIZE, SIZE), np.float32)
    assert det.session.run(None, {"images": blank})[0].shape == (1, 4 + len(NAMES), ANCHORS)
    assert_detections(det, frame)
    assert network_attempts == []


def test_exported_graph_matches_the_pytorch_model(v11_checkpoint: Path, v11_onnx: Path) -> None:
    import onnxruntime as ort
    import torch
    from ultralytics import YOLO

    blob = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32)
    net = YOLO(str(v11_checkpoint)).model.float().eval()
    with torch.no_grad():
        expected = net(torch.from_numpy(blob))[0].numpy()
    got = ort.InferenceSession(str(v11_onnx)).run(None, {"images": blob})[0]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_end_to_end_export_runs_in_the_detector(
    e2e_onnx: Path, frame: np.ndarray, network_attempts: list[str]
) -> None:
    from storelens.edge.detect import Detector, Layout

    entry = manifest_entry(e2e_onnx)
    assert entry["name"] == "shelf-26" and entry["layout"] == "end2end"
    assert entry["classes"] == ["cart", "person"]
    assert onnx_metadata(e2e_onnx)["end2end"] == "True"

    det = Detector(e2e_onnx, confidence=0.01, nms_iou=0.5, threads=1)
    assert det.layout is Layout.END_TO_END and det.person_class == 1
    blank = np.zeros((1, 3, SIZE, SIZE), np.float32)
    out = det.session.run(None, {"images": blank})[0]
    assert out.shape[0] == 1 and out.shape[2] == 6
    assert_detections(det, frame)
    assert network_attempts == []


def test_int8_export_is_quantized_and_runs(
    int8_onnx: Path, v11_onnx: Path, frame: np.ndarray
) -> None:
    import onnx

    from storelens.edge.detect import Detector, Layout

    entry = manifest_entry(int8_onnx)
    assert entry["name"] == "yolo11n-shelf-int8" and entry["int8"] is True
    assert entry["layout"] == "ultralytics" and entry["classes"] == ["cart", "person"]
    ops = {node.op_type for node in onnx.load(int8_onnx).graph.node}
    assert {"DynamicQuantizeLinear", "ConvInteger"} <= ops
    assert int8_onnx.stat().st_size < v11_onnx.stat().st_size / 2
    meta = onnx_metadata(int8_onnx)
    assert meta["quantization"] == "int8-dynamic" and meta["names"] == str(NAMES)

    det = Detector(int8_onnx, confidence=0.01, nms_iou=0.5, threads=1)
    assert det.layout is Layout.ULTRALYTICS and det.person_class == 1
    assert_detections(det, frame)


def test_exported_models_resolve_by_name(int8_onnx: Path, e2e_onnx: Path, v11_onnx: Path) -> None:
    from storelens.models.lookup import model_path

    manifest = v11_onnx.parent / "manifest.json"
    assert model_path("shelf-v11", manifest=manifest) == v11_onnx
    assert model_path("shelf-26", manifest=manifest) == e2e_onnx
    listed = runner.invoke(app, ["models", "list", "--manifest", str(manifest)])
    assert listed.exit_code == 0, listed.output
    for name in ("shelf-v11", "shelf-26", "yolo11n-shelf-int8", "yolox_nano"):
        assert name in listed.output


def test_nothing_lands_beside_the_checkpoint(v11_checkpoint: Path, v11_onnx: Path) -> None:
    assert not v11_checkpoint.with_suffix(".onnx").exists()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "absent.pt", "file not found"),
        (lambda d: _write(d / "empty.pt", b""), "not an ultralytics checkpoint"),
        (lambda d: _write(d / "text.pt", b"hello\n"), "not an ultralytics checkpoint"),
        (lambda d: _state_dict(d / "weights.pt"), "not an ultralytics checkpoint"),
        (lambda d: _write(d / "model.onnx", b"x"), "expected a .pt file"),
        (
            lambda d: build_checkpoint(d, "11/yolo11-cls.yaml", "yolo11n-cls"),
            "only detection checkpoints",
        ),
    ],
)
def test_bad_checkpoints_fail_with_one_clear_message(
    make, reason: str, tmp_path: Path, network_attempts: list[str]
) -> None:
    path = make(tmp_path)
    result = runner.invoke(app, ["models", "export", str(path), "--imgsz", str(SIZE)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(f"error: {path}: ")
    assert reason in lines[0]
    assert not (tmp_path / "manifest.json").exists()


def test_end2end_on_a_head_without_one_to_one_branch_is_refused(
    v11_checkpoint: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app, ["models", "export", str(v11_checkpoint), "--end2end", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "no NMS-free (one-to-one) head" in result.output
    assert list(tmp_path.iterdir()) == []


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _state_dict(path: Path) -> Path:
    import torch

    torch.save({"weight": torch.zeros(3)}, path)
    return path


def test_int8_comparison_reports_latency_size_and_agreement(
    v11_onnx: Path, int8_onnx: Path, frame: np.ndarray
) -> None:
    from storelens.tools.bench.export import compare_models

    result = compare_models(
        v11_onnx, int8_onnx, [frame, frame[:, ::-1].copy()], threads=1, rounds=2, confidence=0.01
    )
    assert result["layout"] == "ultralytics"
    assert result["fp32_ms"] > 0 and result["int8_ms"] > 0 and result["int8_speedup"] > 0
    assert result["int8_bytes"] < result["fp32_bytes"] == v11_onnx.stat().st_size
    recall = result["int8_recall_of_fp32"]
    assert recall is None or 0.0 <= recall <= 1.0


def test_box_recall_matches_by_iou() -> None:
    from storelens.tools.bench.export import box_recall

    ref = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.empty((0, 4))]
    cand = [np.array([[1, 1, 10, 10], [50, 50, 60, 60]], np.float32), np.ones((1, 4))]
    assert box_recall(ref, cand) == 0.5  # IoU 0.81 matches, the second box has no partner
    assert box_recall([np.empty((0, 4))], [np.empty((0, 4))]) is None
