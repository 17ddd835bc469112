"""`storelens cloud dead-letters replay`: dead letters whose cause is gone go through ingest
again; those that store are deleted, those that fail again stay exactly as they were, and a
dry run changes nothing. Both backends, through the command (typer's CliRunner, in this
process, so a poison injected at the row builder applies to it too)."""

from __future__ import annotations

from typing import Any

import pytest
from test_ingest_poison import event_ids, poison
from typer.testing import CliRunner

from storelens.cloud.cli import app
from storelens.cloud.commerce import stores
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest.worker import Incoming, Ingestor
from storelens.contract import topics
from storelens.tools.bench.ingest import envelopes, realistic_events

STORE, KNOWN, LATE = "s1", "cam-box-1", "cam-box-2"  # LATE is registered after its events


@pytest.fixture
def chain(db):
    stores.upsert_store(db, stores.Store(id=STORE, name="One", lat=48.85, lon=2.35))
    device_registry.register_device(db, STORE, KNOWN)
    return db


def messages(device: str, n: int, seed: int) -> list[bytes]:
    """``n`` envelopes of 5 events each from ``device``."""
    return envelopes(STORE, device, realistic_events(device, 5 * n, seed=seed), 5)


def ingest(db: Any, msgs: list[tuple[str, bytes]]) -> None:
    """One batch through the worker's ingest path (``(device, raw)`` pairs)."""
    ingestor = Ingestor(db)
    ingestor.write(ingestor.prepare([Incoming(topics.events(STORE, d), raw) for d, raw in msgs]))


def replay(db_url: str, *args: str) -> str:
    result = CliRunner().invoke(app, ["dead-letters", "replay", "--db", db_url, *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output.strip().splitlines()[-1]


def dead(db: Any) -> list[dict[str, Any]]:
    rows = db.query("SELECT id, received_at, topic, reason, detail, raw FROM dead_letters")
    return sorted(({**r, "raw": bytes(r["raw"])} for r in rows), key=lambda r: r["id"])


def stored_ids(db: Any) -> list[str]:
    return sorted(str(r["id"]) for r in db.query("SELECT id FROM events"))


def snapshot(db: Any) -> dict[str, Any]:
    """Every table a replay writes to."""
    return {
        "events": db.query("SELECT * FROM events ORDER BY id"),
        "dead": dead(db),
        "dirty": db.query("SELECT * FROM rollup_dirty ORDER BY store, ts"),
        "devices": db.query("SELECT * FROM devices ORDER BY store, device"),
    }


def test_a_late_registered_devices_messages_are_stored_once_and_their_dead_letters_go(
    chain, db_url
) -> None:
    late = messages(LATE, 3, seed=51)
    ingest(chain, [(KNOWN, raw) for raw in messages(KNOWN, 2, seed=52)]
           + [(LATE, raw) for raw in late])  # fmt: skip
    before = dead(chain)
    assert [d["reason"] for d in before] == ["unregistered_device"] * 3
    assert chain.scalar("SELECT count(*) FROM events") == 10
    # Not registered yet: replaying keeps every one as it was, and writes no second row.
    assert replay(db_url).endswith("0 stored and removed (0 new events, 0 duplicates), "
                                   "3 still dead (unregistered_device 3)")  # fmt: skip
    assert dead(chain) == before
    device_registry.register_device(chain, STORE, LATE)
    chain.execute("DELETE FROM rollup_dirty")
    out = replay(db_url)
    assert out == ("replayed 3 dead letter(s): 3 stored and removed "
                   "(15 new events, 0 duplicates), 0 still dead")  # fmt: skip
    assert dead(chain) == []
    late_ids = [i for raw in late for i in event_ids(raw)]
    assert chain.scalar("SELECT count(*) FROM events") == 25
    assert set(late_ids) <= set(stored_ids(chain))
    # As the worker would have stored them then: received when the cloud first heard them,
    # their hours marked for the rollups to settle.
    times = {r["received_at"] for r in chain.query(
        "SELECT received_at FROM events WHERE device = ?", (LATE,))}  # fmt: skip
    assert times == {before[0]["received_at"]}
    hours = {int(e["ts"] // 3600) * 3600 for e in chain.query(
        "SELECT ts FROM events WHERE device = ?", (LATE,))}  # fmt: skip
    dirty = chain.query("SELECT store, ts FROM rollup_dirty")
    assert {(r["store"], int(r["ts"])) for r in dirty} == {(STORE, h) for h in hours}
    # Replaying again changes nothing.
    after = snapshot(chain)
    assert replay(db_url).startswith("replayed 0 dead letter(s)")
    assert snapshot(chain) == after


def test_a_dead_letter_whose_message_was_stored_meanwhile_is_removed_as_duplicates(
    chain, db_url
) -> None:
    """Dead-lettered, then the device registered and its resend of the same bytes stored."""
    late = messages(LATE, 1, seed=53)
    ingest(chain, [(LATE, late[0])])
    device_registry.register_device(chain, STORE, LATE)
    ingest(chain, [(LATE, late[0])])
    assert len(dead(chain)) == 1
    assert replay(db_url) == (
        "replayed 1 dead letter(s): 1 stored and removed (0 new events, 5 duplicates), 0 still dead"
    )
    assert dead(chain) == []
    assert stored_ids(chain) == sorted(event_ids(late[0]))


def test_a_storage_error_is_replayed_once_its_cause_is_gone(chain, db_url, monkeypatch) -> None:
    msgs = messages(KNOWN, 6, seed=54)
    bad = msgs[2]
    poison(monkeypatch, bad)
    ingest(chain, [(KNOWN, raw) for raw in msgs])
    [letter] = dead(chain)
    assert (letter["reason"], letter["raw"]) == ("storage_error", bad)
    assert chain.scalar("SELECT count(*) FROM events") == 25
    monkeypatch.undo()  # the fix (a migration, a new release) is in
    assert replay(db_url, "--reason", "storage_error") == (
        "replayed 1 dead letter(s): 1 stored and removed (5 new events, 0 duplicates), 0 still dead"
    )
    assert dead(chain) == []
    assert stored_ids(chain) == sorted(i for raw in msgs for i in event_ids(raw))
    after = snapshot(chain)
    assert replay(db_url).startswith("replayed 0 dead letter(s)")
    assert snapshot(chain) == after


def test_one_that_still_fails_stays_exactly_once_beside_those_that_store(
    chain, db_url, monkeypatch
) -> None:
    """One replayed batch (dead letters of one ingest batch) in which storage still refuses
    one message: the batch is split inside the replay's transaction, the others are stored
    and removed, and the refused one keeps its one row unchanged."""
    late = messages(LATE, 3, seed=55)
    msgs = messages(KNOWN, 4, seed=56)
    bad = msgs[1]
    poison(monkeypatch, bad, "seq_beyond_bigint")
    ingest(chain, [(LATE, late[0]), *((KNOWN, raw) for raw in msgs), (LATE, late[1]),
                   (LATE, late[2])])  # fmt: skip
    before = dead(chain)
    assert sorted(d["reason"] for d in before) == ["storage_error"] + ["unregistered_device"] * 3
    device_registry.register_device(chain, STORE, LATE)
    for _ in range(2):  # and again: the refused one still stays once
        out = replay(db_url)
        assert out.endswith("still dead (storage_error 1)")
        [kept] = dead(chain)
        assert kept == next(d for d in before if d["reason"] == "storage_error")
    assert out == ("replayed 1 dead letter(s): 0 stored and removed (0 new events, "
                   "0 duplicates), 1 still dead (storage_error 1)")  # fmt: skip
    assert set(stored_ids(chain)) == {
        i for raw in [*late, *msgs] if raw is not bad for i in event_ids(raw)
    }


def test_a_dry_run_reports_and_changes_nothing(chain, db_url, monkeypatch) -> None:
    late = messages(LATE, 2, seed=57)
    msgs = messages(KNOWN, 3, seed=58)
    poison(monkeypatch, msgs[0])
    ingest(chain, [(LATE, raw) for raw in late] + [(KNOWN, raw) for raw in msgs])
    device_registry.register_device(chain, STORE, LATE)
    before = snapshot(chain)
    assert replay(db_url, "--dry-run") == (
        "dry run, nothing changed: would replay 3 dead letter(s): 2 stored and removed "
        "(10 new events, 0 duplicates), 1 still dead (storage_error 1)"
    )
    assert snapshot(chain) == before
    # What it said is what a real run does.
    assert replay(db_url).startswith("replayed 3 dead letter(s): 2 stored and removed "
                                     "(10 new events, 0 duplicates), 1 still dead")  # fmt: skip


def test_reason_since_and_limit_select_the_dead_letters(chain, db_url) -> None:
    late = messages(LATE, 3, seed=59)
    for raw in late:
        ingest(chain, [(LATE, raw)])
    chain.execute(
        "INSERT INTO dead_letters (received_at, topic, reason, detail, raw) VALUES (?, ?, ?, ?, ?)",
        (1.0, topics.events(STORE, KNOWN), "bad_json", "not JSON", b"{"),
    )
    device_registry.register_device(chain, STORE, LATE)
    assert replay(db_url, "--reason", "bad_json", "--dry-run").startswith(
        "dry run, nothing changed: would replay 1 dead letter(s)"
    )
    assert replay(db_url, "--since", "2000-01-01", "--limit", "1").startswith(
        "replayed 1 dead letter(s): 1 stored"
    )
    assert replay(db_url, "--since", "2000-01-01T00:00:00+00:00").startswith(
        "replayed 2 dead letter(s): 2 stored"
    )
    [left] = dead(chain)
    assert left["reason"] == "bad_json"
    assert chain.scalar("SELECT count(*) FROM events") == 15
    assert replay(db_url, "--reason", "bad_json").startswith("replayed 1 dead letter(s): 0")
    assert [d["reason"] for d in dead(chain)] == ["bad_json"]  # still bad: kept once
    bad = CliRunner().invoke(app, ["dead-letters", "replay", "--db", db_url, "--since", "x"])
    assert bad.exit_code == 2
