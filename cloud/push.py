"""Push to the store's POS devices: Server-Sent Events for the web POS, MQTT for native apps.

Domains push with `storelens.cloud.services.announce(db, store, kind, payload)` (fulfillment
tasks, member alerts, coupons issued), which publishes on the hub of the process's `Services`
once the transaction commits. Each API replica runs one hub:

- without a broker the hub fans out to its own SSE clients directly;
- with a broker it publishes on ``storelens/v1/{store}/pos/{kind}`` (QoS 1) and subscribes to
  every store's POS topics, so a message published by any replica reaches the SSE clients of
  all replicas, and native apps subscribe to the same topic. The publishing replica also
  delivers locally at once; the copy coming back from the broker is recognised by its ID and
  dropped, so a broker outage delays other replicas but never local clients.

Each hub keeps the last messages per store so a reconnecting EventSource resumes from its
``Last-Event-ID`` without gaps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from storelens.contract import topics
from storelens.contract.events import new_event_id

log = logging.getLogger(__name__)

KINDS = ("member_alert", "task", "coupon_issued")
POS_ALL = f"{topics.ROOT}/+/pos/+"


@dataclass(frozen=True)
class PushMessage:
    id: str  # UUIDv7: time-ordered, unique across replicas
    store: str
    kind: str
    at: float
    payload: dict[str, Any]

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), default=str).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> PushMessage:
        data = json.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("payload"), dict):
            raise ValueError("push message must be an object with a payload object")
        return cls(str(data["id"]), str(data["store"]), str(data["kind"]), float(data["at"]),
                   data["payload"])  # fmt: skip


class Subscription:
    """One SSE client: a bounded queue fed from any thread into the client's event loop."""

    def __init__(self, hub: PushHub, store: str, maxsize: int = 1000) -> None:
        self.hub, self.store = hub, store
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[PushMessage] = asyncio.Queue(maxsize)
        self.closed = False

    def offer(self, msg: PushMessage) -> None:
        self.loop.call_soon_threadsafe(self._put, msg)

    def _put(self, msg: PushMessage) -> None:
        if self.queue.full():  # a stalled client loses its oldest messages, not the hub
            self.queue.get_nowait()
        self.queue.put_nowait(msg)

    async def next(self, timeout: float) -> PushMessage | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub._unsubscribe(self)


class PushHub:
    def __init__(self, *, history: int = 200) -> None:
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = {}
        self._history: dict[str, deque[PushMessage]] = {}
        self._history_size = history
        self._seen: OrderedDict[str, None] = OrderedDict()  # IDs delivered, to drop echoes
        self._client: Any = None
        self._receive = True
        self._connected = threading.Event()

    # -- MQTT ----------------------------------------------------------------------------
    def connect_mqtt(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        tls_ca: str | None = None,
        use_tls: bool = False,
        client_id: str = "",
        receive: bool = True,
    ) -> None:
        """Start the broker link in paho's network thread (reconnects by itself). With
        ``receive`` False the hub only publishes (an ingest worker holds no POS stream)."""
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            client.username_pw_set(username, password)
        if use_tls:
            client.tls_set(ca_certs=tls_ca)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._receive = receive
        client.connect_async(host, port, keepalive=30)
        client.loop_start()
        self._client = client

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        self._connected.clear()

    def _on_connect(
        self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("push: broker refused connection: %s", reason)
            return
        if self._receive:
            client.subscribe(POS_ALL, qos=1)
        self._connected.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self._connected.clear()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        try:
            msg = PushMessage.from_json(message.payload)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            log.warning("push: dropped malformed message on %s: %s", message.topic, exc)
            return
        self._deliver(msg)

    # -- publishing and fan-out ----------------------------------------------------------
    def publish(self, store: str, kind: str, payload: dict[str, Any]) -> PushMessage:
        if kind not in KINDS:
            raise ValueError(f"unknown push kind {kind!r}; one of {', '.join(KINDS)}")
        msg = PushMessage(str(new_event_id()), store, kind, time.time(), payload)
        self._deliver(msg)
        client = self._client
        if client is not None:
            # QoS 1: paho queues it while the broker is away and sends it on reconnect.
            client.publish(topics.pos(store, kind), msg.to_json(), qos=1)
        return msg

    def _deliver(self, msg: PushMessage) -> None:
        with self._lock:
            if msg.id in self._seen:
                return
            self._seen[msg.id] = None
            if len(self._seen) > 10 * self._history_size:
                self._seen.popitem(last=False)
            history = self._history.setdefault(msg.store, deque(maxlen=self._history_size))
            history.append(msg)
            subs = list(self._subs.get(msg.store, ()))
        for sub in subs:
            try:
                sub.offer(msg)
            except RuntimeError:  # the client's loop is gone: drop the client
                sub.close()

    def subscribe(
        self, store: str, last_event_id: str | None = None
    ) -> tuple[Subscription, list[PushMessage]]:
        """Register an SSE client; returns it and the messages it missed after
        ``last_event_id`` (empty when unknown or too old)."""
        sub = Subscription(self, store)
        with self._lock:
            self._subs.setdefault(store, set()).add(sub)
            missed: list[PushMessage] = []
            if last_event_id:
                history = list(self._history.get(store, ()))
                ids = [m.id for m in history]
                if last_event_id in ids:
                    missed = history[ids.index(last_event_id) + 1 :]
        return sub, missed

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.store)
            if subs is not None:
                subs.discard(sub)

    def client_count(self, store: str | None = None) -> int:
        with self._lock:
            if store is not None:
                return len(self._subs.get(store, ()))
            return sum(len(s) for s in self._subs.values())

    async def stream(
        self, store: str, last_event_id: str | None = None, *, keepalive_s: float = 15.0
    ) -> AsyncIterator[PushMessage | None]:
        """Messages for one store as they come; None at each keep-alive interval."""
        sub, missed = self.subscribe(store, last_event_id)
        try:
            for msg in missed:
                yield msg
            while True:
                yield await sub.next(keepalive_s)
        finally:
            sub.close()
