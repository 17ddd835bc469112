"""`storelens edge ...` commands. Heavy imports stay inside the command functions."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)
bench_app = typer.Typer()


def analyze(
    video: str = typer.Argument(..., help="Video file, RTSP URL or camera index."),
) -> None:
    """Run the vision pipeline offline on a video and print a summary."""
    raise typer.Exit(2)  # implemented by the vision pipeline


@app.command("run")
def run(
    config: Path = typer.Option(..., "--config", "-c", help="Device YAML (firmware_config/)."),
    max_frames: int | None = typer.Option(
        None, min=1, help="Stop each camera after this many frames (tests and demos)."
    ),
    drain_s: float = typer.Option(10.0, min=0, help="On stop, wait this long for PUBACKs."),
    log_level: str = typer.Option("INFO", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    """Run the store device agent: cameras, card readers, outbox, MQTT."""
    import logging

    from storelens.edge.agent import Agent, AgentError
    from storelens.edge.config import ConfigError, load_config

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = load_config(config)
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


@bench_app.command("cameras")
def bench_cameras(
    video: str = typer.Option("asset:media/vtest.avi", help="Video played by every camera."),
    config: Path | None = typer.Option(None, help="Device YAML for model and tracker settings."),
    json_out: Path = typer.Option(..., "--json", help="Where to write the result JSON."),
    seconds: float = typer.Option(8.0, min=2, help="Measured seconds per camera count."),
    max_cameras: int = typer.Option(32, min=1, help="Upper end of the search."),
) -> None:
    """Largest number of live 10 fps cameras one box serves in real time, and CPU per camera."""
    import json

    from storelens.edge.camera_bench import run_camera_bench

    result = run_camera_bench(video, config, seconds=seconds, max_cameras=max_cameras)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(result, indent=2) + "\n")
    typer.echo(json.dumps(result))
