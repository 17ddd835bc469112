"""Tooling commands: benchmarks, seeding, scenarios and the demo.

The CLI root (`storelens.cli`) mounts these beside the product commands, so they keep their
names (`storelens bench ...`, `storelens cloud seed`, `storelens cloud scenario ...`,
`storelens demo`) while the product CLIs never import tooling. Heavy imports stay inside the
command functions.
"""

from __future__ import annotations

from pathlib import Path

import typer

from storelens.tools import demo as _demo
from storelens.tools.bench import load as _load_bench
from storelens.tools.bench.report import write_report

bench_app = typer.Typer()
# Commands the root adds onto `storelens cloud`.
cloud_app = typer.Typer()
scenario_app = typer.Typer(help="Scripted scenarios that seed data and play a story.",
                           no_args_is_help=True)  # fmt: skip
demo = _demo.demo

# Shared by the ingest benches.
_JSON_OUT = typer.Option(None, "--json", help="Write the result JSON here.")
_PG_ADMIN = typer.Option(
    None, help="PostgreSQL admin URL (default STORELENS_TEST_PG or local test database)."
)


# -- edge ---------------------------------------------------------------------------------


@bench_app.command("edge")
def bench_edge(
    video: str = typer.Option("asset:media/vtest.avi", help="Video file or asset:NAME."),
    config: Path = typer.Option(..., "--config", "-c", help="Device config YAML."),
    json_out: Path = typer.Option(..., "--json", help="Write the results here."),
    max_frames: int | None = typer.Option(None, min=10, help="Frames per pass (default: all)."),
    rounds: int = typer.Option(1, min=1, max=5, help="Repeat the measurement; median kept."),
    motion_gate: bool | None = typer.Option(
        None, help="Also time a motion-gated pass (default: as the camera config says)."
    ),
) -> None:
    """Edge speed: decode alone, decode + inference (the bound), and the full pipeline."""

    from storelens.edge.config import ConfigError, load_config
    from storelens.tools.bench.edge import run_bench

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"invalid config {exc}", err=True)
        raise typer.Exit(2) from None
    result = run_bench(video, cfg, max_frames=max_frames, rounds=rounds, motion_gate=motion_gate)
    write_report(result, json_out)


@bench_app.command("cameras")
def bench_cameras(
    video: str = typer.Option("asset:media/vtest.avi", help="Video played by every camera."),
    config: Path | None = typer.Option(None, help="Device YAML for model and tracker settings."),
    json_out: Path = typer.Option(..., "--json", help="Where to write the result JSON."),
    seconds: float = typer.Option(8.0, min=2, help="Measured seconds per camera count."),
    max_cameras: int = typer.Option(32, min=1, help="Upper end of the search."),
    threads: int | None = typer.Option(None, min=1, help="Override model.threads."),
    parallel: int | None = typer.Option(None, min=1, help="Override model.parallel."),
    detect_every: int | None = typer.Option(
        None,
        min=1,
        max=10,
        help="Override the camera's detect_every: the detector runs on every k-th frame of "
        "each camera (staggered); every frame is still decoded, tracked and counted. "
        "Default: the config's value (1 = every frame).",
    ),
) -> None:
    """Largest number of live 10 fps cameras one box serves in real time, and CPU per camera."""
    from storelens.tools.bench.cameras import run_camera_bench

    result = run_camera_bench(
        video,
        config,
        seconds=seconds,
        max_cameras=max_cameras,
        threads=threads,
        parallel=parallel,
        detect_every=detect_every,
    )
    write_report(result, json_out)


def _camera_numbers(items: list[str], option: str, *, positive: bool) -> dict[str, float]:
    """``CAMERA=NUMBER`` options -> {camera: number}; a clear error for anything else."""
    import math

    out: dict[str, float] = {}
    for item in items:
        camera, sep, raw = item.partition("=")
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not sep or not camera or not math.isfinite(value) or (positive and value <= 0):
            need = "a number > 0" if positive else "a number of seconds"
            raise ValueError(f"{option} {item!r}: expected CAMERA={need}")
        if abs(value) > 3600:
            raise ValueError(f"{option} {item!r}: at most 3600")
        out[camera] = value
    return out


@bench_app.command("two-cameras")
def bench_two_cameras(
    single: Path = typer.Option(
        Path("firmware_config/sample.yaml"), help="The single-camera device YAML."
    ),
    split: Path = typer.Option(
        Path("firmware_config/two-cameras.yaml"), help="Its split into cameras."
    ),
    json_out: Path = typer.Option(..., "--json", help="Where to write the result JSON."),
    max_frames: int | None = typer.Option(None, min=1, help="Stop after this many frames."),
    camera_fps: list[str] = typer.Option(
        [], "--camera-fps", help="CAMERA=FPS: that camera plays at this frame rate (repeatable)."
    ),
    clock_offset: list[str] = typer.Option(
        [], "--clock-offset", help="CAMERA=SECONDS: added to that camera's frame times."
    ),
) -> None:
    """Two overlapping cameras fused into store visits vs the single camera, same video."""
    from storelens.edge.config import ConfigError, load_config
    from storelens.tools.bench.two_cameras import run as run_bench

    try:
        rates = _camera_numbers(camera_fps, "--camera-fps", positive=True)
        offsets = _camera_numbers(clock_offset, "--clock-offset", positive=False)
        result = run_bench(load_config(single), load_config(split), max_frames=max_frames,
                           camera_fps=rates, clock_offsets=offsets)  # fmt: skip
    except (ConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    write_report(result, json_out)
    if not result["equivalent"]:
        failed = [k for k, ok in result["checks"].items() if not ok]
        typer.echo(f"not equivalent within tolerance: {', '.join(failed)}", err=True)
        raise typer.Exit(2)


@bench_app.command("tracking")
def bench_tracking(
    json_out: Path | None = typer.Option(None, "--json", help="Write the result JSON here."),
    video: str | None = typer.Option(
        None, help="Score on this real video (file or asset:NAME) instead of a simulated scene."
    ),
    gt: Path | None = typer.Option(None, help="MOTChallenge ground truth of --video."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Device config for --video (default: the sample's)."
    ),
    splits: str = typer.Option(
        "", help="Also score frame ranges of --video: NAME:FIRST-LAST,... (frames from 1)."
    ),
    cache: Path | None = typer.Option(
        None, help="Detections cache (.npz) for --video: read if it exists, else written."
    ),
    peers: bool = typer.Option(True, help="Also score every `trackers` algorithm (defaults)."),
    seed: int = typer.Option(1, help="Seed of the simulated scene (same seed, same scene)."),
    seconds: float = typer.Option(90.0, min=10, help="Simulated seconds."),
    fps: float = typer.Option(
        10.0,
        min=1,
        max=60,
        help="Frame rate of the simulated camera (detect_every counts its frames).",
    ),
    detect_every: list[int] = typer.Option(
        [1, 2, 3], min=1, max=10, help="Detector strides to score (repeat the option)."
    ),
) -> None:
    """Tracker accuracy for each detection stride: MOTA, IDF1 (and HOTA, people on --video)."""
    from storelens.tools.bench.tracking import Scene, TrackBenchError, run_track_bench

    strides = tuple(dict.fromkeys(detect_every))
    if video is not None:
        _bench_tracking_video(video, gt, config, splits, cache, peers, strides, json_out)
        return
    try:
        scene = Scene(seconds=seconds, fps=fps)
        result = run_track_bench(seed=seed, detect_every=strides, scene=scene)
    except TrackBenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if json_out is not None:
        write_report(result, json_out)
    for k, r in result["detect_every"].items():
        typer.echo(
            f"detect_every {k}: MOTA {r['mota']:.3f}  IDF1 {r['idf1']:.3f}  "
            f"ID switches {r['id_switches']}  ({result['people']} people, "
            f"{result['frames']} frames at {result['fps']:g} fps, seed {seed})",
            err=True,
        )


def _bench_tracking_video(
    video: str,
    gt: Path | None,
    config: Path | None,
    splits: str,
    cache: Path | None,
    peers: bool,
    strides: tuple[int, ...],
    json_out: Path | None,
) -> None:
    from storelens.assets import AssetError
    from storelens.edge.config import ConfigError, load_config
    from storelens.edge.detect import DetectorError
    from storelens.edge.sources.frames import SourceError
    from storelens.tools.bench.cameras import DEFAULT_CONFIG
    from storelens.tools.bench.tracking import TrackBenchError
    from storelens.tools.bench.tracking_video import run_video_bench

    if gt is None:
        typer.echo("error: --video needs --gt (MOTChallenge ground truth)", err=True)
        raise typer.Exit(2)
    try:
        cfg = load_config(config or DEFAULT_CONFIG)
    except ConfigError as exc:
        typer.echo(f"invalid config {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        result = run_video_bench(
            video, gt, cfg, detect_every=strides, splits=splits, cache=cache, peers=peers
        )
    except (TrackBenchError, AssetError, SourceError, DetectorError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if json_out is not None:
        write_report(result, json_out)
    typer.echo(
        f"{'variant':<16} {'split':<8} {'MOTA':>6} {'IDF1':>6} {'HOTA':>6} {'IDsw':>5} "
        f"{'people':>11} {'visits':>6}"
    )
    for name, row in result["variants"].items():
        for split in result["splits"]:
            r = row[split]
            visits = str(row.get("visits", "")) if split == "all" else ""
            typer.echo(
                f"{name:<16} {split:<8} {r['mota']:6.3f} {r['idf1']:6.3f} {r['hota']:6.3f} "
                f"{r['id_switches']:5d} {r['people']:>5}/{r['people_true']:<5} {visits:>6}"
            )


# -- cloud --------------------------------------------------------------------------------

# storelens.tools.bench.load imports only the contract at module level; its work is in the command.
bench_app.command("load")(_load_bench.command)


@bench_app.command("ingest")
def bench_ingest(
    json_out: str | None = _JSON_OUT,
    events: int = typer.Option(200_000, min=1000, help="Events to publish per run."),
    per_message: int = typer.Option(200, min=1, max=1000, help="Events per MQTT message."),
    pg: str | None = _PG_ADMIN,
    workers: int = typer.Option(1, min=1, max=16, help="Ingest workers sharing the subscription."),
    rollups_off: bool = typer.Option(
        True, help="Also drain each backend with analytics rollups off (their cost)."
    ),
) -> None:
    """Ingest throughput through a private Mosquitto: bare subscriber vs full ingest on
    SQLite and PostgreSQL, in events per second, with rollups on and off."""

    from storelens.tools.bench import ingest as ingest_bench

    result = ingest_bench.run(
        events=events, per_message=per_message, pg_url=pg, workers=workers,
        rollups_off=rollups_off,
    )  # fmt: skip
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
    from storelens.tools.bench import ingest_stages

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

    from storelens.tools.bench.routing import run_bench

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
        from storelens.tools.bench import recommend as recommend_bench

        result = recommend_bench.run(members=members, days=days, test_days=test_days, seed=seed)
        write_report(result, json_out)
        return
    from storelens.cloud.commerce.history import HistoryFormatError, parse_mapping
    from storelens.cloud.commerce.history.rules_options import rules_from_options
    from storelens.tools.bench import recommend_history

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
        result = recommend_history.run(
            history, split, until=until, mapping=parse_mapping(map_spec), rules=rules
        )
    except (HistoryFormatError, recommend_history.BacktestError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    write_report(result, json_out)


def _history_split(history: Path, split: list[str], map_: str | None) -> dict | None:
    """What the history benches check before they run: the file, the split dates and the
    column map (a bad date or map raises ValueError/HistoryFormatError for the caller)."""
    from datetime import date

    from storelens.cloud.commerce.history.reader import parse_mapping

    if not history.is_file():
        typer.echo(f"error: no file {history}", err=True)
        raise typer.Exit(1)
    for text in split:
        date.fromisoformat(text)
    return parse_mapping(map_) if map_ else None


@bench_app.command("propensity")
def bench_propensity(
    history: Path = typer.Option(..., "--history", help="Order-line CSV (UCI columns detected)."),
    split: list[str] = typer.Option(
        ..., "--split", help="Held-out period starts here (YYYY-MM-DD); repeat for several."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result JSON here."),
    horizon_days: float = typer.Option(30.0, min=1, max=365, help="Buy within this many days."),
    category: str = typer.Option(
        "prefix:3", help="Category when the file has none: prefix:N (of the SKU) or word."
    ),
    map_: str | None = typer.Option(None, "--map", help="canonical=theirs,... column mapping."),
) -> None:
    """Propensity AUC, Brier and calibration on the period after each split, vs baselines."""
    from storelens.cloud.commerce.history.reader import HistoryFormatError
    from storelens.tools.bench import propensity as propensity_bench

    try:
        mapping = _history_split(history, split, map_)
        propensity_bench.category_rule(category)
        result = propensity_bench.run(
            history, split, horizon_days=horizon_days, category=category, mapping=mapping
        )
    except (ValueError, HistoryFormatError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    write_report(result, json_out)


@bench_app.command("scoring")
def bench_scoring(
    history: Path = typer.Option(..., "--history", help="Order-line CSV (UCI columns detected)."),
    split: list[str] = typer.Option(
        ..., "--split", help="Replay contacts from here (YYYY-MM-DD); repeat for several."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result JSON here."),
    weeks: int = typer.Option(8, min=1, max=104, help="Weekly contact rounds after the split."),
    plan: Path | None = typer.Option(None, help="Scoring plan YAML (default the built-in)."),
    map_: str | None = typer.Option(None, "--map", help="canonical=theirs,... column mapping."),
) -> None:
    """Contacts and responses of a scoring plan replayed on a history vs contacting everyone."""
    from storelens.cloud.commerce.history.reader import HistoryFormatError
    from storelens.cloud.personalization.scoring_plans import PlanError
    from storelens.tools.bench import scoring as scoring_bench

    try:
        mapping = _history_split(history, split, map_)
        result = scoring_bench.run(history, split, weeks=weeks, plan_file=plan, mapping=mapping)
    except (ValueError, HistoryFormatError, PlanError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
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

    from storelens.tools.bench import api as api_bench

    result = api_bench.run(rate=rate, seconds=seconds, members=members, workers=workers)
    write_report(result, json_out)


@bench_app.command("analytics")
def bench_analytics(
    json_out: Path | None = typer.Option(None, "--json", help="Write the result JSON here."),
    stores: str = typer.Option("5,50", help="Chain sizes to compare (comma-separated)."),
    days: int = typer.Option(90, min=1, max=366, help="Days of seeded in-store traffic."),
    visitors: int = typer.Option(300, min=10, help="Visitors per store and day."),
    repeats: int = typer.Option(3, min=1, help="Runs per chart; the median is reported."),
    backends: str = typer.Option("sqlite,postgres", help="Backends to run (comma-separated)."),
    pg: str | None = _PG_ADMIN,
    history_days: int | None = typer.Option(
        None,
        "--history-days",
        min=1,
        max=366,
        help="Also seed the smallest chain with this many days and compare its dashboard"
        " (same last 7 days) with the --days one: growth with history.",
    ),
) -> None:
    """The ops dashboard's time per chart at two chain sizes (seeded through ingest, rollups
    settled) and their ratio, and ingest throughput with rollups on and off."""

    from storelens.tools.bench import analytics as bench

    try:
        sizes = tuple(int(s) for s in stores.split(",") if s.strip())
    except ValueError:
        typer.echo(f"error: --stores {stores!r} is not a list of numbers", err=True)
        raise typer.Exit(2) from None
    chosen = tuple(b.strip() for b in backends.split(",") if b.strip())
    if not sizes or min(sizes) < 1 or not set(chosen) <= {"sqlite", "postgres"} or not chosen:
        typer.echo("error: --stores takes numbers >= 1, --backends sqlite/postgres", err=True)
        raise typer.Exit(2)
    try:
        result = bench.run(stores_sizes=sizes, days=days, visitors_per_day=visitors,
                           repeats=repeats, backends=chosen, pg_url=pg,
                           history_days=history_days)  # fmt: skip
    except bench.BenchError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    write_report(result, json_out)


# -- models -------------------------------------------------------------------------------


@bench_app.command("export")
def bench_export(
    weights: Path = typer.Argument(..., help="ultralytics detection checkpoint (.pt)."),
    video: str = typer.Option("asset:media/vtest.avi", help="Video file or asset:NAME."),
    imgsz: int = typer.Option(640, "--imgsz", help="Square input size, a multiple of 32."),
    frames: int = typer.Option(60, min=1, help="Frames to time per pass."),
    threads: int = typer.Option(2, min=1, help="ONNX Runtime intra-op threads."),
    rounds: int = typer.Option(3, min=1, help="Alternating passes; the best is kept."),
    person_class: int | None = typer.Option(None, help="Default: the class named 'person'."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result here."),
) -> None:
    """FP32 vs INT8 export of one checkpoint: latency, size and box agreement."""

    from storelens.assets import AssetError, resolve
    from storelens.edge.detect import DetectorError
    from storelens.models.export import ExportError
    from storelens.tools.bench.export import bench_export as run

    try:
        result = run(
            weights,
            video=resolve(video),
            imgsz=imgsz,
            frames=frames,
            threads=threads,
            rounds=rounds,
            person_class=person_class,
        )
    except (ExportError, AssetError, DetectorError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    write_report(result, json_out)


# -- seeding and scenarios (mounted on `storelens cloud`) ---------------------------------


@cloud_app.command("seed")
def seed(
    db: str | None = typer.Option(None, help="Database URL (default STORELENS_DB_URL)."),
    seed: int = typer.Option(42, help="Random seed: same seed and end date, same data."),
    members: int = typer.Option(3000, min=1, help="Members to create."),
    days: int = typer.Option(180, min=1, help="Days of order and sales history."),
    end: str | None = typer.Option(None, help="Last day (YYYY-MM-DD, exclusive); default today."),
    instore_days: int = typer.Option(14, min=0, help="Days of in-store camera events (0: none)."),
    out: str = typer.Option("var/seed-credentials.json", help="Where to write credentials."),
    propensity: bool = typer.Option(
        True, help="Train purchase propensity on the seeded history (as a daily job would)."
    ),
) -> None:
    """Create a demo chain: stores, catalog, members, orders, sales, stock, users, tokens."""
    import json
    from datetime import date
    from pathlib import Path

    from storelens.cloud.db import connect
    from storelens.cloud.settings import Settings
    from storelens.pseudonym import PseudonymError
    from storelens.tools.seed import chain as seeding

    settings = Settings.from_env(db_url=db)
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
        database.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        if propensity:
            from storelens.cloud.personalization import propensity as propensity_model

            try:
                trained = propensity_model.refresh(database)
                typer.echo(f"propensity: {trained['stored']} member x category scores")
            except ValueError as exc:  # too short a history for its training cutoffs
                typer.echo(f"propensity not trained: {exc}")
    finally:
        database.close()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.credentials, indent=2) + "\n")
    path.chmod(0o600)
    summary = {k: v for k, v in result.__dict__.items() if k != "credentials"}
    typer.echo(json.dumps(summary))
    typer.echo(f"admin login and POS tokens written to {path}")


@scenario_app.command("ship-from-store")
def scenario_ship_from_store(
    db: str | None = typer.Option(None, help="Database URL; default a temporary SQLite file."),
) -> None:
    """Seed stores and stock, place online orders, have one store reject, print each journey."""
    import tempfile
    from pathlib import Path

    from rich.console import Console

    from storelens.cloud.db import connect
    from storelens.tools import scenario

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
