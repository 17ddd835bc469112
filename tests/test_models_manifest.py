"""Model manifest and lookup by name: no ultralytics needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storelens.assets import KNOWN_ASSETS, SAMPLE_MODEL, sha256_of
from storelens.cli import app
from storelens.models.lookup import MANIFEST_ENV, ModelLookupError, find_entry, model_path
from storelens.models.manifest import (
    BUILTIN_MANIFEST,
    LAYOUTS,
    Manifest,
    ManifestError,
    ModelEntry,
    builtin,
)

runner = CliRunner()
PAYLOAD = b"not really a model, but bytes with a checksum"


def entry(name: str = "shelf", file: str = "shelf.onnx", **kw: object) -> ModelEntry:
    fields = dict(
        name=name,
        file=file,
        layout="ultralytics",
        input_width=640,
        input_height=384,
        sha256=kw.pop("sha256", None) or "0" * 64,
        classes=["cart", "person"],
    )
    fields.update(kw)
    return ModelEntry.model_validate(fields)


@pytest.fixture
def shelf(tmp_path: Path) -> Path:
    """A manifest with one model file beside it."""
    (tmp_path / "shelf.onnx").write_bytes(PAYLOAD)
    book = Manifest(tmp_path / "manifest.json")
    book.upsert(entry(sha256=sha256_of(tmp_path / "shelf.onnx")))
    book.save()
    return tmp_path / "manifest.json"


def test_builtin_lists_the_sample_model_as_the_asset_lookup_knows_it() -> None:
    yolox = builtin().get("yolox_nano")
    asset = KNOWN_ASSETS[SAMPLE_MODEL]
    assert yolox is not None
    assert (yolox.file, yolox.url, yolox.sha256) == (asset.name, asset.url, asset.sha256)
    assert yolox.sha256 == "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd"
    assert yolox.layout == "yolox" and (yolox.input_width, yolox.input_height) == (416, 416)
    assert len(yolox.classes) == 80 and yolox.person_class == 0


def test_layout_names_match_the_edge_detector() -> None:
    from storelens.edge.detect import Layout

    assert set(LAYOUTS) == {layout.value for layout in Layout}


def test_sample_model_resolves_by_name_and_is_verified(sample_model: Path) -> None:
    assert model_path("yolox_nano") == sample_model


def test_manifest_round_trip_and_upsert(shelf: Path) -> None:
    book = Manifest.load(shelf)
    assert book.get("shelf") == entry(sha256=sha256_of(shelf.parent / "shelf.onnx"))
    book.upsert(entry(int8=True, sha256="1" * 64))
    book.upsert(entry(name="other", file="/models/other.onnx"))
    book.save()
    again = Manifest.load(shelf)
    assert list(again.entries) == ["shelf", "other"]
    assert again.get("shelf").int8 is True  # type: ignore[union-attr]
    assert shelf.stat().st_mode & 0o777 == 0o644
    assert book.relative_file(shelf.parent / "sub" / "m.onnx") == "sub/m.onnx"
    assert book.relative_file(Path("/elsewhere/m.onnx")) == "/elsewhere/m.onnx"


def test_lookup_prefers_the_given_manifest_then_the_environment(
    shelf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert model_path("shelf", manifest=shelf) == shelf.parent / "shelf.onnx"
    # A store's manifest may shadow a built-in model by reusing its name.
    override = Manifest(tmp_path / "env" / "manifest.json")
    override.upsert(entry(name="yolox_nano", file=str(shelf.parent / "shelf.onnx")))
    override.save()
    monkeypatch.setenv(MANIFEST_ENV, str(override.path))
    found = find_entry("yolox_nano")
    assert found.manifest.path == override.path and found.entry.layout == "ultralytics"
    assert find_entry("shelf", shelf).manifest.path == shelf


def test_unknown_name_lists_the_known_ones(shelf: Path) -> None:
    with pytest.raises(ModelLookupError, match="unknown model 'nope'; known: shelf, yolox_nano"):
        model_path("nope", manifest=shelf)


def test_changed_file_fails_the_checksum(shelf: Path) -> None:
    (shelf.parent / "shelf.onnx").write_bytes(PAYLOAD + b"!")
    with pytest.raises(ModelLookupError, match="stale or corrupt") as info:
        model_path("shelf", manifest=shelf)
    assert str(shelf.parent / "shelf.onnx") in str(info.value)
    assert model_path("shelf", manifest=shelf, verify=False) == shelf.parent / "shelf.onnx"


def test_missing_file_without_url_is_a_clear_error(shelf: Path) -> None:
    (shelf.parent / "shelf.onnx").unlink()
    with pytest.raises(ModelLookupError, match="shelf.onnx not found beside"):
        model_path("shelf", manifest=shelf)


def test_missing_file_is_downloaded_from_its_url_and_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORELENS_CACHE", str(tmp_path / "cache"))
    published = tmp_path / "release" / "shelf.onnx"
    published.parent.mkdir()
    published.write_bytes(PAYLOAD)
    book = Manifest(tmp_path / "store" / "manifest.json")
    good = sha256_of(published)
    book.upsert(entry(file="models/shelf.onnx", url=published.as_uri(), sha256=good))
    book.upsert(entry(name="tampered", file="models/t.onnx", url=published.as_uri()))
    book.save()

    with pytest.raises(ModelLookupError, match="downloads are off"):
        model_path("shelf", manifest=book.path, download=False)
    got = model_path("shelf", manifest=book.path)
    assert got == tmp_path / "cache" / "models" / "shelf.onnx" and got.read_bytes() == PAYLOAD
    assert model_path("shelf", manifest=book.path, download=False) == got  # cached now
    with pytest.raises(ModelLookupError, match="checksum mismatch"):
        model_path("tampered", manifest=book.path)
    assert not (tmp_path / "cache" / "models" / "t.onnx").exists()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "Invalid JSON"),
        ('{"schema": 2, "models": []}', "schema 2 is not 1"),
        ('{"schema": 1, "models": [{"name": "x"}]}', "models.0.file: Field required"),
        ('{"schema": 1, "models": [], "extra": 1}', "extra: Extra inputs are not permitted"),
    ],
)
def test_bad_manifest_fails_naming_the_file(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(text)
    with pytest.raises(ManifestError) as info:
        Manifest.load(path)
    assert str(info.value).startswith(f"manifest {path}: ") and reason in str(info.value)


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    one = entry().model_dump(mode="json", exclude_none=True)
    path.write_text(json.dumps({"schema": 1, "models": [one, one]}))
    with pytest.raises(ManifestError, match="model 'shelf' listed twice"):
        Manifest.load(path)


def test_entry_validation() -> None:
    with pytest.raises(ValueError, match="layout"):
        entry(layout="ssd")
    with pytest.raises(ValueError, match="name"):
        entry(name="../escape")
    with pytest.raises(ValueError, match="sha256"):
        entry(sha256="ABC")


def test_committed_manifest_is_canonical(tmp_path: Path) -> None:
    copy = Manifest(tmp_path / "manifest.json", list(builtin().entries.values()))
    copy.save()
    assert copy.path.read_text() == BUILTIN_MANIFEST.read_text()


def test_cli_list_and_path(shelf: Path, sample_model: Path) -> None:
    listed = runner.invoke(app, ["models", "list", "--manifest", str(shelf)])
    assert listed.exit_code == 0, listed.output
    assert "yolox_nano" in listed.output and "shelf" in listed.output
    found = runner.invoke(app, ["models", "path", "yolox_nano"])
    assert found.exit_code == 0 and found.output.strip() == str(sample_model)
    missing = runner.invoke(app, ["models", "path", "nope"])
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines() == ["error: unknown model 'nope'; known: yolox_nano"]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["absent.pt"], "absent.pt: file not found"),
        (["model.onnx"], "model.onnx: not an ultralytics checkpoint (expected a .pt file)"),
        (["w.pt", "--imgsz", "100"], "w.pt: image size 100 must be a positive multiple of 32"),
        (["w.pt", "--name", "a/b"], "w.pt: model name 'a/b' must be"),
    ],
)
def test_export_input_errors_need_no_ultralytics(
    tmp_path: Path, args: list[str], reason: str
) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "w.pt").write_bytes(b"x")
    args = [str(tmp_path / args[0]), *args[1:]]
    result = runner.invoke(app, ["models", "export", *args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and reason in lines[0]


def test_bad_manifest_stops_an_export_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "w.pt").write_bytes(b"x")
    (tmp_path / "manifest.json").write_text("[]")
    result = runner.invoke(app, ["models", "export", str(tmp_path / "w.pt")])
    assert result.exit_code == 1 and f"manifest {tmp_path / 'manifest.json'}" in result.output
