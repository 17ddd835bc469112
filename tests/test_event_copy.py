"""PostgreSQL ingest streams rows with COPY while parsing: duplicates and faults lose nothing."""

from __future__ import annotations

import pytest

from storelens.cloud.commerce import stores
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest import events as event_store
from storelens.cloud.ingest.worker import Incoming, Ingestor
from storelens.contract import topics
from storelens.tools.bench.ingest import envelopes, realistic_event_dicts

STORE, DEVICE = "s1", "box-1"


@pytest.fixture
def pg(db):
    if db.dialect != "postgres":
        pytest.skip("COPY streaming is PostgreSQL only")
    stores.upsert_store(db, stores.Store(id=STORE, name="One", lat=0, lon=0))
    device_registry.register_device(db, STORE, DEVICE)
    return db


def _messages(count: int, per_message: int, seed: int = 1) -> list[Incoming]:
    dicts = realistic_event_dicts(DEVICE, count, seed=seed)
    return [
        Incoming(topics.events(STORE, DEVICE), raw)
        for raw in envelopes(STORE, DEVICE, dicts, per_message)
    ]


def test_streamed_batch_with_redelivered_and_repeated_messages(pg) -> None:
    ingestor = Ingestor(pg)
    first = _messages(60, 20)
    assert ingestor.process(first[:2]).stored == 40
    # A redelivered message, a fresh one, and the fresh one twice in the same batch.
    result = ingestor.process([first[1], first[2], first[2]])
    assert (result.stored, result.duplicates) == (20, 40)
    assert pg.scalar("SELECT count(*) FROM events") == 60


def test_a_database_fault_while_streaming_commits_nothing(pg, monkeypatch) -> None:
    ingestor = Ingestor(pg)

    def broken(db, topic, reason, detail, raw, received_at=None) -> None:
        raise ConnectionError("database went away")

    monkeypatch.setattr(event_store, "dead_letter", broken)
    batch = [*_messages(40, 20), Incoming(topics.events(STORE, DEVICE), b"not json")]
    with pytest.raises(ConnectionError):
        ingestor.process(batch)
    assert pg.scalar("SELECT count(*) FROM events") == 0
    monkeypatch.undo()
    assert ingestor.process(batch).stored == 40


def test_event_copy_rolls_back_only_itself_on_a_stored_id(pg) -> None:
    ingestor = Ingestor(pg)
    ingestor.process(_messages(10, 10))
    rows = ingestor.prepare(_messages(10, 10)).rows
    with pg.transaction():
        with event_store.EventCopy(pg) as copy:
            copy.write(rows)
        assert not copy.ok
        pg.execute("UPDATE devices SET description = 'still usable' WHERE device = ?", (DEVICE,))
    assert pg.scalar("SELECT description FROM devices WHERE device = ?", (DEVICE,)) == (
        "still usable"
    )
