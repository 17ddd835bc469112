"""Person detection with YOLO-family ONNX models (ultralytics v8/11, end-to-end, YOLOX)."""

from storelens.edge.detect.detector import Detections, Detector, DetectorError, choose_providers
from storelens.edge.detect.layouts import Layout

__all__ = ["Detections", "Detector", "DetectorError", "Layout", "choose_providers"]
