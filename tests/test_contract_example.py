"""`storelens contract example`: the example envelope integrators start from, and the copy in
docs/ kept equal to it (event IDs aside: they are fresh on every run)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from storelens.cli import app
from storelens.contract import parse_envelope
from storelens.contract.schema import example_envelope

DOC = Path(__file__).resolve().parent.parent / "docs" / "contract-example.json"


def _without_event_ids(doc: dict) -> dict:
    return {**doc, "events": [{k: v for k, v in e.items() if k != "id"} for e in doc["events"]]}


def test_the_example_is_a_valid_envelope_with_every_event_type() -> None:
    result = CliRunner().invoke(app, ["contract", "example"])
    assert result.exit_code == 0, result.output
    env = parse_envelope(result.output.encode())
    assert {e.type for e in env.events} == {e.type for e in example_envelope().events}
    assert env.batch_id == example_envelope().batch_id


def test_the_documented_example_is_current() -> None:
    printed = json.loads(CliRunner().invoke(app, ["contract", "example"]).output)
    documented = json.loads(DOC.read_text())
    assert _without_event_ids(documented) == _without_event_ids(printed), (
        "run `storelens contract example > docs/contract-example.json`"
    )
