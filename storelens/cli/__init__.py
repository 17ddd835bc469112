"""The `storelens` command. Each domain owns its sub-commands; this module only mounts them.

It is the composition point of the CLI: the product CLIs (edge, cloud, models, provision)
never import tooling, so the tooling commands (`storelens.tools.cli`: benches, seed,
scenarios, demo) are mounted here, under the names they always had. Domain CLI modules import
heavy libraries (OpenCV, ONNX Runtime, FastAPI) inside their commands, never at import time,
so a cloud-only install can run `storelens cloud ...`.

Provisioning (`provision.py`) lives here too, not in the bottom layer: it writes a device
config the edge validates and registers the device in the cloud's database, so like the root
it composes both sides (tests/test_layering.py keeps the rest of `storelens/` free of them).
"""

from __future__ import annotations

import typer

from storelens import __version__
from storelens.cli import provision
from storelens.cloud import cli as cloud_cli
from storelens.edge import cli as edge_cli
from storelens.models import cli as models_cli
from storelens.tools import cli as tools_cli

app = typer.Typer(
    name="storelens",
    help="In-store retail sensing and personalization.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(edge_cli.app, name="edge", help="The store device agent.")
app.add_typer(cloud_cli.app, name="cloud", help="The cloud service and ingest workers.")
app.add_typer(models_cli.app, name="models", help="Detector models: export and manifest.")

# Tooling: seeding and scenarios live under `storelens cloud`, benches under `storelens bench`.
cloud_cli.app.registered_commands += tools_cli.cloud_app.registered_commands
cloud_cli.app.add_typer(tools_cli.scenario_app, name="scenario")
bench = typer.Typer(
    help="Benchmarks: speed and accuracy targets, written as JSON.", no_args_is_help=True
)
bench.registered_commands += tools_cli.bench_app.registered_commands
app.add_typer(bench, name="bench")

contract = typer.Typer(help="The wire contract: JSON Schema and examples.", no_args_is_help=True)
app.add_typer(contract, name="contract")

app.command("analyze")(edge_cli.analyze)


@contract.command("schema")
def contract_schema(
    check: bool = typer.Option(False, help="Fail if the committed schema is out of date."),
) -> None:
    """Write (or check) the committed JSON Schema of the event envelope."""
    from storelens.contract import schema

    if check:
        if (
            not schema.SCHEMA_FILE.is_file()
            or schema.SCHEMA_FILE.read_text() != schema.render_schema()
        ):
            typer.echo(f"{schema.SCHEMA_FILE} is out of date; run `storelens contract schema`")
            raise typer.Exit(1)
        typer.echo(f"{schema.SCHEMA_FILE} is up to date")
        return
    typer.echo(str(schema.write_schema()))


@contract.command("example")
def contract_example() -> None:
    """Print an example envelope with one event of every type (docs/contract-example.json)."""
    from storelens.contract import schema

    typer.echo(schema.example_payload(), nl=False)


@app.command("version")
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


app.command("demo")(tools_cli.demo)
app.add_typer(provision.app, name="provision", help="Device credentials, ACLs, configs.")
