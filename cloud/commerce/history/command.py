"""`storelens cloud import history`: read, import with a progress bar, write the rejects,
print the summary."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer


def import_history_file(
    db_url: str, file: Path, *, map_spec: str | None = None, exclude_skus: str | None = None,
    exclude_pattern: str | None = None, cancelled_prefix: str | None = None,
    rejects: Path | None = None, currency: str = "EUR", timezone: str = "UTC",
    date_format: str | None = None,
) -> dict:  # fmt: skip
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from storelens.cloud.commerce.history import import_history, parse_mapping, read_history
    from storelens.cloud.commerce.history.importer import known_stores
    from storelens.cloud.commerce.history.reader import HistoryFormatError
    from storelens.cloud.commerce.history.rules_options import rules_from_options
    from storelens.cloud.db import connect

    started = time.perf_counter()
    console = Console(stderr=True)
    try:
        rules = rules_from_options(
            exclude_skus=exclude_skus, exclude_pattern=exclude_pattern,
            cancelled_prefix=cancelled_prefix, timezone=timezone, date_format=date_format,
        )  # fmt: skip
        mapping = parse_mapping(map_spec)
    except HistoryFormatError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    database = connect(db_url)
    try:
        rules = rules.with_stores(known_stores(database))
        with console.status(f"reading {file}"):
            history = read_history(file, mapping=mapping, rules=rules)
    except HistoryFormatError as exc:
        database.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        columns = [
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(),
        ]  # fmt: skip
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("importing lines", total=len(history.lines))
            summary = import_history(
                database, history, currency=currency,
                progress=lambda n: progress.advance(task, n),
            )  # fmt: skip
            progress.update(task, completed=len(history.lines))
    finally:
        database.close()
    out = summary.as_json()
    if history.rejects:
        path = rejects or file.with_name(file.name + ".rejects.csv")
        history.write_rejects(path)
        out["rejects_file"] = str(path)
    out["seconds"] = round(time.perf_counter() - started, 2)
    typer.echo(json.dumps(out))
    return out
