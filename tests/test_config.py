"""Device configs: the committed example and schema, `edge check-config`, the systemd unit."""

from __future__ import annotations

import configparser
import json
import shlex
from pathlib import Path

import yaml
from typer.testing import CliRunner

from storelens.cli import app
from storelens.edge.config import load_config, parse_config
from storelens.edge.config_check import SCHEMA_FILE, missing_files, render_schema

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "firmware_config" / "store-box.example.yaml"
UNIT = REPO / "firmware_config" / "storelens-edge.service"
runner = CliRunner()
ZONE2 = {"name": "z", "points": [[0, 0], [1, 1]]}  # two points: not a polygon


def test_committed_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text() == render_schema(), (
        "firmware_config/device.schema.json is stale: run `storelens edge config-schema`"
    )
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["additionalProperties"] is False
    assert "cameras" in schema["required"]


def test_example_config_is_valid_and_has_no_inline_secrets() -> None:
    cfg = load_config(EXAMPLE)
    assert len(cfg.cameras) == 2 and {r.type for r in cfg.readers} == {"serial", "tcp"}
    assert cfg.privacy is not None and cfg.privacy.key_file is not None
    assert cfg.mqtt.password_file is not None and cfg.mqtt.tls is not None
    raw = yaml.safe_load(EXAMPLE.read_text())
    assert "password" not in raw["mqtt"] and "key" not in raw["privacy"]
    # the files it names exist on a provisioned box, not here: reported with their paths
    assert {p.split(":")[0] for p in missing_files(cfg)} == {
        "mqtt.password_file",
        "mqtt.tls.ca_file",
        "privacy.key_file",
    }


def test_check_config_prints_every_problem_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "store": "s",
                "device": "d",
                "cameras": [
                    {
                        "id": "a",
                        "source": "0",
                        "zones": [{"name": "z", "points": [[0, 0], [1, 1]]}],
                    },
                    {"id": "b", "source": "0", "bogus": 1},
                ],
                "readers": [{"type": "tcp", "id": "r", "port": 70000}],
            }
        )
    )
    result = runner.invoke(app, ["edge", "check-config", str(bad)])
    assert result.exit_code == 1
    out = result.output
    assert "cameras[0].zones[0].points: needs 3 or more points" in out
    assert "cameras[1].bogus: unknown key" in out
    assert "readers[0].port:" in out


def test_check_config_ok_and_missing_files(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    cfg = {
        "store": "s",
        "device": "d",
        "cameras": [{"id": "a", "source": "rtsp://10.0.0.1/s"}],
        "readers": [{"type": "stdin", "id": "r"}],
        "privacy": {"key_id": "k1", "key_file": str(key)},
    }
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["edge", "check-config", str(path)])
    assert result.exit_code == 1 and f"privacy.key_file: file not found ({key})" in result.output
    key.write_text("00" * 32)
    result = runner.invoke(app, ["edge", "check-config", str(path)])
    assert result.exit_code == 0 and "OK" in result.output
    assert runner.invoke(app, ["edge", "check-config", str(tmp_path / "nope.yaml")]).exit_code == 1


def test_readers_need_a_key_and_placement_rules() -> None:
    base = {"store": "s", "device": "d", "cameras": [{"id": "a", "source": "0"}]}
    for readers, message in (
        ([{"type": "tcp", "id": "r", "port": 1}], "privacy key"),
        ([{"type": "tcp", "id": "r", "port": 1, "camera": "a"}], "camera and zone go together"),
        ([{"type": "tcp", "id": "r", "port": 1, "position": [1, 1]}], "position needs"),
    ):
        try:
            parse_config({**base, "readers": readers})
        except ValueError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"accepted {readers}")


def test_systemd_unit_runs_the_agent_with_options_that_exist() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(UNIT.read_text())
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[1:4] == ["edge", "run", "--config"]
    help_text = runner.invoke(app, ["edge", "run", "--help"]).output
    for opt in (a for a in argv if a.startswith("--")):
        assert opt in help_text
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    assert unit["Service"]["Restart"] == "always"


def test_run_fails_clearly_on_missing_secrets(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("STORELENS_TEST_NO_SUCH_VAR", raising=False)
    cfg = {
        "store": "s",
        "device": "d",
        "mqtt": {"password_env": "STORELENS_TEST_NO_SUCH_VAR", "username": "d"},
        "cameras": [{"id": "a", "source": "rtsp://10.0.0.1/s"}],
        "outbox": {"path": str(tmp_path / "o.db")},
    }
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["edge", "run", "--config", str(path)])
    assert result.exit_code == 2
    assert "STORELENS_TEST_NO_SUCH_VAR is not set" in result.output
    cfg["mqtt"] = {}
    cfg["readers"] = [{"type": "stdin", "id": "r"}]
    cfg["privacy"] = {"key_id": "k1", "key_file": str(tmp_path / "none.key")}
    path.write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["edge", "run", "--config", str(path)])
    assert (
        result.exit_code == 2
        and "privacy key" in result.output
        and "does not exist" in result.output
    )
