"""`storelens models ...` commands. ultralytics is imported only inside `export`."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)

MANIFEST_OPTION = typer.Option(
    None, "--manifest", help="Manifest to search first (also $STORELENS_MODEL_MANIFEST)."
)


@app.command("export")
def export(
    weights: Path = typer.Argument(..., help="ultralytics detection checkpoint (.pt)."),
    imgsz: int = typer.Option(640, "--imgsz", help="Square input size, a multiple of 32."),
    int8: bool = typer.Option(False, "--int8", help="INT8 dynamic quantization of weights."),
    out: Path | None = typer.Option(None, "--out", help=".onnx file or folder [beside WEIGHTS]."),
    name: str | None = typer.Option(None, "--name", help="Manifest name [checkpoint stem]."),
    end2end: bool | None = typer.Option(
        None,
        "--end2end/--no-end2end",
        help="NMS-free 1xKx6 output [auto: when the head has a one-to-one branch].",
    ),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="Manifest to update [manifest.json beside the model]."
    ),
) -> None:
    """Export an ultralytics checkpoint to ONNX and record it in a manifest."""
    from storelens.models.export import ExportError, export_checkpoint
    from storelens.models.manifest import ManifestError

    try:
        result = export_checkpoint(
            weights, imgsz=imgsz, int8=int8, out=out, name=name, end2end=end2end, manifest=manifest
        )
    except (ExportError, ManifestError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    entry = result.entry
    typer.echo(
        f"{entry.name}: {result.model} layout={entry.layout} "
        f"input={entry.input_width}x{entry.input_height} classes={len(entry.classes)} "
        f"int8={entry.int8} sha256={entry.sha256}"
    )
    typer.echo(f"manifest: {result.manifest}")
    if entry.person_class is None:
        typer.echo(
            "warning: no class is named 'person'; the edge detector needs model.person_class "
            "in the device config to use this model",
            err=True,
        )


@app.command("list")
def list_models(manifest: Path | None = MANIFEST_OPTION) -> None:
    """List known models: built-in ones and those in the given manifest."""
    from rich.console import Console
    from rich.table import Table

    from storelens.models.lookup import FoundModel, local_file, search_path
    from storelens.models.manifest import ManifestError

    try:
        manifests = search_path(manifest)
    except ManifestError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    table = Table("name", "layout", "input", "classes", "int8", "sha256", "file", "manifest")
    seen: set[str] = set()
    for m in manifests:
        for entry in m.entries.values():
            if entry.name in seen:  # shadowed by a higher-priority manifest
                continue
            seen.add(entry.name)
            here = local_file(FoundModel(entry, m))
            table.add_row(
                entry.name,
                entry.layout,
                f"{entry.input_width}x{entry.input_height}",
                str(len(entry.classes)),
                "yes" if entry.int8 else "no",
                entry.sha256[:12],
                str(here) if here else f"{entry.file} (not local)",
                str(m.path),
            )
    Console(width=200).print(table)


@app.command("path")
def path(
    name: str = typer.Argument(..., help="Model name from a manifest."),
    manifest: Path | None = MANIFEST_OPTION,
    download: bool = typer.Option(True, "--download/--no-download"),
) -> None:
    """Print the verified local file of a model, downloading it if needed."""
    from storelens.models.lookup import ModelLookupError, model_path
    from storelens.models.manifest import ManifestError

    try:
        typer.echo(str(model_path(name, manifest=manifest, download=download)))
    except (ModelLookupError, ManifestError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
