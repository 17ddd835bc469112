"""The seeded chain: deterministic, complete, and carrying the preference and co-purchase
signal that recommendation models need."""

from __future__ import annotations

from collections import Counter
from datetime import date
from itertools import combinations

import pytest

from storelens.cloud.api import principals as auth
from storelens.cloud.db import connect
from storelens.tools.seed import chain as seed


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Production scrypt cost is ~50 ms a hash; tests hash dozens of passwords.
    monkeypatch.setitem(auth._SCRYPT, "n", 2**8)


END = date(2026, 11, 1)


def _fingerprint(db) -> tuple:
    return (
        db.query("SELECT id, token, tier FROM members ORDER BY id LIMIT 20"),
        db.scalar("SELECT count(*) FROM pos_sales"),
        db.scalar("SELECT sum(qty) FROM pos_sale_items"),
        db.query("SELECT id, total, created_at FROM online_orders ORDER BY id LIMIT 20"),
        db.query("SELECT store, sku, on_hand FROM inventory ORDER BY store, sku LIMIT 50"),
    )


def test_seed_is_deterministic_and_complete(db, tmp_path) -> None:
    result = seed.seed(db, seed=7, members=250, days=60, end=END, admin_password="admin pass 1")
    assert result.stores == 5 and result.products >= 400 and result.members == 250
    assert result.online_orders > 100 and result.pos_sales > 500
    assert db.scalar("SELECT count(DISTINCT category) FROM products") == 12
    zones = {
        r["zone"] for r in db.query("SELECT zone FROM store_zones WHERE store = 'sample-store'")
    }
    assert {"west_walk", "plaza", "east_road", "shoes"} <= zones
    assert ("sample-store", "sample-edge") in {
        (r["store"], r["device"]) for r in db.query("SELECT store, device FROM devices")
    }
    lo, hi = db.query_one("SELECT min(ts) AS lo, max(ts) AS hi FROM pos_sales").values()
    assert hi - lo > 50 * 86400
    # Credentials work.
    creds = result.credentials
    assert auth.login(db, "admin", creds["admin"]["password"], 60)
    assert auth.authenticate(db, creds["pos_tokens"]["lyon-part-dieu"]).store == "lyon-part-dieu"
    # Same seed and end date: the same data (on a second, SQLite, database).
    again = connect(f"sqlite:///{tmp_path / 'again.db'}")
    seed.seed(again, seed=7, members=250, days=60, end=END, admin_password="admin pass 1")
    assert _fingerprint(again) == _fingerprint(db)
    again.close()
    try:
        seed.seed(db, seed=7, members=10, days=10, end=END)
    except seed.SeedError as exc:
        assert "already" in str(exc)
    else:
        raise AssertionError("seeding twice must fail")


def test_purchases_follow_preferences_and_co_purchases(tmp_path) -> None:
    db = connect(f"sqlite:///{tmp_path / 'signal.db'}")
    seed.seed(db, seed=3, members=400, days=120, end=END)
    rows = db.query(
        "SELECT s.member_id, p.category FROM pos_sales s JOIN pos_sale_items i ON i.sale_id = s.id"
        " JOIN products p ON p.sku = i.sku WHERE s.member_id IS NOT NULL"
    )
    per_member: dict[str, Counter] = {}
    for r in rows:
        per_member.setdefault(r["member_id"], Counter())[r["category"]] += 1
    active = [c for c in per_member.values() if sum(c.values()) >= 10]
    top_share = sum(max(c.values()) / sum(c.values()) for c in active) / len(active)
    assert len(active) > 100 and top_share > 0.3  # uniform over 12 categories would be ~0.15
    baskets: dict[str, set[str]] = {}
    for r in db.query("SELECT sale_id, sku FROM pos_sale_items"):
        baskets.setdefault(r["sale_id"], set()).add(r["sku"])
    pairs = Counter(p for b in baskets.values() for p in combinations(sorted(b), 2))
    # Complements (across categories) make some pairs far more frequent than chance.
    (a, b), n = pairs.most_common(1)[0]
    assert n >= 30 and a.split("-")[0] != b.split("-")[0]
    db.close()


def test_seeded_devices_are_the_ones_that_report(db) -> None:
    """No registered box that never reports ("never seen"), and the sample store's history
    comes from its real device, not a phantom beside it."""
    seed.seed(db, seed=7, members=120, days=20, end=END, admin_password="admin pass 1")
    assert db.query("SELECT store, device FROM devices") == [
        {"store": "sample-store", "device": "sample-edge"}
    ]
    with_traffic = connect("sqlite:///:memory:")
    seed.seed(with_traffic, seed=7, members=120, days=20, end=END, instore_days=2,
              admin_password="admin pass 1")  # fmt: skip
    devices = {
        r["store"]: r["device"]
        for r in with_traffic.query("SELECT store, device FROM devices WHERE last_seen IS NOT NULL")
    }
    assert len(devices) == 5 and devices["sample-store"] == "sample-edge"
    assert with_traffic.scalar("SELECT COUNT(*) FROM devices") == 5
    assert (
        with_traffic.scalar(
            "SELECT COUNT(*) FROM events WHERE store = 'sample-store' AND device != 'sample-edge'"
        )
        == 0
    )
    with_traffic.close()


def test_seeded_sales_come_from_seeded_visits(db) -> None:
    """The seeded chain's POS sales of its in-store days are the till stays that end visits:
    members' sales join their own visits (card at the till, after the visit's zones), so ops
    shows try-on to purchase and entry-to-checkout with real numbers."""
    from datetime import timedelta

    from storelens.cloud import analytics
    from storelens.cloud.commerce import members

    seed.seed(db, seed=7, members=150, days=21, end=END, instore_days=5,
              admin_password="admin pass 1")  # fmt: skip
    last = END - timedelta(days=1)
    scope = analytics.scope_for(db, last - timedelta(days=4), last)
    links = db.query(
        "SELECT v.method, v.visit_id, v.entry_to_checkout_s, s.member_id, s.ts, s.store"
        " FROM pos_sales s JOIN sale_visits v ON v.sale_id = s.id"
    )
    member_sales = [r for r in links if r["member_id"]]
    linked = [r for r in member_sales if r["method"] == "member"]
    # Every tracked member's sale found its visit (opted-out members' never do).
    opted_out = members.opted_out_tokens(db)
    tracked = {r["id"] for r in db.query("SELECT id, token FROM members")
               if r["token"] not in opted_out}  # fmt: skip
    assert len(linked) == sum(1 for r in member_sales if r["member_id"] in tracked) > 30
    for r in linked[:40]:  # the visit's last zone before the door is the tills, at the sale
        ended = db.query_one(
            "SELECT payload FROM events WHERE type = 'visit_ended' AND visit_id = ?",
            (r["visit_id"],),
        )
        assert '"tills"]' in ended["payload"]
        till = db.query_one(
            "SELECT t_start, ts FROM events WHERE type = 'zone_visit' AND zone = 'tills'"
            " AND visit_id = ?",
            (r["visit_id"],),
        )
        assert till["t_start"] <= r["ts"] <= till["ts"]
        assert 0 < r["entry_to_checkout_s"] < 3 * 3600
    # Some anonymous sales are matched by time at the till, the rest counted unmatched.
    anonymous = [r for r in links if not r["member_id"]]
    assert any(r["method"] == "time" for r in anonymous)
    tryons = analytics.CHARTS["try-ons"](db, scope).extra["totals"]
    assert tryons["member_tryon_visits"] > 15
    assert 0.2 < tryons["member_tryon_conversion"] < 0.9  # some try on and leave
    entry = analytics.CHARTS["entry-to-checkout"](db, scope).extra["totals"]
    assert entry["linked_member"] > 30 and entry["pending"] == 0
    assert 120 < entry["median_entry_to_checkout_s"] < 3600
    rate = analytics.CHARTS["conversion"](db, scope).extra["comparison"]["conversion"]
    # At most the profile's 0.3 (this small chain's stores get the floor of 20 browsers a day).
    assert 0.1 < rate <= 0.32
