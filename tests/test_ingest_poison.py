"""One message whose data storage refuses (a poison message) must not stall its batch: the
batch is split down to that message, which is dead-lettered as ``storage_error`` with its raw
bytes and receipted; every other message is stored once, and ingest goes on. An outage is
still retried, never dead-lettered. Both backends; with MQTT, SQLite writes in the writer
process and PostgreSQL streams first.

The contract bounds every value it accepts to what the columns hold, so most poisons are
injected at the row builder (`storelens.cloud.ingest.rows.message_rows`) for one message: the
database itself then refuses the row (NOT NULL, or an integer beyond BIGINT)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

import pytest
from conftest import wait_for
from prometheus_client import REGISTRY

from storelens.cloud.commerce import stores
from storelens.cloud.db import DataError, IntegrityError, data_error
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest import events as event_store
from storelens.cloud.ingest import rows as ingest_rows
from storelens.cloud.ingest.worker import Incoming, Ingestor
from storelens.contract import DeviceStatus, Envelope, encode_envelope, topics
from storelens.contract.bounds import MAX_STORED_INT
from storelens.tools.bench.ingest import envelopes, realistic_events

STORE, DEVICE = "s1", "cam-box-1"
TOPIC = topics.events(STORE, DEVICE)
_SEQ, _TYPE = event_store.EVENT_COLUMNS.index("seq"), event_store.EVENT_COLUMNS.index("type")


@pytest.fixture
def chain(db):
    stores.upsert_store(db, stores.Store(id=STORE, name="One", lat=48.85, lon=2.35))
    device_registry.register_device(db, STORE, DEVICE)
    return db


def messages(n: int, seed: int) -> list[bytes]:
    """``n`` envelopes of 5 events each."""
    return envelopes(STORE, DEVICE, realistic_events(DEVICE, 5 * n, seed=seed), 5)


def batch_id(raw: bytes) -> uuid.UUID:
    return uuid.UUID(json.loads(raw)["batch_id"])


def event_ids(raw: bytes) -> list[str]:
    return [e["id"] for e in json.loads(raw)["events"]]


def poison(monkeypatch: pytest.MonkeyPatch, raw: bytes, how: str = "null_type") -> None:
    """Make the rows of the message ``raw`` ones the database refuses: a NULL ``type`` (NOT
    NULL) or a ``seq`` beyond BIGINT. Only that message's rows change."""
    first = uuid.UUID(event_ids(raw)[0])
    real = ingest_rows.message_rows

    def rows(*args: Any, **kw: Any) -> Any:
        built, statuses = real(*args, **kw)
        if built and uuid.UUID(str(built[0][0])) == first:
            column, value = (_TYPE, None) if how == "null_type" else (_SEQ, 2**63)
            built = [(*r[:column], value, *r[column + 1 :]) for r in built]
        return built, statuses

    monkeypatch.setattr(ingest_rows, "message_rows", rows)


def dead_storage(db) -> list[dict[str, Any]]:
    return db.query("SELECT topic, reason, detail, raw FROM dead_letters ORDER BY id")


def dead_metric() -> float:
    value = REGISTRY.get_sample_value(
        "storelens_ingest_dead_letters_total", {"reason": "storage_error"}
    )
    return value or 0.0


@pytest.mark.parametrize("how", ["null_type", "seq_beyond_bigint"])
def test_one_poison_message_is_dead_lettered_and_the_rest_of_its_batch_stored(
    chain, monkeypatch, how
) -> None:
    """Without the writer process: SQLite in this process, PostgreSQL by COPY."""
    ingestor = Ingestor(chain)
    msgs = messages(10, seed=41)
    bad = msgs[6]
    poison(monkeypatch, bad, how)
    before = dead_metric()
    result = ingestor.write(ingestor.prepare([Incoming(TOPIC, raw) for raw in msgs]))
    assert (result.messages, result.stored, result.duplicates) == (10, 45, 0)
    assert result.dead == {"storage_error": 1}
    assert dead_metric() == before + 1
    # Every envelope is durable, the poison one as a dead letter: each receipted once.
    assert sorted(result.receipts[(STORE, DEVICE)]) == sorted(batch_id(raw) for raw in msgs)
    assert chain.scalar("SELECT count(*) FROM events") == 45
    stored = {str(r["id"]) for r in chain.query("SELECT id FROM events")}
    assert stored == {i for raw in msgs if raw is not bad for i in event_ids(raw)}
    [dead] = dead_storage(chain)
    assert (dead["topic"], dead["reason"], bytes(dead["raw"])) == (TOPIC, "storage_error", bad)
    assert dead["detail"].split(":")[0].endswith(("Error", "Violation", "OutOfRange"))
    # The next batch goes in as usual.
    after = messages(1, seed=42)
    assert ingestor.write(ingestor.prepare([Incoming(TOPIC, after[0])])).stored == 5
    assert chain.scalar("SELECT count(*) FROM events") == 50


def test_an_outage_while_splitting_dead_letters_nothing_and_resumes(chain, monkeypatch) -> None:
    """The second half hits an outage: raised for the caller to retry, nothing dead-lettered;
    the retry of the same prepared batch does not write the committed half again."""
    import psycopg

    ingestor = Ingestor(chain)
    msgs = messages(8, seed=43)
    poison(monkeypatch, msgs[5])
    outage = (
        sqlite3.OperationalError("database is locked")
        if chain.dialect == "sqlite"
        else psycopg.OperationalError("connection refused")
    )
    real, calls = event_store.store_prepared, []

    def store_prepared(db: Any, batch: Any) -> Any:
        calls.append(len(batch.rows))
        if len(calls) == 3:  # whole batch (refused), first half (stored), second half
            raise outage
        return real(db, batch)

    monkeypatch.setattr(event_store, "store_prepared", store_prepared)
    prepared = ingestor.prepare([Incoming(TOPIC, raw) for raw in msgs])
    with pytest.raises(type(outage)):
        ingestor.write(prepared)
    assert chain.scalar("SELECT count(*) FROM dead_letters") == 0
    assert chain.scalar("SELECT count(*) FROM events") == 20  # the first half, committed
    result = ingestor.write(prepared)  # the worker's retry
    assert (result.messages, result.stored, result.duplicates) == (8, 35, 0)
    assert result.dead == {"storage_error": 1}
    assert [bytes(d["raw"]) for d in dead_storage(chain)] == [msgs[5]]
    assert chain.scalar("SELECT count(*) FROM events") == 35
    assert len(result.receipts[(STORE, DEVICE)]) == 8


def test_a_redelivered_batch_dead_letters_its_messages_once(chain, monkeypatch) -> None:
    """A worker stopped after committing part of a split batch: the broker redelivers all of
    it, and a fresh prepare writes it again. Its events are duplicates now, and its dead
    letters (the poison's storage_error, a malformed message's) are not written twice."""
    ingestor = Ingestor(chain)
    msgs = messages(6, seed=47)
    poison(monkeypatch, msgs[4])
    batch = [Incoming(TOPIC, raw) for raw in msgs] + [Incoming(TOPIC, b'{"not": "an envelope"}')]
    first = ingestor.write(ingestor.prepare(batch))
    assert (first.stored, sum(first.dead.values())) == (25, 2)
    kept = dead_storage(chain)
    again = ingestor.write(ingestor.prepare(batch))
    assert (again.stored, again.duplicates) == (0, 25)
    assert dead_storage(chain) == kept
    assert sorted(d["reason"] for d in kept) == sorted(first.dead)
    # Another reason for the same bytes is another dead letter.
    monkeypatch.undo()
    device_registry.unregister_device(chain, STORE, DEVICE)
    retired = Ingestor(chain).prepare([Incoming(TOPIC, msgs[4])])
    Ingestor(chain).write(retired)
    assert [d["reason"] for d in dead_storage(chain)][-1] == "unregistered_device"
    assert len(dead_storage(chain)) == 3


def test_a_worker_dead_letters_the_poison_message_and_keeps_ingesting(
    chain, worker, monkeypatch
) -> None:
    """Through MQTT: SQLite writes in the writer process (the refused rows travel to it),
    PostgreSQL streams with COPY first, then splits."""
    if chain.dialect == "sqlite":
        assert worker.ingestor.writer is not None
    sent: list[uuid.UUID] = []
    send = worker._send_receipts
    worker._send_receipts = lambda receipts: (  # type: ignore[method-assign]
        sent.extend(i for ids in receipts.values() for i in ids),
        send(receipts),
    )
    msgs = messages(7, seed=44)
    bad = msgs[3]
    poison(monkeypatch, bad)
    import paho.mqtt.client as mqtt

    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=uuid.uuid4().hex)
    pub.connect(worker.settings.mqtt_host, worker.settings.mqtt_port)
    pub.loop_start()
    try:
        for raw in msgs:
            pub.publish(TOPIC, raw, qos=1)
        wait_for(lambda: worker.totals.messages == 7)
        later = messages(1, seed=45)[0]
        pub.publish(TOPIC, later, qos=1).wait_for_publish(10)
        wait_for(lambda: worker.totals.messages == 8)
    finally:
        pub.disconnect()
        pub.loop_stop()
    assert chain.scalar("SELECT count(*) FROM events") == 35
    assert (worker.totals.stored, worker.totals.duplicates) == (35, 0)
    assert worker.totals.dead == {"storage_error": 1}
    [dead] = dead_storage(chain)
    assert (dead["reason"], bytes(dead["raw"])) == ("storage_error", bad)
    assert sorted(sent) == sorted(batch_id(raw) for raw in [*msgs, later])


def test_a_status_with_the_largest_counts_is_stored(chain) -> None:
    """Every device count the contract accepts fits its column: PostgreSQL's
    ``devices.outbox_depth`` was an INTEGER (32 bits), so a status with 2**31 in it was a
    poison message there (events migration 6 widens it)."""
    ingestor = Ingestor(chain)
    good = messages(1, seed=46)
    status = DeviceStatus(device=DEVICE, seq=1, ts=json.loads(good[0])["sent_at"],
                          outbox_depth=MAX_STORED_INT, lost_events=MAX_STORED_INT)  # fmt: skip
    raw = encode_envelope(Envelope(store=STORE, device=DEVICE, events=[status]))
    result = ingestor.write(ingestor.prepare([Incoming(topics.status(STORE, DEVICE), raw)]))
    assert result.dead == {}
    row = chain.query_one(
        "SELECT outbox_depth, lost_events FROM devices WHERE store = ? AND device = ?",
        (STORE, DEVICE),
    )
    assert (int(row["outbox_depth"]), int(row["lost_events"])) == (MAX_STORED_INT,) * 2


def test_data_errors_are_told_from_outages(tmp_path) -> None:
    import psycopg

    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (a INTEGER NOT NULL)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (1)")
    holder.execute("ROLLBACK")
    with pytest.raises(sqlite3.IntegrityError) as null:
        other.execute("INSERT INTO t VALUES (NULL)")
    with pytest.raises(OverflowError) as big:
        other.execute("INSERT INTO t VALUES (?)", (2**64,))
    with pytest.raises(sqlite3.Error) as unbindable:
        other.execute("INSERT INTO t VALUES (?)", ({},))
    other.close()
    with pytest.raises(sqlite3.ProgrammingError) as closed:
        other.execute("SELECT 1")
    holder.close()
    refused = [null, big, unbindable]
    assert all(data_error(e.value) for e in refused)
    assert not data_error(locked.value) and not data_error(closed.value)
    assert data_error(DataError("integer out of range")) and data_error(IntegrityError("x"))
    assert data_error(psycopg.errors.NumericValueOutOfRange("out of range"))
    assert data_error(psycopg.errors.NotNullViolation("null"))
    assert not data_error(psycopg.OperationalError("connection refused"))
    assert not data_error(psycopg.errors.UndefinedTable("no such table"))
    assert not data_error(psycopg.errors.SerializationFailure("retry"))
    assert not data_error(ConnectionError("SQLite writer process died"))
    assert not data_error(RuntimeError("SQLite writer: OperationalError: database is locked"))
