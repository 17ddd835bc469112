"""How every `storelens bench ...` command reports: the JSON on stdout and in `--json`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer


def write_report(result: Mapping[str, Any], json_out: str | Path | None) -> None:
    """Print the result as indented JSON and, when a path is given, write the same text."""
    text = json.dumps(result, indent=2)
    if json_out is not None:
        path = Path(json_out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    typer.echo(text)
