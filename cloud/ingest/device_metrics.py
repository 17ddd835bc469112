"""Fleet health as Prometheus metrics, read from the device registry at scrape time.

Every registered device's last status (what it reported on its status topic, kept in
``devices``) becomes gauges labelled by ``store``, ``device`` and, per camera, ``camera``.
Labels are bounded by the registry: a retired device's series disappear at the next scrape
(the collector builds them fresh each time), and nothing per event, visit or member is ever a
label. The API serves these on ``/metrics`` (ingest workers do not, so Prometheus sees each
series once). Since contract 1.3 devices report the age of the oldest message in their
outbox (``storelens_device_outbox_age_seconds``, as of their last status: a backlog that does
not drain); ``storelens_device_status_age_seconds`` (time since the last status or event) is
what tells a silent box, whose own report of its outbox is as old as that.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from storelens.cloud.db import Database

DEVICE_LABELS = ["store", "device"]
CAMERA_LABELS = ["store", "device", "camera"]
# name -> (help, source): per-device gauges from the registry row / its last status
DEVICE_GAUGES = {
    "storelens_device_up": "1 while the device's broker session is online (its will says 0).",
    "storelens_device_last_seen_timestamp_seconds": "Unix time of the newest status or event.",
    "storelens_device_status_age_seconds": "Seconds since the newest status or event.",
    "storelens_device_outbox_depth": "Events waiting in the device's outbox.",
    "storelens_device_outbox_bytes": "Bytes held by the device's outbox.",
    "storelens_device_outbox_age_seconds": "Age of the oldest unconfirmed message in the "
    "device's outbox when it last reported (0: empty; contract 1.3 devices).",
    "storelens_device_lost_events": "Events the outbox bound dropped, ever (device counter).",
    "storelens_device_uptime_seconds": "Seconds since the agent started.",
}
CAMERA_GAUGES = {
    "storelens_camera_up": "1 while the camera delivers frames.",
    "storelens_camera_fps": "Frames per second the camera pipeline processes.",
    "storelens_camera_inference_ms": "Detector time per frame (the detection load).",
    "storelens_camera_dropped_frames": "Frames dropped by the pipeline, ever.",
}
METRIC_NAMES = (*DEVICE_GAUGES, *CAMERA_GAUGES)
CAMERA_FIELDS = (  # gauge <- field of the camera's entry in the device status
    ("storelens_camera_up", "online"),
    ("storelens_camera_fps", "fps"),
    ("storelens_camera_inference_ms", "inference_ms"),
    ("storelens_camera_dropped_frames", "dropped_frames"),
)


def _status(raw: Any) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, (int, float)) else None


class DeviceCollector(Collector):
    """Yields the fleet gauges from ``db`` (optionally only some stores)."""

    def __init__(self, db: Database, now: float | None = None) -> None:
        self.db = db
        self.now = now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time() if self.now is None else self.now
        device = {n: GaugeMetricFamily(n, h, labels=DEVICE_LABELS)
                  for n, h in DEVICE_GAUGES.items()}  # fmt: skip
        camera = {n: GaugeMetricFamily(n, h, labels=CAMERA_LABELS)
                  for n, h in CAMERA_GAUGES.items()}  # fmt: skip
        rows = self.db.query(
            "SELECT store, device, last_seen, online, status, outbox_depth, lost_events"
            " FROM devices WHERE registered = 1 ORDER BY store, device"
        )
        for r in rows:
            labels = [r["store"], r["device"]]
            status = _status(r["status"])
            values = {
                "storelens_device_up": None if r["online"] is None else float(r["online"]),
                "storelens_device_last_seen_timestamp_seconds": _number(r["last_seen"]),
                "storelens_device_status_age_seconds": None
                if r["last_seen"] is None
                else max(0.0, now - float(r["last_seen"])),
                "storelens_device_outbox_depth": _number(r["outbox_depth"]),
                "storelens_device_outbox_bytes": _number(status.get("outbox_bytes")),
                "storelens_device_outbox_age_seconds": _number(status.get("outbox_age_s")),
                "storelens_device_lost_events": _number(r["lost_events"]),
                "storelens_device_uptime_seconds": _number(status.get("uptime_s")),
            }
            for name, value in values.items():
                if value is not None:
                    device[name].add_metric(labels, value)
            for cam in status.get("cameras") or []:
                if not isinstance(cam, dict) or not isinstance(cam.get("camera"), str):
                    continue
                cam_labels = [*labels, cam["camera"]]
                for name, key in CAMERA_FIELDS:
                    value = _number(cam.get(key))
                    if value is not None:
                        camera[name].add_metric(cam_labels, value)
        yield from device.values()
        yield from camera.values()


def exposition(db: Database) -> bytes:
    """The fleet gauges in the Prometheus text format (appended to ``/metrics``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeviceCollector(db))
    return generate_latest(registry)
