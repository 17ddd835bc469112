"""The paths chart's zone sequences are interned once in ``rollup_paths`` and day rows count
visits per id: the chart sums id arrays and names only its top sequences, with ties broken
by sequence as from the raw events; day rows of the older format (sequence -> visits) are
still read. Both backends."""

from __future__ import annotations

import dataclasses
import random
import threading
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import msgspec
from test_rollups import charts, rollup_state, same, scopes, seed

from storelens.cloud import analytics
from storelens.cloud.analytics.rollups import chain, rebuild, settle, sql
from storelens.cloud.commerce import stores
from storelens.cloud.ingest import events
from storelens.contract.events import VisitEnded, VisitStarted

decode = msgspec.msgpack.Decoder().decode
encode = msgspec.msgpack.Encoder().encode
DAY = date(2026, 3, 10)


def _interned(db) -> dict[str, int]:
    return {r["path"]: int(r["id"]) for r in db.query("SELECT id, path FROM rollup_paths")}


def _day_paths(db) -> list[dict]:
    return db.query(
        "SELECT grp, utc_offset, ts, data FROM rollup_days WHERE kind = 'paths'"
        " ORDER BY grp, utc_offset, ts"
    )


def test_zone_sequences_are_interned_once_and_day_rows_count_ids(db) -> None:
    seed(db)
    names = _interned(db)
    assert len(names) > 15 and len(set(names.values())) == len(names)
    days = _day_paths(db)
    assert days and all(isinstance(decode(bytes(r["data"])), msgspec.msgpack.Ext) for r in days)
    used = set()
    for r in days:
        used.update(chain.path_pairs(decode(bytes(r["data"])))[:, 0].tolist())
    assert used == set(names.values())  # every sequence counted, each under one id
    # Settling the same hours again, or a rebuild, adds no sequence and changes no id.
    state = rollup_state(db)
    hours = db.query("SELECT DISTINCT store, ts FROM rollup_counts")
    db.executemany("INSERT INTO rollup_dirty (store, ts, marked_at, version) VALUES (?, ?, 0, 1)",
                   [(r["store"], r["ts"]) for r in hours])  # fmt: skip
    settle.settle_all(db)
    rebuild.rebuild(db)
    assert _interned(db) == names
    same(rollup_state(db), state)
    # Known sequences are looked up, not inserted: PostgreSQL's sequence does not advance,
    # so new ids follow the last one.
    top = max(names.values())
    with db.transaction():
        ids = sql.path_ids(db, [*names, "new > one", "new > two"])
    assert {p: ids[p] for p in names} == names
    assert sorted((ids["new > one"], ids["new > two"])) == [top + 1, top + 2]
    assert len(_interned(db)) == len(names) + 2


def test_concurrent_writers_intern_a_sequence_once(db) -> None:
    """Two transactions adding overlapping sequences: the second waits for the first's
    commit (PostgreSQL: on the unique digest; SQLite: on the write lock) and reads its id."""
    with db.transaction():
        sql.path_ids(db, ["a"])
    first_in, results, errors = threading.Event(), {}, []

    def writer(name: str, paths: list[str], wait: threading.Event | None) -> None:
        try:
            if wait is not None:
                wait.wait(5)
            with db.transaction():
                results[name] = dict(sql.path_ids(db, paths))
                if wait is None:
                    first_in.set()
                    threading.Event().wait(0.3)  # hold the transaction open
        except Exception as e:  # reported below
            errors.append(e)
            first_in.set()

    threads = [
        threading.Thread(target=writer, args=("one", ["a", "x", "y"], None)),
        threading.Thread(target=writer, args=("two", ["y", "z", "a"], first_in)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors, errors
    ids = _interned(db)
    assert sorted(ids) == ["a", "x", "y", "z"]
    assert results["one"]["y"] == results["two"]["y"] == ids["y"]
    assert results["one"]["a"] == results["two"]["a"] == ids["a"]


def _visit(db, store: str, start: datetime, zones: list[str]) -> None:
    common = {"device": "box", "camera": "cam1", "visit_id": uuid.uuid4()}
    end = start + timedelta(minutes=5)
    evs = [VisitStarted(seq=1, ts=start, **common),
           VisitEnded(seq=2, ts=end, started_at=start, duration_s=300.0, zones=zones,
                      path=[[1.0, 1.0, 0.0], [2.0, 2.0, 300.0]], **common)]  # fmt: skip
    events.store_events(db, [events.model_row(store, e, 0.0, None) for e in evs])


def test_top_paths_break_ties_by_sequence_when_ids_are_in_another_order(db) -> None:
    """Twenty sequences tie at the 15th place: the chart shows the first by sequence, also
    when their ids run the other way, with their visits summed over stores and days (day
    rows, store-hours of a dirty day, and the dirty hour's raw events)."""
    sequences = [f"z{k:02d} > a" for k in range(20)]
    with db.transaction():  # ids in reverse order of the sequences
        sql.path_ids(db, sorted(sequences, reverse=True))
    for sid in ("s1", "s2"):
        stores.upsert_store(db, stores.Store(id=sid, name=sid, lat=0.0, lon=0.0))
    t0 = datetime.combine(DAY, datetime.min.time(), UTC) + timedelta(hours=9)
    for d in range(2):
        for k, seq in enumerate(sequences):
            store = ("s1", "s2")[(k + d) % 2]
            _visit(db, store, t0 - timedelta(days=d) + timedelta(minutes=k), seq.split(" > "))
        _visit(db, "s1", t0 - timedelta(days=d), ["b"])  # the most visited: 4
        _visit(db, "s2", t0 - timedelta(days=d) + timedelta(hours=1), ["b"])
    settle.settle_all(db)
    scope = analytics.scope_for(db, DAY - timedelta(days=1), DAY)
    raw = charts(db, scope, raw=True)["paths"]
    assert [r["path"] for r in raw["rows"]] == ["b", *sorted(sequences)[:14]]
    same(charts(db, scope)["paths"], raw)
    # A late visit makes the last day dirty: its sequences are read per store-hour and raw.
    for k in range(3):
        _visit(db, "s2", t0 + timedelta(hours=3, minutes=k), ["z19", "a"])
    raw = charts(db, scope, raw=True)["paths"]
    assert raw["rows"][0]["path"] == "z19 > a"
    same(charts(db, scope)["paths"], raw)


def test_top_paths_equal_a_sort_of_all_sequences() -> None:
    """`chain.top_paths` of packed day values (int32 and int64 pairs) and counters, ids in
    random order, many ties, equals counting everything and sorting by (-visits, sequence)."""
    rng = random.Random(7)
    for _ in range(200):
        universe = sorted({f"p{rng.randrange(60):02d}" for _ in range(rng.randrange(1, 40))})
        # Shuffled ids; sometimes sparse (summed by sort) or past 2**31 (int64 pairs).
        base, stride = rng.choice(((1, 1), (5, 100_003), (2**33, 7)))
        ids = {p: base + stride * i for i, p in enumerate(rng.sample(universe, len(universe)))}
        names = {i: p for p, i in ids.items()}
        values, expected = [], Counter()
        for _ in range(rng.randrange(0, 6)):
            some = rng.sample(universe, min(3, len(universe)))
            visits = Counter({p: rng.choice((1, 1, 2, 3, 7)) for p in some})
            expected.update(visits)
            values.append(chain.pack_paths(visits, ids) if rng.random() < 0.6 else dict(visits))
        top = rng.choice((1, 3, 15))
        rows, total = chain.top_paths(values, top, lambda i, names=names: names)
        assert rows == sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        assert total == sum(expected.values())


def test_day_rows_of_the_older_paths_format_are_read(db) -> None:
    """Day rows written before the ids (sequence -> visits) answer as the raw events, alone
    or with day rows of the packed format in the same period."""
    seed(db)
    scope = scopes(db)[0]
    expected = charts(db, scope, raw=True)["paths"]
    same(charts(db, scope)["paths"], expected)
    names = _interned(db)
    by_id = {i: p for p, i in names.items()}
    rows = _day_paths(db)
    assert all(isinstance(decode(bytes(r["data"])), msgspec.msgpack.Ext) for r in rows)
    for k, r in enumerate(rows):
        if k % 2 and r["grp"] == "Europe/Paris":
            continue  # mixed: some of Paris's days stay packed as int32 pairs
        pairs = chain.path_pairs(decode(bytes(r["data"])))
        if k % 3 == 0:  # int64 pairs: the first packed format (and ids past 2**31)
            old = pairs.astype("<i8").tobytes()
        else:  # sequence -> visits: before the ids
            old = {by_id[i]: n for i, n in pairs.tolist()}
        db.execute("UPDATE rollup_days SET data = ? WHERE kind = 'paths' AND grp = ?"
                   " AND utc_offset = ? AND ts = ?",
                   (encode(old), r["grp"], r["utc_offset"], r["ts"]))  # fmt: skip
    kinds = {type(decode(bytes(r["data"]))) for r in _day_paths(db)}
    assert kinds == {msgspec.msgpack.Ext, bytes, dict}
    same(charts(db, scope)["paths"], expected)
    summer = dataclasses.replace(scope, offsets={s: o + 3600 for s, o in scope.offsets.items()})
    same(charts(db, summer)["paths"], charts(db, summer, raw=True)["paths"])
