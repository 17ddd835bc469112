"""`storelens edge ...` commands. Heavy imports stay inside the command functions."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)
bench_app = typer.Typer()


def analyze(
    video: str = typer.Argument(..., help="Video file, RTSP URL or camera index."),
) -> None:
    """Run the vision pipeline offline on a video and print a summary."""
    raise typer.Exit(2)  # implemented by the vision pipeline
