"""`storelens cloud ...` commands. Heavy imports stay inside the command functions."""

from __future__ import annotations

from pathlib import Path

import typer

from storelens import load_bench as _load_bench
from storelens.bench_report import write_report

app = typer.Typer(no_args_is_help=True)
bench_app = typer.Typer()
# storelens.load_bench imports only the contract at module level; its work is in the command.
bench_app.command("load")(_load_bench.command)

scenario_app = typer.Typer(help="Scripted scenarios that seed data and play a story.",
                           no_args_is_help=True)  # fmt: skip
app.add_typer(scenario_app, name="scenario")


@scenario_app.command("ship-from-store")
def scenario_ship_from_store(
    db: str | None = typer.Option(None, help="Database URL; default a temporary SQLite file."),
) -> None:
    """Seed stores and stock, place online orders, have one store reject, print each journey."""
    import tempfile
    from pathlib import Path

    from rich.console import Console

    from storelens.cloud.fulfillment import scenario
    from storelens.cloud.store import connect

    with tempfile.TemporaryDirectory(prefix="storelens-scenario-") as tmp:
        url = db or f"sqlite:///{Path(tmp) / 'scenario.db'}"
        database = connect(url)
        try:
            result = scenario.run(database)
        except scenario.ScenarioError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        finally:
            database.close()
        Console().print(scenario.render(result))


# -- the core service: API, ingest, seed, admin --------------------------------------------


def _settings(db: str | None = None, **overrides: object):  # noqa: ANN202 - lazy import
    from storelens.cloud.settings import Settings

    return Settings.from_env(db_url=db, **overrides)


@app.command("serve")
def serve(
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
    host: str = typer.Option("127.0.0.1", help="Listen address."),
    port: int = typer.Option(8000, help="Listen port."),
    ingest: bool | None = typer.Option(
        None, "--ingest/--no-ingest", help="Run an ingest worker in-process (default from env)."
    ),
) -> None:
    """Run the API (and, for single-machine installs, an ingest worker beside it)."""
    import uvicorn

    from storelens.cloud.api.app import create_app

    settings = _settings(db, ingest_in_process=ingest)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@app.command("ingest")
def ingest(
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
    mqtt_host: str | None = typer.Option(None, help="Broker host (default STORELENS_MQTT_HOST)."),
    mqtt_port: int | None = typer.Option(None, help="Broker port."),
    group: str | None = typer.Option(None, help="Shared-subscription group."),
    client_id: str | None = typer.Option(None, help="MQTT client ID (unique per worker)."),
) -> None:
    """Run an ingest worker: MQTT -> validated, de-duplicated events in the database."""
    import logging

    from storelens.cloud.ingest import run_worker
    from storelens.cloud.store import connect

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = _settings(db, mqtt_host=mqtt_host, mqtt_port=mqtt_port, share_group=group,
                         mqtt_client_id=client_id)  # fmt: skip
    run_worker(settings, connect(settings.db_url))


@app.command("seed")
def seed(
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
    seed: int = typer.Option(42, help="Random seed: same seed and end date, same data."),
    members: int = typer.Option(3000, min=1, help="Members to create."),
    days: int = typer.Option(180, min=1, help="Days of order and sales history."),
    end: str | None = typer.Option(None, help="Last day (YYYY-MM-DD, exclusive); default today."),
    instore_days: int = typer.Option(14, min=0, help="Days of in-store camera events (0: none)."),
    out: str = typer.Option("var/seed-credentials.json", help="Where to write credentials."),
) -> None:
    """Create a demo chain: stores, catalog, members, orders, sales, stock, users, tokens."""
    import json
    from datetime import date
    from pathlib import Path

    from storelens.cloud import seed as seeding
    from storelens.cloud.store import connect
    from storelens.pseudonym import PseudonymError

    settings = _settings(db)
    try:
        key = settings.pseudonym_key
    except PseudonymError:
        key = None
        typer.echo("no pseudonym key configured: using a demo key derived from the seed")
    database = connect(settings.db_url)
    try:
        result = seeding.seed(database, seed=seed, key=key, members=members, days=days,
                              end=date.fromisoformat(end) if end else None,
                              instore_days=instore_days)  # fmt: skip
    except seeding.SeedError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.close()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.credentials, indent=2) + "\n")
    path.chmod(0o600)
    summary = {k: v for k, v in result.__dict__.items() if k != "credentials"}
    typer.echo(json.dumps(summary))
    typer.echo(f"admin login and POS tokens written to {path}")


@app.command("user-add")
def user_add(
    username: str = typer.Argument(..., help="Login name."),
    role: str = typer.Option("analyst", help="analyst or admin."),
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
) -> None:
    """Create an ops user (the password is asked for, never passed on the command line)."""
    from storelens.cloud import auth
    from storelens.cloud.store import connect

    password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    database = connect(_settings(db).db_url)
    try:
        auth.create_user(database, username, password, role)
    except auth.AuthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {role} {username}")


@app.command("pos-token")
def pos_token(
    store: str = typer.Argument(..., help="Store the POS device belongs to."),
    device_name: str = typer.Argument(..., help="Name of the POS device."),
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
) -> None:
    """Issue a bearer token for one POS device of one store (printed once)."""
    from storelens.cloud import auth
    from storelens.cloud.store import connect

    database = connect(_settings(db).db_url)
    try:
        typer.echo(auth.create_pos_token(database, store, device_name))
    except auth.AuthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("device-add")
def device_add(
    store: str = typer.Argument(..., help="Store ID."),
    device: str = typer.Argument(..., help="Device ID as in its MQTT topics."),
    description: str = typer.Option("", help="Where it is installed."),
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
) -> None:
    """Register an edge device so ingest accepts its events."""
    from storelens.cloud import events, stores
    from storelens.cloud.store import connect

    database = connect(_settings(db).db_url)
    if stores.get_store(database, store) is None:
        typer.echo(f"error: unknown store {store}", err=True)
        raise typer.Exit(1)
    events.register_device(database, store, device, description)
    typer.echo(f"registered {store}/{device}")


_HISTORY = "History only: "


@app.command("import")
def import_data(
    kind: str = typer.Argument(..., help="catalog, stores, inventory or history."),
    path: str = typer.Argument(..., help="The file (CSV or JSON; stores: JSON; history: CSV)."),
    store: str | None = typer.Option(None, help="Inventory only: the store the levels are for."),
    map_spec: str | None = typer.Option(
        None, "--map", help=_HISTORY + "canonical=theirs,... for files with other column names."
    ),
    exclude_skus: str | None = typer.Option(
        None, help=_HISTORY + "comma-separated SKUs that are not products (postage, fees)."
    ),
    exclude_pattern: str | None = typer.Option(
        None, help=_HISTORY + "regular expression (full match) of SKUs that are not products."
    ),
    cancelled_prefix: str | None = typer.Option(
        None, help=_HISTORY + "order IDs starting with this are cancellations (returns)."
    ),
    rejects: Path | None = typer.Option(
        None, help=_HISTORY + "where rejected rows go (default FILE.rejects.csv)."
    ),
    currency: str = typer.Option("EUR", help=_HISTORY + "currency of the prices."),
    timezone: str = typer.Option("UTC", help=_HISTORY + "zone of timestamps without offset."),
    date_format: str | None = typer.Option(
        None, help=_HISTORY + "strptime format of ordered_at (default ISO 8601 or epoch)."
    ),
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
) -> None:
    """Bulk import products, stores or one store's stock levels (all rows or none), or a
    purchase history (bad rows go to a reject file; importing it again changes nothing)."""
    from pathlib import Path

    from storelens.cloud import catalog, stores
    from storelens.cloud.store import connect

    file = Path(path)
    if not file.is_file():
        typer.echo(f"error: no file {file}", err=True)
        raise typer.Exit(1)
    if kind == "history":
        from storelens.cloud.history.command import import_history_file

        import_history_file(
            _settings(db).db_url, file, map_spec=map_spec, exclude_skus=exclude_skus,
            exclude_pattern=exclude_pattern, cancelled_prefix=cancelled_prefix,
            rejects=rejects, currency=currency, timezone=timezone, date_format=date_format,
        )  # fmt: skip
        return
    data = file.read_bytes()
    fmt = "csv" if file.suffix.lower() == ".csv" else "json"
    database = connect(_settings(db).db_url)
    try:
        if kind == "catalog":
            written = catalog.upsert_products(database, catalog.parse_products(data, fmt))
        elif kind == "stores":
            written = stores.upsert_stores(database, stores.parse_stores(data))
        elif kind == "inventory" and store:
            written = stores.set_inventory(database, store, stores.parse_inventory(data, fmt))
        else:
            typer.echo(
                "error: kind is catalog, stores, inventory (with --store) or history", err=True
            )
            raise typer.Exit(2)
    except (catalog.CatalogImportError, stores.StoreImportError) as exc:
        for line in exc.errors:
            typer.echo(f"error: {line}", err=True)
        raise typer.Exit(1) from None
    except stores.UnknownStore as exc:
        typer.echo(f"error: unknown store {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.close()
    typer.echo(f"imported {written} {kind} rows")


# Shared by the ingest benches.
_JSON_OUT = typer.Option(None, "--json", help="Write the result JSON here.")
_PG_ADMIN = typer.Option(
    None, help="PostgreSQL admin URL (default STORELENS_TEST_PG or local test database)."
)


@bench_app.command("ingest")
def bench_ingest(
    json_out: str | None = _JSON_OUT,
    events: int = typer.Option(200_000, min=1000, help="Events to publish per run."),
    per_message: int = typer.Option(200, min=1, max=1000, help="Events per MQTT message."),
    pg: str | None = _PG_ADMIN,
    workers: int = typer.Option(1, min=1, max=16, help="Ingest workers sharing the subscription."),
) -> None:
    """Ingest throughput through a private Mosquitto: bare subscriber vs full ingest on
    SQLite and PostgreSQL, in events per second."""

    from storelens.cloud import ingest_bench

    result = ingest_bench.run(events=events, per_message=per_message, pg_url=pg, workers=workers)
    write_report(result, json_out)


@bench_app.command("ingest-stages")
def bench_ingest_stages(
    json_out: str | None = _JSON_OUT,
    events: int = typer.Option(100_000, min=1000, help="Events to time each stage over."),
    repeat: int = typer.Option(3, min=1, max=10, help="Runs per stage; the best counts."),
    pg: str | None = _PG_ADMIN,
) -> None:
    """What each stage of ingest costs per event (microseconds), each timed alone: decoding,
    validating, building rows, handing them over, and the database insert on each backend."""
    from storelens.cloud import ingest_stages

    write_report(ingest_stages.run(events=events, repeat=repeat, pg_url=pg), json_out)


@bench_app.command("routing")
def bench_routing(
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    db: str | None = typer.Option(None, help="Database URL; default a temporary SQLite file."),
    stores: int = typer.Option(100, min=2, max=5000, help="Stores in the synthetic chain."),
    skus: int = typer.Option(500, min=10, max=100_000, help="SKUs in the catalog."),
    orders: int = typer.Option(400, min=10, max=100_000, help="Orders per phase."),
    threads: int = typer.Option(4, min=1, max=64, help="Concurrent routing threads."),
) -> None:
    """Fulfillment routing speed (sequential and concurrent) and an oversell check."""
    import tempfile

    from storelens.cloud.fulfillment.bench import run_bench

    with tempfile.TemporaryDirectory(prefix="storelens-bench-") as tmp:
        url = db or f"sqlite:///{Path(tmp) / 'bench.db'}"
        result = run_bench(url, stores=stores, skus=skus, orders=orders, threads=threads)
    write_report(result, json_out)


@bench_app.command("recommend")
def bench_recommend(
    json_out: Path | None = typer.Option(None, "--json", help="Write the result JSON here."),
    members: int = typer.Option(3000, min=100, help="Members in the seeded chain."),
    days: int = typer.Option(180, min=30, help="Days of seeded history."),
    test_days: int = typer.Option(30, min=1, help="The last days held out for testing."),
    seed: int = typer.Option(42, help="Seed of the generated chain."),
    history: Path | None = typer.Option(
        None, help="Backtest on this order-line CSV instead of a seeded chain (see import)."
    ),
    split: str | None = typer.Option(None, help="History: train before this date (YYYY-MM-DD)."),
    until: str | None = typer.Option(None, help="History: score purchases before this date."),
    map_spec: str | None = typer.Option(None, "--map", help="History: canonical=theirs,..."),
    exclude_skus: str | None = typer.Option(None, help="History: SKUs that are not products."),
    exclude_pattern: str | None = typer.Option(None, help="History: regex of such SKUs."),
    cancelled_prefix: str | None = typer.Option(None, help="History: cancelled order prefix."),
    timezone: str = typer.Option("UTC", help="History: zone of timestamps and dates."),
) -> None:
    """Recommender precision@10 and recall@10 on a time split: on the seeded chain vs the
    best-seller baseline, or with --history on a real history vs popularity, own most-bought,
    ALS and item-kNN under the `all` and `new` protocols."""
    if history is None:
        from storelens.cloud import recommend_bench

        result = recommend_bench.run(members=members, days=days, test_days=test_days, seed=seed)
        write_report(result, json_out)
        return
    from storelens.cloud import recommend_backtest
    from storelens.cloud.history import HistoryFormatError, parse_mapping
    from storelens.cloud.history.rules_options import rules_from_options

    if split is None:
        typer.echo("error: --history needs --split DATE", err=True)
        raise typer.Exit(2)
    if not history.is_file():
        typer.echo(f"error: no file {history}", err=True)
        raise typer.Exit(1)
    try:
        rules = rules_from_options(
            exclude_skus=exclude_skus, exclude_pattern=exclude_pattern,
            cancelled_prefix=cancelled_prefix, timezone=timezone,
        )  # fmt: skip
        result = recommend_backtest.run(
            history, split, until=until, mapping=parse_mapping(map_spec), rules=rules
        )
    except (HistoryFormatError, recommend_backtest.BacktestError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    write_report(result, json_out)


@bench_app.command("api")
def bench_api(
    json_out: Path | None = typer.Option(None, "--json", help="Write the result JSON here."),
    rate: float = typer.Option(200.0, min=1, help="Offered requests per second."),
    seconds: float = typer.Option(20.0, min=1, help="Duration of each phase."),
    members: int = typer.Option(3000, min=100, help="Members in the seeded chain."),
    workers: int = typer.Option(2, min=1, max=64, help="uvicorn worker processes (one per core)."),
) -> None:
    """POS recommendations endpoint latency at a fixed request rate, and /healthz's."""

    from storelens.cloud import api_bench

    result = api_bench.run(rate=rate, seconds=seconds, members=members, workers=workers)
    write_report(result, json_out)


@bench_app.command("analytics")
def bench_analytics(
    json_out: Path | None = typer.Option(None, "--json", help="Write the result JSON here."),
    days: int = typer.Option(28, min=1, max=366, help="Days of seeded in-store traffic."),
    visitors: int = typer.Option(300, min=10, help="Visitors per store and day (5 stores)."),
    repeats: int = typer.Option(3, min=1, help="Runs per chart; the median is reported."),
) -> None:
    """Time of every ops chart over the seeded period, on SQLite and PostgreSQL."""

    from storelens.cloud.analytics import bench

    result = bench.run(days=days, visitors_per_day=visitors, repeats=repeats)
    write_report(result, json_out)
