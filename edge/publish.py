"""MQTT publishing of the outbox: batched envelopes, QoS 1, deleted only on PUBACK.

- Availability: ``online`` retained on connect, ``offline`` as the retained last will (and
  published explicitly on a clean stop, when the broker does not send the will).
- Reconnect: paho's loop thread retries with exponential back-off between
  ``reconnect_min_s`` and ``reconnect_max_s``, also when the broker is down at start-up.
- Batching: a kind's pending events leave as one envelope every ``batch_interval_s`` or as
  soon as a full batch of ``batch_max_events`` is waiting; at most ``inflight_max`` messages
  are unacknowledged at a time, so a backlog drains oldest first at the broker's pace.
- Commands from the cloud (the retained opt-out list) arrive on the device's cmd topic.

PUBACKs arrive on paho's network thread; they are queued and applied on the sender thread
after the publish that produced the message id was recorded, so an early PUBACK cannot
overtake its own bookkeeping.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from pydantic import TypeAdapter, ValidationError

from storelens.contract import topics
from storelens.contract.commands import Command
from storelens.contract.envelope import MAX_PAYLOAD_BYTES, Envelope, encode_envelope
from storelens.edge.config import DeviceConfig, MqttConfig
from storelens.edge.outbox import Outbox, OutboxRow

log = logging.getLogger(__name__)
KINDS = ("status", "events")  # status first: it is small and says the device is alive
ENVELOPE_HEADROOM = 1024  # bytes kept free for the envelope around the events
_COMMANDS: TypeAdapter[Command] = TypeAdapter(Command)
_DISCONNECTED = -1  # marker in the ack queue


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
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._in_flight: set[int] = set()
        self._last_sent = dict.fromkeys(KINDS, 0.0)
        self._thread: threading.Thread | None = None
        self.client = self._make_client(config.mqtt)
        self.sent_messages = 0
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
        client.subscribe(self._cmd, qos=1)
        self._connected.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._stopping.is_set():
            log.info("disconnected from the broker")
        elif self._connected.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)
        self._connected.clear()
        self._acks.put(_DISCONNECTED)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.put(mid)
        self._wake.set()

    def _on_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        if message.topic != self._cmd:
            return
        try:
            command = _COMMANDS.validate_json(message.payload)
        except ValidationError as exc:
            log.warning("ignoring malformed command on %s: %s", message.topic, exc.errors()[:1])
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
                self._apply_acks()
                if self.connected:
                    self._send_due()
            except Exception:  # a disk or broker hiccup must not end publishing for good
                log.exception("publishing failed; retrying")
                self._stopping.wait(interval)
        self._apply_acks()

    def _apply_acks(self) -> None:
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                return
            if mid == _DISCONNECTED:
                continue  # paho keeps unacked messages and resends them after reconnecting
            if mid in self._in_flight:
                self._in_flight.discard(mid)
                self.outbox.ack(mid)

    def _send_due(self) -> None:
        cfg = self.config.outbox
        now = time.monotonic()
        for kind in KINDS:
            while len(self._in_flight) < cfg.inflight_max and self.connected:
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
        payload = self.envelope_bytes(rows)
        info = self.client.publish(self._topics[kind], payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise PublisherError(f"publish refused: {mqtt.error_string(info.rc)}")
        # NO_CONN: paho queued it and sends it after reconnecting, so it is in flight too.
        self.outbox.mark_in_flight([r.seq for r in rows], info.mid)
        self._in_flight.add(info.mid)
        self.sent_messages += 1

    def envelope_bytes(self, rows: list[OutboxRow]) -> bytes:
        """An envelope around already-encoded events.

        The events were validated and encoded by the contract models when they were stored;
        the header comes from the contract's own encoder, and the stored event bodies are
        spliced in rather than parsed and re-encoded on every send (CPU on a small box).
        """
        head = encode_envelope(Envelope(store=self.store, device=self.device, events=[]))
        if not head.endswith(b'"events":[]}'):
            raise PublisherError("unexpected envelope encoding")
        return head[: -len(b"[]}")] + b"[" + b",".join(r.body for r in rows) + b"]}"
