"""Members on both databases: enrollment by card, lookups, accounts, consent, the merged
profile, and forget-me leaving nothing personal behind."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from storelens.cloud.api import principals as auth
from storelens.cloud.api.app import create_app
from storelens.cloud.commerce import catalog, members, orders, sales, stores
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest import events as event_store
from storelens.cloud.settings import Settings
from storelens.pseudonym import PseudonymKey
from storelens.tools.bench.ingest import realistic_events


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Production scrypt cost is ~50 ms a hash; tests hash dozens of passwords.
    monkeypatch.setitem(auth._SCRYPT, "n", 2**8)


KEY_HEX = "cd" * 32
KEY = PseudonymKey("k1", bytes.fromhex(KEY_HEX))
CARD = "6001 2345 6789"


@pytest.fixture
def shop(db):
    stores.upsert_store(db, stores.Store(id="s1", name="One", lat=48.85, lon=2.35))
    catalog.upsert_products(
        db,
        [
            catalog.Product(sku="BAG-1", name="Tote", category="handbags", price=80),
            catalog.Product(sku="TEA-1", name="Tea", category="grocery", price=5, consumable=True),
        ],
    )
    return db


def test_enroll_never_stores_the_card_and_looks_up_by_card_and_account(shop) -> None:
    m = members.enroll(
        shop, KEY, members.Enrollment(card_number=CARD, name="Ann", account_id="acc-1")
    )
    assert m["token"] == KEY.token("600123456789") and m["accounts"] == ["acc-1"]
    assert not m["id"].endswith(CARD[-4:])
    dump = str([shop.query(f"SELECT * FROM {t}") for t in ("members", "customer_accounts")])
    assert "6789" not in dump.replace(KEY.token(CARD), "")
    # Separators and case do not matter; an unknown card finds nobody.
    assert members.member_by_card(shop, KEY, "600-123-456-789")["id"] == m["id"]
    assert members.member_by_card(shop, KEY, "9999 9999") is None
    assert members.member_by_account(shop, "acc-1")["id"] == m["id"]
    with pytest.raises(members.MemberError):
        members.enroll(shop, KEY, members.Enrollment(card_number=CARD))
    other = members.enroll(shop, KEY, members.Enrollment(card_number="7000 1111"))
    with pytest.raises(members.MemberError):
        members.link_account(shop, other["id"], "acc-1")  # linked to Ann already
    with pytest.raises(members.UnknownMember):
        members.link_account(shop, "m_nobody", "acc-2")


def _history(db, member: dict) -> None:
    token = member["token"]
    evs = realistic_events(
        "cam-1",
        120,
        seed=2,
        members=[token],
        key_id="k1",
        start=datetime.now(UTC).replace(microsecond=0),
    )
    device_registry.register_device(db, "s1", "cam-1")
    rows = [event_store.event_row("s1", e, 0.0, getattr(e, "member", None)) for e in evs]
    event_store.store_events(db, rows)
    members.upsert_account(db, "acc-1", email="ann@example.com", name="Ann Martin")
    members.link_account(db, member["id"], "acc-1")
    order = orders.OrderIn(
        customer_account="acc-1",
        items=[orders.OrderItem(sku="BAG-1", qty=1)],
        fulfillment_type="ship",
        shipping=orders.ShippingAddress(
            name="Ann Martin", address="1 rue de Rivoli", lat=48.86, lon=2.34
        ),
    )
    orders.create_order(db, order, "order-key-0001")
    sales.record_sale(
        db,
        sales.SaleIn(
            store="s1", items=[sales.SaleItem(sku="TEA-1", qty=2)], member_id=member["id"]
        ),
    )


def test_profile_merges_visits_dwell_orders_and_purchases(shop) -> None:
    ann = members.enroll(shop, KEY, members.Enrollment(card_number=CARD, name="Ann"))
    _history(shop, ann)
    p = members.profile(shop, ann["id"])
    assert p["visits"] and all(v["store"] == "s1" for v in p["visits"])
    assert p["zone_dwell"] and p["zone_dwell"][0]["dwell_s"] > 0
    assert [o["items"][0]["sku"] for o in p["online_orders"]] == ["BAG-1"]
    assert [s["items"][0]["qty"] for s in p["pos_purchases"]] == [2]
    assert "token" not in p["member"]
    with pytest.raises(members.UnknownMember):
        members.profile(shop, "m_nobody")


def test_withdrawn_tracking_consent_unlinks_stored_events(shop) -> None:
    ann = members.enroll(shop, KEY, members.Enrollment(card_number=CARD, marketing=True))
    _history(shop, ann)
    before = members.consent_version(shop)
    assert shop.scalar("SELECT count(*) FROM events WHERE member = ?", (ann["token"],)) > 0
    updated = members.set_consent(shop, ann["id"], members.Consent(tracking=False))
    assert updated["tracking"] is False and updated["marketing"] is True  # untouched
    assert members.consent_version(shop) > before
    assert members.opted_out_tokens(shop) == {ann["token"]}
    assert shop.scalar("SELECT count(*) FROM events WHERE member IS NOT NULL") == 0
    assert ann["token"] not in str(shop.query("SELECT payload FROM events"))
    assert members.profile(shop, ann["id"])["visits"] == []


def _everything(db) -> str:
    if db.dialect == "sqlite":
        tables = [
            r["name"] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
    else:
        tables = [
            r["table_name"]
            for r in db.query(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        ]
    return "\n".join(str(db.query(f"SELECT * FROM {t}")) for t in tables)


def test_forget_me_leaves_nothing_personal(shop) -> None:
    ann = members.enroll(shop, KEY, members.Enrollment(card_number=CARD, name="Ann Martin"))
    bob = members.enroll(shop, KEY, members.Enrollment(card_number="7000 1111", name="Bob Stone"))
    _history(shop, ann)
    visits = shop.scalar("SELECT count(*) FROM events WHERE type = 'visit_ended'")
    counts = members.forget(shop, ann["id"])
    assert counts["events"] > 0 and counts["orders"] == 1 and counts["sales"] == 1
    everything = _everything(shop)
    for personal in (
        ann["id"],
        ann["token"],
        "Ann Martin",
        "ann@example.com",
        "acc-1",
        "1 rue de Rivoli",
        "600123456789",
    ):
        assert personal not in everything, personal
    # Anonymous footfall and the sales records survive; other members are untouched.
    assert shop.scalar("SELECT count(*) FROM events WHERE type = 'visit_ended'") == visits
    assert shop.scalar("SELECT count(*) FROM pos_sales") == 1
    assert shop.scalar("SELECT count(*) FROM online_orders") == 1
    assert members.get_member(shop, bob["id"])["name"] == "Bob Stone"
    with pytest.raises(members.UnknownMember):
        members.forget(shop, ann["id"])
    # Re-enrolling the same card later is a new, unlinked start.
    again = members.enroll(shop, KEY, members.Enrollment(card_number=CARD))
    assert again["id"] != ann["id"] and members.profile(shop, again["id"])["visits"] == []


def test_members_api(shop, monkeypatch) -> None:
    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", KEY_HEX)
    auth.create_user(shop, "boss", "correct horse", "admin")
    token = auth.create_pos_token(shop, "s1", "till-1")
    pos = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(Settings.from_env({}, db_url="unused"), db=shop)) as c:
        login = {"username": "boss", "password": "correct horse"}
        session = c.post("/api/v1/auth/login", json=login).json()["token"]
        admin = {"Authorization": f"Bearer {session}"}
        r = c.post("/api/v1/members", json={"card_number": CARD, "name": "Ann"}, headers=pos)
        assert r.status_code == 201 and "token" not in r.json()
        mid = r.json()["id"]
        assert c.post("/api/v1/members", json={"card_number": CARD}, headers=pos).status_code == 409
        assert c.post("/api/v1/members", json={"card_number": "!!"}, headers=pos).status_code == 422
        found = c.post("/api/v1/members/lookup", json={"card_number": CARD}, headers=pos)
        assert found.json()["id"] == mid
        nobody = c.post("/api/v1/members/lookup", json={"card_number": "1234 5678"}, headers=pos)
        assert nobody.status_code == 404
        r = c.post(f"/api/v1/members/{mid}/accounts", json={"account_id": "acc-9"}, headers=admin)
        assert r.json()["accounts"] == ["acc-9"]
        assert c.get("/api/v1/members/by-account/acc-9", headers=admin).json()["id"] == mid
        r = c.patch(f"/api/v1/members/{mid}/consent", json={"marketing": True}, headers=pos)
        assert r.json()["marketing"] is True and r.json()["tracking"] is True
        assert c.get(f"/api/v1/members/{mid}/profile", headers=pos).status_code == 200
        assert c.delete(f"/api/v1/members/{mid}", headers=admin).json()["forgotten"] == mid
        assert c.get(f"/api/v1/members/{mid}", headers=admin).status_code == 404


# Every member route: (method, path, body). {m} is a fresh member, {a} an account linked to it.
MEMBER_ROUTES = {
    "enroll": ("POST", "/api/v1/members", {"card_number": "5555 {n}"}),
    "list": ("GET", "/api/v1/members", None),
    "lookup": ("POST", "/api/v1/members/lookup", {"card_number": "4444 {n}"}),
    "by_account": ("GET", "/api/v1/members/by-account/{a}", None),
    "get": ("GET", "/api/v1/members/{m}", None),
    "profile": ("GET", "/api/v1/members/{m}/profile", None),
    "consent": ("PATCH", "/api/v1/members/{m}/consent", {"marketing": True}),
    "link": ("POST", "/api/v1/members/{m}/accounts", {"account_id": "new-{n}"}),
    "unlink": ("DELETE", "/api/v1/members/{m}/accounts/{a}", None),
    "forget": ("DELETE", "/api/v1/members/{m}", None),
}
# Who may do what (cloud/api/member_access.py): analysts read; admins do everything; a POS
# enrolls and identifies the customer in front of it, then reads and changes consent for that
# member only; another till (or a POS of another store) gets nothing.
ALLOWED = {
    "analyst": {"list", "by_account", "get", "profile"},
    "admin": set(MEMBER_ROUTES),
    "pos_at_till": {"enroll", "lookup", "get", "profile", "consent"},
    "pos_other_till": {"enroll", "lookup"},
    "pos_other_store": {"enroll", "lookup"},
}


def test_every_member_route_with_every_role(shop, monkeypatch) -> None:
    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", KEY_HEX)
    stores.upsert_store(shop, stores.Store(id="s2", name="Two", lat=45.7, lon=4.8))
    for name, role in (("boss", "admin"), ("ana", "analyst")):
        auth.create_user(shop, name, "correct horse", role)
    tokens = {
        "admin": auth.create_api_token(shop, "boss"),
        "analyst": auth.create_api_token(shop, "ana"),
        "pos_at_till": auth.create_pos_token(shop, "s1", "till-1"),
        "pos_other_till": auth.create_pos_token(shop, "s1", "till-2"),
        "pos_other_store": auth.create_pos_token(shop, "s2", "till-1"),
    }
    n = 0
    with TestClient(create_app(Settings.from_env({}, db_url="unused"), db=shop)) as c:
        for role, token in tokens.items():
            headers = {"Authorization": f"Bearer {token}"}
            for route, (method, path, body) in MEMBER_ROUTES.items():
                n += 1
                card = f"9{n:07d}"
                member = members.enroll(shop, KEY, members.Enrollment(card_number=card))
                members.upsert_account(shop, f"acc-{n}")
                members.link_account(shop, member["id"], f"acc-{n}")
                members.enroll(shop, KEY, members.Enrollment(card_number=f"4444 {n}"))
                if role == "pos_at_till":  # the member swiped their card at this till
                    at = c.post("/api/v1/members/lookup", json={"card_number": card},
                                headers=headers)  # fmt: skip
                    assert at.status_code == 200, at.text
                url = path.format(m=member["id"], a=f"acc-{n}", n=n)
                payload = None if body is None else {
                    k: v.format(n=n) if isinstance(v, str) else v for k, v in body.items()
                }  # fmt: skip
                r = c.request(method, url, json=payload, headers=headers)
                allowed = route in ALLOWED[role]
                assert (r.status_code < 300) == allowed, (role, route, r.status_code, r.text)
                if not allowed:
                    assert r.status_code == 403, (role, route, r.status_code)
                still = members.get_member(shop, member["id"])
                if not (allowed and route == "forget"):
                    assert still is not None, (role, route)  # a refused forget erased nothing
                if not allowed and route == "consent":
                    assert still["marketing"] is False
                if not allowed and route == "link":
                    assert still["accounts"] == [f"acc-{n}"]


def test_a_pos_cannot_probe_member_ids(shop, monkeypatch) -> None:
    """Not at this till answers the same for a real member and an invented ID, and the
    POS sees only this store's activity of the member at its till, no online orders."""
    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", KEY_HEX)
    ann = members.enroll(shop, KEY, members.Enrollment(card_number=CARD, name="Ann"))
    _history(shop, ann)
    pos = {"Authorization": f"Bearer {auth.create_pos_token(shop, 's1', 'till-1')}"}
    with TestClient(create_app(Settings.from_env({}, db_url="unused"), db=shop)) as c:
        real = c.get(f"/api/v1/members/{ann['id']}/profile", headers=pos)
        fake = c.get("/api/v1/members/m_invented/profile", headers=pos)
        assert real.status_code == fake.status_code == 403
        assert real.json() == fake.json()
        assert c.get("/api/v1/members/by-account/acc-1", headers=pos).status_code == 403
        c.post("/api/v1/members/lookup", json={"card_number": CARD}, headers=pos)
        p = c.get(f"/api/v1/members/{ann['id']}/profile", headers=pos).json()
        assert p["online_orders"] == [] and p["visits"]
        assert {v["store"] for v in p["visits"] + p["zone_dwell"]} == {"s1"}
        # Sequential card guesses run out of budget: 429 long before a sweep finishes.
        codes = [
            c.post(
                "/api/v1/members/lookup", json={"card_number": f"7000{i:04d}"}, headers=pos
            ).status_code
            for i in range(40)
        ]
        assert codes.count(404) < 25 and codes[-1] == 429
