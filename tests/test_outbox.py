"""The SQLite outbox: states, bounds with counted losses, gap-free sequence across restarts."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from storelens.contract.events import OccupancySnapshot
from storelens.edge.outbox import Outbox

TS = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def snap(ob: Outbox, total: int = 1) -> OccupancySnapshot:
    return OccupancySnapshot(device="box", seq=ob.next_seq(), ts=TS, camera="cam", total=total)


def test_pending_sent_confirmed(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ob.put([snap(ob, i) for i in range(5)])
    ob.put([snap(ob)], kind="status")
    assert ob.depth == 6 and ob.size_bytes > 0
    rows = ob.take("events", 3, 1 << 20)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert json.loads(rows[0].body)["total"] == 0
    ob.mark_sent([r.seq for r in rows], "b7")
    assert [r.seq for r in ob.take("events", 10, 1 << 20)] == [4, 5]  # sent: not retaken
    assert ob.confirm(["b99"]) == 0
    assert ob.confirm(["b7"]) == 3
    assert ob.confirm(["b7"]) == 0  # a repeated receipt changes nothing
    assert ob.depth == 3
    assert [r.seq for r in ob.take("status", 10, 1 << 20)] == [6]
    ob.close()


def test_requeue_sends_again_and_a_late_receipt_for_the_old_batch_deletes_nothing(
    tmp_path: Path,
) -> None:
    ob = Outbox(tmp_path / "o.db")
    ob.put([snap(ob) for _ in range(4)])
    ob.mark_sent([1, 2], "old")
    ob.mark_sent([3], "other")
    assert ob.pending() == 1
    assert ob.requeue(["old"]) == 2  # no receipt in time
    assert [r.seq for r in ob.take("events", 10, 1 << 20)] == [1, 2, 4]
    ob.mark_sent([1, 2, 4], "new")
    assert ob.confirm(["old"]) == 0  # the first envelope's receipt arrives late
    assert ob.depth == 4
    assert ob.confirm(["new", "other"]) == 4 and ob.depth == 0 and ob.size_bytes == 0
    ob.close()


def test_outbox_file_from_before_receipts_is_migrated(tmp_path: Path) -> None:
    """A device updated in the field keeps its backlog: the old ``mid`` column goes."""
    path = tmp_path / "o.db"
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, created REAL NOT NULL,
                             size INTEGER NOT NULL, body BLOB NOT NULL, mid INTEGER);
        CREATE INDEX outbox_pending ON outbox (kind, seq) WHERE mid IS NULL;
        CREATE INDEX outbox_mid ON outbox (mid) WHERE mid IS NOT NULL;
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO outbox VALUES (1, 'events', 0, 3, x'7b7d', 17),
                                  (2, 'events', 0, 3, x'7b7d', NULL);
        INSERT INTO meta VALUES ('next_seq', 3), ('lost', 2);
        """
    )
    con.commit()
    con.close()
    ob = Outbox(path)
    assert [r.seq for r in ob.take("events", 10, 1 << 20)] == [1, 2]  # in flight -> pending
    assert ob.next_seq() == 3 and ob.lost == 2 and ob.depth == 2
    ob.mark_sent([1, 2], "b")
    assert ob.confirm(["b"]) == 2
    ob.close()


def test_take_respects_byte_budget(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ob.put([snap(ob) for _ in range(10)])
    size = len(ob.take("events", 1, 1 << 20)[0].body)
    assert len(ob.take("events", 10, size * 3 + 1)) == 3
    assert len(ob.take("events", 10, 1)) == 1  # always at least one, so nothing gets stuck


def test_restart_requeues_in_flight_and_keeps_sequence_gap_free(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ob.put([snap(ob) for _ in range(3)])
    ob.mark_sent([1, 2], "b1")
    ob.confirm(["b1"])
    ob.mark_sent([3], "b2")
    unused = ob.next_seq()  # allocated, never stored (crash before put)
    assert unused == 4
    ob.close()
    ob = Outbox(tmp_path / "o.db")
    assert [r.seq for r in ob.take("events", 10, 1 << 20)] == [3]  # in flight -> pending
    assert ob.next_seq() == 4  # the unused number is reused: no gap
    ob.close()
    # even with every row delivered, numbering continues after the high-water mark
    ob = Outbox(tmp_path / "o.db")
    ob.mark_sent([3], "b5")
    ob.confirm(["b5"])
    ob.put([snap(ob)])
    ob.close()
    ob = Outbox(tmp_path / "o.db")
    assert ob.next_seq() == 5


def test_byte_bound_drops_oldest_and_counts(tmp_path: Path) -> None:
    probe = Outbox(tmp_path / "p.db")
    probe.put([snap(probe)])
    one = probe.size_bytes
    ob = Outbox(tmp_path / "o.db", max_bytes=one * 5)
    for _ in range(20):
        ob.put([snap(ob)])
        assert ob.size_bytes <= one * 5
    kept = [r.seq for r in ob.take("events", 100, 1 << 20)]
    assert kept == list(range(21 - len(kept), 21))  # the newest, contiguous
    assert len(kept) >= 4 and ob.lost == 20 - len(kept)  # every drop counted
    ob.close()
    assert Outbox(tmp_path / "o.db", max_bytes=one * 5).lost == 20 - len(kept)  # persisted


def test_age_bound(tmp_path: Path) -> None:
    now = [1000.0]
    ob = Outbox(tmp_path / "o.db", max_age_s=60, clock=lambda: now[0])
    ob.put([snap(ob), snap(ob)])
    now[0] = 1030.0
    ob.put([snap(ob)])
    now[0] = 1070.0
    ob.put([snap(ob)])
    assert ob.lost == 2
    assert [r.seq for r in ob.take("events", 10, 1 << 20)] == [3, 4]


def test_sigkill_loses_nothing_stored(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    code = textwrap.dedent(
        f"""
        import sys, time
        from datetime import UTC, datetime
        from storelens.contract.events import OccupancySnapshot
        from storelens.edge.outbox import Outbox
        ob = Outbox({str(db)!r})
        for i in range(200):
            ob.put([OccupancySnapshot(device="box", seq=ob.next_seq(), ts=datetime.now(UTC),
                                      camera="c", total=i)])
        print("stored", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "stored"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    ob = Outbox(db)
    rows = ob.take("events", 1000, 1 << 30)
    assert [r.seq for r in rows] == list(range(1, 201))
    assert ob.next_seq() == 201
