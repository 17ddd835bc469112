"""An MQTT 3.1.1 broker inside this process (amqtt), for the demo on a machine without Mosquitto.

amqtt runs on its own asyncio loop in a background thread, listening on a free loopback port.
What it does and does not give the storelens clients, as checked against amqtt 0.12:

- QoS 1, retained messages (availability, the opt-out list on cmd topics), last wills, and
  persistent sessions (``clean_session=False``): QoS 1 messages for a disconnected subscriber
  are queued and delivered when it reconnects with the same client ID.
- No MQTT 5 and no shared subscriptions: one ingest worker, speaking 3.1.1.
- Messages delivered but not acknowledged when a subscriber drops are not redelivered, and a
  delivery not acknowledged within 5 s is dropped from the session. So a crash of the ingest
  worker can lose what it had in hand; with the demo's in-process worker, that is a crash of
  the whole demo. Production deployments use Mosquitto (deploy/).
- Sessions and retained messages live in memory: a restart starts empty.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

PROTOCOL = "3.1.1"


class LoopbackAuthPlugin(BaseAuthPlugin):
    """Accepts every client: the broker listens on loopback only, private to the demo.

    amqtt's own AnonymousAuthPlugin marks sessions anonymous, and amqtt then drops their
    persistent state (queued QoS 1 messages) on disconnect; this one does not.
    """

    async def authenticate(self, *, session: Session) -> bool:
        return True

    @dataclass
    class Config:
        """No options (amqtt builds every plugin's config from this dataclass)."""


class EmbeddedBroker:
    """``with EmbeddedBroker(workdir) as broker: ...``; same shape as `LocalBroker`."""

    protocol = PROTOCOL
    name = "amqtt (embedded, MQTT 3.1.1)"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        from storelens.tools.brokers.local import free_port

        self.workdir = workdir
        self.port = port or free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Broker | None = None
        self._log_handler: logging.Handler | None = None
        self._log_before = (logging.NOTSET, True)

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def _config(self) -> dict[str, object]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # Only authentication: the default set also logs every packet and publishes $SYS.
            "plugins": {f"{__name__}.LoopbackAuthPlugin": {}},
        }

    def _open_log(self) -> None:
        """amqtt's log (and errors of its background tasks) go to ``amqtt.log``, as
        Mosquitto's go to ``mosquitto.log``, instead of the demo's terminal."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.workdir / "amqtt.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger = logging.getLogger("amqtt")
        self._log_before = (logger.level, logger.propagate)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        self._log_handler = handler

    def _close_log(self) -> None:
        if self._log_handler is not None:
            logger = logging.getLogger("amqtt")
            logger.removeHandler(self._log_handler)
            logger.setLevel(self._log_before[0])
            logger.propagate = self._log_before[1]
            self._log_handler.close()
            self._log_handler = None

    def start(self, timeout: float = 10.0) -> None:
        from storelens.tools.brokers.local import BrokerUnavailable

        self._open_log()
        started = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        broker_log = logging.getLogger("amqtt.embedded")
        # Background tasks that fail (a client gone mid-delivery) are logged, not printed.
        loop.set_exception_handler(
            lambda _loop, ctx: broker_log.warning("%s", ctx.get("exception") or ctx["message"])
        )

        async def serve() -> None:
            self._broker = Broker(self._config())
            await self._broker.start()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:  # reported to the caller of start()
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._thread.start()
        # Broker.start() returns once its listener is bound, so no need to probe the port.
        if not started.wait(timeout) or failure:
            self.stop()
            reason = failure[0] if failure else f"not started after {timeout:.0f} s"
            raise BrokerUnavailable(f"amqtt did not start on port {self.port}: {reason}")

    def stop(self) -> None:
        loop, thread, broker = self._loop, self._thread, self._broker
        if loop is not None and thread is not None and thread.is_alive():
            if broker is not None:
                done = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
                try:
                    done.result(15)
                except Exception as exc:  # stopping anyway; the log keeps the reason
                    logging.getLogger("amqtt.embedded").warning("shutdown: %r", exc)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(15)
        self._loop = self._thread = self._broker = None
        self._close_log()

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
