"""`storelens edge ...` commands. Heavy imports stay inside the command functions."""

from __future__ import annotations

import time
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


def analyze(
    video: str = typer.Argument(..., help="Video file, asset:NAME, RTSP URL or camera index."),
    config: Path = typer.Option(..., "--config", "-c", help="Device config YAML."),
    camera: str | None = typer.Option(None, help="Camera id in the config (default: first)."),
    events_out: Path | None = typer.Option(None, help="Write every event as JSON lines."),
    mot_out: Path | None = typer.Option(
        None, help="Write tracks in MOTChallenge format (gaps up to 1 s interpolated)."
    ),
    annotated: Path | None = typer.Option(None, help="Write an annotated video (.mp4)."),
    max_frames: int | None = typer.Option(None, min=1, help="Stop after this many frames."),
    fps: float | None = typer.Option(None, min=0.001, help="Override the container's fps."),
    detect_every: int | None = typer.Option(
        None, min=1, help="Override the camera's detect_every (detector on every k-th frame)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the summary as JSON."),
) -> None:
    """Run the vision pipeline offline on a video and print a summary."""
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from storelens.assets import AssetError
    from storelens.edge.config import ConfigError, load_config
    from storelens.edge.detect import DetectorError
    from storelens.edge.offline.analyze import analyze as run_analysis
    from storelens.edge.offline.analyze import print_summary
    from storelens.edge.sources.frames import SourceError

    console = Console(stderr=True)
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        console.print(f"[red]invalid config[/red] {exc}")
        raise typer.Exit(2) from None
    started = time.perf_counter()
    columns = (
        TextColumn("[bold]analyze"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:>6.1f} fps  {task.fields[people]} in view"),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("frames", total=None, fps=0.0, people=0)

        def show(done: int, total: int | None, people: int) -> None:
            rate = done / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=done, total=total, fps=rate, people=people)

        try:
            summary, cam = run_analysis(
                video,
                cfg,
                camera_id=camera,
                events_out=events_out,
                mot_out=mot_out,
                annotated=annotated,
                max_frames=max_frames,
                fps=fps,
                detect_every=detect_every,
                progress=show,
            )
        except (AssetError, DetectorError, SourceError, ValueError, OSError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    print_summary(summary, cam, Console())
    if json_out is not None:
        json_out.write_text(json.dumps(summary.as_dict(cam), indent=2) + "\n")


@app.command("run")
def run(
    config_file: Path | None = typer.Argument(None, help="Device YAML (same as --config)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Device YAML."),
    max_frames: int | None = typer.Option(
        None, min=1, help="Stop each camera after this many frames (tests and demos)."
    ),
    drain_s: float = typer.Option(
        10.0,
        min=0,
        help="On stop, wait this long for the outbox to be confirmed (cloud receipts, or "
        "PUBACKs with outbox.confirm=broker).",
    ),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    """Run the store device agent: cameras, card readers, outbox, MQTT."""
    import logging

    from storelens.edge.agent import Agent, AgentError
    from storelens.edge.config import ConfigError, load_config

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    path = config or config_file
    if path is None:
        typer.echo("error: give the device config: --config FILE", err=True)
        raise typer.Exit(2)
    try:
        cfg = load_config(path)
        left = Agent(cfg, max_frames=max_frames, drain_s=drain_s).run()
    except (ConfigError, AgentError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if left:
        typer.echo(f"{left} event(s) remain in the outbox for the next start", err=True)


@app.command("check-config")
def check_config(
    file: Path = typer.Argument(..., help="Device YAML to validate."),
    files: bool = typer.Option(
        True, help="Also check that referenced files (key, password, TLS, model) exist."
    ),
) -> None:
    """Validate a device config; print every problem with its path."""
    from storelens.edge.config import ConfigError, load_config
    from storelens.edge.config_check import missing_files

    try:
        cfg = load_config(file)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"{file}: {problem}")
        raise typer.Exit(1) from None
    problems = missing_files(cfg) if files else []
    for problem in problems:
        typer.echo(f"{file}: {problem}")
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{file}: OK ({len(cfg.cameras)} camera(s), {len(cfg.readers)} reader(s))")


@app.command("config-schema")
def config_schema(
    check: bool = typer.Option(False, help="Fail if the committed schema is out of date."),
) -> None:
    """Write (or check) firmware_config/device.schema.json from the config models."""
    from storelens.edge.config_check import SCHEMA_FILE, render_schema

    if check:
        if not SCHEMA_FILE.is_file() or SCHEMA_FILE.read_text() != render_schema():
            typer.echo(f"{SCHEMA_FILE} is out of date; run `storelens edge config-schema`")
            raise typer.Exit(1)
        typer.echo(f"{SCHEMA_FILE} is up to date")
        return
    SCHEMA_FILE.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_FILE.write_text(render_schema())
    typer.echo(str(SCHEMA_FILE))


@app.command("swipe")
def swipe(
    read: str = typer.Argument(..., help="What the reader sends: digits, ;PAN=...? or 26 bits."),
    host: str = typer.Option("127.0.0.1", help="Host of the agent's tcp reader."),
    port: int = typer.Option(..., help="Port of the agent's tcp reader (listen mode)."),
) -> None:
    """Simulate a card read on a `tcp` reader (demos and tests; use test cards only)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=5) as conn:
            conn.sendall(read.strip().encode("ascii") + b"\n")
    except (OSError, UnicodeEncodeError) as exc:
        typer.echo(f"error: cannot send to {host}:{port}: {exc}", err=True)
        raise typer.Exit(1) from None


def _crop_option(text: str) -> tuple[str, tuple[int, int, int, int]]:
    name, _, rect = text.partition("=")
    try:
        x, y, w, h = (int(v) for v in rect.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: give NAME=x,y,width,height") from None
    return name, (x, y, w, h)


@app.command("split-cameras")
def split_cameras(
    config: Path = typer.Option(..., "--config", "-c", help="Single-camera device YAML."),
    crop: list[str] = typer.Option(
        ..., help="NAME=x,y,width,height of one camera's crop (repeat, in hand-off order)."
    ),
    out: Path = typer.Option(..., help="Where to write the split device YAML."),
) -> None:
    """Split a camera into overlapping crop 'cameras' of one store (store-visit testing)."""
    import yaml

    from storelens.edge.config import ConfigError, load_config, parse_config
    from storelens.edge.offline.split_cameras import HEADER, split

    try:
        crops = dict(_crop_option(c) for c in crop)
        data = split(load_config(config), crops)
        parse_config(data, str(out))  # what we write must load
    except (ConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    out.write_text(
        HEADER + yaml.safe_dump(data, sort_keys=False, width=100, default_flow_style=None)
    )
    typer.echo(str(out))
