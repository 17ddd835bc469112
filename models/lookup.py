"""Resolving a model by its manifest name to a verified local file.

Manifests are searched in order: the one passed in, ``$STORELENS_MODEL_MANIFEST``, then the
built-in one; the first that lists the name wins, so a store can override a shipped model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from storelens.assets import Asset, AssetError, find_asset, sha256_of
from storelens.models.manifest import Manifest, ModelEntry, builtin

MANIFEST_ENV = "STORELENS_MODEL_MANIFEST"


class ModelLookupError(RuntimeError):
    """A model name that cannot be resolved to a good file; the message says why."""


@dataclass(frozen=True)
class FoundModel:
    entry: ModelEntry
    manifest: Manifest


def search_path(manifest: Path | None = None) -> list[Manifest]:
    """The manifests consulted, highest priority first; missing optional ones are skipped."""
    found: list[Manifest] = []
    if manifest is not None:
        found.append(Manifest.load(manifest))
    env = os.environ.get(MANIFEST_ENV)
    if env:
        found.append(Manifest.load(Path(env)))
    found.append(builtin())
    return found


def find_entry(name: str, manifest: Path | None = None) -> FoundModel:
    manifests = search_path(manifest)
    for m in manifests:
        entry = m.get(name)
        if entry is not None:
            return FoundModel(entry, m)
    known = sorted({n for m in manifests for n in m.entries})
    raise ModelLookupError(f"unknown model {name!r}; known: {', '.join(known) or 'none'}")


def _beside_manifest(entry: ModelEntry, manifest: Manifest) -> Path:
    path = Path(entry.file).expanduser()
    return path if path.is_absolute() else manifest.folder / path


def local_file(found: FoundModel) -> Path | None:
    """Where the model already lies on this machine, without downloading; None if nowhere."""
    beside = _beside_manifest(found.entry, found.manifest)
    if beside.is_file():
        return beside
    try:
        return find_asset(found.entry.file, download=False)
    except AssetError:
        return None


def resolve_file(found: FoundModel, *, download: bool = True, verify: bool = True) -> Path:
    entry = found.entry
    path = local_file(found)
    if path is None:
        source = Asset(entry.file, entry.url, entry.sha256) if entry.url else None
        if source is None or not download:
            raise ModelLookupError(
                f"model {entry.name!r}: {entry.file} not found beside {found.manifest.path} "
                "nor under STORELENS_ASSETS or the cache"
                + ("" if source is None else ", and downloads are off")
            )
        try:
            path = find_asset(entry.file, source=source)
        except AssetError as exc:
            raise ModelLookupError(f"model {entry.name!r}: {exc}") from None
    if verify:
        got = sha256_of(path)
        if got != entry.sha256:
            raise ModelLookupError(
                f"model {entry.name!r}: {path} has sha256 {got}, manifest "
                f"{found.manifest.path} says {entry.sha256} (stale or corrupt file)"
            )
    return path


def model_path(
    name: str, *, manifest: Path | None = None, download: bool = True, verify: bool = True
) -> Path:
    """The file of the model called ``name``, downloaded if needed and checked by SHA-256."""
    return resolve_file(find_entry(name, manifest), download=download, verify=verify)
