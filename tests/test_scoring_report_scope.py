"""The scoring report follows the caller's ops scope on both backends: the chain sees every
contact and response, a region its stores', a store manager their store's (contacts made
there, purchases there); another store is a 403, an unknown one a 422."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from personalization_chain import KEY

from storelens.cloud.api import principals as auth
from storelens.cloud.api.app import create_app
from storelens.cloud.commerce import members, sales, stores
from storelens.cloud.personalization import scoring
from storelens.cloud.personalization.scoring_plans import parse_plan
from storelens.cloud.settings import Settings

DAY = 86_400.0
NOW = time.time()


@pytest.fixture
def client(db, db_url: str, monkeypatch):
    monkeypatch.setitem(auth._SCRYPT, "n", 2**4)  # cheap hashes: logins are not tested here
    for sid in ("paris", "lyon", "lille"):
        stores.upsert_store(db, stores.Store(id=sid, name=sid, lat=45.0, lon=3.0))
    from storelens.cloud.commerce import catalog

    catalog.upsert_products(db, [catalog.Product(sku="S1", name="Shoe", category="Shoes",
                                                 price=50)])  # fmt: skip
    scoring.put_plan(db, parse_plan({"id": "p1", "interactions": {"store_visit": {"points": 1}},
                                     "thresholds": []}))  # fmt: skip
    t = NOW - 10 * DAY
    # (contact store, where they bought a day later or None); '' = a contact made online.
    story = {"m_paris": ("paris", "paris"), "m_lyon": ("lyon", "paris"),
             "m_online": ("", "lille"), "m_lille": ("lille", None)}  # fmt: skip
    ids = {}
    for n, (name, (contact_at, bought_at)) in enumerate(story.items()):
        m = members.enroll(db, KEY, members.Enrollment(card_number=f"55500{n:03d}",
                                                       marketing=True))  # fmt: skip
        ids[name] = m["id"]
        db.execute(
            "INSERT INTO score_contacts (plan, threshold, action, member_id, store, at)"
            " VALUES ('p1', 'hot', 'pos_alert', ?, ?, ?)",
            (m["id"], contact_at, t),
        )
        if bought_at:
            sale = sales.SaleIn(store=bought_at, ts=t + DAY, member_id=m["id"],
                                items=[sales.SaleItem(sku="S1", qty=1)])  # fmt: skip
            sales.record_sale(db, sale)
    users = {"chain": None, "region": ("paris", "lyon"), "paris_mgr": ("paris",),
             "lyon_mgr": ("lyon",)}  # fmt: skip
    headers = {}
    for name, scope in users.items():
        auth.create_user(db, name, "password-123", "analyst", scope)
        headers[name] = {"Authorization": f"Bearer {auth.login(db, name, 'password-123', 600)}"}
    with TestClient(create_app(Settings(db_url=db_url, propensity_refresh_s=0), db=db)) as c:
        c.users = headers  # type: ignore[attr-defined]
        yield c


def _report(client, user: str, **params):
    r = client.get("/api/v1/scoring/report", params=params, headers=client.users[user])
    return r


def _plan(client, user: str, **params) -> dict:
    r = _report(client, user, **params)
    assert r.status_code == 200, r.text
    [plan] = [p for p in r.json()["plans"] if p["plan"] == "p1"]
    return {"stores": r.json()["stores"], **plan}


def test_the_report_follows_each_roles_scope(client) -> None:
    """One chain for every role (its set-up is the slow part)."""
    # The chain: every contact, purchases anywhere (online too), every member.
    p = _plan(client, "chain")
    assert p["stores"] is None
    assert (p["contacts"], p["responses"], p["members"], p["buyers"]) == (4, 3, 4, 3)

    # A region: contacts in paris and lyon; both bought in paris; the online contact and the
    # lille one are not theirs.
    p = _plan(client, "region")
    assert sorted(p["stores"]) == ["lyon", "paris"]
    assert (p["contacts"], p["responses"], p["members"], p["buyers"]) == (2, 2, 2, 2)
    assert _plan(client, "region", stores="lyon")["contacts"] == 1
    denied = _report(client, "region", stores="lyon,lille")
    assert denied.status_code == 403 and "lille" in denied.json()["detail"]

    # Store managers: m_lyon shopped in paris too (a paris member and buyer); lyon's contact
    # bought in paris, so no response in lyon. The chain asking for one store sees the same.
    for user, store, expected in (("paris_mgr", "paris", (1, 1, 2, 2)),
                                  ("lyon_mgr", "lyon", (1, 0, 1, 0))):  # fmt: skip
        p = _plan(client, user)
        assert p["stores"] == [store]
        assert (p["contacts"], p["responses"], p["members"], p["buyers"]) == expected
        other = "lyon" if store == "paris" else "paris"
        assert _report(client, user, stores=other).status_code == 403
        c = _plan(client, "chain", stores=store)
        assert (c["contacts"], c["responses"], c["members"], c["buyers"]) == expected

    # An unknown store is named.
    r = _report(client, "chain", stores="paris,nowhere")
    assert r.status_code == 422 and "unknown store(s): nowhere" in r.text
