"""The composition root of a cloud process: what its parts share, built once by whoever
starts the process (`create_app` for the API, `IngestWorker` for a standalone worker,
`storelens cloud recommend build` for the recommendation builder, the demo through all) and
handed down: to the API's routes through `Depends(get_services)`, to the ingest worker
through its constructor.

The push hub is the part that decides where a POS alert goes. Pushes are raised wherever the
work happens (scoring inside ingest, fulfillment and checkout inside the API) but the POS
streams are held by the API, so:

- an ingest worker always relays through the broker it ingests from (publish only): on its
  own it has no POS client at all, and an alert it kept locally reached nobody
  (tests/test_push_across_processes.py);
- the API relays (publishes and receives) whenever pushes can come from another process:
  its ingest runs elsewhere (`cloud serve` without `--ingest`, as in docker-compose), or
  `push_mqtt` asks for it (API replicas, native POS apps on the broker). An API that runs the
  only ingest worker in-process keeps pushes in the process, and `push_mqtt=false` says so
  for a process that raises every push itself.

Domains receive the database handle only; the services serving it are bound to that handle
(`Services` binds itself to its database until closed), so a domain reaches the hub, the offer
policy and the routing rules of its process through `announce`, `offer_policy` and `routing`
here, with no process global: two apps in one process (tests, the demo) keep their own. The
event hooks (`hooks`, collected from every domain's ``HOOKS`` by `schema.declared_hooks`) are
handed explicitly to what runs them (the ingest worker, the API's routes through
`deps.get_hooks`); a service function called without them takes `hooks_for` its database. A
database no serving process holds (a CLI command, a script) has no POS to push to, and uses
the default offer policy, every declared hook and the routing rules named by
``STORELENS_FULFILLMENT_RULES``.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from storelens.cloud import push
from storelens.cloud.db import Database
from storelens.cloud.hooks import Hooks
from storelens.cloud.settings import Settings

if TYPE_CHECKING:
    from storelens.cloud.fulfillment.rules import RoutingConfig
    from storelens.cloud.personalization.offers import ImpressionBuffer, OfferPolicy
    from storelens.cloud.personalization.recommend import RecommendationService

RULES_ENV = "STORELENS_FULFILLMENT_RULES"


@dataclass(eq=False)
class Services:
    settings: Settings
    db: Database
    push: push.PushHub
    relaying: bool = False
    # The event hooks every domain declares (`schema.declared_hooks`), run by the ingest
    # worker and the service functions this process calls.
    hooks: Hooks = field(default_factory=lambda: _declared_hooks())
    offer_policy: OfferPolicy = field(default_factory=lambda: _default_policy())
    recommender: RecommendationService | None = None
    # "load": serve the newest model a builder stored (the API); "build": build and store
    # it (the builder process, `storelens cloud recommend build`).
    recommend_role: Literal["build", "load"] = "load"
    _routing: RoutingConfig | None = field(default=None, repr=False)
    _impressions: ImpressionBuffer | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        # The newest services built around a database serve it until closed (an in-process
        # ingest worker is handed the API's, so a process normally has one per database).
        self.db.served_by.append(self)

    @classmethod
    def for_api(cls, settings: Settings, db: Database) -> Services:
        relay = api_relays(settings)
        hub = _relay(settings, receive=True) if relay else push.PushHub()
        return cls(settings, db, hub, relaying=relay)

    @classmethod
    def for_builder(cls, settings: Settings, db: Database) -> Services:
        """The recommendation builder's: builds models and stores them; it pushes nothing."""
        return cls(settings, db, push.PushHub(), recommend_role="build")

    @classmethod
    def for_command(cls, settings: Settings, db: Database) -> Services:
        """A one-off command that runs domain code (`storelens cloud dead-letters replay`):
        every declared hook, and a push hub of its own that reaches no POS: what a command
        replays happened earlier, and an alert about it would be news of a visit long over."""
        return cls(settings, db, push.PushHub())

    @classmethod
    def for_ingest(cls, settings: Settings, db: Database) -> Services:
        return cls(settings, db, _relay(settings, receive=False), relaying=True)

    @property
    def routing(self) -> RoutingConfig:
        """The fulfillment routing rules (`Settings.fulfillment_rules`), read on first use: the
        API reads them at start, so a broken file stops it there, not at the first order."""
        with self._lock:
            if self._routing is None:
                from storelens.cloud.fulfillment.rules import load_config

                self._routing = load_config(self.settings.fulfillment_rules)
            return self._routing

    @routing.setter
    def routing(self, config: RoutingConfig) -> None:
        with self._lock:
            self._routing = config

    def recommendations(self, *, start: bool = True) -> RecommendationService:
        """The recommendation service: the one handed in, else made for this process's
        `recommend_role` and (``start``) started on first use: the API's loads the newest
        stored model and polls for newer ones, the builder's builds and stores on schedule
        (a process that never recommends, like an ingest worker, never loads a model)."""
        with self._lock:
            if self.recommender is None:
                from storelens.cloud.personalization.recommend import RecommendationService

                building = self.recommend_role == "build"
                self.recommender = RecommendationService(
                    self.db, role=self.recommend_role, store=building
                )
                if start:
                    self.recommender.start()
            return self.recommender

    def impressions(self) -> ImpressionBuffer:
        """The write-behind log of recommendations shown at the POS, made on first use (only
        the API shows any) and flushed by `close`. Read without the lock once made: every
        recommendation served asks for it."""
        buffer = self._impressions
        if buffer is None:
            with self._lock:
                if self._impressions is None:
                    from storelens.cloud.personalization.offers import ImpressionBuffer

                    self._impressions = ImpressionBuffer(self.db)
                buffer = self._impressions
        return buffer

    def close(self) -> None:
        if self._impressions is not None:
            self._impressions.stop()
        if self.recommender is not None:
            self.recommender.stop()
        if self.relaying:
            self.push.close()
        if self in self.db.served_by:
            self.db.served_by.remove(self)


def api_relays(settings: Settings) -> bool:
    """Whether an API links its push hub to the broker: whenever pushes can come from another
    process (its ingest runs elsewhere), unless ``push_mqtt`` says otherwise."""
    if settings.push_mqtt is not None:
        return settings.push_mqtt
    return not settings.ingest_in_process


def served_by(db: Database) -> Services | None:
    """The services of the process serving ``db`` (None for a CLI command or a script)."""
    stack = getattr(db, "served_by", None)
    return stack[-1] if stack else None


def announce(db: Database, store: str, kind: str, payload: dict[str, Any]) -> None:
    """Push to ``store``'s POS devices once the surrounding transaction commits (at once
    outside one; dropped if it rolls back), through the hub of the process serving ``db``;
    nothing when no process serves it (no POS listens to a CLI command)."""
    services = served_by(db)
    if services is not None:
        hub = services.push
        db.after_commit(lambda: hub.publish(store, kind, payload))


def hooks_for(db: Database) -> Hooks:
    """The hooks of the process serving ``db``; every declared hook for a database no process
    serves (a CLI command, an importer, a seed script runs them all, as the API would)."""
    services = served_by(db)
    return services.hooks if services is not None else _declared_hooks()


def offer_policy(db: Database) -> OfferPolicy:
    services = served_by(db)
    return services.offer_policy if services is not None else _default_policy()


def routing(db: Database) -> RoutingConfig:
    services = served_by(db)
    if services is not None:
        return services.routing
    return _rules_from_env(os.environ.get(RULES_ENV) or None)


@functools.lru_cache(maxsize=4)
def _rules_from_env(source: str | None) -> RoutingConfig:
    from storelens.cloud.fulfillment.rules import load_config

    return load_config(source)


@functools.lru_cache(maxsize=1)
def _declared_hooks() -> Hooks:
    # Derived from the components' static declarations (the same in every process), and
    # immutable: a cache, not a registry.
    from storelens.cloud.db.schema import declared_hooks

    return declared_hooks()


def _default_policy() -> OfferPolicy:
    from storelens.cloud.personalization.offers import OfferPolicy

    return OfferPolicy()


def _relay(settings: Settings, *, receive: bool) -> push.PushHub:
    """A hub linked to the broker (a random client ID: every process needs its own session)."""
    hub = push.PushHub()
    hub.connect_mqtt(
        settings.mqtt_host,
        settings.mqtt_port,
        username=settings.mqtt_user,
        password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None,
        use_tls=settings.mqtt_tls,
        tls_ca=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
        receive=receive,
    )
    return hub
