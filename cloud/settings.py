"""Cloud service settings, read from ``STORELENS_*`` environment variables (pydantic-settings).

One object carries everything the API, the ingest workers and the CLI need, so a deployment is
configured the same way whichever process it starts. `Settings.from_env` reads the environment
(or a given mapping); `Settings(...)` takes only what it is given, so code and tests that build
one never pick up a stray variable. A bad value is a `SettingsError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from storelens.contract import topics
from storelens.pseudonym import PseudonymKey, load_key

ENV_PREFIX = "STORELENS_"


class SettingsError(ValueError):
    """Settings that do not validate, each bad one named as the variable that sets it."""


class _Environment(EnvSettingsSource):
    """The ``STORELENS_*`` variables of a given mapping (``os.environ`` by default)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Variable names are case-insensitive (as os.environ is on Windows); empty = unset.
        return {k.lower(): v for k, v in self._environ.items() if v != ""}


class Settings(BaseSettings):
    """Every field maps to ``STORELENS_<FIELD>`` in upper case (see `from_env`)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, env_ignore_empty=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the environment only through `from_env`

    db_url: str = Field(
        "sqlite:///var/storelens.db", description="sqlite:///path or postgresql://..."
    )
    mqtt_host: str = Field("127.0.0.1", description="Broker host for ingest and commands.")
    mqtt_port: int = Field(1883, ge=1, le=65535)
    mqtt_user: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls: bool = Field(False, description="Connect to the broker over TLS.")
    mqtt_ca_file: Path | None = Field(None, description="CA bundle for the broker's certificate.")
    mqtt_client_id: str = Field(
        "", description="Client ID prefix; each process adds its host, PID and a random tail."
    )
    mqtt_protocol: Literal["5", "3.1.1"] = Field(
        "5",
        description="MQTT version of the ingest worker. 3.1.1 is for brokers without MQTT 5 "
        "(the demo's embedded amqtt): no shared subscriptions, so run ONE ingest worker.",
    )
    share_group: str = Field(topics.DEFAULT_SHARE_GROUP, pattern=r"^[A-Za-z0-9_-]+$")
    mqtt_session_expiry_s: int = Field(
        0,
        ge=0,
        description="0 (default): clean sessions; a dead worker's share of the subscription "
        "moves to the others at once and devices resend what it held (they wait for the "
        "cloud's receipts). >0: a persistent session kept that long for a stopped worker (its "
        "unacknowledged and queued messages; Mosquitto keeps assigning it a share of new "
        "ones), for devices that do not wait for receipts.",
    )
    ingest_in_process: bool = Field(False, description="Run an ingest worker inside the API.")
    ingest_batch_messages: int = Field(50, ge=1, le=10_000, description="Messages per commit.")
    ingest_batch_seconds: float = Field(0.05, gt=0, le=10, description="Max wait to fill a batch.")
    ingest_writer_process: bool = Field(
        True,
        description="On SQLite, insert and commit in a child process, so parsing and writing "
        "run on two cores.",
    )
    events_retention_days: int = Field(
        0,
        ge=0,
        le=36_500,
        description="Days of raw in-store events kept (whole UTC days; PostgreSQL drops day "
        "partitions, SQLite deletes in batches); 0 = forever.",
    )
    rollups_retention_days: int = Field(
        0,
        ge=0,
        le=36_500,
        description="Days of analytics rollups kept; 0 = forever. At least the events' days.",
    )
    rollup_settle_s: float = Field(
        15.0,
        ge=0,
        le=3600,
        description="How often an ingest worker recomputes the analytics rollups of hours "
        "that received events (once quiet); 0 = never (another worker does).",
    )
    scored_events_retention_days: int = Field(
        14,
        ge=0,
        le=3650,
        description="Days an ingest worker remembers which events engagement scoring has "
        "counted (so a device's resend scores nothing twice); 0 = forever. Keep it longer "
        "than the devices' outbox age (7 days by default): older resends would score again.",
    )
    propensity_refresh_s: float = Field(
        86_400.0,
        ge=0,
        le=30 * 86_400,
        description="Retrain purchase propensity beside the API this often (seconds; the "
        "first check a few minutes after start; replicas train once per interval); 0 = off "
        "(cron `storelens cloud propensity-refresh` instead).",
    )
    pseudonym_key_id: str = Field("k1", description="ID of the member-card HMAC key.")
    pseudonym_key_file: Path | None = Field(None, description="File with the key (hex or raw).")
    pseudonym_key_env: str | None = Field(
        "STORELENS_PSEUDONYM_KEY", description="Environment variable with the key in hex."
    )
    token_ttl_s: float = Field(12 * 3600, gt=0, description="Lifetime of ops login tokens.")
    push_mqtt: bool | None = Field(
        None,
        description="Relay POS pushes through the broker. Unset: whenever ingest runs in another "
        "process (its member alerts arrive that way); true also for API replicas and native POS "
        "apps; false keeps every push in this process (all of them are raised here).",
    )
    push_token_check_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description="How often an open POS stream re-checks its token "
        "(a revoked or expired token closes the stream within this time).",
    )
    push_stream_max_s: float = Field(
        1800.0,
        gt=0,
        le=86400,
        description="Longest life of one POS stream; the client "
        "reconnects (with Last-Event-ID) after it, re-authenticating.",
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated proxy addresses whose X-Forwarded-For `cloud serve` "
        "believes; empty = none (the peer address is the client).",
    )
    fulfillment_rules: Path | None = Field(
        None, description="Routing rules file (YAML/JSON); default the built-in rules."
    )
    fulfillment_sweep_s: float = Field(
        30, ge=0, le=3600, description="Deadline sweeper interval in the API; 0 = off."
    )
    handoff_interval_s: float = Field(
        5, ge=0, le=3600, description="Hand-off webhook delivery interval in the API; 0 = off."
    )
    sale_link_just_ended_s: float = Field(
        900.0,
        ge=0,
        le=6 * 3600,
        description="A member's POS sale joins their visit in that store that is open, or "
        "ended at most this long before the sale (cloud/commerce/visit_sales.py).",
    )
    sale_link_skew_s: float = Field(
        30.0,
        ge=0,
        le=600,
        description="Clock difference allowed between a POS and the cameras when a sale is "
        "matched to a visit (an anonymous sale: to the one visit at the till then).",
    )
    sale_link_settle_s: float = Field(
        900.0,
        ge=0,
        le=86_400,
        description="A sale whose visit is not known yet stays pending this long (events "
        "arrive late through store-and-forward); then it is decided, unmatched if need be. "
        "At least sale_link_skew_s.",
    )

    @model_validator(mode="after")
    def _rollups_outlive_events(self) -> Settings:
        days, events = self.rollups_retention_days, self.events_retention_days
        if days and (not events or days < events):
            raise ValueError(
                "rollups_retention_days must be 0 or at least events_retention_days (> 0): "
                "the dashboard reads rollups, and a rebuild needs the raw events"
            )
        return self

    @model_validator(mode="after")
    def _scheduled_work_is_not_a_busy_loop(self) -> Settings:
        if 0 < self.propensity_refresh_s < 60:
            raise ValueError("propensity_refresh_s must be 0 (off) or at least 60 seconds")
        return self

    @model_validator(mode="after")
    def _sale_link_settles_after_skew(self) -> Settings:
        if self.sale_link_settle_s < self.sale_link_skew_s:
            raise ValueError(
                "sale_link_settle_s must be at least sale_link_skew_s: an anonymous sale is "
                "decided only once the till's events can have arrived"
            )
        return self

    @model_validator(mode="after")
    def _tls_needs_no_plain_port(self) -> Settings:
        if self.mqtt_ca_file is not None and not self.mqtt_tls:
            raise ValueError("mqtt_ca_file is set but mqtt_tls is false")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """``STORELENS_<FIELD>`` variables of ``environ`` (default the process environment);
        ``overrides`` that are not None win (command-line options)."""
        values: dict[str, Any] = _Environment(cls, os.environ if environ is None else environ)()
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**{**values, **given})
        except ValidationError as exc:
            raise SettingsError(_describe(exc, from_env=set(values) - set(given))) from None

    @cached_property
    def pseudonym_key(self) -> PseudonymKey:
        """The member-card key; raises PseudonymError with a clear message when missing."""
        if self.pseudonym_key_file is not None:
            return load_key(self.pseudonym_key_id, path=self.pseudonym_key_file)
        return load_key(
            self.pseudonym_key_id, env=self.pseudonym_key_env or "STORELENS_PSEUDONYM_KEY"
        )


def _describe(exc: ValidationError, *, from_env: set[str]) -> str:
    """One line per problem, naming the variable for a value that came from the environment."""
    lines = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        where = f"{ENV_PREFIX}{field.upper()} ({field})" if field in from_env else field
        got = f" (got {err['input']!r})" if field and not isinstance(err["input"], dict) else ""
        lines.append(f"{where}: {err['msg']}{got}" if where else err["msg"])
    return "invalid settings: " + "; ".join(lines)
