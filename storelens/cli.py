"""The `storelens` command. Each domain owns its sub-commands; this module only mounts them.

Domain CLI modules import heavy libraries (OpenCV, ONNX Runtime, FastAPI) inside their
commands, never at import time, so a cloud-only install can run `storelens cloud ...`.
"""

from __future__ import annotations

import typer

from storelens import __version__
from storelens.cloud import cli as cloud_cli
from storelens.edge import cli as edge_cli
from storelens.models import cli as models_cli

app = typer.Typer(
    name="storelens",
    help="In-store retail sensing and personalization.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(edge_cli.app, name="edge", help="The store device agent.")
app.add_typer(cloud_cli.app, name="cloud", help="The cloud service and ingest workers.")
app.add_typer(models_cli.app, name="models", help="Detector models: export and manifest.")

bench = typer.Typer(
    help="Benchmarks: speed and accuracy targets, written as JSON.", no_args_is_help=True
)
for domain in (edge_cli, cloud_cli, models_cli):
    bench.registered_commands += domain.bench_app.registered_commands
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


@app.command("version")
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def _mount_optional() -> None:
    # Later domains (demo, provisioning) mount themselves here when present.
    try:
        from storelens import demo
    except ImportError:
        pass
    else:
        app.command("demo")(demo.demo)
    try:
        from storelens import provision
    except ImportError:
        pass
    else:
        app.add_typer(provision.app, name="provision", help="Device credentials, ACLs, configs.")


_mount_optional()
