"""The composition root of a cloud process: what its parts share, built once by whoever
starts the process (`create_app` for the API, `IngestWorker` for a standalone worker, the
demo through both) and handed down: to the API's routes through `Depends(get_services)`, to
the ingest worker through its constructor.

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
"""

from __future__ import annotations

from dataclasses import dataclass

from storelens.cloud import push
from storelens.cloud.db import Database
from storelens.cloud.settings import Settings


@dataclass
class Services:
    settings: Settings
    db: Database
    push: push.PushHub
    relaying: bool = False

    @classmethod
    def for_api(cls, settings: Settings, db: Database) -> Services:
        relay = settings.push_mqtt
        if relay is None:
            relay = not settings.ingest_in_process
        return cls(settings, db, _relay(settings, receive=True) if relay else push.hub(),
                   relaying=relay)  # fmt: skip

    @classmethod
    def for_ingest(cls, settings: Settings, db: Database) -> Services:
        return cls(settings, db, _relay(settings, receive=False), relaying=True)

    def close(self) -> None:
        if self.relaying:
            self.push.close()


def _relay(settings: Settings, *, receive: bool) -> push.PushHub:
    """A hub linked to the broker, installed as the process's hub (what `push.publish`, the
    call the domains make, delivers through)."""
    hub = push.PushHub()
    # Random client ID: every process needs its own session on the broker.
    hub.connect_mqtt(
        settings.mqtt_host,
        settings.mqtt_port,
        username=settings.mqtt_user,
        password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None,
        use_tls=settings.mqtt_tls,
        tls_ca=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None,
        receive=receive,
    )
    return push.install(hub)
