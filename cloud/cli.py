"""`storelens cloud ...` commands. Heavy imports stay inside the command functions."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)
bench_app = typer.Typer()
