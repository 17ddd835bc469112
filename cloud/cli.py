"""`storelens cloud ...` commands. Heavy imports stay inside the command functions."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True)


rollups_app = typer.Typer(help="Analytics rollups: recompute them from the raw events.",
                          no_args_is_help=True)  # fmt: skip
app.add_typer(rollups_app, name="rollups")


@rollups_app.command("rebuild")
def rollups_rebuild(
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
    since: str | None = typer.Option(
        None, "--from", help="First UTC day to rebuild (YYYY-MM-DD); default the oldest event."
    ),
    store: str | None = typer.Option(None, help="Only this store (default all)."),
) -> None:
    """Recompute the rollups from the raw events, a day at a time, with a progress bar."""
    from datetime import date

    from rich.progress import Progress

    from storelens.cloud.analytics.rollups import rebuild
    from storelens.cloud.db import connect

    try:
        first = date.fromisoformat(since) if since else None
    except ValueError:
        typer.echo(f"error: --from {since!r} is not a date (YYYY-MM-DD)", err=True)
        raise typer.Exit(2) from None
    database = connect(_settings(db).db_url)
    try:
        with Progress(transient=True) as bar:
            task = bar.add_task("rebuilding rollups (days)", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = rebuild.rebuild(database, first, store, advance)
    finally:
        database.close()
    typer.echo(f"rebuilt {result['days']} day(s) from {result['events']} events")


dead_letters_app = typer.Typer(help="Dead letters: the messages ingest could not store.",
                               no_args_is_help=True)  # fmt: skip
app.add_typer(dead_letters_app, name="dead-letters")


@dead_letters_app.command("replay")
def dead_letters_replay(
    reason: str | None = typer.Option(
        None, help="Only dead letters of this reason (e.g. unregistered_device, storage_error)."
    ),
    since: str | None = typer.Option(
        None, help="Only those received at or after this time (ISO 8601; UTC unless it says)."
    ),
    limit: int | None = typer.Option(None, min=1, help="At most this many, oldest first."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Replay in a transaction that is rolled back: report only."
    ),
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
) -> None:
    """Feed dead letters back through ingest once their cause is fixed (a device registered,
    a migration, a bug fix): each whose message now stores (or was stored meanwhile) is
    deleted; one that fails again stays as it was."""
    from datetime import UTC, datetime

    from rich.progress import Progress

    from storelens.cloud.db import connect
    from storelens.cloud.ingest import replay
    from storelens.cloud.ingest.worker import Ingestor
    from storelens.cloud.services import Services

    try:
        start = datetime.fromisoformat(since) if since else None
    except ValueError:
        typer.echo(f"error: --since {since!r} is not an ISO 8601 date or time", err=True)
        raise typer.Exit(2) from None
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    settings = _settings(db)
    database = connect(settings.db_url)
    services = Services.for_command(settings, database)
    ingestor = Ingestor(database, hooks=services.hooks)
    try:
        with Progress(transient=True) as bar:
            task = bar.add_task("replaying dead letters", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = replay.replay(
                database, ingestor, reason=reason, limit=limit, dry_run=dry_run,
                since=start.timestamp() if start else None, progress=advance,
            )  # fmt: skip
    finally:
        ingestor.close()
        services.close()
        database.close()
    typer.echo(result.summary())


recommend_app = typer.Typer(help="Recommendations: build the model the API serves.",
                            no_args_is_help=True)  # fmt: skip
app.add_typer(recommend_app, name="recommend")


@recommend_app.command("build")
def recommend_build(
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
    every: float = typer.Option(
        0.0, min=0, help="Seconds between builds, running until stopped (0: build once)."
    ),
) -> None:
    """Build the recommendation model from the stored history and store it in the database;
    the API loads the newest stored model (run it after imports, from cron, or with
    --every as a background process)."""
    import signal
    import threading

    from storelens.cloud.db import connect
    from storelens.cloud.services import Services

    settings = _settings(db)
    database = connect(settings.db_url)
    services = Services.for_builder(settings, database)
    stop = threading.Event()
    if every:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        builder = services.recommendations(start=False)
        while True:
            model = builder.rebuild()
            learned = "learned ranker" if model.personal is not None else "hand-set blend"
            typer.echo(f"built and {builder.source}: {len(model.catalog.skus)} items, "
                       f"{len(model.member_index)} members, {learned}")  # fmt: skip
            if not every or stop.wait(every):
                break
    finally:
        services.close()
        database.close()


# -- the core service: API, ingest, admin ---------------------------------------------------


def _settings(db: str | None = None, **overrides: object):  # noqa: ANN202 - lazy import
    from storelens.cloud.settings import Settings, SettingsError

    try:
        return Settings.from_env(db_url=db, **overrides)
    except SettingsError as exc:  # a bad STORELENS_* variable: say which, no traceback
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


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

    from storelens.cloud.api.app import create_app, server_options

    settings = _settings(db, ingest_in_process=ingest)
    uvicorn.run(
        create_app(settings), host=host, port=port, log_level="info", **server_options(settings)
    )


@app.command("ingest")
def ingest(
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
    mqtt_host: str | None = typer.Option(None, help="Broker host (default STORELENS_MQTT_HOST)."),
    mqtt_port: int | None = typer.Option(None, help="Broker port."),
    group: str | None = typer.Option(None, help="Shared-subscription group."),
    client_id: str | None = typer.Option(None, help="MQTT client ID (unique per worker)."),
    metrics_port: int | None = typer.Option(
        None, min=1, max=65535, help="Serve this worker's Prometheus metrics on this port."
    ),
    metrics_host: str = typer.Option("0.0.0.0", help="Address of the metrics endpoint."),
) -> None:
    """Run an ingest worker: MQTT -> validated, de-duplicated events in the database."""
    import logging

    from storelens.cloud.db import connect
    from storelens.cloud.ingest.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = _settings(db, mqtt_host=mqtt_host, mqtt_port=mqtt_port, share_group=group,
                         mqtt_client_id=client_id)  # fmt: skip
    if metrics_port is not None:
        # prometheus_client's own HTTP server (a daemon thread): the worker's ingest counters,
        # batch times and lag; fleet health per device comes from the API's /metrics.
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_host)
    run_worker(settings, connect(settings.db_url), client_id=client_id)


@app.command("user-add")
def user_add(
    username: str = typer.Argument(..., help="Login name."),
    role: str = typer.Option("analyst", help="analyst or admin."),
    stores: str | None = typer.Option(
        None,
        help="Comma-separated stores the user sees (a region, or one store for a store "
        "manager); default the whole chain.",
    ),
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
) -> None:
    """Create an ops user (the password is asked for, never passed on the command line)."""
    from storelens.cloud.api import principals as auth
    from storelens.cloud.db import connect

    password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    database = connect(_settings(db).db_url)
    scope = auth.parse_scope(stores)
    try:
        auth.create_user(database, username, password, role, scope)
    except auth.AuthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {role} {username}" + (f" for {', '.join(scope)}" if scope else ""))


@app.command("user-password")
def user_password(
    username: str = typer.Argument(..., help="Login name."),
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
) -> None:
    """Set a new password for an ops user (asked for, never passed on the command line)."""
    from storelens.cloud.api import principals as auth
    from storelens.cloud.db import connect

    password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    database = connect(_settings(db).db_url)
    try:
        auth.set_password(database, username, password)
    except auth.AuthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"password of {username} changed")


@app.command("pos-token")
def pos_token(
    store: str = typer.Argument(..., help="Store the POS device belongs to."),
    device_name: str = typer.Argument(..., help="Name of the POS device."),
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
) -> None:
    """Issue a bearer token for one POS device of one store (printed once)."""
    from storelens.cloud.api import principals as auth
    from storelens.cloud.db import connect

    database = connect(_settings(db).db_url)
    try:
        typer.echo(auth.create_pos_token(database, store, device_name))
    except auth.AuthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("integration-token")
def integration_token(
    name: str = typer.Argument(..., help="The system, e.g. webshop or crm."),
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
) -> None:
    """Issue a bearer token another system uses to POST /api/v1/interactions (printed once)."""
    from storelens.cloud.api import principals as auth
    from storelens.cloud.db import connect

    database = connect(_settings(db).db_url)
    try:
        typer.echo(auth.create_integration_token(database, name))
    except auth.AuthError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("scoring-plans")
def scoring_plans(
    path: str | None = typer.Argument(None, help="YAML with one plan or a list; none: list."),
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
) -> None:
    """Load engagement scoring plans from YAML (all or none), or list the stored ones."""
    from pathlib import Path

    from storelens.cloud.db import connect
    from storelens.cloud.personalization import scoring, scoring_plans

    database = connect(_settings(db).db_url)
    try:
        if path is None:
            for plan in scoring_plans.list_plans(database):
                state = f"active, share {plan.share:g}" if plan.active else "inactive"
                typer.echo(f"{plan.id}: {plan.name or '-'} ({state}), "
                           f"{len(plan.interactions)} interaction types, "
                           f"{len(plan.thresholds)} thresholds")  # fmt: skip
            return
        plans = scoring_plans.load_yaml(Path(path))
        with database.transaction():
            for plan in plans:
                scoring.put_plan(database, plan)
    except scoring_plans.PlanError as exc:
        typer.echo(f"error: {exc}", err=True)
        for error in exc.errors or []:
            typer.echo(f"  {'.'.join(map(str, error['loc']))}: {error['msg']}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.close()
    typer.echo(f"loaded {len(plans)} scoring plan(s): {', '.join(p.id for p in plans)}")


@app.command("device-add")
def device_add(
    store: str = typer.Argument(..., help="Store ID."),
    device: str = typer.Argument(..., help="Device ID as in its MQTT topics."),
    description: str = typer.Option("", help="Where it is installed."),
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
) -> None:
    """Register an edge device so ingest accepts its events."""
    from storelens.cloud.commerce import stores
    from storelens.cloud.db import connect
    from storelens.cloud.ingest import device_registry

    database = connect(_settings(db).db_url)
    if stores.get_store(database, store) is None:
        typer.echo(f"error: unknown store {store}", err=True)
        raise typer.Exit(1)
    device_registry.register_device(database, store, device, description)
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

    from storelens.cloud.commerce import catalog, stores
    from storelens.cloud.db import connect

    file = Path(path)
    if not file.is_file():
        typer.echo(f"error: no file {file}", err=True)
        raise typer.Exit(1)
    if kind == "history":
        from storelens.cloud.commerce.history.command import import_history_file

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


@app.command("propensity-refresh")
def propensity_refresh(
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
    horizon_days: float = typer.Option(30.0, min=1, max=365, help="Buy within this many days."),
) -> None:
    """Train the propensity model on the stored history and store every member's scores (run
    it daily, e.g. from cron; the API, POS and offer audiences read the stored scores)."""
    from storelens.cloud.db import connect
    from storelens.cloud.personalization import propensity

    database = connect(_settings(db).db_url)
    try:
        summary = propensity.refresh(
            database, settings=propensity.PropensitySettings(horizon_days=horizon_days)
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        database.close()
    typer.echo(", ".join(f"{k} {v}" for k, v in summary.items()))
