"""Rows of envelopes the contract's structs take as sent equal the rows of the same envelopes
decoded through the models' canonical text (the path of a lax spelling), consent included (an
opted-out member's events are stored unlinked, without personal fields): one row builder."""

from __future__ import annotations

import json

import pytest

from storelens.cloud.commerce import members, stores
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest import events as event_store
from storelens.cloud.ingest.worker import Incoming, Ingestor
from storelens.contract import decoder, topics
from storelens.pseudonym import PseudonymKey
from storelens.tools.bench.ingest import envelopes, realistic_event_dicts

STORE, DEVICE = "s1", "cam-box-1"
KEY = PseudonymKey("k1", b"k" * 32)
RECEIVED = event_store.EVENT_COLUMNS.index("received_at")
PAYLOAD = event_store.EVENT_COLUMNS.index("payload")


@pytest.fixture
def chain(db):
    stores.upsert_store(db, stores.Store(id=STORE, name="One", lat=48.85, lon=2.35))
    device_registry.register_device(db, STORE, DEVICE)
    return db


def test_rows_as_sent_equal_rows_through_the_models(chain, monkeypatch: pytest.MonkeyPatch) -> None:
    members.enroll(chain, KEY, members.Enrollment(card_number="1111-2222"))
    members.enroll(chain, KEY, members.Enrollment(card_number="3333-4444", tracking=False))
    tokens = [KEY.token("1111-2222"), KEY.token("3333-4444")]
    dicts = realistic_event_dicts(DEVICE, 400, seed=41, members=tokens)
    batch = [
        Incoming(topics.events(STORE, DEVICE), raw) for raw in envelopes(STORE, DEVICE, dicts, 100)
    ]
    ingestor = Ingestor(chain)
    fast = ingestor.prepare(batch)
    as_sent = decoder.accept
    # The structs refuse every message as sent: each goes through the models' canonical text.
    monkeypatch.setattr(decoder, "accept", lambda raw, limit=1: None if limit else as_sent(raw))
    slow = ingestor.prepare(batch)
    assert fast.dead == slow.dead == []
    assert len(fast.rows) == 400
    strip = lambda rows: [r[:RECEIVED] + r[RECEIVED + 1 : PAYLOAD] for r in rows]  # noqa: E731
    assert strip(fast.rows) == strip(slow.rows)
    payloads = lambda rows: [json.loads(r[PAYLOAD]) for r in rows]  # noqa: E731
    assert payloads(fast.rows) == payloads(slow.rows)
    assert fast.receipts == slow.receipts and fast.seen.keys() == slow.seen.keys()
    # A device counts as seen when the cloud heard it, whichever path parsed the message.
    assert set(fast.seen.values()) == {fast.received_at}
    assert set(slow.seen.values()) == {slow.received_at}
    unlinked = [r for r in fast.rows if tokens[1] in r[-1]]
    assert unlinked == []  # the opted-out member's token is stored nowhere
    assert any(r[event_store.EVENT_COLUMNS.index("member")] == tokens[0] for r in fast.rows)
