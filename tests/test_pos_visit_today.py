"""The POS member view's visit today, through the API on both backends: zones, try-ons and
minutes in store of the member's latest visit to the caller's store; nothing when opted out."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from personalization_chain import KEY_HEX, build_chain, swipe_at_till
from visit_story import visit

from storelens.cloud.api.app import create_app
from storelens.cloud.commerce import members
from storelens.cloud.settings import Settings

API = "/api/v1/pos"


@pytest.fixture
def pos(db, monkeypatch):
    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", KEY_HEX)
    chain = build_chain(db)
    app = create_app(Settings.from_env({}, db_url="unused"), db=db)
    with TestClient(app) as client:
        headers = {s: {"Authorization": f"Bearer {t}"} for s, t in chain.tokens.items()}
        swipe_at_till(client, chain, headers["paris"])
        yield client, chain, headers
        recommender = getattr(app.state, "recommender", None)
        if recommender is not None:
            recommender.stop()


def test_member_visit_today_shows_zones_try_ons_and_minutes(pos, db) -> None:
    client, chain, h = pos
    ann = chain.member("ann")
    now = time.time()
    start = now - 1500  # 25 minutes ago, still in the store
    visit(db, "paris", start, None, member=ann["token"],
          zones=[("z_bags", start + 60, start + 300, None, None, None),
                 ("cabins", start + 400, start + 700, "fitting_room", None, None),
                 ("cabins", start + 800, start + 920, "fitting_room", None, None)])  # fmt: skip
    visit(db, "lyon", start, None, member=ann["token"])  # another store: not shown in Paris
    r = client.get(f"{API}/members/{ann['id']}/visit-today", headers=h["paris"])
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["in_store"] and v["visits_today"] == 1
    assert 24.5 <= v["minutes_in_store"] <= 26
    assert [z["zone"] for z in v["zones"]] == ["z_bags", "cabins", "cabins"]
    assert v["tryons"] == 2 and v["tryon_minutes"] == 7.0 and not v["checkout"]
    # The same member asked by another store's POS for Paris: refused.
    assert client.get(f"{API}/members/{ann['id']}/visit-today?store=paris",
                      headers=h["lyon"]).status_code == 403  # fmt: skip
    members.set_consent(db, ann["id"], members.Consent(tracking=False))
    v = client.get(f"{API}/members/{ann['id']}/visit-today", headers=h["paris"]).json()
    assert v["visits_today"] == 0 and v["zones"] == []
    # Nobody of that ID identified at this till: the same 403 as for any member not at it.
    assert client.get(f"{API}/members/nobody/visit-today", headers=h["paris"]).status_code == 403
