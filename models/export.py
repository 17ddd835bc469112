"""Exporting an ultralytics detection checkpoint to an ONNX model the edge detector runs.

ultralytics' own exporter does the graph work (ONNX opset choice, onnxslim, its metadata:
class names, image size, stride, end2end flag); this module adds what storelens needs around
it: checks with one clear message per bad input, the output layout, optional INT8 dynamic
quantization, an atomic move into place and a manifest entry with the file's SHA-256.

ultralytics, torch and onnx are imported inside the functions: they come with the ``export``
extra only, and importing ultralytics takes seconds.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storelens.assets import sha256_of
from storelens.models.manifest import NAME_PATTERN, Manifest, ModelEntry

MANIFEST_NAME = "manifest.json"
MAX_STRIDE = 32  # P5 heads; ultralytics rounds other sizes up and the manifest records the real one

# Read by ultralytics at import time. Exports must work on an offline store server and must
# never pip-install packages behind the operator's back; users may still override these.
ULTRALYTICS_ENV = {
    "YOLO_OFFLINE": "true",
    "YOLO_AUTOINSTALL": "false",
    "YOLO_VERBOSE": "false",
}


class ExportError(RuntimeError):
    """A checkpoint that cannot be exported; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class ExportResult:
    model: Path
    manifest: Path
    entry: ModelEntry


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _check_inputs(weights: Path, name: str, imgsz: int) -> None:
    if not weights.exists():
        raise ExportError(weights, "file not found")
    if not weights.is_file():
        raise ExportError(weights, "not a file")
    if weights.suffix != ".pt":
        raise ExportError(weights, "not an ultralytics checkpoint (expected a .pt file)")
    if not re.match(NAME_PATTERN, name):
        raise ExportError(weights, f"model name {name!r} must be letters, digits, '.', '_', '-'")
    if imgsz < MAX_STRIDE or imgsz % MAX_STRIDE:
        raise ExportError(weights, f"image size {imgsz} must be a positive multiple of 32")


def offline_environment() -> None:
    """Apply ULTRALYTICS_ENV; only effective before ultralytics is first imported."""
    for key, value in ULTRALYTICS_ENV.items():
        os.environ.setdefault(key, value)


def _load_checkpoint(staged: Path, weights: Path) -> Any:
    """Load the staged link to ``weights``; errors name the user's file, not the link."""
    offline_environment()
    from ultralytics import YOLO

    try:
        model = YOLO(str(staged))
    except Exception as exc:  # torch/pickle/ultralytics raise many types for foreign files
        reason = _first_line(exc).replace(str(staged), weights.name)
        raise ExportError(weights, f"not an ultralytics checkpoint ({reason})") from None
    if model.task != "detect":
        raise ExportError(
            weights, f"a {model.task!r} model; only detection checkpoints can be exported"
        )
    return model


def _has_end_to_end_head(model: Any) -> bool:
    """YOLOv10 and YOLO26 heads carry a one-to-one (NMS-free) branch beside the usual one."""
    head = model.model.model[-1]
    return getattr(head, "one2one_cv2", None) is not None


def _shape(value_info: Any) -> list[int]:
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _class_names(meta: dict[str, str], weights: Path) -> list[str]:
    try:
        names = ast.literal_eval(meta["names"])  # ultralytics writes str(dict), not JSON
        return [str(names[i]) for i in range(len(names))]
    except (KeyError, ValueError, SyntaxError, TypeError) as exc:
        raise ExportError(weights, f"export has no usable class names ({exc})") from None


def _layout(output: list[int], end2end: bool, classes: int, weights: Path) -> str:
    """The layout the detector will see, from what we asked ultralytics to produce."""
    if end2end and len(output) == 3 and output[2] == 6:
        return "end2end"
    if not end2end and len(output) == 3 and output[1] == 4 + classes:
        return "ultralytics"
    dims = "x".join(str(d) for d in output)
    raise ExportError(weights, f"exported output {dims} is not a layout the edge detector runs")


def _quantize_int8(source: Path, dest: Path) -> None:
    """INT8 weights with activations quantized at run time: no calibration images needed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic logs a root-logger hint to run static-quantization pre-processing,
    # which does not apply here (measured: no gain for dynamic INT8); keep the CLI output clean.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        # Unsigned weights: ConvInteger kernels for signed weights are missing in older
        # runtimes that store devices may still run.
        quantize_dynamic(source, dest, weight_type=QuantType.QUInt8)
    finally:
        root.setLevel(level)


def export_checkpoint(
    weights: str | Path,
    *,
    imgsz: int = 640,
    int8: bool = False,
    out: str | Path | None = None,
    name: str | None = None,
    end2end: bool | None = None,
    manifest: str | Path | None = None,
) -> ExportResult:
    """Export ``weights`` to ONNX and record it in a manifest.

    ``out`` is the .onnx file or a folder (default: beside the checkpoint); ``name`` defaults
    to the stem of ``out`` when it is a file, else of the checkpoint (``-int8`` appended when
    quantized); ``end2end`` None exports
    NMS-free heads end-to-end (1xKx6) and others in the ultralytics layout (1x(4+nc)xN);
    ``manifest`` defaults to manifest.json in the output folder.
    """
    weights = Path(weights).expanduser()
    target = Path(out).expanduser() if out is not None else weights.parent
    out_is_file = target.suffix == ".onnx" and not target.is_dir()
    if not name:
        name = target.stem if out_is_file else weights.stem + ("-int8" if int8 else "")
    _check_inputs(weights, name, imgsz)
    if not out_is_file:
        target = target / f"{name}.onnx"
    manifest_path = Path(manifest).expanduser() if manifest else target.parent / MANIFEST_NAME
    book = Manifest.load(manifest_path, missing_ok=True)  # fail on a bad manifest before work

    with tempfile.TemporaryDirectory(prefix="storelens-export-") as tmp:
        # ultralytics writes the .onnx next to the checkpoint it loaded; a link in a private
        # folder keeps it from overwriting anything beside the user's file.
        staged = Path(tmp) / f"{name}.pt"
        try:
            staged.symlink_to(weights.resolve())
        except OSError:
            shutil.copy2(weights, staged)
        model = _load_checkpoint(staged, weights)
        e2e_head = _has_end_to_end_head(model)
        if end2end is None:
            end2end = e2e_head
        elif end2end and not e2e_head:
            raise ExportError(weights, "has no NMS-free (one-to-one) head for an end-to-end export")
        try:
            # nms=False selects the one-to-one head; None keeps the one-to-many head raw.
            produced = Path(
                model.export(
                    format="onnx",
                    imgsz=imgsz,
                    simplify=True,
                    dynamic=False,
                    nms=False if end2end else None,
                    device="cpu",
                )
            )
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(weights, f"ONNX export failed ({_first_line(exc)})") from None

        import onnx

        proto = onnx.load(produced)
        meta = {p.key: p.value for p in proto.metadata_props}
        classes = _class_names(meta, weights)
        layout = _layout(_shape(proto.graph.output[0]), end2end, len(classes), weights)
        _, _, height, width = _shape(proto.graph.input[0])
        if int8:
            quantized = produced.with_name(f"{name}-int8-tmp.onnx")
            _quantize_int8(produced, quantized)
            proto = onnx.load(quantized)
        del proto.metadata_props[:]
        meta.update(layout=layout, quantization="int8-dynamic" if int8 else "none")
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        final = Path(tmp) / "final.onnx"
        onnx.save(proto, final)

        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        shutil.move(final, partial)  # may cross file systems; os.replace below is atomic
        os.replace(partial, target)

    entry = ModelEntry(
        name=name,
        file=book.relative_file(target),
        layout=layout,
        input_width=width,
        input_height=height,
        sha256=sha256_of(target),
        classes=classes,
        stride=int(meta["stride"]) if meta.get("stride", "").isdigit() else None,
        int8=int8,
        source=f"{weights.name} (ultralytics {meta.get('version', '?')})",
        license=meta.get("license"),
    )
    book.upsert(entry)
    book.save()
    return ExportResult(target, manifest_path, entry)
