"""The ingest worker: MQTT batches in, validated and de-duplicated events out to storage.

Flow per message: topic -> envelope (contract) -> registered device? -> consent filter -> rows.
Every envelope (events and device statuses) is decoded once, by the contract's
`decode_envelope` (msgspec structs generated from the contract; what it refuses comes back as
a ContractError whose reason the models named), and its rows come from the one builder,
`storelens.cloud.ingest.rows`, which applies the consent rule. Many messages
are written in one transaction (on SQLite in a writer process,
`storelens.cloud.db.sqlite_writer`, while the next batch is parsed; on PostgreSQL streamed with
COPY while parsing); only after that transaction commits does the worker send receipts and
acknowledge the messages to the broker (QoS 1, manual acks). Any bad input becomes a dead
letter with a reason; nothing a device sends can stop the worker: a message whose values
storage refuses is found by splitting its batch (`Ingestor.write`) and dead-lettered as
``storage_error``, where an outage makes the worker retry the batch.

Receipts: after each commit the worker publishes one `Ack` per (store, device) on
``storelens/v1/{store}/{device}/ack`` naming the ``batch_id`` of every envelope of that
device in the batch (events and status topics) that is now durable: stored, all duplicates
(a resend), or dead-lettered with its raw bytes (an unregistered device's messages included:
they are dead letters too). The device keeps events in its outbox until then. The (store,
device) is always the topic's, since broker ACLs let a device publish only under its own. A
dead letter whose envelope did not parse is acked with a ``batch_id`` found in the raw bytes;
without one (or when the raw bytes had to be truncated) no receipt can be sent, and the
device resends with back-off until its outbox's age bound drops the events (counted as lost).

Workers join one shared subscription (``$share/<group>/...``): the broker hands each message to
one member of the group, so workers scale horizontally without duplicates.

Sessions are clean by default (MQTT v5 clean start, session expiry 0): when a worker dies,
the broker drops its session at once and the whole stream goes to the other members of the
group. Messages the dead worker held unacknowledged are lost with the session, but none of
them was receipted, so devices resend them. A deployment whose devices do not wait for
receipts can set ``mqtt_session_expiry_s`` > 0 for persistent sessions instead (stable client
ID per worker, a supervisor that restarts it; Mosquitto keeps queueing a share of new
messages to a stopped member's session meanwhile).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import queue
import re
import secrets
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import Counter, Gauge, Histogram

from storelens.cloud.commerce import members
from storelens.cloud.db import Database, data_error
from storelens.cloud.db.sqlite_writer import SqliteWriter
from storelens.cloud.hooks import Hooks
from storelens.cloud.ingest import dead_letters, device_registry
from storelens.cloud.ingest import events as event_store
from storelens.cloud.ingest import rows as ingest_rows
from storelens.cloud.ingest.events import Availability, DeadLetter, EventRow, StatusRow
from storelens.cloud.services import Services, hooks_for
from storelens.cloud.settings import Settings
from storelens.contract import ContractError, decode_envelope, topics
from storelens.contract.bounds import MAX_FUTURE_SKEW_S, MIN_EPOCH_S
from storelens.contract.commands import MAX_ACK_IDS, Ack, OptOutList

log = logging.getLogger(__name__)

MESSAGES = Counter("storelens_ingest_messages_total", "MQTT messages handled.", ["result"])
EVENTS = Counter("storelens_ingest_events_total", "Events stored (new, not duplicates).")
DUPLICATES = Counter(
    "storelens_ingest_duplicates_total", "Events their own device had sent already, skipped."
)
COLLISIONS = Counter(
    "storelens_ingest_id_collisions_total",
    "Events whose ID another device used first, dead-lettered (event_id_collision).",
)
DEAD = Counter("storelens_ingest_dead_letters_total", "Messages dead-lettered.", ["reason"])
INGEST_LAG = Gauge(
    "storelens_ingest_lag_seconds", "Commit time minus the envelope's sent_at, newest batch."
)
BATCH_SECONDS = Histogram("storelens_ingest_batch_seconds", "Time to write one batch.")

REGISTRY_TTL_S = 5.0
HOUSEKEEPING_S = 3600.0  # partitions ahead and retention, from the rollup settle thread
_TS = event_store.EVENT_COLUMNS.index("ts")
_MEMBER = event_store.EVENT_COLUMNS.index("member")
RECEIVE_MAXIMUM = 250  # unacknowledged messages in flight to one worker (bounds memory)
RECEIPT_KINDS = ("events", "status")  # the topics devices publish envelopes on
_BATCH_ID = re.compile(rb'"batch_id"\s*:\s*"([0-9A-Fa-f-]{32,36})"')
RECEIPTS = Counter("storelens_ingest_receipts_total", "Ack messages published to devices.")

Receipts = dict[tuple[str, str], list[uuid.UUID]]  # (store, device) from the topic -> batch IDs


@dataclass(frozen=True)
class Incoming:
    """One received MQTT message (``mid``/``qos`` are needed to acknowledge it; packet IDs
    are only meaningful within the connection, ``connection``, that delivered it)."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 0
    connection: int = 0


@dataclass
class BatchResult:
    messages: int = 0
    stored: int = 0
    duplicates: int = 0  # a device's own events again (redeliveries): dropped, receipted
    collisions: int = 0  # events whose ID another device used first: dead-lettered
    dead: dict[str, int] = field(default_factory=dict)
    statuses: int = 0
    receipts: Receipts = field(default_factory=dict)  # to publish once committed

    def add(self, other: BatchResult) -> None:
        self.messages += other.messages
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.collisions += other.collisions
        self.statuses += other.statuses
        for reason, n in other.dead.items():
            self.dead[reason] = self.dead.get(reason, 0) + n
        for target, ids in other.receipts.items():
            self.receipts.setdefault(target, []).extend(ids)


@dataclass
class Prepared:
    """A parsed batch waiting to be written."""

    batch: list[Incoming]
    received_at: float
    rows: list[EventRow] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)
    availability: list[Availability] = field(default_factory=list)
    seen: dict[tuple[str, str], float] = field(default_factory=dict)
    newest_sent: float = 0.0
    receipts: Receipts = field(default_factory=dict)
    copied: bool = False  # the rows are in the transaction already (streamed by COPY)
    nested: bool = False  # written inside the caller's transaction: it runs the hooks
    parsing_id: uuid.UUID | None = None  # the batch_id of the message being parsed
    # After storage refused the batch's data (`Ingestor.write`): the parts not committed yet,
    # and what the committed ones wrote. Kept here so that the caller's retry of this batch
    # after an outage goes on from there instead of writing committed parts again.
    left: list[Prepared] | None = None
    done: BatchResult = field(default_factory=BatchResult)
    poison: bool = False  # one message's dead letter in place of its refused data


def raw_batch_id(raw: bytes) -> uuid.UUID | None:
    """Best effort for a dead letter whose envelope did not validate: the one ``batch_id``
    in the raw bytes (None when there is none, or more than one)."""
    if len(raw) > dead_letters.MAX_DEAD_LETTER_BYTES:
        return None  # stored truncated: not durable as sent, so no receipt
    found = _BATCH_ID.findall(raw)
    if len(found) != 1:
        return None
    try:
        return uuid.UUID(found[0].decode("ascii"))
    except ValueError:
        return None


def receipt_target(topic: str) -> tuple[str, str] | None:
    """The (store, device) a message on ``topic`` is receipted to; None for topics that do
    not carry envelopes."""
    where = topics.parse(topic)
    if where is None or where.kind not in RECEIPT_KINDS:
        return None
    return where.store, where.device


class Ingestor:
    """The storage half of ingest (no MQTT): turns messages into one committed batch.

    Keeps two caches, both refreshed from the database: the registered devices (every few
    seconds, and at once for a device not seen before) and the consent state (whenever the
    members domain bumps its consent version, checked once per batch).
    """

    def __init__(self, db: Database, *, hooks: Hooks | None = None) -> None:
        """``hooks``: the ``events_stored`` hooks run after each committed batch with its
        events that carry a member (as dicts, duplicates included; hooks de-duplicate by
        event ID): personalization scores member events there. A failing hook is logged and
        never fails ingest. Default: those of the process serving ``db``."""
        self.db = db
        self.hooks = hooks_for(db) if hooks is None else hooks
        self._devices: set[tuple[str, str]] = set()
        self._devices_at = 0.0
        self._consent_version = -1
        self._opted_out: frozenset[str] = frozenset()
        self._forgotten: frozenset[str] = frozenset()
        self.consent_changed: list[Callable[[], None]] = []
        self.writer: SqliteWriter | None = None  # set by the worker: writes in a child process
        # Where dead letters go instead of the ``dead_letters`` table, each committed part's
        # once it commits: a replay (`storelens.cloud.ingest.replay`) keeps the rows it
        # replays rather than writing a second one for a message that fails again.
        self.dead_letter_sink: Callable[[list[DeadLetter]], None] | None = None

    # -- caches ----------------------------------------------------------------------------
    def refresh_consent(self) -> None:
        version = members.consent_version(self.db)
        if version != self._consent_version:
            self._opted_out = frozenset(members.opted_out_tokens(self.db))
            self._forgotten = frozenset(members.forgotten_digests(self.db))
            self._consent_version = version
            for callback in self.consent_changed:
                callback()

    def _refresh_devices(self, batch: list[Incoming]) -> None:
        """Reload the registry when stale, or (at most once a second, so floods stay cheap)
        when the batch names a device not in it. Outside the per-message error handling: a
        database error here makes the caller retry instead of dead-lettering good input."""
        now = time.monotonic()
        age = now - self._devices_at
        unknown = age > 1.0 and any(
            (where := topics.parse(msg.topic)) is not None
            and (where.store, where.device) not in self._devices
            for msg in batch
        )
        if age > REGISTRY_TTL_S or unknown:
            self._devices = device_registry.registered_devices(self.db)
            self._devices_at = now

    def _registered(self, store: str, device: str) -> bool:
        return (store, device) in self._devices

    def devices(self) -> set[tuple[str, str]]:
        self._devices = device_registry.registered_devices(self.db)
        self._devices_at = time.monotonic()
        return set(self._devices)

    def opted_out(self) -> frozenset[str]:
        return self._opted_out

    def _linkable(self, token: str | None) -> str | None:
        if token is None or token in self._opted_out:
            return None
        if self._forgotten and members.token_digest(token) in self._forgotten:
            return None
        return token

    # -- one batch -------------------------------------------------------------------------
    def process(self, batch: list[Incoming]) -> BatchResult:
        """Validate and write ``batch`` in one transaction. Raises only on database errors
        (then nothing was written and the caller retries the same batch; when one message's
        data was refused, it retries through `prepare` and `write`, which split the batch).

        On PostgreSQL the rows of each message are streamed to the server (`EventCopy`)
        as soon as it is parsed, so the server's inserting overlaps the parsing of the rest.
        """
        if self.db.dialect != "postgres":
            return self.write(self.prepare(batch))
        with self.db.transaction():
            self._refresh_caches(batch)  # no other query may run while the COPY is open
            with event_store.EventCopy(self.db) as copy:
                prepared = self._parse(batch, copy.write)
            prepared.copied, prepared.nested = copy.ok, True
            result = self.write(prepared)  # joins this transaction
        self._after_commit(prepared.rows)
        return result

    def prepare(self, batch: list[Incoming], *, received_at: float | None = None) -> Prepared:
        """The CPU half: parse, check device and consent, build rows. Never raises on input
        (only on database errors while refreshing its caches). ``received_at``: when the
        cloud got the messages (default now; a replay passes the dead letters' own time)."""
        self._refresh_caches(batch)
        return self._parse(batch, received_at=received_at)

    def _refresh_caches(self, batch: list[Incoming]) -> None:
        self.refresh_consent()
        self._refresh_devices(batch)

    def _parse(
        self,
        batch: list[Incoming],
        sink: Callable[[list[EventRow]], None] | None = None,
        received_at: float | None = None,
    ) -> Prepared:
        """Parse with the caches as they are, handing each message's rows to ``sink`` too.
        Thread-safe (a committer thread re-parses the parts of a split batch meanwhile)."""
        at = time.time() if received_at is None else received_at
        prepared = Prepared(batch=batch, received_at=at)
        for msg in batch:
            prepared.parsing_id = None  # set by _prepare_one once the envelope is valid
            try:
                rows = self._prepare_one(msg, prepared)
                if rows and sink is not None:
                    sink(rows)
            except ContractError as exc:
                prepared.dead.append(DeadLetter(msg.topic, exc.reason, exc.detail, msg.payload))
                prepared.parsing_id = prepared.parsing_id or raw_batch_id(msg.payload)
            except Exception as exc:  # a bug must not stop ingest: keep the bytes for replay
                log.exception("unexpected error on %s", msg.topic)
                prepared.dead.append(DeadLetter(
                    msg.topic, "internal_error", f"{type(exc).__name__}: {exc}", msg.payload
                ))  # fmt: skip
                prepared.parsing_id = prepared.parsing_id or raw_batch_id(msg.payload)
            if prepared.parsing_id is not None and (target := receipt_target(msg.topic)):
                prepared.receipts.setdefault(target, []).append(prepared.parsing_id)
        return prepared

    def _prepare_one(self, msg: Incoming, out: Prepared) -> list[EventRow]:
        """Adds the message's rows (returned too) and statuses to ``out``, or raises."""
        where = topics.parse(msg.topic)
        if where is None or where.kind == "cmd":
            raise ContractError("bad_topic", msg.topic)
        if where.kind == "availability":
            if msg.payload not in (topics.ONLINE, topics.OFFLINE):
                raise ContractError("bad_availability", repr(msg.payload[:32]))
            if self._registered(where.store, where.device):
                out.availability.append(
                    Availability(where.store, where.device, msg.payload == topics.ONLINE)
                )
            return []
        envelope, texts = decode_envelope(msg.payload)  # or ContractError: the reason
        out.parsing_id = uuid.UUID(envelope.batch_id)
        store, device = envelope.store, envelope.device
        if (where.store, where.device) != (store, device):
            raise ContractError("topic_mismatch", f"envelope {store}/{device} on {msg.topic}")
        if not self._registered(store, device):
            raise ContractError("unregistered_device", f"{store}/{device} is not registered")
        out.newest_sent = max(out.newest_sent, envelope.sent_at.timestamp())
        rows, statuses = ingest_rows.message_rows(
            store, envelope.events, texts, out.received_at, self._linkable
        )
        if rows or statuses:
            times = [row[_TS] for row in rows] + [s.ts for s in statuses]
            check_clock(min(times), max(times), out.received_at)
        # Health counts from when the cloud heard the device, never from what it claims.
        out.seen[(store, device)] = out.received_at
        out.rows += rows  # only now: a message that fails part-way adds no rows
        out.statuses += statuses
        return rows

    def write(self, prepared: Prepared) -> BatchResult:
        """The storage half: one transaction for the whole batch (in the writer process
        when there is one).

        When storage refuses the batch's values (`storelens.cloud.db.data_error`: one
        message's data, not an outage), retrying it whole would fail forever and stall every
        device behind it: it is split in halves, each written in its own transaction, down to
        the message at fault, which is dead-lettered (``storage_error``, with its raw bytes,
        and receipted); every other message is stored. Any other error is raised (the caller
        retries the same ``prepared``: parts committed already are not written again)."""
        start = time.perf_counter()
        p = prepared
        # Nested, the caller's transaction cannot commit parts: it raises, and the caller
        # (the worker) retries through `prepare` and this, which splits.
        result = self._commit(p) if p.nested else self._write_split(p)
        self._observe(result, p.newest_sent, time.perf_counter() - start)
        return result

    def _write_split(self, p: Prepared) -> BatchResult:
        parts = p.left if p.left is not None else [p]
        while parts:
            part = parts[0]
            try:
                result = self._commit(part)
            except Exception as exc:
                if part.poison or not data_error(exc):
                    raise  # an outage (or the dead letter itself refused): retry later
                parts[:1] = self._split(part, exc)
                p.left = parts
                continue
            parts.pop(0)
            p.done.add(result)
        return p.done

    def _split(self, part: Prepared, exc: Exception) -> list[Prepared]:
        """The halves of a batch whose data storage refused, re-parsed (the same messages
        give the same rows); a lone message becomes its dead letter."""
        batch = part.batch
        if len(batch) == 1:
            msg = batch[0]
            detail = f"{type(exc).__name__}: {exc}".replace("\x00", "\\x00")
            detail = detail.encode("utf-8", "backslashreplace").decode()  # storable text
            log.warning("storage refused the message on %s; dead-lettered: %s", msg.topic, detail)
            dead = DeadLetter(msg.topic, "storage_error", detail, msg.payload)
            # Receipted when durable as sent, as other dead letters: not when truncated.
            durable = len(msg.payload) <= dead_letters.MAX_DEAD_LETTER_BYTES
            return [Prepared(batch, part.received_at, dead=[dead], poison=True,
                             receipts=part.receipts if durable else {})]  # fmt: skip
        log.info("storage refused a batch of %d messages (%s); splitting it", len(batch), exc)
        mid = len(batch) // 2
        return [self._parse(half, received_at=part.received_at)
                for half in (batch[:mid], batch[mid:])]  # fmt: skip

    def _commit(self, p: Prepared) -> BatchResult:
        """Write ``p`` in one transaction (or inside the caller's, when nested)."""
        sink = self.dead_letter_sink
        batch = event_store.StoredBatch(p.rows, p.received_at, p.dead if sink is None else [],
                                        p.statuses, p.availability, p.seen, p.copied)  # fmt: skip
        if self.writer is not None and not p.nested:
            stored, collisions = self.writer.write(batch)
        else:
            with self.db.transaction():
                stored, collisions = event_store.store_prepared(self.db, batch)
        if sink is not None and p.dead:
            sink(p.dead)
        if not p.nested:
            self._after_commit(p.rows)
        result = BatchResult(
            messages=len(p.batch),
            stored=stored,
            duplicates=len(p.rows) - stored - collisions,
            collisions=collisions,
            statuses=len(p.statuses),
            receipts=p.receipts,
        )
        for dead in p.dead:
            result.dead[dead.reason] = result.dead.get(dead.reason, 0) + 1
        return result

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _after_commit(self, rows: list[EventRow]) -> None:
        hooks = self.hooks["events_stored"]
        if not hooks:
            return
        # Only events linked to a member interest the hooks; most rows are anonymous.
        linked = [dict(zip(event_store.EVENT_COLUMNS, r, strict=True))
                  for r in rows if r[_MEMBER] is not None]  # fmt: skip
        if not linked:
            return
        for hook in hooks:
            try:
                hook(self.db, linked)
            except Exception:
                log.exception("post-store hook %r failed", hook)

    @staticmethod
    def _observe(result: BatchResult, newest_sent: float, seconds: float) -> None:
        dead_total = sum(result.dead.values())
        MESSAGES.labels("stored").inc(result.messages - dead_total)
        EVENTS.inc(result.stored)
        DUPLICATES.inc(result.duplicates)
        COLLISIONS.inc(result.collisions)
        for reason, n in result.dead.items():
            MESSAGES.labels("dead_letter").inc(n)
            DEAD.labels(reason).inc(n)
        if newest_sent:
            INGEST_LAG.set(max(0.0, time.time() - newest_sent))
        BATCH_SECONDS.observe(seconds)


def housekeeping(db: Database, settings: Settings, now: float | None = None) -> dict[str, Any]:
    """An ingest worker's hourly chores: event partitions ahead and retention
    (`storelens.cloud.db.retention`), and forgetting which events scoring counted once they are
    older than any resend (``scored_events_retention_days``)."""
    from storelens.cloud.db import retention
    from storelens.cloud.personalization import scoring

    result = retention.housekeeping(
        db, settings.events_retention_days, settings.rollups_retention_days
    )
    days = settings.scored_events_retention_days
    result["scored_events_pruned"] = (
        scoring.prune_scored(db, keep_s=days * 86_400.0, now=now) if days else 0
    )
    return result


class IngestWorker:
    """An MQTT subscriber feeding an `Ingestor` from a writer thread.

    paho's network thread only enqueues messages; the writer drains up to
    ``settings.ingest_batch_messages`` (or waits ``ingest_batch_seconds``), commits, then
    publishes the devices' receipts and acknowledges the messages to the broker. Sessions are
    clean unless ``mqtt_session_expiry_s`` asks for persistent ones; paho reconnects with
    back-off.
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        client_id: str | None = None,
        subscribe_status: bool = True,
        services: Services | None = None,
    ) -> None:
        """``services``: the process's composition root when the worker shares a process (the
        API's, with ``--ingest``); a worker on its own builds one, which relays the POS pushes
        its hooks raise (member alerts) through the broker to wherever the POS streams are."""
        self.settings = settings
        self._own_services = services is None
        self.services = services if services is not None else Services.for_ingest(settings, db)
        self.ingestor = Ingestor(db, hooks=self.services.hooks)
        self.ingestor.consent_changed.append(self._publish_optouts)
        self.client_id = client_id or default_client_id(settings.mqtt_client_id)
        self._subscribe_status = subscribe_status
        self._queue: queue.Queue[Incoming] = queue.Queue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._published_devices: set[tuple[str, str]] = set()
        self._connection = 0  # incremented on every (re)connect
        self._republish = threading.Event()  # set on (re)connect: send every device its list
        self.totals = BatchResult()
        self.client = self._make_client()
        # SQLite: inserts and commits in a writer process (started now, in the background),
        # batches handed to it by a committer thread.
        self._commits: queue.Queue[tuple[list[Incoming], Prepared] | None] | None = None
        path = getattr(db, "path", None)
        if (
            settings.ingest_writer_process
            and db.dialect == "sqlite"
            and path not in (None, ":memory:")
        ):
            if multiprocessing.current_process().daemon:
                # A daemonic process may not start children: write in this process.
                log.info("ingest worker in a daemonic process: no SQLite writer process")
            else:
                self.ingestor.writer = SqliteWriter(f"sqlite:///{path}")
                self._commits = queue.Queue(maxsize=1)

    # -- MQTT ------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        s = self.settings
        v5 = s.mqtt_protocol == "5"
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            # v5 sets clean_start and the session expiry in `start`.
            clean_session=None if v5 else self._clean_session,
            manual_ack=True,
        )
        if s.mqtt_user:
            client.username_pw_set(
                s.mqtt_user, s.mqtt_password.get_secret_value() if s.mqtt_password else None
            )
        if s.mqtt_tls:
            client.tls_set(ca_certs=str(s.mqtt_ca_file) if s.mqtt_ca_file else None)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        if not v5:
            # amqtt (the demo's 3.1.1 broker) also sends a connecting client the retained
            # messages of other clients' subscriptions (devices' cmd topics): take only what
            # this worker subscribed to.
            for topic_filter in self._topic_filters():
                client.message_callback_add(topic_filter, self._on_message)
            client.on_message = self._on_unsubscribed
        return client

    @property
    def _clean_session(self) -> bool:
        return self.settings.mqtt_session_expiry_s == 0

    def _topic_filters(self) -> list[str]:
        filters = [topics.EVENTS_ALL]
        if self._subscribe_status:
            filters += [topics.STATUS_ALL, topics.AVAILABILITY_ALL]
        return filters

    def _on_unsubscribed(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        log.debug("ignoring %s: not subscribed to it", msg.topic)
        if msg.qos > 0:
            client.ack(msg.mid, msg.qos)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused connection: %s", reason)
            return
        self._connection += 1
        self._connected.set()
        self._republish.set()
        filters = self._topic_filters()
        if self.settings.mqtt_protocol != "5":
            # No shared subscriptions in 3.1.1: this worker gets every message.
            client.subscribe([(f, 1) for f in filters])
            return
        group = self.settings.share_group
        client.subscribe([(topics.shared(f, group), SubscribeOptions(qos=1)) for f in filters])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        if any(r.is_failure for r in reasons):
            log.error("subscription refused: %s", reasons)
            return
        self._subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._connected.clear()
        self._subscribed.clear()
        if not self._stop.is_set():
            log.warning("disconnected from broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(Incoming(msg.topic, msg.payload, msg.mid, msg.qos, self._connection))

    def _publish_optouts(self, devices: set[tuple[str, str]] | None = None) -> None:
        """Retained opt-out list on each registered device's cmd topic."""
        if not self._connected.is_set():
            return
        tokens = sorted(self.ingestor.opted_out())
        payload = OptOutList(key_id=self.settings.pseudonym_key_id, tokens=tokens).model_dump_json()
        targets = self.ingestor.devices() if devices is None else devices
        for store, device in targets:
            self.client.publish(topics.cmd(store, device), payload, qos=1, retain=True)
        self._published_devices |= targets

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.mqtt_protocol != "5":
            self._start_v311()
            return
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.mqtt_session_expiry_s
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        # connect_async + loop_start: the worker starts even when the broker is down, and
        # paho keeps retrying with back-off.
        self.client.connect_async(
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            keepalive=30,
            clean_start=self._clean_session,
            properties=props,
        )
        self.client.loop_start()
        self._start_threads()

    def _start_threads(self) -> None:
        # One thread parses and writes, unless SQLite writes go to a writer process: a second
        # thread writing in this process loses more to GIL hand-offs (the driver drops and
        # re-takes the GIL for every row) than it overlaps; one waiting on a pipe does not.
        self._threads = [threading.Thread(target=self._run, name="ingest", daemon=True)]
        if self.settings.rollup_settle_s > 0:
            self._threads.append(
                threading.Thread(target=self._settle_loop, name="rollup-settle", daemon=True)
            )
        if self._commits is not None:
            self._threads.append(
                threading.Thread(target=self._commit_loop, name="ingest-commit", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    def _start_v311(self) -> None:
        log.info(
            "MQTT 3.1.1 has no shared subscriptions: run ONE ingest worker on this broker "
            "(a second one would receive and write every message again)"
        )
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()
        self._start_threads()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        return self._subscribed.wait(timeout)

    def wait_writer(self, timeout: float = 60.0) -> bool:
        """Wait until the SQLite writer process (if any) has started; False on timeout."""
        writer = self.ingestor.writer
        return writer is None or writer.wait_ready(timeout)

    def healthy(self) -> bool:
        return self._connected.is_set() and all(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        """Stop taking messages, finish the batch in hand, disconnect. Messages not yet
        written stay unacknowledged and the broker redelivers them."""
        self._stop.set()
        if self._commits is not None:
            self._threads[0].join(30)
            with contextlib.suppress(queue.Full):  # after the batches already handed over
                self._commits.put(None, timeout=30)
        for thread in self._threads:
            thread.join(30)
        self.client.disconnect()
        self.client.loop_stop()
        self.ingestor.close()
        if self._own_services:
            self.services.close()

    def _run(self) -> None:
        batch: list[Incoming] = []
        devices_checked = time.monotonic()
        while not self._stop.is_set():
            try:
                if self._republish.is_set() and self._connected.is_set():
                    self._republish.clear()
                    self.ingestor.refresh_consent()
                    self._publish_optouts()
                if time.monotonic() - devices_checked > REGISTRY_TTL_S:
                    devices_checked = time.monotonic()
                    new = self.ingestor.devices() - self._published_devices
                    if new:
                        self._publish_optouts(new)
                batch = batch or self._collect()
                if not batch:
                    continue
                result = self._process_streaming(batch)
                prepared = None if result is not None else self.ingestor.prepare(batch)
            except Exception:
                # Database unavailable (consent/device caches): keep the batch and retry.
                log.exception("preparing a batch of %d messages failed; retrying", len(batch))
                self._stop.wait(1.0)
                continue
            if prepared is not None and self._commits is not None:
                # The committer thread writes it (in the writer process) while this thread
                # parses the next batch; waits here while one batch is already queued.
                if self._hand_over(batch, prepared):
                    batch = []
                continue
            if prepared is not None:
                result = self._write(prepared)
            if result is None:
                return  # stopped during a database outage: the broker redelivers the batch
            done, batch = batch, []
            self._finish(done, result)

    def _settle_loop(self) -> None:
        """Recompute the rollups of quiet dirty hours (`storelens.cloud.analytics.rollups.settle`),
        off the hot path; a failure only delays them (charts read dirty hours raw meanwhile)."""
        from storelens.cloud.analytics.rollups.settle import settle
        from storelens.cloud.db import retention

        s = self.settings
        housekept: float | None = None  # first round at once
        while not self._stop.wait(s.rollup_settle_s):
            try:
                if housekept is None or time.monotonic() - housekept > HOUSEKEEPING_S:
                    # Partitions ahead and retention, hourly: cheap, and any worker may do it.
                    housekeeping(self.ingestor.db, s)
                    housekept = time.monotonic()
                settle(
                    self.ingestor.db,
                    events_since=retention.events_cutoff(s.events_retention_days),
                )
            except Exception:
                log.exception("settling rollups or retention failed; retrying later")

    def _hand_over(self, batch: list[Incoming], prepared: Prepared) -> bool:
        assert self._commits is not None
        while not self._stop.is_set():
            try:
                self._commits.put((batch, prepared), timeout=0.2)
                return True
            except queue.Full:
                continue
        return False  # stopping: never acknowledged, so the devices send it again

    def _commit_loop(self) -> None:
        """With a writer process: commit prepared batches in order, then receipt and ack."""
        assert self._commits is not None
        while True:
            item = self._commits.get()
            if item is None:
                return
            batch, prepared = item
            result = self._write(prepared)
            if result is None:
                return  # stopped during a database outage: the broker redelivers the batch
            self._finish(batch, result)

    def _finish(self, done: list[Incoming], result: BatchResult) -> None:
        """After the commit: receipts to the devices, then acks to the broker."""
        self._send_receipts(result.receipts)
        for msg in done:
            # After a reconnect the broker resends what was unacknowledged and may reuse
            # packet IDs: acknowledging an old delivery could confirm a newer, unwritten
            # message. Old deliveries were stored (duplicates are absorbed) but not acked.
            if msg.qos > 0 and msg.connection == self._connection:
                self.client.ack(msg.mid, msg.qos)
        self._add(result)

    def _send_receipts(self, receipts: Receipts) -> None:
        """Tell each device which of its envelopes are durable (after the commit). Not
        retained: a receipt matters only to the device session that is waiting for it; one
        lost in a disconnect makes the device resend, and de-duplication absorbs that."""
        for (store, device), ids in receipts.items():
            unique = list(dict.fromkeys(ids))  # a resend within the batch: named once
            for i in range(0, len(unique), MAX_ACK_IDS):
                payload = Ack(batch_ids=unique[i : i + MAX_ACK_IDS]).model_dump_json()
                self.client.publish(topics.ack(store, device), payload, qos=1, retain=False)
                RECEIPTS.inc()

    def _process_streaming(self, batch: list[Incoming]) -> BatchResult | None:
        """On PostgreSQL, parse and store in one pass (`Ingestor.process` streams rows while
        parsing); None on SQLite, or after a database error: the batch then takes the
        prepare-and-retry path."""
        if self.ingestor.db.dialect != "postgres":
            return None
        try:
            return self.ingestor.process(batch)
        except Exception:
            log.exception("storing a batch of %d messages failed; retrying", len(batch))
            return None

    def _write(self, prepared: Prepared) -> BatchResult | None:
        """Commit one batch, retrying with back-off; None when asked to stop meanwhile."""
        delay = 0.5
        while True:
            try:
                return self.ingestor.write(prepared)
            except Exception:
                # Nothing was committed or acknowledged, so retrying is safe.
                log.exception("writing %d messages failed; retrying", len(prepared.batch))
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, 30.0)

    def _collect(self) -> list[Incoming]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            self._idle_consent_check()
            return []
        batch = [first]
        deadline = time.monotonic() + self.settings.ingest_batch_seconds
        limit = self.settings.ingest_batch_messages
        while len(batch) < limit:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
        return batch

    def _idle_consent_check(self) -> None:
        # With no traffic, still notice consent changes so devices get the opt-out list.
        try:
            self.ingestor.refresh_consent()
        except Exception:
            log.exception("consent refresh failed")

    def _add(self, r: BatchResult) -> None:
        self.totals.add(replace(r, receipts={}))  # receipts were sent: totals keep counts


def check_clock(first: float, last: float, received_at: float) -> None:
    """ContractError ``clock_skew`` when a message's event times are outside what the cloud
    accepts around its own clock (`storelens.contract.bounds`): one event dated 9999 used to
    pin its device's health in the future, and year 1 was stored as history."""
    if last > received_at + MAX_FUTURE_SKEW_S or first < MIN_EPOCH_S:
        raise ContractError(
            "clock_skew",
            f"event times {first:.0f}..{last:.0f}: not before {MIN_EPOCH_S:.0f} nor more than"
            f" {MAX_FUTURE_SKEW_S:.0f} s after the ingest clock {received_at:.0f}",
        )


def default_client_id(prefix: str = "") -> str:
    """Unique per process: two workers on one host (``cloud serve --ingest`` beside ``cloud
    ingest``) with one ID would knock each other off the broker every second. A persistent
    session (``mqtt_session_expiry_s`` > 0) needs an ID that survives restarts: pass one with
    ``--client-id``."""
    host, pid = socket.gethostname(), os.getpid()
    return f"{prefix or 'storelens-ingest'}-{host}-{pid}-{secrets.token_hex(3)}"


def run_worker(settings: Settings, db: Database, *, client_id: str | None = None) -> None:
    """Run until SIGTERM or Ctrl-C (the `storelens cloud ingest` command); either finishes
    the batch in hand, commits it and sends its receipts before exiting. ``client_id`` (the
    command's ``--client-id``) is used as given: a persistent session needs the same ID after
    a restart; without one the ID is unique per process."""
    worker = IngestWorker(settings, db, client_id=client_id)
    stopping = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    worker.start()
    log.info("ingest worker %s on %s:%d", worker.client_id, settings.mqtt_host, settings.mqtt_port)
    try:
        while not stopping.wait(10):
            log.info("ingest totals: %s", json.dumps(worker.totals.__dict__))
        log.info("SIGTERM: finishing the batch in hand")
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
        signal.signal(signal.SIGTERM, previous)
        log.info("ingest worker stopped; totals: %s", json.dumps(worker.totals.__dict__))
