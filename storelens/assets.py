"""Finding the model and sample media: a local asset folder first, else a verified download.

Lookup order for a relative asset name such as ``models/yolox_nano.onnx``:
1. ``$STORELENS_ASSETS/<name>`` (CI and developers point it at the shared fixtures);
2. the download cache ``$STORELENS_CACHE`` or ``~/.cache/storelens/<name>``;
3. download from the official location into the cache, verified by SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Asset:
    name: str
    url: str
    sha256: str


KNOWN_ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            "models/yolox_nano.onnx",
            "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx",
            "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd",
        ),
        Asset(
            "media/vtest.avi",
            "https://raw.githubusercontent.com/opencv/opencv/4.x/samples/data/vtest.avi",
            "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf",
        ),
    )
}

SAMPLE_MODEL = "models/yolox_nano.onnx"
SAMPLE_VIDEO = "media/vtest.avi"
ASSET_PREFIX = "asset:"


class AssetError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("STORELENS_CACHE", Path.home() / ".cache" / "storelens"))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_asset(name: str, *, download: bool = True, source: Asset | None = None) -> Path:
    """Path of a known asset, downloading and verifying it if it is nowhere local.

    ``source`` names the download for assets not in KNOWN_ASSETS (model manifest entries).
    """
    root = os.environ.get("STORELENS_ASSETS")
    if root:
        candidate = Path(root) / name
        if candidate.is_file():
            return candidate
    cached = cache_dir() / name
    if cached.is_file():
        return cached
    asset = source or KNOWN_ASSETS.get(name)
    if asset is None:
        raise AssetError(f"unknown asset {name!r} (not under STORELENS_ASSETS={root!r})")
    if not download:
        raise AssetError(f"asset {name!r} not found locally and downloads are off")
    return _download(asset, cached)


def _download(asset: Asset, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        try:
            with urllib.request.urlopen(asset.url, timeout=60) as resp:
                shutil.copyfileobj(resp, tmp)
        except OSError as exc:
            Path(tmp.name).unlink(missing_ok=True)
            raise AssetError(
                f"cannot download {asset.name} from {asset.url}: {exc}; "
                "set STORELENS_ASSETS to a folder that has it"
            ) from None
    got = sha256_of(Path(tmp.name))
    if got != asset.sha256:
        Path(tmp.name).unlink(missing_ok=True)
        raise AssetError(f"{asset.name}: checksum mismatch (got {got}, want {asset.sha256})")
    os.replace(tmp.name, dest)
    return dest


def resolve(ref: str | Path) -> Path:
    """A config reference: ``asset:models/x.onnx`` goes through the lookup, else a path."""
    s = str(ref)
    if s.startswith(ASSET_PREFIX):
        return find_asset(s[len(ASSET_PREFIX) :])
    return Path(s).expanduser()
