"""MQTT publishing of the outbox: batched envelopes, QoS 1, deleted only once confirmed.

- Confirmation (``outbox.confirm``): ``cloud`` (default) deletes an envelope's events when
  the cloud's `Ack` receipt on the device's ack topic names its ``batch_id``, i.e. once they
  are durably stored. The broker's PUBACK alone is not enough: Mosquitto keeps no shared
  subscriptions across a restart and drops what it held for an ingest worker that died, so
  an envelope the broker acknowledged can still vanish. An envelope without a receipt after
  ``ack_timeout_s`` is sent again in a new envelope (same event IDs, stored once), with the
  timeout doubling, up to 20x, while no receipt at all arrives. ``broker`` deletes on PUBACK,
  for a consumer that sends no receipts.
- Availability: ``online`` retained on connect, ``offline`` as the retained last will (and
  published explicitly on a clean stop, when the broker does not send the will).
- Reconnect: paho's loop thread retries with exponential back-off between
  ``reconnect_min_s`` and ``reconnect_max_s``, also when the broker is down at start-up.
- Batching: a kind's pending events leave as one envelope every ``batch_interval_s`` or as
  soon as a full batch of ``batch_max_events`` is waiting; at most ``inflight_max`` envelopes
  are unconfirmed at a time, so a backlog drains oldest first at the cloud's pace.
- Commands from the cloud (the retained opt-out list) arrive on the device's cmd topic.

PUBACKs and receipts arrive on paho's network thread; they are queued and applied on the
sender thread after the publish that produced them was recorded, so an early confirmation
cannot overtake its own bookkeeping.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from pydantic import TypeAdapter, ValidationError

from storelens.contract import topics
from storelens.contract.commands import Ack, Command
from storelens.contract.envelope import MAX_PAYLOAD_BYTES, Envelope, encode_envelope
from storelens.edge.config import DeviceConfig, MqttConfig
from storelens.edge.outbox import Outbox, OutboxRow

log = logging.getLogger(__name__)
KINDS = ("status", "events")  # status first: it is small and says the device is alive
ENVELOPE_HEADROOM = 1024  # bytes kept free for the envelope around the events
_COMMANDS: TypeAdapter[Command] = TypeAdapter(Command)
MAX_BACKOFF = 20.0  # the receipt timeout grows to at most this multiple while none arrive


@dataclass
class _Sent:
    """An envelope sent and not yet confirmed."""

    kind: str
    at: float  # monotonic; reset on reconnect, when paho sends it again


class PublisherError(ValueError):
    pass


def mqtt_password(cfg: MqttConfig) -> str | None:
    """The broker password from its file or environment variable (never from the YAML)."""
    if cfg.password_file is not None:
        try:
            return cfg.password_file.read_text().strip()
        except OSError as exc:
            raise PublisherError(f"mqtt.password_file: cannot read ({exc.strerror})") from None
    if cfg.password_env is not None:
        value = os.environ.get(cfg.password_env)
        if value is None:
            raise PublisherError(f"mqtt.password_env: variable {cfg.password_env} is not set")
        return value
    return None


class Publisher:
    """Moves outbox rows to the broker; see the module docstring."""

    def __init__(
        self,
        config: DeviceConfig,
        outbox: Outbox,
        on_command: Callable[[Command], None] | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.on_command = on_command
        self.store, self.device = config.store, config.device
        self._topics = {
            "events": topics.events(self.store, self.device),
            "status": topics.status(self.store, self.device),
        }
        self._availability = topics.availability(self.store, self.device)
        self._cmd = topics.cmd(self.store, self.device)
        self._ack_topic = topics.ack(self.store, self.device)
        self._by_receipt = config.outbox.confirm == "cloud"
        # ("puback", mid) / ("receipt", [batch ids]) / ("connected", None), from paho's thread
        self._events: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._unconfirmed: dict[str, _Sent] = {}
        self._mids: dict[int, str] = {}  # MQTT message id -> batch id, until its PUBACK
        self._backoff = 1.0
        self._last_sent = dict.fromkeys(KINDS, 0.0)
        self._thread: threading.Thread | None = None
        self.client = self._make_client(config.mqtt)
        self.sent_messages = 0
        self.resent_envelopes = 0
        self.receipts = 0
        self.connects = 0

    def _make_client(self, cfg: MqttConfig) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"storelens-{self.store}-{self.device}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        if cfg.username is not None:
            client.username_pw_set(cfg.username, mqtt_password(cfg))
        if cfg.tls is not None:
            client.tls_set(
                ca_certs=str(cfg.tls.ca_file),
                certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
            )
            client.tls_insecure_set(cfg.tls.insecure_skip_verify)
        client.will_set(self._availability, topics.OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        client.max_inflight_messages_set(self.config.outbox.inflight_max + 2)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.config.mqtt
        self.client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def flush_now(self) -> None:
        """Send what is pending without waiting for the batch interval."""
        self._last_sent = dict.fromkeys(KINDS, 0.0)
        self._wake.set()

    def drain(self, timeout: float) -> bool:
        """Try to get every stored event acknowledged; True when the outbox is empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.outbox.depth == 0:
                return True
            self.flush_now()
            time.sleep(0.05)
        return self.outbox.depth == 0

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.connected:
            info = self.client.publish(self._availability, topics.OFFLINE, qos=1, retain=True)
            # If the broker goes away at this moment, the will says offline anyway.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho callbacks (network thread; never let an exception escape into paho) ---------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        self.connects += 1
        log.info("connected to %s:%s", self.config.mqtt.host, self.config.mqtt.port)
        client.publish(self._availability, topics.ONLINE, qos=1, retain=True)
        client.subscribe([(self._cmd, 1), (self._ack_topic, 1)])
        self._connected.set()
        self._events.put(("connected", None))
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._stopping.is_set():
            log.info("disconnected from the broker")
        elif self._connected.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)
        self._connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._events.put(("puback", mid))
        self._wake.set()

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        if message.topic not in (self._cmd, self._ack_topic):
            return
        try:
            command = _COMMANDS.validate_json(message.payload)
        except ValidationError as exc:
            log.warning("ignoring malformed command on %s: %s", message.topic, exc.errors()[:1])
            return
        if isinstance(command, Ack):
            self._events.put(("receipt", [str(b) for b in command.batch_ids]))
            self._wake.set()
            return
        if self.on_command is None:
            return
        try:
            self.on_command(command)
        except Exception:
            log.exception("command handler failed")

    # -- sender thread -------------------------------------------------------------------
    def _run(self) -> None:
        interval = self.config.outbox.batch_interval_s
        while not self._stopping.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            try:
                self._apply_events()
                if self.connected:
                    self._resend_overdue()
                    self._send_due()
            except Exception:  # a disk or broker hiccup must not end publishing for good
                log.exception("publishing failed; retrying")
                self._stopping.wait(interval)
        self._apply_events()

    def _apply_events(self) -> None:
        while True:
            try:
                kind, value = self._events.get_nowait()
            except queue.Empty:
                return
            if kind == "puback":
                self._on_puback(value)  # type: ignore[arg-type]
            elif kind == "receipt":
                self._on_receipt(value)  # type: ignore[arg-type]
            elif kind == "connected":
                # paho sends unacknowledged envelopes again: give each a fresh timeout.
                now = time.monotonic()
                for sent in self._unconfirmed.values():
                    sent.at = now

    def _on_puback(self, mid: int) -> None:
        batch = self._mids.pop(mid, None)
        if self._by_receipt:
            return  # the broker has it; only the cloud's receipt confirms it
        if batch is None or batch not in self._unconfirmed:
            return  # an envelope already confirmed, or requeued and sent again
        del self._unconfirmed[batch]
        self.outbox.confirm([batch])

    def _on_receipt(self, batches: list[str]) -> None:
        self.receipts += 1
        self._backoff = 1.0
        for batch in batches:
            self._unconfirmed.pop(batch, None)
        self.outbox.confirm(batches)

    def _resend_overdue(self) -> None:
        """Envelopes without a receipt in time go back to pending, to leave again."""
        if not self._by_receipt or not self._unconfirmed:
            return
        timeout = self.config.outbox.ack_timeout_s * self._backoff
        cutoff = time.monotonic() - timeout
        overdue = [b for b, sent in self._unconfirmed.items() if sent.at < cutoff]
        if not overdue:
            return
        for batch in overdue:
            del self._unconfirmed[batch]
        rows = self.outbox.requeue(overdue)
        self.resent_envelopes += len(overdue)
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        log.warning(
            "no receipt for %d envelope(s) (%d events) within %.0f s; sending them again",
            len(overdue),
            rows,
            timeout,
        )

    def _send_due(self) -> None:
        cfg = self.config.outbox
        now = time.monotonic()
        for kind in KINDS:
            while len(self._unconfirmed) < cfg.inflight_max and self.connected:
                rows = self.outbox.take(
                    kind, cfg.batch_max_events, MAX_PAYLOAD_BYTES - ENVELOPE_HEADROOM
                )
                if not rows:
                    break
                full = len(rows) >= cfg.batch_max_events
                if not full and now - self._last_sent[kind] < cfg.batch_interval_s:
                    break
                self._publish(kind, rows)
                self._last_sent[kind] = now

    def _publish(self, kind: str, rows: list[OutboxRow]) -> None:
        batch = uuid.uuid4()
        payload = self.envelope_bytes(rows, batch)
        info = self.client.publish(self._topics[kind], payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise PublisherError(f"publish refused: {mqtt.error_string(info.rc)}")
        # NO_CONN: paho queued it and sends it after reconnecting, so it is in flight too.
        self.outbox.mark_sent([r.seq for r in rows], str(batch))
        self._unconfirmed[str(batch)] = _Sent(kind, time.monotonic())
        self._mids[info.mid] = str(batch)
        self.sent_messages += 1

    def envelope_bytes(self, rows: list[OutboxRow], batch: uuid.UUID | None = None) -> bytes:
        """An envelope around already-encoded events.

        The events were validated and encoded by the contract models when they were stored;
        the header comes from the contract's own encoder, and the stored event bodies are
        spliced in rather than parsed and re-encoded on every send (CPU on a small box).
        """
        head = encode_envelope(
            Envelope(
                store=self.store, device=self.device, batch_id=batch or uuid.uuid4(), events=[]
            )
        )
        if not head.endswith(b'"events":[]}'):
            raise PublisherError("unexpected envelope encoding")
        return head[: -len(b"[]}")] + b"[" + b",".join(r.body for r in rows) + b"]}"
