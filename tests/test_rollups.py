"""Rollups maintained at ingest: every chart answers from them exactly as from the raw events,
duplicates change nothing, late events count once, forget-me leaves nothing personal, and a
rebuild from raw events equals incremental maintenance. Both backends."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, date, datetime, timedelta

import msgspec
import numpy as np
from typer.testing import CliRunner

from storelens.cloud import analytics
from storelens.cloud.analytics.rollups import aggregate, chain, rebuild, settle
from storelens.cloud.commerce import members, stores
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest.worker import Incoming, Ingestor
from storelens.contract import topics
from storelens.pseudonym import PseudonymKey
from storelens.tools.bench.ingest import envelopes, realistic_event_dicts
from storelens.tools.seed import instore as analytics_seed

UNTIL = datetime(2026, 3, 20, 19, tzinfo=UTC).timestamp()  # a Friday evening, before DST
LAST = date(2026, 3, 20)
KEY = PseudonymKey("k1", b"r" * 32)


# Charts whose numbers come from other tables besides events (sales, coupons): with the
# events deleted, what they read from the rollups must stay.
RAW_ONLY: set[str] = set()


def seed(db, days: int = 4, *, settled: bool = True) -> None:
    for sid, tz in (("paris", "Europe/Paris"), ("lisbon", "Europe/Lisbon")):
        stores.upsert_store(db, stores.Store(id=sid, name=sid, lat=45.0, lon=2.0, timezone=tz,
                                             zones={}))  # fmt: skip
    for n in range(8):
        members.enroll(db, KEY, members.Enrollment(card_number=f"4400{n:02d}"))
    sales(db, ("paris", "lisbon"), days)
    profile = analytics_seed.TrafficProfile(visitors_per_day=60, member_share=0.4)
    analytics_seed.seed_instore(db, days=days, until=UNTIL, profile=profile, settle=settled)


def sales(db, names: tuple[str, ...], days: int) -> None:
    """POS sales the seed builds paying visits for (checkout stays, try-on to purchase):
    eight a store-day from 10:00 to 17:00 UTC, every third a member's."""
    ids = [m["id"] for m in members.list_members(db, limit=100)]
    rows = []
    for store in names:
        for d in range(days):
            day = UNTIL - (d + 1) * 86_400 + 5 * 3600  # 19:00 UTC - a day + 5 h: 00:00 UTC
            for k in range(8):
                ts = day + (10 + k) * 3600 + 600
                member = ids[(d + k) % len(ids)] if k % 3 == 0 else None
                rows.append((f"{store}-{d}-{k}", store, ts, member, 20.0 + k, ts))
    db.executemany("INSERT INTO pos_sales (id, store, ts, member_id, total, created_at)"
                   " VALUES (?, ?, ?, ?, ?, ?)", rows)  # fmt: skip


def scopes(db) -> list[analytics.Scope]:
    first = LAST - timedelta(days=3)
    return [
        analytics.scope_for(db, first, LAST),
        analytics.scope_for(db, LAST - timedelta(days=1), LAST, ("paris",), 10, 14),
        analytics.scope_for(db, first, LAST, ("lisbon",), 18, 10),  # wraps past midnight
        analytics.scope_for(db, LAST, LAST, ("paris", "lisbon")),
    ]


def charts(db, scope: analytics.Scope, *, raw: bool = False) -> dict[str, dict]:
    scope = dataclasses.replace(scope, raw=raw)
    # The device table is about now, not about events: it has no rollup to compare.
    return {name: build(db, scope).to_json({}) for name, build in analytics.CHARTS.items()
            if name != "devices"}  # fmt: skip


def same(a, b, path: str = "") -> None:
    """Equal, floats to the 0.1 the charts round to (sums in another order may differ in the
    last bit, which can flip a rounding)."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), path
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=0.1 + 1e-9), f"{path}: {a} != {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: {a.keys()} vs {b}"
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: {len(a)} vs {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def rollup_state(db) -> dict[str, list]:
    """Every rollup row, maps decoded, in key order (to compare two ways of building them)."""
    decode = msgspec.msgpack.Decoder().decode
    return {
        "counts": db.query("SELECT store, ts, metric, n, total FROM rollup_counts"
                           " ORDER BY metric, ts, store"),
        "members": db.query("SELECT store, ts, member, visits FROM rollup_members"
                            " ORDER BY ts, store, member"),
        "maps": [
            {**r, "data": decode(bytes(r["data"]))}
            for r in db.query("SELECT store, ts, kind, data FROM rollup_maps"
                              " ORDER BY kind, ts, store")
        ],
        "days": [
            {**r, "data": decode(bytes(r["data"]))}
            for r in db.query("SELECT grp, utc_offset, ts, kind, data FROM rollup_days"
                              " ORDER BY kind, ts, grp, utc_offset")
        ],
    }  # fmt: skip


def test_event_columns_are_where_the_aggregates_read_them() -> None:
    aggregate.check_positions()


def test_every_chart_answers_from_rollups_as_from_raw_events(db) -> None:
    seed(db, settled=False)
    # Ingest marked the hours dirty: charts read those hours from the raw events.
    assert db.scalar("SELECT count(*) FROM rollup_dirty") > 0
    assert db.scalar("SELECT count(*) FROM rollup_counts") == 0
    expected = []
    for scope in scopes(db):
        raw = charts(db, scope, raw=True)
        assert raw["footfall-daily"]["rows"], "the seeded period has traffic"
        same(charts(db, scope), raw)
        expected.append(raw)
    assert any(r["member_visits"] for r in expected[0]["member-share"]["rows"])
    # The try-on, checkout and staff charts have something to compare.
    whole = expected[0]
    assert any(r["sessions"] for r in whole["try-ons"]["rows"])
    assert whole["try-ons"]["totals"]["member_tryon_visits"] > 0
    assert any(r["visits"] > r["tryon_visits"] > 0 for r in whole["try-ons"]["rows"])
    assert whole["checkout-queue"]["totals"]["checkouts"] > 0
    assert any(r["snapshots"] and r["median_wait_s"] for r in whole["checkout-queue"]["rows"])
    assert whole["staff"]["totals"]["staff_visits"] > 0
    assert any(r["visits"] for r in whole["entry-to-checkout"]["rows"])
    assert whole["try-ons"]["totals"]["member_tryon_purchases"] > 0
    assert whole["entry-to-checkout"]["totals"]["median_entry_to_checkout_s"]
    assert settle.settle(db, quiet_s=60) == 0  # nothing has been quiet that long
    assert settle.settle(db, quiet_s=0, limit=10) == 10
    for scope, raw in zip(scopes(db), expected, strict=True):  # part settled, part dirty
        same(charts(db, scope), raw)
    while settle.settle(db, quiet_s=0):
        pass
    assert db.scalar("SELECT count(*) FROM rollup_dirty") == 0
    for kind in ("heat", "tryons", "checkout", "staff"):
        assert db.scalar("SELECT count(*) FROM rollup_maps WHERE kind = ?", (kind,)) > 0, kind
    # The charts read the rollups only: with the raw events gone, every number stays.
    db.execute("DELETE FROM events")
    for scope, raw in zip(scopes(db), expected, strict=True):
        now = charts(db, scope)
        same({k: v for k, v in now.items() if k not in RAW_ONLY},
             {k: v for k, v in raw.items() if k not in RAW_ONLY})  # fmt: skip


def _ingest_messages(store: str, device: str, dicts: list[dict]) -> list[Incoming]:
    return [Incoming(topics.events(store, device), raw, mid=i + 1, qos=1)
            for i, raw in enumerate(envelopes(store, device, dicts, 50))]  # fmt: skip


def test_ingest_counts_each_new_event_once_duplicates_nothing(db) -> None:
    stores.upsert_store(db, stores.Store(id="s1", name="s1", lat=0.0, lon=0.0))
    device_registry.register_device(db, "s1", "box-1")
    start = datetime(2026, 3, 20, 9, tzinfo=UTC)
    dicts = realistic_event_dicts("box-1", 1200, seed=3, start=start)
    ingestor = Ingestor(db)
    first = _ingest_messages("s1", "box-1", dicts[:800])
    assert ingestor.process(first).stored == 800
    assert db.scalar("SELECT count(*) FROM rollup_dirty") > 0  # marked in the same commit
    scope = analytics.scope_for(db, date(2026, 3, 20), date(2026, 3, 20))
    same(charts(db, scope), charts(db, scope, raw=True))  # dirty hours read raw
    settle.settle(db, quiet_s=0)
    once = rollup_state(db)
    assert once["counts"] and once["maps"]
    assert db.scalar("SELECT count(*) FROM rollup_dirty") == 0

    # A resend of everything, and a batch holding the same message twice: nothing changes,
    # not even a mark.
    assert ingestor.process(first).stored == 0
    assert ingestor.process(first[:2] + first[:2]).stored == 0
    assert db.scalar("SELECT count(*) FROM rollup_dirty") == 0
    assert rollup_state(db) == once

    # The rest arrives with part of the first batch again (new and old in one batch), and a
    # device that was offline sends events of the morning hours later: each counts once.
    late_start = datetime(2026, 3, 20, 6, tzinfo=UTC)
    late = realistic_event_dicts("box-1", 150, seed=9, start=late_start, first_seq=5000)
    mixed = first[-3:] + _ingest_messages("s1", "box-1", dicts[800:] + late)
    assert ingestor.process(mixed).stored == 400 + 150
    same(charts(db, scope), charts(db, scope, raw=True))
    settle.settle(db, quiet_s=0)
    incremental = rollup_state(db)
    assert any(r["ts"] == int(late_start.timestamp()) for r in incremental["counts"])
    visits = sum(1 for d in dicts + late if d["type"] == "visit_started")
    assert sum(r["n"] for r in incremental["counts"] if r["metric"] == "visits") == visits
    rebuild.rebuild(db)
    same(rollup_state(db), incremental)
    same(charts(db, scope), charts(db, scope, raw=True))


def test_sqlite_writer_process_maintains_rollups(tmp_path) -> None:
    from storelens.cloud.db import connect
    from storelens.cloud.db.sqlite_writer import SqliteWriter

    url = f"sqlite:///{tmp_path / 'w.db'}"
    db = connect(url)
    device_registry.register_device(db, "s1", "box-1")
    ingestor = Ingestor(db)
    ingestor.writer = SqliteWriter(url)
    try:
        dicts = realistic_event_dicts("box-1", 600, seed=4)
        batch = _ingest_messages("s1", "box-1", dicts)
        assert ingestor.process(batch).stored == 600
        assert ingestor.process(batch).stored == 0
    finally:
        ingestor.close()
    settle.settle(db, quiet_s=0)
    incremental = rollup_state(db)
    assert sum(r["n"] for r in incremental["counts"] if r["metric"] == "visits_ended") == sum(
        1 for d in dicts if d["type"] == "visit_ended"
    )
    rebuild.rebuild(db)
    same(rollup_state(db), incremental)


def test_forgotten_member_leaves_nothing_personal_in_any_rollup(db) -> None:
    seed(db, days=2)
    member = members.list_members(db, limit=1)[0]
    token = members.get_member(db, member["id"])["token"]
    assert db.scalar("SELECT count(*) FROM rollup_members WHERE member = ?", (token,)) > 0
    before = charts(db, scopes(db)[0])["member-share"]
    # Try-on store-days keep member visits as hashes of visit IDs: the forgotten member's
    # visits are anonymous afterwards, so their hashes are in no store-day either.
    visits = [r["visit_id"] for r in db.query(
        "SELECT DISTINCT visit_id FROM events WHERE member = ?", (token,))]  # fmt: skip
    hashed = set(chain.visit_hashes(visits).tolist())
    assert hashed & _tryon_member_hashes(db)  # the member tried something on
    members.forget(db, member["id"])
    assert not hashed & _tryon_member_hashes(db)
    assert db.scalar("SELECT count(*) FROM rollup_days") > 0
    for table in ("rollup_counts", "rollup_members", "rollup_maps", "rollup_days"):
        for row in db.query(f"SELECT * FROM {table}"):
            assert token not in json.dumps(row, default=lambda v: bytes(v).hex()), table
            if table in ("rollup_maps", "rollup_days"):
                assert token.encode() not in bytes(row["data"])
    now = charts(db, scopes(db)[0])
    same(now, charts(db, scopes(db)[0], raw=True))  # try-ons' member flags cleared too
    after = now["member-share"]
    lost = sum(r["member_visits"] for r in before["rows"]) - sum(
        r["member_visits"] for r in after["rows"]
    )
    assert lost > 0  # the forgotten member's visits are anonymous now
    assert sum(r["visits"] for r in after["rows"]) == sum(r["visits"] for r in before["rows"])


def _tryon_member_hashes(db) -> set[int]:
    """Every member-visit hash of the try-on store-days (`chain.tryon_day`)."""
    out: set[int] = set()
    for r in db.query("SELECT data FROM rollup_days WHERE kind = 'tryons'"):
        out |= set(np.frombuffer(msgspec.msgpack.decode(bytes(r["data"]))["m"], "<u8").tolist())
    return out


def test_rebuild_equals_incremental_chart_by_chart(db, monkeypatch) -> None:
    seed(db)
    incremental_state = rollup_state(db)
    incremental = [charts(db, s) for s in scopes(db)]

    db.execute("DELETE FROM rollup_maps")  # damaged rollups: a rebuild restores them
    db.execute("UPDATE rollup_counts SET n = n + 7")
    from storelens.cloud.cli import app

    result = CliRunner().invoke(app, ["rollups", "rebuild", "--db", _url(db)])
    assert result.exit_code == 0, result.output
    assert "rebuilt" in result.output
    same(rollup_state(db), incremental_state)
    for scope, expected in zip(scopes(db), incremental, strict=True):
        same(charts(db, scope), expected)

    # One store from a date on: only its rows from then on are replaced.
    db.execute("UPDATE rollup_counts SET n = n + 1 WHERE store = 'paris'")
    cut = datetime.combine(LAST - timedelta(days=1), datetime.min.time(), UTC).timestamp()
    rebuild.rebuild(db, since=LAST - timedelta(days=1), store="paris")
    original = {(r["store"], r["ts"], r["metric"]): r["n"] for r in incremental_state["counts"]}
    for r in rollup_state(db)["counts"]:
        damaged = r["store"] == "paris" and r["ts"] < cut
        assert r["n"] == original[(r["store"], r["ts"], r["metric"])] + (1 if damaged else 0)
    rebuild.rebuild(db, store="paris")
    same(rollup_state(db), incremental_state)


def test_rollups_off_records_nothing_until_rebuilt(db, monkeypatch) -> None:
    monkeypatch.setenv("STORELENS_ROLLUPS", "0")
    seed(db, days=1)
    assert db.scalar("SELECT count(*) FROM rollup_counts") == 0
    monkeypatch.delenv("STORELENS_ROLLUPS")
    rebuild.rebuild(db)
    scope = analytics.scope_for(db, LAST, LAST)
    same(charts(db, scope), charts(db, scope, raw=True))


def _url(db) -> str:
    if db.dialect == "sqlite":
        return f"sqlite:///{db.path}"
    return db.url


def test_a_staff_flag_at_the_visit_end_takes_its_earlier_hours_out(db) -> None:
    """The badge is only known when the visit ends, an hour later: the hour it started in
    was settled with it counted, and is recomputed without it."""
    from test_staff_cloud import DAY, person

    stores.upsert_store(db, stores.Store(id="paris", name="Paris", lat=48.8, lon=2.3))
    start = datetime.combine(DAY, datetime.min.time(), UTC) + timedelta(hours=9, minutes=55)
    person(db, start - timedelta(hours=1), staff=False, zone="shoes")
    settle.settle(db, quiet_s=0)
    scope = analytics.scope_for(db, DAY, DAY)
    before = charts(db, scope)
    person(db, start, staff=True, zone="stockroom")  # 09:55-10:05, flagged on its end
    assert db.scalar("SELECT count(*) FROM staff_visits") == 1
    settle.settle(db, quiet_s=0)
    assert db.scalar("SELECT count(*) FROM rollup_dirty") == 0
    after = charts(db, scope)
    for name in ("footfall-hourly", "footfall-daily", "dwell", "flows", "paths", "heatmap",
                 "member-share"):  # fmt: skip
        same(after[name], before[name], name)
    same(after, charts(db, scope, raw=True))


def test_half_and_quarter_hour_time_zones_bucket_by_their_local_hours(db) -> None:
    """Asia/Kolkata (+5:30) and Asia/Kathmandu (+5:45) hours start at :30 and :15 past UTC
    hours: their rollup buckets do too, so every hour-of-day chart answers as the raw
    events do (UTC-hour buckets put 10:00-10:30 local into 9:00)."""
    for sid, tz in (("delhi", "Asia/Kolkata"), ("kathmandu", "Asia/Kathmandu"),
                    ("paris", "Europe/Paris")):  # fmt: skip
        stores.upsert_store(db, stores.Store(id=sid, name=sid, lat=20.0, lon=80.0, timezone=tz,
                                             zones={}))  # fmt: skip
    for n in range(4):
        members.enroll(db, KEY, members.Enrollment(card_number=f"4500{n:02d}"))
    profile = analytics_seed.TrafficProfile(visitors_per_day=40, member_share=0.4)
    analytics_seed.seed_instore(db, days=2, until=UNTIL, profile=profile, settle=False)
    local = [
        analytics.scope_for(db, LAST - timedelta(days=1), LAST),
        analytics.scope_for(db, LAST, LAST, ("delhi",), 10, 14),
        analytics.scope_for(db, LAST - timedelta(days=1), LAST, ("kathmandu", "delhi"), 20, 11),
    ]
    expected = [charts(db, s, raw=True) for s in local]
    assert any(r["visitors"] for r in expected[1]["footfall-hourly"]["rows"])
    for scope, raw in zip(local, expected, strict=True):  # dirty: read raw
        same(charts(db, scope), raw)
    settle.settle(db, quiet_s=0, limit=7)
    for scope, raw in zip(local, expected, strict=True):  # part settled
        same(charts(db, scope), raw)
    settle.settle_all(db)
    phases: dict[str, set[int]] = {}
    for r in db.query("SELECT DISTINCT store, ts FROM rollup_counts"):
        phases.setdefault(r["store"], set()).add(int(r["ts"]) % 3600)
    assert phases == {"delhi": {1800}, "kathmandu": {900}, "paris": {0}}
    for scope, raw in zip(local, expected, strict=True):
        same(charts(db, scope), raw)
    incremental = rollup_state(db)
    rebuild.rebuild(db)
    same(rollup_state(db), incremental)


CHAIN_CHARTS = ("footfall-hourly", "footfall-daily", "peak-hours", "dwell", "flows", "paths")


def test_a_chain_view_reads_day_rows_summed_over_stores(db) -> None:
    """A chain-wide view over whole days reads one row per time zone and day: with the
    per-store rows of the charts summed there gone, its numbers stay; a store-scoped view,
    which reads per store, loses them. Day rows exist for summer time too, so a period whose
    middle is past the DST switch (another offset) answers as the raw events do."""
    seed(db)
    chain_scope, store_scope = scopes(db)[0], scopes(db)[3]
    expected = charts(db, chain_scope, raw=True)
    same(charts(db, chain_scope), expected)
    store_expected = charts(db, store_scope, raw=True)
    kinds = {r["kind"] for r in db.query("SELECT DISTINCT kind FROM rollup_days")}
    assert kinds == {"counts", "dwell", "flows", "paths", "built", "checkout", "tryons", "heat",
                     "staff"}  # fmt: skip
    groups = {r["grp"] for r in db.query("SELECT DISTINCT grp FROM rollup_days")}
    assert groups == {"Europe/Paris", "Europe/Lisbon", "store:paris", "store:lisbon"}
    summer = dataclasses.replace(
        chain_scope, offsets={s: o + 3600 for s, o in chain_scope.offsets.items()}
    )
    same(charts(db, summer), charts(db, summer, raw=True))
    db.execute("DELETE FROM rollup_maps WHERE kind IN ('dwell', 'flows', 'paths', 'checkout',"
               " 'tryons', 'heat', 'staff')")  # fmt: skip
    db.execute("DELETE FROM rollup_counts WHERE metric IN ('entrances', 'visits',"
               " 'visits_ended')")  # fmt: skip
    db.execute("DELETE FROM rollup_members")
    per_store_day = ("member-share", "checkout-queue", "try-ons", "entry-to-checkout",
                     "heatmap", "staff")  # fmt: skip
    now = charts(db, chain_scope)
    for name in (*CHAIN_CHARTS, "conversion", "conversion-hourly", *per_store_day):
        same(now[name], expected[name], name)
    # A store-scoped view reads its store-days too (one row per store and day), but sums
    # the zone maps per store-hour.
    now = charts(db, store_scope)
    for name in per_store_day:
        same(now[name], store_expected[name], name)
    assert not now["dwell"]["rows"]
    # A dirty hour makes its group and day read per store (here: what is left of them).
    db.execute("INSERT INTO rollup_dirty (store, ts, marked_at, version) VALUES (?, ?, 0, 1)",
               ("paris", int(UNTIL) - 7200))  # fmt: skip
    dirty = charts(db, dataclasses.replace(chain_scope, raw=False))
    assert dirty["dwell"]["rows"] != expected["dwell"]["rows"]


def test_day_rows_follow_settle_rebuild_and_the_door_rule(db) -> None:
    """Day rows are rebuilt with the hours (a rebuild equals settling); a store without
    door lines counts its visits as visitors in the chain totals, as per store."""
    seed(db)
    state = rollup_state(db)["days"]
    db.execute("DELETE FROM rollup_days")
    rebuild.rebuild(db)
    same(rollup_state(db)["days"], state)
    scope = scopes(db)[0]
    # Lisbon without door counts: its visits are its visitors.
    db.execute("DELETE FROM events WHERE store = 'lisbon' AND type = 'line_crossing'")
    rebuild.rebuild(db, store="lisbon")
    raw = charts(db, scope, raw=True)
    assert raw["footfall-daily"]["rows"][0]["visitors"] != raw["footfall-daily"]["rows"][0][
        "entrances"]  # fmt: skip
    same(charts(db, scope), raw)


def test_try_on_day_sums_follow_the_fitting_rooms_the_settings_name(db) -> None:
    """A store-day's try-on sums take the zones the settings name fitting rooms at settle;
    once a zone is no longer named so, the chart reads the sessions and drops it, as the
    raw events do."""
    seed(db)
    db.execute("INSERT INTO store_zones (store, zone, category) VALUES ('paris', 'shoes',"
               " 'fitting_room')")  # fmt: skip
    rebuild.rebuild(db)
    scope = scopes(db)[0]
    named = charts(db, scope)["try-ons"]
    same(named, charts(db, scope, raw=True)["try-ons"])
    db.execute("DELETE FROM store_zones WHERE store = 'paris' AND zone = 'shoes'")
    unnamed = charts(db, scope)["try-ons"]
    assert unnamed["totals"]["sessions"] < named["totals"]["sessions"]
    same(unnamed, charts(db, scope, raw=True)["try-ons"])


def test_store_days_of_an_older_format_are_read_per_store_hour(db) -> None:
    """Store-day rows written before the try-on sums and heat (a "built" mark of three
    numbers) are not read: those days answer from the store-hours until a rebuild."""
    seed(db)
    scope = scopes(db)[0]
    expected = charts(db, scope, raw=True)
    old = msgspec.msgpack.Encoder().encode([1, 0, 0])
    db.execute("DELETE FROM rollup_days WHERE kind IN ('tryons', 'heat', 'checkout', 'staff')")
    db.execute("UPDATE rollup_days SET data = ? WHERE kind = 'built'", (old,))
    same(charts(db, scope), expected)


def test_store_days_of_the_previous_format_are_read_per_store_hour(db) -> None:
    """Store-days of format 3 (try-on member visits as a list of visit IDs, not hashes) are
    not read: those days answer from the store-hours until a rebuild, which writes them anew."""
    seed(db)
    scope = scopes(db)[0]
    expected = charts(db, scope, raw=True)
    enc = msgspec.msgpack.Encoder()
    for r in db.query("SELECT grp, utc_offset, ts, kind, data FROM rollup_days"
                      " WHERE kind IN ('built', 'tryons')"):  # fmt: skip
        value = msgspec.msgpack.decode(bytes(r["data"]))
        if r["kind"] == "built":
            value[3] = 3
        else:
            value["m"] = ["an-old-visit-id"] if value["m"] else []
        db.execute("UPDATE rollup_days SET data = ? WHERE grp = ? AND utc_offset = ? AND ts = ?"
                   " AND kind = ?", (enc.encode(value), r["grp"], r["utc_offset"], r["ts"],
                                     r["kind"]))  # fmt: skip
    assert chain.BUILT_FORMAT != 3
    same(charts(db, scope), expected)
    rebuild.rebuild(db)
    same(charts(db, scope), expected)
    marks = [msgspec.msgpack.decode(bytes(r["data"])) for r in db.query(
        "SELECT data FROM rollup_days WHERE kind = 'built'")]  # fmt: skip
    assert marks and all(m[3] == chain.BUILT_FORMAT for m in marks)


def test_try_on_purchases_by_store_and_time_equal_those_by_visit(db, monkeypatch) -> None:
    """Past `tryons.BY_ID_MAX` visits (and always over store-days, which hold visit hashes
    only) the chart reads its stores' member sales over the period (with the linking
    windows' margin) instead of looking each visit up: the same purchases."""
    from storelens.cloud.analytics import tryons

    seed(db)
    by_visit = {i: charts(db, s, raw=True)["try-ons"] for i, s in enumerate(scopes(db))}
    assert by_visit[0]["totals"]["member_tryon_purchases"] > 0
    monkeypatch.setattr(tryons, "BY_ID_MAX", 0)
    for i, scope in enumerate(scopes(db)):
        same(charts(db, scope, raw=True)["try-ons"], by_visit[i])
        same(charts(db, scope)["try-ons"], by_visit[i])


def test_store_day_marks_are_read_from_their_own_covering_index(db) -> None:
    """The per-store charts read every "built" mark of their period first: from an index
    that holds them, not a table page per mark (SQLite's plan says so)."""
    if db.dialect != "sqlite":
        assert db.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'rollup_days_built'")
        return
    plan = db.query(
        "EXPLAIN QUERY PLAN SELECT grp, utc_offset, ts, data FROM rollup_days WHERE ts >= 0"
        " AND ts <= 1 AND grp >= 'store:' AND grp < 'store;' AND kind = 'built'"
        " AND utc_offset IN (0, 3600)"
    )
    assert any("COVERING INDEX rollup_days_built" in r["detail"] for r in plan), plan


def test_heat_hours_of_the_older_list_format_are_read_as_the_packed_ones(db) -> None:
    """Store-hour heat is stored packed (int32 cells, float64 seconds); hours written before
    as [samples, [[x, y, seconds], ...]] answer the same, per store-hour and once summed into
    store-days by a later settle."""
    from storelens.cloud.analytics.rollups import aggregate, chain

    seed(db)
    scope, store_hours = scopes(db)[0], scopes(db)[1]  # whole days; an hour filter
    expected = {i: charts(db, s, raw=True)["heatmap"] for i, s in enumerate((scope, store_hours))}
    assert all(e["rows"] for e in expected.values())
    days = rollup_state(db)["days"]
    encode = msgspec.msgpack.Encoder().encode
    rows = db.query("SELECT store, ts, data FROM rollup_maps WHERE kind = 'heat'")
    assert rows and all(isinstance(msgspec.msgpack.decode(bytes(r["data"])), dict) for r in rows)
    for r in rows:
        n, xy, s = aggregate.heat_arrays(msgspec.msgpack.decode(bytes(r["data"])))
        old = [n, [[int(x), int(y), float(v)] for (x, y), v in zip(xy, s, strict=True)]]
        db.execute("UPDATE rollup_maps SET data = ? WHERE kind = 'heat' AND store = ? AND ts = ?",
                   (encode(old), r["store"], r["ts"]))  # fmt: skip
    with db.transaction():
        chain.refresh(db, {(r["store"], int(r["ts"])) for r in rows})
    same(rollup_state(db)["days"], days)
    for i, s in enumerate((scope, store_hours)):
        same(charts(db, s)["heatmap"], expected[i])


def test_query_tuples_reads_rows_as_tuples_in_column_order(db) -> None:
    db.execute("CREATE TABLE t_rows (a TEXT, b INTEGER)")
    db.executemany("INSERT INTO t_rows (a, b) VALUES (?, ?)", [("x", 1), ("y", 2)])
    assert db.query_tuples("SELECT b, a, NULL FROM t_rows WHERE b >= ? ORDER BY b", (1,)) == [
        (1, "x", None), (2, "y", None)]  # fmt: skip
    with db.transaction():
        assert db.query_tuples("SELECT count(*) FROM t_rows") == [(2,)]


def test_heat_of_json_text_paths_equals_heat_of_parsed_paths() -> None:
    """Settle keeps each ``visit_ended`` path as JSON text and parses a round's paths in one
    pass; the cells are those of the parsed lists, byte for byte, for compact paths and for
    those that take the Python route (spaces, a non-number, one point, an integer)."""
    import json

    from storelens.tools.bench.ingest import realistic_event_dicts

    dicts = realistic_event_dicts("box-1", 600, seed=5, start=datetime(2026, 3, 20, 9, tzinfo=UTC))
    paths = [json.dumps(d["path"], separators=(",", ":")).encode() for d in dicts
             if d["type"] == "visit_ended" and d.get("path")]  # fmt: skip
    assert len(paths) > 10
    odd = [b"[[1, 2, 3], [4, 5.5, 9]]", b"[[1,2,3]]", b"[[0,0,0],[1e1,-2.5E-1,7]]"]
    batches = [
        [paths[:5], paths[5:9], [], paths[9:]],
        [paths[:3], odd, paths[3:6]],
        [paths[:3], [b"[[1,2,3],[4,5,true]]"], paths[3:6]],
    ]
    for groups in batches:
        parsed = [[json.loads(w) for w in g] for g in groups]
        assert aggregate.heat_values(groups) == [aggregate.heat_cells(g) for g in parsed]
        assert aggregate.heat_values(groups) == aggregate.heat_values(parsed)
    assert aggregate.heat_values(batches[0])[0]["n"] > 0


def _seeded_links(db) -> tuple[list, list]:
    events = db.query_tuples(
        "SELECT visit_id, type, member FROM events WHERE visit_id IS NOT NULL"
        " ORDER BY visit_id, type, ts"
    )
    links = [
        (r[0], r[1], r[2], None if r[3] is None else round(r[3], 3))
        for r in db.query_tuples(
            "SELECT sale_id, method, visit_id, entry_to_checkout_s FROM sale_visits ORDER BY 1"
        )
    ]
    return events, links


def test_seeding_twice_gives_the_same_visits_and_sale_links(db, tmp_path) -> None:
    """Enroll draws member ids at random; the seed hands members to visits in token order, so
    a second seeding (fresh SQLite file) stores the same member on each visit and links every
    sale to the same visit (by id order, a member could get a second visit overlapping their
    purchase in one seeding and not in another, and the sale a different visit)."""
    from storelens.cloud.db import connect

    seed(db)
    again = connect(f"sqlite:///{tmp_path / 'again.db'}")
    try:
        seed(again)
        events, links = _seeded_links(db)
        assert any(r[2] for r in events) and any(r[1] == "member" for r in links)
        assert _seeded_links(again) == (events, links)
    finally:
        again.close()
