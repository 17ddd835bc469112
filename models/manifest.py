"""The model manifest: which detector models exist, their output layout, input size and checksum.

A manifest is a JSON file ``{"schema": 1, "models": [entry, ...]}``. The one committed beside
this module lists the models storelens knows out of the box (the sample YOLOX-Nano);
``storelens models export`` writes entries into a manifest beside the models it exports.

An entry's ``file`` is a path relative to the manifest's folder (or absolute); when no such
file exists it is an asset name (``models/yolox_nano.onnx``) looked up through
``storelens.assets``: ``$STORELENS_ASSETS``, the cache, then ``url`` verified by ``sha256``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MANIFEST_SCHEMA = 1
BUILTIN_MANIFEST = Path(__file__).with_name("manifest.json")

# Same strings as storelens.edge.detect.Layout; kept here so the cloud and export installs
# can read manifests without importing vision code.
Layout = Literal["ultralytics", "end2end", "yolox"]
LAYOUTS: tuple[str, ...] = ("ultralytics", "end2end", "yolox")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ManifestError(RuntimeError):
    """A manifest that cannot be read or written; the message names the file."""


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="Unique name to refer to the model by.")
    file: str = Field(min_length=1, description="Path beside the manifest, or an asset name.")
    layout: Layout = Field(description="Output layout the detector decodes.")
    input_width: int = Field(gt=0)
    input_height: int = Field(gt=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    classes: list[str] = Field(min_length=1, description="Class names in output order.")
    stride: int | None = Field(None, gt=0, description="Largest feature stride of the head.")
    int8: bool = Field(False, description="Weights quantized to INT8 (dynamic quantization).")
    url: str | None = Field(None, description="Official download location, if any.")
    source: str | None = Field(None, description="Checkpoint or release it came from.")
    license: str | None = None

    @property
    def person_class(self) -> int | None:
        for index, name in enumerate(self.classes):
            if name.strip().lower() == "person":
                return index
        return None


class ManifestFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_: int = Field(MANIFEST_SCHEMA, alias="schema")
    models: list[ModelEntry] = Field(default_factory=list)


class Manifest:
    """One manifest file: entries by name, saved atomically so a crash never truncates it."""

    def __init__(self, path: Path, entries: list[ModelEntry] | None = None) -> None:
        self.path = Path(path)
        self.entries: dict[str, ModelEntry] = {}
        for entry in entries or []:
            if entry.name in self.entries:
                raise ManifestError(f"manifest {self.path}: model {entry.name!r} listed twice")
            self.entries[entry.name] = entry

    @classmethod
    def load(cls, path: Path, *, missing_ok: bool = False) -> Manifest:
        path = Path(path)
        if not path.is_file():
            if missing_ok:
                return cls(path)
            raise ManifestError(f"manifest {path}: file not found")
        try:
            parsed = ManifestFile.model_validate_json(path.read_bytes())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "".join(f"{p}." for p in first["loc"])[:-1] or "top level"
            raise ManifestError(f"manifest {path}: {where}: {first['msg']}") from None
        if parsed.schema_ != MANIFEST_SCHEMA:
            raise ManifestError(
                f"manifest {path}: schema {parsed.schema_} is not {MANIFEST_SCHEMA}"
            )
        return cls(path, parsed.models)

    @property
    def folder(self) -> Path:
        return self.path.parent

    def get(self, name: str) -> ModelEntry | None:
        return self.entries.get(name)

    def upsert(self, entry: ModelEntry) -> None:
        self.entries[entry.name] = entry

    def save(self) -> None:
        body = ManifestFile(schema=MANIFEST_SCHEMA, models=list(self.entries.values()))
        text = json.dumps(body.model_dump(mode="json", by_alias=True, exclude_none=True), indent=2)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".manifest-", suffix=".json")
        # mkstemp makes the file private; a manifest is as readable as the models it lists.
        mode = self.path.stat().st_mode & 0o777 if self.path.exists() else 0o644
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w") as f:
                f.write(text + "\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def relative_file(self, model: Path) -> str:
        """How an entry refers to ``model``: relative when it lies under the manifest's folder."""
        model = Path(model).resolve()
        try:
            return model.relative_to(self.folder.resolve()).as_posix()
        except ValueError:
            return str(model)


def builtin() -> Manifest:
    return Manifest.load(BUILTIN_MANIFEST)
