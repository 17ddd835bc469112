"""Person detector over ONNX Runtime for ultralytics (v8/11, end-to-end v10/26) and YOLOX models."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import onnxruntime as ort

from storelens.edge.detect.layouts import (
    Layout,
    YoloxGrid,
    decode_end_to_end,
    decode_ultralytics,
    decode_yolox,
    identify_layout,
)
from storelens.edge.detect.letterbox import Letterbox, letterbox

if TYPE_CHECKING:
    from storelens.edge.config import ModelConfig

# Accelerators first, CPU always last as the fallback every install has.
PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)
COCO_CLASSES = 80  # models without class names: COCO order, where class 0 is person
DEFAULT_INPUT = 640


class DetectorError(RuntimeError):
    """A model file that cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"model {path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class Detections:
    """Person boxes of one frame: ``xyxy`` float32 Nx4 in frame pixels, ``confidence`` N."""

    xyxy: np.ndarray
    confidence: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.empty((0, 4), np.float32), np.empty((0,), np.float32))

    def __len__(self) -> int:
        return len(self.confidence)


def choose_providers(requested: Sequence[str] | None = None) -> list[str]:
    available = ort.get_available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ValueError(f"execution providers not installed: {missing}; have {available}")
        chosen = list(requested)
    else:
        chosen = [p for p in PREFERRED_PROVIDERS if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _metadata(session: ort.InferenceSession) -> dict[str, str]:
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except Exception:  # some exporters write no metadata block at all
        return {}


def _class_names(meta: dict[str, str]) -> dict[int, str] | None:
    raw = meta.get("names")
    if not raw:
        return None
    try:
        names = ast.literal_eval(raw)  # ultralytics writes str(dict), not JSON
    except (ValueError, SyntaxError):
        return None
    if isinstance(names, list):
        names = dict(enumerate(names))
    return {int(k): str(v) for k, v in names.items()} if isinstance(names, dict) else None


def _input_size(shape: list, meta: dict[str, str]) -> tuple[int, int]:
    """(width, height) of the model input: static shape, else metadata ``imgsz``, else 640."""
    h, w = shape[2], shape[3]
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        return w, h
    try:
        imgsz = ast.literal_eval(meta.get("imgsz", ""))
        if isinstance(imgsz, int):
            return imgsz, imgsz
        return int(imgsz[1]), int(imgsz[0])
    except (ValueError, SyntaxError, TypeError, IndexError):
        return DEFAULT_INPUT, DEFAULT_INPUT


class Detector:
    """Finds people in BGR frames with a YOLO-family ONNX model.

    The layout is identified once at load time from one warm-up inference (its output shape)
    plus the model's metadata, so dynamic-shape exports work as well as static ones.
    """

    @classmethod
    def from_config(cls, model: ModelConfig) -> Detector:
        """The detector a device config's ``model:`` describes: the one way the agent, offline
        analysis and the benches build it, so none forgets a setting (``parallel``)."""
        from storelens.assets import resolve

        return cls(
            resolve(model.path),
            confidence=model.confidence,
            nms_iou=model.nms_iou,
            threads=model.threads,
            providers=model.providers,
            person_class=model.person_class,
            parallel=model.parallel,
        )

    def __init__(
        self,
        path: str | Path,
        *,
        confidence: float,
        nms_iou: float,
        threads: int,
        providers: Sequence[str] | None = None,
        person_class: int | None = None,
        parallel: int = 1,
    ) -> None:
        self.path = Path(path)
        # Frames of a fixed-batch model inferred at once, one ORT run per thread (ORT runs
        # are thread-safe and release the GIL). On small CPUs two single-thread runs side by
        # side beat one two-thread run: intra-op parallelism of a nano model scales poorly.
        self.parallel = max(1, parallel)
        self._pool: ThreadPoolExecutor | None = None
        self.confidence = confidence
        self.nms_iou = nms_iou
        if not self.path.is_file():
            raise DetectorError(self.path, "file not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle intra-op threads sleep instead of spinning: on a small box the camera decode
        # threads need those cycles (measured on a busy 2-core host: 51 -> 25 ms CPU/frame).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.providers = choose_providers(providers)
        except ValueError as exc:
            raise DetectorError(self.path, str(exc)) from None
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=self.providers
            )
        except Exception as exc:
            reason = str(exc).splitlines()[0][:200]
            raise DetectorError(self.path, f"not a loadable ONNX model ({reason})") from None

        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            shapes = [i.shape for i in inputs]
            raise DetectorError(self.path, f"expected one NCHW image input, found {shapes}")
        self._input_name = inputs[0].name
        self._input_type = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        self.dynamic_batch = not (isinstance(inputs[0].shape[0], int) and inputs[0].shape[0] > 0)
        meta = _metadata(self.session)
        self.width, self.height = _input_size(inputs[0].shape, meta)

        dummy = np.zeros((1, 3, self.height, self.width), self._input_type)
        try:
            shape = tuple(self.session.run(None, {self._input_name: dummy})[0].shape)
        except Exception as exc:
            reason = str(exc).splitlines()[0][:200]
            raise DetectorError(self.path, f"inference fails on a blank image ({reason})") from None
        end2end = meta.get("end2end", "").lower() == "true"
        guess = identify_layout(shape, self.width, self.height, end2end_hint=end2end)
        if guess is None:
            dims = "x".join(str(d) for d in shape)
            raise DetectorError(
                self.path,
                f"unknown output layout {dims} for input {self.width}x{self.height} "
                "(expected ultralytics 1x(4+nc)xN, end-to-end 1xKx6 or YOLOX 1xNx(5+nc))",
            )
        self.layout = guess.layout
        self.person_class = self._person_class(person_class, _class_names(meta), guess.classes)
        self._grid = YoloxGrid(self.width, self.height) if self.layout is Layout.YOLOX else None

    def _person_class(
        self, requested: int | None, names: dict[int, str] | None, classes: int
    ) -> int:
        if requested is not None:
            if requested < 0 or (classes and requested >= classes):
                raise DetectorError(
                    self.path, f"person_class {requested} is outside the model's {classes} classes"
                )
            return requested
        if names:
            for idx, name in sorted(names.items()):
                if name.strip().lower() == "person":
                    return idx
            shown = ", ".join(list(names.values())[:8])
            raise DetectorError(
                self.path,
                f"no 'person' class among its class names ({shown}...); set model.person_class",
            )
        if classes == COCO_CLASSES:
            return 0
        raise DetectorError(
            self.path,
            f"no class names in metadata and {classes or 'an unknown number of'} classes is "
            "not COCO's 80, so the person class is unknown; set model.person_class",
        )

    def _prepare(self, frame: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected a BGR frame (H x W x 3), got shape {frame.shape}")
        padded, box = letterbox(
            frame, (self.width, self.height), centered=self.layout.centered_letterbox
        )
        if self.layout.rgb_unit_scale:
            blob = cv2.dnn.blobFromImage(padded, 1 / 255.0, swapRB=True)
        else:
            blob = cv2.dnn.blobFromImage(padded, 1.0, swapRB=False)
        return blob.astype(self._input_type, copy=False), box

    def _decode(self, out: np.ndarray, box: Letterbox, frame: np.ndarray) -> Detections:
        out = out.astype(np.float32, copy=False)
        if self.layout is Layout.YOLOX:
            assert self._grid is not None
            xyxy, scores = decode_yolox(out, self._grid, self.person_class, self.confidence)
        elif self.layout is Layout.ULTRALYTICS:
            xyxy, scores = decode_ultralytics(out, self.person_class, self.confidence)
        else:
            xyxy, scores = decode_end_to_end(out, self.person_class, self.confidence)
        if len(scores) == 0:
            return Detections.empty()
        if self.layout.needs_nms:
            xywh = np.concatenate((xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]), axis=1)
            keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.confidence, self.nms_iou)
            keep = np.asarray(keep, dtype=np.int64).reshape(-1)
            xyxy, scores = xyxy[keep], scores[keep]
        h, w = frame.shape[:2]
        return Detections(box.to_frame(xyxy, w, h), scores.astype(np.float32))

    def detect(self, frame: np.ndarray) -> Detections:
        blob, box = self._prepare(frame)
        out = self.session.run(None, {self._input_name: blob})[0]
        return self._decode(out[0], box, frame)

    def detect_many(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """One batched inference when the model's batch dimension is dynamic, else one run per
        frame, ``parallel`` of them at a time."""
        if len(frames) < 2:
            return [self.detect(f) for f in frames]
        if not self.dynamic_batch:
            if self.parallel == 1:
                return [self.detect(f) for f in frames]
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="detect")
            return list(self._pool.map(self.detect, frames))
        prepared = [self._prepare(f) for f in frames]
        batch = np.concatenate([blob for blob, _ in prepared])
        out = self.session.run(None, {self._input_name: batch})[0]
        return [
            self._decode(out[i], box, frame)
            for i, ((_, box), frame) in enumerate(zip(prepared, frames, strict=True))
        ]
