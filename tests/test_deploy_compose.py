"""docker-compose.yml and the Dockerfile, checked without a Docker engine: structure, health
checks, volumes, files it mounts, environment names the code reads, and commands that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from conftest import REPO

from storelens.cli import app as root_app

COMPOSE = REPO / "docker-compose.yml"
TLS_OVERRIDE = REPO / "docker-compose.tls.yml"
LONG_RUNNING = {"mosquitto", "postgres", "api", "ingest", "edge"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _storelens_argv(service: dict[str, Any]) -> list[list[str]]:
    """Every `storelens ...` invocation a service runs (entrypoint + command or shell script)."""
    entry = service.get("entrypoint")
    command = service.get("command") or []
    if entry is None:  # the image's entrypoint is `storelens`
        return [list(command)]
    script = "\n".join(command) if isinstance(command, list) else command
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        for m in re.finditer(r"storelens ([^;&|]+)", line):
            found.append(shlex.split(m.group(1).replace("$$", "$")))
    return found


def _resolve(argv: list[str]) -> Any:
    # Duck-typed: recent typer versions ship their own click, not the `click` package.
    cmd: Any = typer.main.get_command(root_app)
    for word in argv:
        if not hasattr(cmd, "list_commands"):
            break
        sub = cmd.get_command(cmd.context_class(cmd), word)
        assert sub is not None, f"`storelens {' '.join(argv)}`: no command {word!r}"
        cmd = sub
    return cmd


def test_services_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert LONG_RUNNING | {"provision"} <= set(services)
    for name in LONG_RUNNING:
        hc = services[name].get("healthcheck")
        assert hc and hc["test"], f"{name} has no health check"
        assert services[name].get("restart") == "unless-stopped", name
    assert services["ingest"]["deploy"]["replicas"] == 2
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            want = "service_completed_successfully" if dep == "provision" else "service_healthy"
            assert cond["condition"] == want, f"{name} -> {dep}"


def test_volumes_and_mounted_files_exist(compose: dict[str, Any]) -> None:
    named = set(compose["volumes"])
    for override in (compose, yaml.safe_load(TLS_OVERRIDE.read_text())):
        for name, svc in override["services"].items():
            for spec in svc.get("volumes", []):
                source = spec.split(":")[0]
                if source.startswith("./"):
                    assert (REPO / source).exists(), f"{name} mounts missing {source}"
                elif source.startswith("${"):
                    default = re.match(r"\$\{\w+:-(.+)\}", source)
                    if default:
                        assert (REPO / default.group(1)).exists(), f"{name}: {source}"
                else:
                    assert source in named, f"{name} uses undeclared volume {source}"
    for data in ("pg-data", "mosquitto-data", "edge-outbox"):
        assert data in named


def test_environment_names_are_read_by_the_code(compose: dict[str, Any]) -> None:
    from storelens.cloud.settings import ENV_PREFIX, Settings

    fields = {ENV_PREFIX + f.upper() for f in Settings.model_fields}
    for name in ("api", "ingest"):
        env = compose["services"][name]["environment"]
        unknown = {k for k in env if k.startswith(ENV_PREFIX)} - fields
        assert not unknown, f"{name}: variables nothing reads: {unknown}"
        assert env["STORELENS_DB_URL"].startswith("postgresql://")
        assert "${POSTGRES_PASSWORD:?" in env["STORELENS_DB_URL"], "password must come from env"
    for name, svc in compose["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert str(value).startswith("${") and ":?" in value, f"{name}: inline {key}"


def test_commands_exist_in_the_cli(compose: dict[str, Any]) -> None:
    seen = 0
    for svc in compose["services"].values():
        if svc.get("image", "").startswith("storelens"):
            for argv in _storelens_argv(svc):
                _resolve([a for a in argv if not a.startswith("-")][:2])
                seen += 1
    assert seen >= 6  # provision x3, api, ingest, edge


def test_the_api_receives_the_pushes_of_the_separate_ingest_workers(
    compose: dict[str, Any],
) -> None:
    # Scoring raises member alerts inside the ingest replicas; the tills' SSE streams are held
    # by the API. The only way between them is the broker, so the API must relay (receive)
    # and the ingest replicas (which always relay) must connect as the ACL user allowed to
    # write POS topics (tests/test_deploy_broker.py proves the ACL carries it).
    from storelens.cloud.services import api_relays
    from storelens.cloud.settings import Settings

    services = compose["services"]
    (api_argv,) = _storelens_argv(services["api"])
    assert api_argv[:2] == ["cloud", "serve"] and "--ingest" not in api_argv
    (ingest_argv,) = _storelens_argv(services["ingest"])
    assert ingest_argv[:2] == ["cloud", "ingest"]
    names = ("STORELENS_PUSH_MQTT", "STORELENS_INGEST_IN_PROCESS")
    env = {k: str(v) for k, v in services["api"]["environment"].items() if k in names}
    assert api_relays(Settings.from_env(env, db_url="unused"))
    acl = (REPO / "deploy/mosquitto/acl").read_text()
    for name, access in (("api", "readwrite"), ("ingest", "write")):
        user = services[name]["environment"]["STORELENS_MQTT_USER"]
        block = acl.split(f"user {user}\n", 1)[1].split("\nuser ", 1)[0]
        assert f"topic {access} storelens/v1/+/pos/#" in block.splitlines(), user


def test_broker_config_matches_the_mounts(compose: dict[str, Any]) -> None:
    conf = (REPO / "deploy/mosquitto/mosquitto.conf").read_text()
    mounts = [v.split(":")[1] for v in compose["services"]["mosquitto"]["volumes"]]
    for key in ("password_file", "acl_file", "persistence_location", "include_dir"):
        path = re.search(rf"^{key} (\S+)", conf, re.M)
        assert path, key
        assert any(path.group(1).startswith(m) for m in mounts), (
            f"{key} {path.group(1)} not mounted"
        )
    assert re.search(r"^allow_anonymous false", conf, re.M)
    tls = (REPO / "deploy/mosquitto/tls.conf").read_text()
    assert "listener 8883" in tls and "/mosquitto/certs/" in tls


def test_edge_device_config_matches_provisioning(compose: dict[str, Any]) -> None:
    from storelens.cli.provision import device_username
    from storelens.edge.config import load_config

    cfg = load_config(REPO / "deploy/edge/device.yaml")
    script = re.sub(r"\s*\\\s*\n\s*", " ", "\n".join(compose["services"]["provision"]["command"]))
    assert f"provision device {cfg.store} {cfg.device}" in script
    assert '--db "$$STORELENS_DB_URL"' in script  # registered, or ingest dead-letters it
    assert cfg.mqtt.username == device_username(cfg.store, cfg.device)
    assert cfg.mqtt.password_file == Path(f"/run/storelens/secrets/{cfg.device}.mqtt-password")
    assert cfg.mqtt.host == "mosquitto"
    assert cfg.cameras[0].realtime and cfg.cameras[0].loop


def test_dockerfile_copies_what_exists() -> None:
    text = (REPO / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), f"Dockerfile copies missing {src}"
    assert 'pip install ".[edge,cloud]"' in text
    assert re.search(r"^USER storelens", text, re.M), "the image must not run as root"


def _exported_metric_names() -> set[str]:
    """Every series name the API and ingest workers can export (a histogram's and a
    counter's suffixes included)."""
    from prometheus_client import REGISTRY

    import storelens.cloud.api.metrics  # noqa: F401 - registers the API's metrics
    from storelens.cloud.ingest import device_metrics  # noqa: F401
    from storelens.cloud.ingest import worker as ingest  # noqa: F401

    names = set(device_metrics.METRIC_NAMES)
    for family in REGISTRY.collect():
        names.add(family.name)
        names |= {s.name for s in family.samples}
        if family.type == "histogram":
            names |= {f"{family.name}_bucket", f"{family.name}_sum", f"{family.name}_count"}
        if family.type == "counter":
            names.add(f"{family.name}_total")
    return names


def test_prometheus_scrapes_only_what_compose_runs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prom = services["prometheus"]
    assert any("deploy/prometheus/prometheus.yml" in v for v in prom["volumes"])
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    listening = {"api": {8000}, "ingest": set()}
    for argv in _storelens_argv(services["ingest"]):
        if "--metrics-port" in argv:
            listening["ingest"].add(int(argv[argv.index("--metrics-port") + 1]))
    _resolve(["cloud", "ingest"])  # the flag exists on the command:
    ingest_cmd = _resolve(["cloud", "ingest"])
    assert "metrics_port" in {p.name for p in ingest_cmd.params}
    targets = []
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets += static["targets"]
        for sd in job.get("dns_sd_configs", []):
            targets += [f"{name}:{sd['port']}" for name in sd["names"]]
    assert targets
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in listening, f"Prometheus scrapes {target}: not a service that serves metrics"
        assert int(port) in listening[host], f"{host} does not listen on {port}"


def test_grafana_dashboard_loads_and_reads_exported_metrics(compose: dict[str, Any]) -> None:
    import json

    dashboard = json.loads((REPO / "deploy/grafana/dashboards/storelens-fleet.json").read_text())
    grafana = compose["services"]["grafana"]
    assert any("deploy/grafana/dashboards" in v for v in grafana["volumes"])
    datasource = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    provider = yaml.safe_load(
        (REPO / "deploy/grafana/provisioning/dashboards/storelens.yml").read_text()
    )["providers"][0]
    assert any(v.endswith(":" + provider["options"]["path"] + ":ro") for v in grafana["volumes"])
    exported = _exported_metric_names()
    assert dashboard["uid"] and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\bstorelens_[a-z_]+", target["expr"]))
            assert used, f"{panel['title']}: no storelens metric in {target['expr']}"
            assert used <= exported, f"{panel['title']}: unknown {used - exported}"
    for var in dashboard["templating"]["list"]:
        assert set(re.findall(r"\bstorelens_[a-z_]+", var["query"])) <= exported
    # Fleet health is per device and camera, with no unbounded label.
    fleet = {m for p in dashboard["panels"] for t in p["targets"]
             for m in re.findall(r"\bstorelens_(?:device|camera)_[a-z_]+", t["expr"])}  # fmt: skip
    assert {"storelens_camera_fps", "storelens_camera_inference_ms",
            "storelens_device_outbox_depth", "storelens_device_lost_events",
            "storelens_device_status_age_seconds"} <= fleet  # fmt: skip
