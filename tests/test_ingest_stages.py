"""`storelens bench ingest-stages`: every stage is timed, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from storelens.cli import app

STAGES = {
    "json_loads",
    "validate",
    "rows",
    "msgpack",
    "sqlite_executemany",
    "sqlite_sql_only",
    "postgres_copy_client",
    "postgres_copy_server",
    "postgres_claim_client",
    "postgres_claim_server",
}


def test_ingest_stages_times_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "stages.json"
    result = CliRunner().invoke(
        app, ["bench", "ingest-stages", "--events", "2000", "--repeat", "1", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["events"] == 2000
    assert set(report["us_per_event"]) == STAGES
    # PostgreSQL runs beside the tests (CI too), so every stage is measured. The server's CPU
    # comes from /proc in clock ticks (10 ms): over 2000 events it may round to 0.
    costs = report["us_per_event"]
    assert all(v is not None for v in costs.values()), report
    assert all(v > 0 for k, v in costs.items() if not k.endswith("_server")), report
