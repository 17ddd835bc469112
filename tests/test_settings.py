"""Cloud settings from the environment (pydantic-settings): the same variable names and
defaults, nothing read by plain construction, and a bad value named by its variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from storelens.cloud.settings import Settings, SettingsError


def test_variables_set_fields_and_empty_means_unset() -> None:
    s = Settings.from_env({"STORELENS_MQTT_PORT": "1884", "STORELENS_MQTT_TLS": "true",
                           "STORELENS_DB_URL": "", "HOME": "/root"})  # fmt: skip
    assert (s.mqtt_port, s.mqtt_tls) == (1884, True)
    assert s.db_url == Settings().db_url == "sqlite:///var/storelens.db"  # the default
    assert Settings.from_env({"STORELENS_MQTT_PORT": "1884"}, mqtt_port=1999).mqtt_port == 1999


def test_plain_construction_reads_no_variable(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("STORELENS_MQTT_HOST", "broker.example")
    assert Settings().mqtt_host == "127.0.0.1"
    assert Settings.from_env().mqtt_host == "broker.example"


def test_a_bad_value_names_its_variable(monkeypatch) -> None:  # noqa: ANN001
    with pytest.raises(SettingsError, match=r"STORELENS_MQTT_PORT \(mqtt_port\).*65535.*'70000'"):
        Settings.from_env({"STORELENS_MQTT_PORT": "70000"})
    with pytest.raises(SettingsError, match=r"^invalid settings: mqtt_port: "):  # an option
        Settings.from_env({}, mqtt_port=0)


def test_the_cli_reports_a_bad_variable_without_a_traceback(tmp_path) -> None:  # noqa: ANN001
    env = {"STORELENS_MQTT_PORT": "not-a-port", "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-c", "from storelens.cli import app; app()", "cloud", "rollups",
         "rebuild", "--db", f"sqlite:///{tmp_path / 'x.db'}"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "error: invalid settings: STORELENS_MQTT_PORT (mqtt_port)" in run.stderr
    assert "Traceback" not in run.stderr
