"""Engagement scoring: decayed running totals, idempotent event scoring through the ingest
hook, POS alerts for high-intent members in store, coupons on threshold crossing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from personalization_chain import build_chain

from storelens.cloud import push
from storelens.cloud.commerce import members
from storelens.cloud.ingest import device_registry
from storelens.cloud.ingest import worker as ingest
from storelens.cloud.personalization import coupons, offers, scoring
from storelens.cloud.personalization.scoring_plans import DEFAULT_PLAN, CouponAction, Threshold
from storelens.cloud.services import Services
from storelens.cloud.settings import Settings
from storelens.contract import topics
from storelens.contract.envelope import Envelope, encode_envelope
from storelens.contract.events import ZoneVisit

DAY = 86400.0
NO_HOLDOUT = offers.OfferPolicy(holdout_share=0.0)  # member IDs are random: no flaky holdout


@pytest.fixture
def pushed(db, monkeypatch) -> Iterator[list[push.PushMessage]]:  # noqa: ANN001
    """Every message published through the push hub of the services serving ``db``."""
    hub = push.PushHub()
    services = Services(Settings.from_env({}, db_url="unused"), db, hub)
    seen: list[push.PushMessage] = []
    original = hub._deliver

    def record(msg: push.PushMessage) -> None:
        seen.append(msg)
        original(msg)

    monkeypatch.setattr(hub, "_deliver", record)
    yield seen
    services.close()


def _zero_scores(db) -> None:
    """Start from no engagement: enrollment's own points would shift every expected total
    (they are tested in test_enrollment_awards_its_points_once)."""
    db.execute("DELETE FROM member_scores")


def test_decay_and_running_totals(db) -> None:
    chain = build_chain(db, with_tokens=False)
    _zero_scores(db)
    ann = chain.member("ann")["id"]
    policy = DEFAULT_PLAN.model_copy(update={"half_life_days": 30.0})
    t = time.time()
    before, after = scoring.award(db, ann, "online_order", at=t, now=t, plan=policy)
    assert before == 0.0 and after == pytest.approx(10.0)
    assert scoring.score(db, ann, now=t + 30 * DAY, plan=policy) == pytest.approx(5.0)
    assert scoring.score(db, ann, now=t + 60 * DAY, plan=policy) == pytest.approx(2.5)
    # An old event arriving late counts as much as it would have in order.
    scoring.award(db, ann, "online_order", at=t - 30 * DAY, now=t, plan=policy)
    assert scoring.score(db, ann, now=t, plan=policy) == pytest.approx(15.0)
    assert scoring.score(db, "nobody", now=t) == 0.0


def test_concurrent_awards_lose_nothing(db) -> None:
    chain = build_chain(db, with_tokens=False)
    _zero_scores(db)
    cid = chain.member("cid")["id"]
    t = time.time()
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        for _ in range(10):
            scoring.award(db, cid, "store_visit", at=t, now=t)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert scoring.score(db, cid, now=t) == pytest.approx(40.0)


def _zone_visit(token: str, zone: str, dwell_s: float, ts: float, seq: int) -> ZoneVisit:
    exited = datetime.fromtimestamp(ts, UTC)
    entered = datetime.fromtimestamp(ts - dwell_s, UTC)
    return ZoneVisit(
        device="edge-1", seq=seq, ts=exited, camera="cam-1", visit_id=uuid.uuid4(),
        member=token, key_id="k1", zone=zone, entered_at=entered, exited_at=exited,
        dwell_s=dwell_s,
    )  # fmt: skip


def _ingest(db, *evts: ZoneVisit) -> None:
    payload = encode_envelope(Envelope(store="paris", device="edge-1", events=list(evts)))
    ingest.Ingestor(db).process([ingest.Incoming(topics.events("paris", "edge-1"), payload)])


def test_ingest_hook_scores_once_and_alerts_the_store_pos(db, pushed) -> None:
    chain = build_chain(db, with_tokens=False)
    _zero_scores(db)
    device_registry.register_device(db, "paris", "edge-1")
    ann, bob = chain.member("ann"), chain.member("bob")
    now = time.time()
    for _ in range(3):
        scoring.award(db, ann["id"], "online_order", at=now - 60)
    visit = _zone_visit(ann["token"], "z_bags", 360.0, now - 5, 1)
    _ingest(db, visit)
    alerts = [m for m in pushed if m.kind == "member_alert"]
    assert len(alerts) == 1 and alerts[0].store == "paris"
    payload = alerts[0].payload
    assert payload["member_id"] == ann["id"] and payload["category"] == "Handbags"
    assert payload["message"].startswith("member in Handbags for 6 min, score 35")
    assert scoring.score(db, ann["id"]) == pytest.approx(35.0, abs=0.1)
    # The same batch redelivered: stored once, scored once, no second alert.
    _ingest(db, visit)
    assert scoring.score(db, ann["id"]) == pytest.approx(35.0, abs=0.1)
    # A new visit within the cooldown adds points but does not alert again.
    _ingest(db, _zone_visit(ann["token"], "z_shoes", 200.0, now - 2, 2))
    assert scoring.score(db, ann["id"]) == pytest.approx(40.0, abs=0.1)
    assert len([m for m in pushed if m.kind == "member_alert"]) == 1
    # Short dwell earns nothing; a member without marketing consent is scored, never alerted.
    _ingest(db, _zone_visit(ann["token"], "z_beauty", 20.0, now - 1, 3))
    assert scoring.score(db, ann["id"]) == pytest.approx(40.0, abs=0.1)
    for _ in range(3):
        scoring.award(db, bob["id"], "online_order")
    _ingest(db, _zone_visit(bob["token"], "z_bags", 400.0, now - 1, 4))
    assert scoring.score(db, bob["id"]) > 30
    assert len([m for m in pushed if m.kind == "member_alert"]) == 1


def test_threshold_crossing_issues_a_coupon(db, pushed) -> None:
    chain = build_chain(db, with_tokens=False)
    dee = chain.member("dee")
    policy = DEFAULT_PLAN.model_copy(update={"thresholds": [
        Threshold(name="engaged_coupon", score=12.0, action=CouponAction(template_id="engaged"))
    ]})  # fmt: skip
    now = time.time()
    before, after = scoring.award(db, dee["id"], "online_order", now=now, plan=policy)
    assert scoring.check_thresholds(db, dee, before, after, presence=None, now=now,
                                    plan=policy, offer_policy=NO_HOLDOUT) == []  # fmt: skip
    before, after = scoring.award(db, dee["id"], "coupon_redeemed", now=now, plan=policy)
    presence = scoring.Presence(store="paris", zone="z_bags", category="Handbags", dwell_s=300)
    done = scoring.check_thresholds(db, dee, before, after, presence=presence, now=now,
                                    plan=policy, offer_policy=NO_HOLDOUT)  # fmt: skip
    assert [d["action"] for d in done] == ["coupon"]
    issued = coupons.list_for_member(db, dee["id"])
    assert len(issued) == 1 and issued[0]["source"] == "score" and issued[0]["value"] == 15
    assert [m.kind for m in pushed] == ["coupon_issued"]
    assert pushed[0].payload["code_hint"].endswith(issued[0]["code"][-4:])
    assert issued[0]["code"] not in str(pushed[0].payload)  # the push never carries the code
    # Staying above the threshold does not issue another.
    before, after = scoring.award(db, dee["id"], "online_order", now=now, plan=policy)
    assert scoring.check_thresholds(db, dee, before, after, presence=presence, now=now,
                                    plan=policy, offer_policy=NO_HOLDOUT) == []  # fmt: skip


def test_forget_me_deletes_scores(db) -> None:
    chain = build_chain(db, with_tokens=False)
    ann = chain.member("ann")["id"]
    scoring.award(db, ann, "online_order")
    members.forget(db, ann)
    assert db.scalar("SELECT count(*) FROM member_scores WHERE member_id = ?", (ann,)) == 0


def test_enrollment_awards_its_points_once(db) -> None:
    from storelens.pseudonym import PseudonymKey

    key = PseudonymKey("k1", b"\x01" * 32)
    member = members.enroll(db, key, members.Enrollment(card_number="6012000011112222"))
    assert scoring.score(db, member["id"]) == pytest.approx(DEFAULT_PLAN.points("enrolled"))
    with pytest.raises(members.MemberError):  # the same card again: no second award
        members.enroll(db, key, members.Enrollment(card_number="6012000011112222"))
    assert scoring.score(db, member["id"]) == pytest.approx(DEFAULT_PLAN.points("enrolled"))


def test_actions_are_announced_only_once_committed(db, pushed) -> None:
    chain = build_chain(db, with_tokens=False)
    ann = chain.member("ann")
    now = time.time()
    presence = scoring.Presence(store="paris", zone="z_bags", category="Handbags")
    with pytest.raises(RuntimeError), db.transaction():
        scoring.record(db, ann, [("online_order", None)] * 3, now=now, presence=presence)
        assert pushed == []  # the contact is not committed yet
        raise RuntimeError("the batch fails")
    assert pushed == [] and db.scalar("SELECT count(*) FROM score_contacts") == 0
    scoring.record(db, ann, [("online_order", None)] * 3, now=now, presence=presence)
    assert [m.kind for m in pushed] == ["member_alert"]
    assert db.scalar("SELECT count(*) FROM score_contacts") == 1


def test_ingest_housekeeping_prunes_old_scored_events(db, db_url) -> None:
    from storelens.cloud.ingest.worker import housekeeping
    from storelens.cloud.settings import Settings

    now = 1_790_000_000.0
    ages = {"fresh": 1, "week": 7.5, "old": 15, "older": 40}
    for name, days in ages.items():
        db.execute("INSERT INTO scored_events (event_id, scored_at) VALUES (?, ?)",
                   (name, now - days * 86_400))  # fmt: skip
    kept = lambda: {r["event_id"] for r in db.query("SELECT event_id FROM scored_events")}  # noqa: E731
    assert housekeeping(db, Settings(db_url=db_url, scored_events_retention_days=0),
                        now)["scored_events_pruned"] == 0  # fmt: skip
    assert kept() == set(ages)
    result = housekeeping(db, Settings(db_url=db_url), now)  # default: 14 days
    assert result["scored_events_pruned"] == 2 and kept() == {"fresh", "week"}
    assert housekeeping(db, Settings(db_url=db_url, scored_events_retention_days=7),
                        now)["scored_events_pruned"] == 1  # fmt: skip
    assert kept() == {"fresh"}
