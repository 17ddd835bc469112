"""Checks of a device config beyond its shape: referenced files exist; the committed schema."""

from __future__ import annotations

import json
from pathlib import Path

from storelens.edge.config import DeviceConfig, json_schema

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "firmware_config" / "device.schema.json"


def render_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def missing_files(cfg: DeviceConfig) -> list[str]:
    """Problems with files the config points to, each with its path in the config."""
    problems: list[str] = []

    def need(path: Path | None, where: str) -> None:
        if path is not None and not Path(path).expanduser().is_file():
            problems.append(f"{where}: file not found ({path})")

    need(cfg.mqtt.password_file, "mqtt.password_file")
    if cfg.mqtt.tls is not None:
        need(cfg.mqtt.tls.ca_file, "mqtt.tls.ca_file")
        need(cfg.mqtt.tls.cert_file, "mqtt.tls.cert_file")
        need(cfg.mqtt.tls.key_file, "mqtt.tls.key_file")
    if cfg.privacy is not None:
        need(cfg.privacy.key_file, "privacy.key_file")
    if not cfg.model.path.startswith("asset:"):
        need(Path(cfg.model.path), "model.path")
    for i, cam in enumerate(cfg.cameras):
        src = cam.source
        if not (src.isdigit() or "://" in src or src.startswith("asset:")):
            need(Path(src), f"cameras[{i}].source")
    return problems
