"""Scoring plans as data, end to end on both backends: YAML/API validation, the interactions
endpoint (auth, idempotency, consent), in-store try-ons and category dwell, signed hand-off
webhooks to a real HTTP receiver with retries, the contacts/responses report per plan, and the
online behaviour on the profile ("viewed online, in stock here")."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import free_port
from fastapi.testclient import TestClient
from personalization_chain import KEY_HEX, build_chain, swipe_at_till

from storelens.cloud.api import principals as auth
from storelens.cloud.api.app import create_app
from storelens.cloud.commerce import members, sales
from storelens.cloud.personalization import handoff, interactions, scoring, scoring_report
from storelens.cloud.personalization.scoring_plans import (
    DEFAULT_PLAN,
    PlanError,
    ScoringPlan,
    active_plans,
    assigned_plan,
    load_yaml,
    parse_plan,
)
from storelens.cloud.settings import Settings

DOCS_PLANS = Path(__file__).resolve().parents[1] / "docs" / "scoring-plans.yaml"
SECRET = "s3cret-key-for-tests"


def _plan(**kw) -> ScoringPlan:
    body = {
        "id": "p1",
        "interactions": {"email_opened": {"points": 5}, "event_attended": {"points": 10}},
        "thresholds": [],
    }
    body.update(kw)
    return parse_plan(body)


@pytest.fixture
def api(db, monkeypatch):
    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", KEY_HEX)
    monkeypatch.setenv("STORELENS_TEST_HOOK_KEY", SECRET)
    chain = build_chain(db)
    auth.create_user(db, "root", "password123", "admin")
    admin = {"Authorization": f"Bearer {auth.login(db, 'root', 'password123', 3600)}"}
    shop = {"Authorization": f"Bearer {auth.create_integration_token(db, 'webshop')}"}
    app = create_app(Settings.from_env({}, db_url="unused", handoff_interval_s=0), db=db)
    with TestClient(app) as client:
        yield client, chain, admin, shop
        recommender = getattr(app.state, "recommender", None)
        if recommender is not None:
            recommender.stop()


def _item(kind: str, member_id: str, **kw) -> dict:
    return {"id": str(uuid.uuid4()), "type": kind, "member_id": member_id, **kw}


def test_plans_are_validated_data(tmp_path) -> None:
    plans = load_yaml(DOCS_PLANS)
    assert [p.id for p in plans] == ["scored", "contact_all"]
    assert plans[0].points("zone_dwell", "Handbags") == 8 and plans[0].points("zone_dwell") == 5
    with pytest.raises(PlanError) as err:
        parse_plan({"id": "x", "interactions": {}, "thresholds": [], "colour": "red"})
    assert any(e["loc"] == ["colour"] for e in err.value.errors)
    with pytest.raises(PlanError):  # a webhook needs a signing key's variable name
        _plan(thresholds=[{"name": "t", "score": 5, "action": {"kind": "webhook",
                                                              "url": "http://crm/x"}}])  # fmt: skip
    with pytest.raises(PlanError):
        _plan(thresholds=[{"name": "t", "score": 5, "action": {"kind": "sms"}}])
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: a\ninteractions: {x: {points: 1}}\n- broken")
    with pytest.raises(PlanError, match="cannot read"):
        load_yaml(bad)


def test_members_split_between_active_plans_by_share() -> None:
    a, b = _plan(id="a", share=3), _plan(id="b", share=1)
    picks = [assigned_plan(f"m{i}", [a, b]).id for i in range(4000)]
    assert 0.70 < picks.count("a") / len(picks) < 0.80
    assert picks == [assigned_plan(f"m{i}", [a, b]).id for i in range(4000)]  # stable


def test_interactions_endpoint_auth_idempotency_and_consent(api) -> None:
    client, chain, admin, shop = api
    ann, bob = chain.member("ann"), chain.member("bob")
    url = "/api/v1/interactions"
    first = _item("email_opened", ann["id"])
    assert client.post(url, json={"interactions": [first]}).status_code == 401
    r = client.post(url, json={"interactions": [first]}, headers=shop)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["recorded"] == 1 and out["results"][0]["outcome"] == "recorded"
    s1 = out["results"][0]["score"]
    assert s1 == pytest.approx(DEFAULT_PLAN.points("enrolled") + 5, abs=0.01)
    # The same ID again: answered duplicate, no second award.
    again = client.post(url, json={"interactions": [first]}, headers=shop).json()
    assert again["results"][0]["outcome"] == "duplicate" and again["recorded"] == 0
    assert scoring.score(chain.db, ann["id"]) == pytest.approx(s1, abs=0.01)
    # By online account; unknown members, types and tracking opt-outs are answered per item.
    members.link_account(chain.db, bob["id"], "web-bob")
    members.set_consent(chain.db, bob["id"], members.Consent(tracking=False))
    batch = [
        {"id": "x1", "type": "event_attended", "account_id": "web-bob"},
        _item("email_opened", "no-such-member"),
        _item("telepathy", ann["id"]),
        _item("cart_add", ann["id"], sku="H1"),
    ]
    res = client.post(url, json={"interactions": batch}, headers=shop).json()["results"]
    assert [r["outcome"] for r in res] == [
        "not_tracked", "unknown_member", "unknown_type", "recorded"
    ]  # fmt: skip
    # Malformed bodies are 422: no customer, both customers, a view without SKU, NUL bytes.
    for bad in (
        {"id": "b1", "type": "email_opened"},
        {"id": "b2", "type": "email_opened", "member_id": ann["id"], "account_id": "web-bob"},
        {"id": "b3", "type": "product_viewed", "member_id": ann["id"]},
        {"id": "b4", "type": "email_opened", "member_id": "a\x00b"},
        {"id": "b5", "type": "Email Opened", "member_id": ann["id"]},
    ):
        assert client.post(url, json={"interactions": [bad]}, headers=shop).status_code == 422
    assert client.post(url, json={"interactions": []}, headers=shop).status_code == 422
    # An integration token reports interactions and reads nothing, enrolls no one.
    assert client.get(f"/api/v1/members/{ann['id']}", headers=shop).status_code == 403
    enroll = {"card_number": "601100009999", "marketing": True}
    assert client.post("/api/v1/members", json=enroll, headers=shop).status_code == 403
    lookup = {"card_number": "CARD0000"}
    assert client.post("/api/v1/members/lookup", json=lookup, headers=shop).status_code == 403
    assert client.get("/api/v1/scoring/report", headers=shop).status_code == 403
    # A POS may report try-ons only for its own store.
    lyon = {"Authorization": f"Bearer {chain.tokens['lyon']}"}
    try_on = _item("try_on", ann["id"], store="paris")
    assert client.post(url, json={"interactions": [try_on]}, headers=lyon).status_code == 403
    ok = client.post(url, json={"interactions": [dict(try_on, store="lyon")]}, headers=lyon)
    assert ok.json()["results"][0]["outcome"] == "recorded"


def test_plan_api_and_half_life_change_keeps_scores(api) -> None:
    client, chain, admin, shop = api
    ann = chain.member("ann")["id"]
    url = "/api/v1/scoring/plans/p1"
    body = _plan().model_dump(mode="json")
    assert client.put(url, json=body, headers=shop).status_code == 403
    assert client.put(url, json=dict(body, extra=1), headers=admin).status_code == 422
    assert client.put(url, json=dict(body, id="p2"), headers=admin).status_code == 422
    short = client.put(url, json=dict(body, half_life_days=0.5), headers=admin)
    assert short.status_code == 422 and "half_life_days" in str(short.json())  # overflowed: 500
    coupon_on_unknown = dict(body, thresholds=[
        {"name": "c", "score": 5, "action": {"kind": "coupon", "template_id": "nope"}}
    ])  # fmt: skip
    assert client.put(url, json=coupon_on_unknown, headers=admin).status_code == 422
    assert client.put(url, json=body, headers=admin).status_code == 200
    assert [p["id"] for p in client.get("/api/v1/scoring/plans", headers=admin).json()] == ["p1"]
    # The built-in plan no longer applies: only p1's interactions score.
    now = time.time()
    scoring.record(chain.db, chain.member("ann"), [("email_opened", None)], at=now, now=now)
    plan = active_plans(chain.db)[0]
    assert scoring.score(chain.db, ann, now=now, plan=plan) == pytest.approx(5.0)
    client.put(url, json=dict(body, half_life_days=7), headers=admin)
    plan7 = active_plans(chain.db)[0]
    assert plan7.half_life_days == 7
    assert scoring.score(chain.db, ann, now=time.time(), plan=plan7) == pytest.approx(5.0, 1e-3)
    assert scoring.score(chain.db, ann, now=time.time() + 7 * 86400, plan=plan7) == (
        pytest.approx(2.5, 1e-3)
    )


def _zone_visit(
    db, member: dict, zone: str, dwell_s: float, at: float, payload: str = "{}"
) -> list[dict]:
    from storelens.cloud.ingest import events

    row = {
        "id": str(uuid.uuid4()), "store": "paris", "device": "edge-1", "seq": 1,
        "type": "zone_visit", "ts": at, "camera": "cam-1", "visit_id": str(uuid.uuid4()),
        "member": member["token"], "key_id": "k1", "zone": zone, "line": None,
        "direction": None, "dwell_s": dwell_s, "t_start": at - dwell_s, "received_at": at,
        "payload": payload,
    }  # fmt: skip
    events.store_events(db, [row])
    return [row]


def test_category_dwell_and_try_on_points(db) -> None:
    from storelens.cloud.commerce import stores

    chain = build_chain(db, with_tokens=False)
    stores.upsert_store(db, stores.Store(id="paris", name="Paris", lat=48.8, lon=2.3, zones={
        "z_bags": "Handbags", "z_shoes": "Shoes", "z_fit": "Fitting rooms"}))  # fmt: skip
    plan = parse_plan({
        "id": "instore", "interactions": {
            "zone_dwell": {"points": 2, "min_dwell_s": 60, "categories": {"Handbags": 7}},
            "try_on": {"points": 3, "min_dwell_s": 30, "categories": {"Fitting rooms": 9}},
        },
    })  # fmt: skip
    scoring.put_plan(db, plan)
    db.execute("DELETE FROM member_scores")
    ann = chain.member("ann")
    now = time.time()
    scoring.on_events_stored(db, _zone_visit(db, ann, "z_bags", 120, now - 10), now=now)
    assert scoring.score(db, ann["id"], now=now) == pytest.approx(7.0, 1e-3)
    scoring.on_events_stored(db, _zone_visit(db, ann, "z_shoes", 120, now - 5), now=now)
    scoring.on_events_stored(db, _zone_visit(db, ann, "z_shoes", 20, now - 4), now=now)  # short
    assert scoring.score(db, ann["id"], now=now) == pytest.approx(9.0, 1e-3)
    scoring.on_events_stored(db, _zone_visit(db, ann, "z_fit", 45, now - 3), now=now)
    assert scoring.score(db, ann["id"], now=now) == pytest.approx(18.0, 1e-3)
    # A zone the device marks as a fitting room (contract 1.2 ZoneVisit.kind) is a try-on too.
    marked = json.dumps({"kind": "fitting_room"})
    scoring.on_events_stored(db, _zone_visit(db, ann, "z_shoes", 40, now - 2, marked), now=now)
    assert scoring.score(db, ann["id"], now=now) == pytest.approx(21.0, 1e-3)
    scoring.on_events_stored(db, _zone_visit(db, ann, "z_shoes", 20, now - 1, marked), now=now)
    assert scoring.score(db, ann["id"], now=now) == pytest.approx(21.0, 1e-3)  # too short


class _Receiver(BaseHTTPRequestHandler):
    """A CRM endpoint that fails the first ``fail`` requests with 503."""

    fail = 0
    seen: list[tuple[dict, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((dict(self.headers), body))
        code = 503 if len(type(self).seen) <= type(self).fail else 200
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def receiver():
    port = free_port()
    _Receiver.seen, _Receiver.fail = [], 2
    server = ThreadingHTTPServer(("127.0.0.1", port), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/hook"
    server.shutdown()
    server.server_close()


def test_handoff_webhook_is_signed_retried_and_recorded(api, receiver) -> None:
    client, chain, admin, shop = api
    body = _plan(thresholds=[{"name": "crm", "score": 12, "action": {
        "kind": "webhook", "url": receiver, "secret_env": "STORELENS_TEST_HOOK_KEY",
        "max_attempts": 5}}]).model_dump(mode="json")  # fmt: skip
    assert client.put("/api/v1/scoring/plans/p1", json=body, headers=admin).status_code == 200
    ann = chain.member("ann")["id"]
    post = [_item("email_opened", ann), _item("event_attended", ann)]
    res = client.post("/api/v1/interactions", json={"interactions": post}, headers=shop).json()
    assert res["results"][0]["actions"] == [] and res["results"][1]["actions"] == ["webhook"]
    db, now = chain.db, time.time()
    assert handoff.deliver_due(db, now=now) == {"delivered": 0, "retry": 1, "failed": 0}
    row = db.query_one("SELECT * FROM handoff_deliveries")
    assert row["status"] == "pending" and row["attempts"] == 1 and row["last_status"] == 503
    assert 24 <= row["next_attempt_at"] - now <= 36  # 30 s +-20 %
    assert handoff.deliver_due(db, now=now) == {"delivered": 0, "retry": 0, "failed": 0}  # not due
    handoff.deliver_due(db, now=row["next_attempt_at"] + 1)
    row = db.query_one("SELECT * FROM handoff_deliveries")
    assert row["attempts"] == 2 and row["next_attempt_at"] - now > 48  # back-off grew
    assert handoff.deliver_due(db, now=row["next_attempt_at"] + 1)["delivered"] == 1
    row = db.query_one("SELECT * FROM handoff_deliveries")
    assert row["status"] == "delivered" and row["attempts"] == 3 and row["last_status"] == 200
    assert len(_Receiver.seen) == 3
    headers, raw = _Receiver.seen[-1]
    assert handoff.verify(SECRET.encode(), raw, headers[handoff.SIGNATURE_HEADER])
    assert not handoff.verify(b"wrong", raw, headers[handoff.SIGNATURE_HEADER])
    assert not handoff.verify(SECRET.encode(), raw + b" ", headers[handoff.SIGNATURE_HEADER])
    payload = json.loads(raw)
    assert payload["member"]["id"] == ann and payload["threshold"] == "crm"
    assert headers[handoff.DELIVERY_HEADER] == payload["delivery_id"] == row["id"]
    listed = client.get("/api/v1/scoring/deliveries?status=delivered", headers=admin).json()
    assert [d["id"] for d in listed] == [row["id"]]
    # Crossing again within the cooldown does not hand the member off twice.
    post = [_item("event_attended", ann), _item("event_attended", ann)]
    client.post("/api/v1/interactions", json={"interactions": post}, headers=shop)
    assert db.scalar("SELECT count(*) FROM handoff_deliveries") == 1


def test_handoff_gives_up_after_max_attempts(db, monkeypatch) -> None:
    chain = build_chain(db, with_tokens=False)
    monkeypatch.delenv("STORELENS_TEST_HOOK_KEY", raising=False)
    now = time.time()
    handoff.enqueue(
        db, plan="p", threshold="t", member_id=chain.member("ann")["id"],
        url=f"http://127.0.0.1:{free_port()}/nobody", secret_env="STORELENS_TEST_HOOK_KEY",
        max_attempts=2, payload={"x": 1}, now=now,
    )  # fmt: skip
    assert handoff.deliver_due(db, now=now)["retry"] == 1
    row = db.query_one("SELECT * FROM handoff_deliveries")
    assert "STORELENS_TEST_HOOK_KEY is not set" in row["last_error"]
    monkeypatch.setenv("STORELENS_TEST_HOOK_KEY", SECRET)  # a refused connection now
    assert handoff.deliver_due(db, now=row["next_attempt_at"] + 1)["failed"] == 1
    row = db.query_one("SELECT * FROM handoff_deliveries")
    assert row["status"] == "failed" and row["attempts"] == 2
    assert "ConnectError" in row["last_error"]


def test_report_fewer_contacts_for_the_same_response(db) -> None:
    """Two plans split the members; the control alerts on every visit, the scored plan only
    the members whose points say they are close to buying. The buyers are the same kind of
    member in both arms, so the scored plan reaches them with far fewer contacts."""
    from personalization_chain import KEY

    build_chain(db, with_tokens=False)
    scoring.put_plan(db, parse_plan({
        "id": "scored", "interactions": {"store_visit": {"points": 1},
                                         "email_opened": {"points": 5}, "cart_add": {"points": 5}},
        "thresholds": [{"name": "hot", "score": 10, "action": {"kind": "pos_alert"}}],
    }))  # fmt: skip
    scoring.put_plan(db, parse_plan({
        "id": "contact_all", "interactions": {"store_visit": {"points": 1}},
        "thresholds": [{"name": "all", "score": 0, "action": {"kind": "pos_alert"}}],
    }))  # fmt: skip
    plans = active_plans(db)
    visit_at = time.time() - 5 * 86400
    intent: set[str] = set()
    visitors: set[str] = set()
    for n in range(60):
        m = members.enroll(db, KEY, members.Enrollment(card_number=f"9900{n:04d}",
                                                       marketing=True))  # fmt: skip
        visitors.add(m["id"])
        if n % 3 == 0:  # showed intent online before the visit, and buys the day after
            intent.add(m["id"])
            scoring.record(db, m, [("email_opened", None), ("cart_add", "Shoes")],
                           at=visit_at - 3600, now=visit_at - 3600)  # fmt: skip
            sale = sales.SaleIn(store="paris", ts=visit_at + 86400, member_id=m["id"],
                                items=[sales.SaleItem(sku="S1", qty=1)])  # fmt: skip
            sales.record_sale(db, sale)
        row = {"id": str(uuid.uuid4()), "type": "visit_started", "store": "paris",
               "member": m["token"], "ts": visit_at}  # fmt: skip
        scoring.on_events_stored(db, [row], now=visit_at + 1)
    report = {p["plan"]: p for p in scoring_report.plan_report(db)["plans"]}
    scored, control = report["scored"], report["contact_all"]
    arms = {p.id: {m for m in (r["id"] for r in db.query("SELECT id FROM members"))
                   if assigned_plan(m, plans).id == p.id} for p in plans}  # fmt: skip
    for arm, rep in ((arms["scored"], scored), (arms["contact_all"], control)):
        assert rep["members"] == len(arm)
        assert rep["buyers"] == rep["responders"] == len(arm & intent)
    assert control["contacts"] == len(arms["contact_all"] & visitors)  # every visitor
    assert scored["contacts"] == len(arms["scored"] & intent)
    assert scored["response_rate"] == 1.0 and control["response_rate"] < 0.6
    assert scored["contacts_per_member"] < control["contacts_per_member"]


def test_online_views_on_the_profile_with_store_stock(api) -> None:
    client, chain, admin, shop = api
    from storelens.cloud.commerce import stores

    ann = chain.member("ann")["id"]
    stores.set_inventory(chain.db, "lyon", [stores.InventoryLevel(sku="H2", on_hand=0)])
    items = [_item("product_viewed", ann, sku="H2"), _item("product_viewed", ann, sku="S3"),
             _item("cart_add", ann, sku="H2")]  # fmt: skip
    client.post("/api/v1/interactions", json={"interactions": items}, headers=shop)
    paris = {"Authorization": f"Bearer {chain.tokens['paris']}"}
    swipe_at_till(client, chain, paris)  # a POS reads only the member at its till
    profile = client.get(f"/api/v1/members/{ann}/profile", headers=paris).json()
    interest = {r["sku"]: r for r in profile["online_interest"]}
    assert interest["H2"]["views"] == 1 and interest["H2"]["cart_adds"] == 1
    assert interest["H2"]["category"] == "Handbags"  # from the catalog
    assert interest["H2"]["in_stock_here"] and interest["H2"]["available_here"] == 20
    card = client.get(f"/api/v1/pos/members/{ann}", headers=paris).json()  # the till's view
    assert {r["sku"]: r["in_stock_here"] for r in card["online_interest"]} == {
        "H2": True, "S3": True
    }  # fmt: skip
    lyon = client.get(f"/api/v1/members/{ann}/profile?store=lyon", headers=admin).json()
    assert not {r["sku"]: r for r in lyon["online_interest"]}["H2"]["in_stock_here"]
    assert profile["scoring_plan"] == "default" and profile["scores"]["default"] > 0
    # Forget-me and withdrawn tracking consent delete what was reported.
    members.set_consent(chain.db, ann, members.Consent(tracking=False))
    assert interactions.online_interest(chain.db, ann) == []
    cid = chain.member("cid")["id"]
    client.post("/api/v1/interactions", json={"interactions": [
        _item("product_viewed", cid, sku="B1")]}, headers=shop)  # fmt: skip
    assert chain.db.scalar("SELECT count(*) FROM interactions WHERE member_id = ?", (cid,)) == 1
    members.forget(chain.db, cid)
    for table in ("interactions", "member_scores", "score_contacts", "handoff_deliveries"):
        assert chain.db.scalar(f"SELECT count(*) FROM {table} WHERE member_id = ?", (cid,)) == 0


def test_online_views_feed_the_recommender(api) -> None:
    """Dee never bought or visited; her web-shop views of Beauty make Beauty her category
    (in the model) and the items themselves her first suggestions (at serving)."""
    from storelens.cloud.personalization.recommend.service import RecommendationService

    client, chain, admin, shop = api
    dee = chain.member("dee")
    for sku in ("H1", "H2", "S1", "S2", "B1", "B3", "H1", "S1"):  # walk-in sales: popularity
        sale = sales.SaleIn(
            store="paris", ts=time.time() - 86400, items=[sales.SaleItem(sku=sku, qty=1)]
        )
        sales.record_sale(chain.db, sale)
    service = RecommendationService(chain.db)
    before = [r.sku for r in service.for_member(dee, "paris", limit=2)]
    assert set(before) == {"H1", "S1"}  # nothing known about her: the store's best sellers
    items = [_item("product_viewed", dee["id"], sku=f"B{i}") for i in range(4)]
    items.append(_item("cart_add", dee["id"], sku="B2"))
    client.post("/api/v1/interactions", json={"interactions": items}, headers=shop)
    model = service.rebuild()
    row = model.dwell_affinity[model.member_index[dee["id"]]]
    assert row[model.category_index["Beauty"]] == pytest.approx(1.0)
    recs = service.for_member(dee, "paris", limit=4)
    # Per item: the cart add first, then the viewed items the store sells (category share).
    assert recs[0].sku == "B2" and recs[0].source == "carted_online"
    assert {r.sku for r in recs[1:3]} == {"B1", "B3"}
    assert {r.source for r in recs[1:3]} == {"viewed_online"}
    # Without tracking consent her views are deleted and no longer count.
    members.set_consent(chain.db, dee["id"], members.Consent(tracking=False))
    model = service.rebuild()
    assert dee["id"] not in model.member_index


def test_online_views_and_cart_adds_feed_the_recommender_per_item(api) -> None:
    """Items Dee viewed or left in her cart online come first, the cart above the views, even
    items nobody ever bought (no category-level signal could pick them); an item she bought
    after viewing it is no open interest, and a non-consumable bought is not suggested."""
    from storelens.cloud.personalization.recommend.service import RecommendationService

    client, chain, admin, shop = api
    dee = chain.member("dee")
    now = time.time()
    for sku in ("H1", "H2", "S1", "S2", "B1", "H1", "S1", "H4"):  # walk-in sales: popularity
        sale = sales.SaleIn(store="paris", ts=now - 86400, items=[sales.SaleItem(sku=sku, qty=1)])
        sales.record_sale(chain.db, sale)
    service = RecommendationService(chain.db)
    service.rebuild(now=now - 7200)
    items = [
        _item("product_viewed", dee["id"], sku="H5", at=now - 3600),  # never sold anywhere
        _item("product_viewed", dee["id"], sku="S5", at=now - 3600),
        _item("cart_add", dee["id"], sku="S5", at=now - 3500),  # left in the cart
        _item("product_viewed", dee["id"], sku="H4", at=now - 3600),  # then bought in store
    ]
    out = client.post("/api/v1/interactions", json={"interactions": items}, headers=shop)
    assert [r["outcome"] for r in out.json()["results"]] == ["recorded"] * 4
    sales.record_sale(chain.db, sales.SaleIn(store="paris", ts=now - 1800, member_id=dee["id"],
                                             items=[sales.SaleItem(sku="H4", qty=1)]))  # fmt: skip
    # No rebuild: what she did online since the last build counts at once.
    recs = service.for_member(dee, "paris", limit=4, now=now)
    assert [(r.sku, r.source) for r in recs[:2]] == [
        ("S5", "carted_online"), ("H5", "viewed_online")
    ]  # fmt: skip
    assert recs[0].reason == "in your online cart" and recs[0].score > recs[1].score
    assert "H4" not in {r.sku for r in recs}  # bought after the view: not suggested again
    # After a rebuild the purchase is in the model: still not suggested, cart still first.
    service.rebuild(now=now)
    recs = service.for_member(dee, "paris", limit=4, now=now)
    assert recs[0].sku == "S5" and "H4" not in {r.sku for r in recs}
    # Out of stock here: the cart item is not suggested at this store.
    chain.db.execute("UPDATE inventory SET on_hand = 0 WHERE store = 'lyon' AND sku = 'S5'")
    assert "S5" not in {r.sku for r in service.for_member(dee, "lyon", limit=4, now=now)}
    # Without tracking consent her online behaviour is deleted and no longer counts.
    members.set_consent(chain.db, dee["id"], members.Consent(tracking=False))
    recs = service.for_member(dict(dee, tracking=False), "paris", limit=4, now=now)
    assert not {"S5", "H5"} & {r.sku for r in recs}


def test_cli_loads_plans_all_or_none_and_issues_integration_tokens(tmp_path) -> None:
    from typer.testing import CliRunner

    from storelens.cli import app
    from storelens.cloud.db import connect

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    ok = runner.invoke(app, ["cloud", "scoring-plans", str(DOCS_PLANS), "--db", url])
    assert ok.exit_code == 0, ok.output
    assert "loaded 2 scoring plan(s): scored, contact_all" in ok.output
    listed = runner.invoke(app, ["cloud", "scoring-plans", "--db", url])
    assert "scored: Points and thresholds" in listed.output and "contact_all" in listed.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "- {id: fine, interactions: {email_opened: {points: 1}}}\n"
        "- {id: broken, interactions: {email_opened: {points: lots}}}\n"
    )
    failed = runner.invoke(app, ["cloud", "scoring-plans", str(bad), "--db", url])
    assert failed.exit_code == 1 and "interactions.email_opened.points" in failed.output
    db = connect(url)
    try:
        assert [p.id for p in active_plans(db)] == ["contact_all", "scored"]  # none of bad.yaml
        token = runner.invoke(app, ["cloud", "integration-token", "webshop", "--db", url])
        assert token.exit_code == 0
        principal = auth.authenticate(db, token.output.strip())
        assert principal is not None and principal.kind == "integration"
    finally:
        db.close()
