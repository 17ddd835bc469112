"""The offer engine: consent, holdout, caps on shown offers, decline cooldown, at most K, and
the "buy a recommended item today, get N% off your next purchase" rule."""

from __future__ import annotations

import threading
import time

import pytest
from personalization_chain import KEY, build_chain

from storelens.cloud.commerce import members, sales
from storelens.cloud.personalization import checkout, coupons, offers
from storelens.cloud.personalization.coupons import DiscountTerms
from storelens.cloud.personalization.offers import (
    MemberFacts,
    OfferError,
    OfferPolicy,
    OfferTemplate,
)

NO_HOLDOUT = OfferPolicy(holdout_share=0.0, max_offers=3, cap_per_day=2, cap_per_week=3)


def _templates(db, n: int = 5) -> list[str]:
    ids = []
    for i in range(n):
        t = OfferTemplate(
            id=f"promo{i}", name=f"Promo {i}", priority=i,
            terms=DiscountTerms(kind="percent", value=5 + i, scope="basket"),
        )  # fmt: skip
        offers.save_template(db, t)
        ids.append(t.id)
    return ids


def _facts(member: dict, **kw) -> MemberFacts:
    return MemberFacts(member["id"], member["marketing"], member["tier"], **kw)


def test_holdout_is_deterministic_and_sized() -> None:
    policy = OfferPolicy(holdout_share=0.1)
    ids = [f"m_{i:06d}" for i in range(20000)]
    held = [m for m in ids if offers.in_holdout(m, policy)]
    assert 0.09 < len(held) / len(ids) < 0.11
    assert held == [m for m in ids if offers.in_holdout(m, policy)]  # same answer every time
    assert not any(offers.in_holdout(m, OfferPolicy(holdout_share=0.0)) for m in ids[:1000])
    other = OfferPolicy(holdout_share=0.1, holdout_salt="another")
    assert held != [m for m in ids if offers.in_holdout(m, other)]


def test_holdout_members_never_get_offers(db) -> None:
    build_chain(db, with_tokens=False)
    _templates(db)
    policy = OfferPolicy(holdout_share=0.5)
    key = KEY
    seen_holdout = seen_offered = 0
    for n in range(16):
        m = members.enroll(db, key, members.Enrollment(card_number=f"HOLD{n:04d}", marketing=True))
        proposals = offers.propose(db, _facts(m), "paris", policy=policy)
        if offers.in_holdout(m["id"], policy):
            seen_holdout += 1
            assert proposals == []
            with pytest.raises(OfferError) as err:
                offers.mark_shown(db, _facts(m), "promo0", "paris", policy=policy)
            assert err.value.reason == "holdout"
            assert coupons.list_for_member(db, m["id"]) == []
        else:
            seen_offered += 1
            assert proposals
    assert seen_holdout and seen_offered


def test_no_marketing_consent_no_offers(db) -> None:
    chain = build_chain(db, with_tokens=False)
    _templates(db)
    bob = chain.member("bob")
    assert not bob["marketing"]
    assert offers.propose(db, _facts(bob), "paris", policy=NO_HOLDOUT) == []
    with pytest.raises(OfferError) as err:
        offers.mark_shown(db, _facts(bob), "promo1", "paris", policy=NO_HOLDOUT)
    assert err.value.reason == "no_marketing_consent"


def test_caps_count_shown_offers_and_hold_under_repeated_requests(db) -> None:
    chain = build_chain(db, with_tokens=False)
    _templates(db)
    ann = chain.member("ann")
    now = time.time()
    # Computing offers many times counts nothing.
    for _ in range(10):
        proposals = offers.propose(db, _facts(ann), "paris", policy=NO_HOLDOUT, now=now)
        assert len(proposals) == 2  # min(K=3, daily cap 2)
    assert [p.template_id for p in proposals] == ["promo4", "promo3"]  # priority order
    shown = 0
    for i in range(20):  # a till that keeps asking and showing everything it gets
        for p in offers.propose(db, _facts(ann), "paris", policy=NO_HOLDOUT, now=now + i):
            offers.mark_shown(db, _facts(ann), p.template_id, "paris", policy=NO_HOLDOUT,
                              now=now + i)  # fmt: skip
            shown += 1
    assert shown == 2
    with pytest.raises(OfferError) as err:
        offers.mark_shown(db, _facts(ann), "promo0", "paris", policy=NO_HOLDOUT, now=now + 30)
    assert err.value.reason == "cap_reached"
    # Showing an offer whose coupon the member holds returns that coupon, uncounted.
    again = offers.mark_shown(db, _facts(ann), "promo4", "paris", policy=NO_HOLDOUT, now=now + 31)
    assert again["template_id"] == "promo4"
    # Next day: one more before the weekly cap of 3.
    tomorrow = now + 86400 + 60
    later = offers.propose(db, _facts(ann), "paris", policy=NO_HOLDOUT, now=tomorrow)
    assert len(later) == 1 and later[0].template_id not in {"promo4", "promo3"}
    offers.mark_shown(db, _facts(ann), later[0].template_id, "paris", policy=NO_HOLDOUT,
                      now=tomorrow)  # fmt: skip
    assert offers.propose(db, _facts(ann), "paris", policy=NO_HOLDOUT, now=tomorrow + 86400) == []
    assert (
        db.scalar(
            "SELECT count(*) FROM offer_impressions WHERE member_id = ? AND action = 'shown'",
            (ann["id"],),
        )
        == 3
    )


def test_caps_hold_under_concurrent_tills(db) -> None:
    chain = build_chain(db, with_tokens=False)
    ids = _templates(db)
    cid = chain.member("cid")
    barrier = threading.Barrier(len(ids))
    results: list[str] = []

    def till(template_id: str) -> None:
        barrier.wait()
        try:
            offers.mark_shown(db, _facts(cid), template_id, "paris", policy=NO_HOLDOUT)
            results.append("shown")
        except OfferError as exc:
            results.append(exc.reason)

    threads = [threading.Thread(target=till, args=(t,)) for t in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count("shown") == NO_HOLDOUT.cap_per_day
    assert results.count("cap_reached") == len(ids) - NO_HOLDOUT.cap_per_day


def test_declined_offer_is_not_repeated_during_cooldown(db) -> None:
    chain = build_chain(db, with_tokens=False)
    _templates(db, 2)
    ann = chain.member("ann")
    policy = OfferPolicy(holdout_share=0.0, cap_per_day=10, cap_per_week=10)
    now = time.time()
    coupon = offers.mark_shown(db, _facts(ann), "promo1", "paris", policy=policy, now=now)
    assert offers.mark_declined(db, ann["id"], "promo1", "paris", now=now + 1) == 1
    assert coupons.get(db, coupon["code"])["voided_at"] is not None
    ids = [
        p.template_id for p in offers.propose(db, _facts(ann), "paris", policy=policy, now=now + 2)
    ]
    assert ids == ["promo0"]
    with pytest.raises(OfferError) as err:
        offers.mark_shown(db, _facts(ann), "promo1", "paris", policy=policy, now=now + 3)
    assert err.value.reason == "declined_recently"
    after = now + (policy.decline_cooldown_days + 1) * 86400
    ids = [
        p.template_id for p in offers.propose(db, _facts(ann), "paris", policy=policy, now=after)
    ]
    assert "promo1" in ids


def test_audience_validity_and_store_rules(db) -> None:
    chain = build_chain(db, with_tokens=False)
    now = time.time()
    bags = DiscountTerms(kind="percent", value=10, scope="category", scope_value="Handbags")
    for t in (
        OfferTemplate(id="bags", name="Bags", terms=bags, audience="category_affinity",
                      audience_value="Handbags"),
        OfferTemplate(id="gold", name="Gold", terms=bags, audience="tier", audience_value="gold"),
        OfferTemplate(id="lyon_only", name="Lyon", terms=bags, stores=["lyon"]),
        OfferTemplate(id="expired", name="Old", terms=bags, valid_until=now - 1),
        OfferTemplate(id="vip", name="VIP", terms=bags, audience="min_score", audience_value="50"),
    ):  # fmt: skip
        offers.save_template(db, t)
    ann = chain.member("ann")
    policy = OfferPolicy(holdout_share=0.0, max_offers=10, cap_per_day=10, cap_per_week=10)

    def ids(**kw) -> set[str]:
        store = kw.pop("store", "paris")
        return {p.template_id for p in offers.propose(db, _facts(ann, **kw), store, policy=policy)}

    assert ids() == set()
    assert ids(affinity={"Handbags": 240.0}) == {"bags"}
    assert ids(store="lyon") == {"lyon_only"}
    assert ids(score=55.0) == {"vip"}
    proposal = offers.propose(db, _facts(ann, affinity={"Handbags": 1.0}), "paris", policy=policy)
    assert proposal[0].why == "interested in Handbags today"


def test_buying_a_recommended_item_earns_a_next_purchase_coupon(db) -> None:
    chain = build_chain(db, with_tokens=False)
    ann, bob = chain.member("ann"), chain.member("bob")
    now = time.time()
    start = now - 3600
    offers.log_recommendations(db, ann["id"], "paris", ["H2", "S3"], now - 60)
    offers.log_recommendations(db, bob["id"], "paris", ["H2"], now - 60)

    def buy(member: dict, sku: str) -> checkout.CheckoutResult:
        sale = sales.SaleIn(store="paris", member_id=member["id"],
                            items=[sales.SaleItem(sku=sku, qty=1)])  # fmt: skip
        return checkout.checkout(db, sale, now=now, start_of_day=start, policy=NO_HOLDOUT)

    assert buy(ann, "H0").issued == []  # not a recommended item
    issued = buy(ann, "H2").issued
    assert [c["template_id"] for c in issued] == ["next_purchase"]  # the business case: 20%
    assert issued[0]["source"] == "recommended_purchase" and issued[0]["value"] == 20
    assert buy(ann, "S3").issued == []  # once a day
    assert buy(bob, "H2").issued == []  # no marketing consent
    # The coupon works on the next purchase.
    sale = sales.SaleIn(store="paris", member_id=ann["id"], items=[sales.SaleItem(sku="S5", qty=1)],
                        coupon_codes=[issued[0]["code"]])  # fmt: skip
    assert checkout.checkout(db, sale).discount == 12.0


def test_forget_me_removes_offer_history_and_unused_coupons(db) -> None:
    chain = build_chain(db, with_tokens=False)
    _templates(db, 2)
    ann = chain.member("ann")
    unused = offers.mark_shown(db, _facts(ann), "promo0", "paris", policy=NO_HOLDOUT)
    used = offers.mark_shown(db, _facts(ann), "promo1", "paris", policy=NO_HOLDOUT)
    offers.log_recommendations(db, ann["id"], "paris", ["H1"])
    sale = sales.SaleIn(store="paris", member_id=ann["id"], items=[sales.SaleItem(sku="H1", qty=1)],
                        coupon_codes=[used["code"]])  # fmt: skip
    checkout.checkout(db, sale)
    members.forget(db, ann["id"])
    for table in ("offer_impressions", "recommendation_impressions", "offer_member_locks"):
        assert db.scalar(f"SELECT count(*) FROM {table} WHERE member_id = ?", (ann["id"],)) == 0
    assert coupons.get(db, unused["code"]) is None
    kept = coupons.get(db, used["code"])  # the discount given on a sale stays, anonymous
    assert kept["member_id"] is None and kept["discount"] == 1.2


def test_next_purchase_default_is_20_percent_and_stays_configurable(db) -> None:
    from storelens.cloud.personalization.offers import MIGRATIONS

    rule = offers.get_template(db, "next_purchase")
    assert rule is not None and rule.active and rule.terms.value == 20
    assert rule.trigger == "recommended_purchase"
    assert not offers.get_template(db, "next_purchase_10").active  # the old 10% default
    offers.save_template(db, rule.model_copy(update={
        "terms": rule.terms.model_copy(update={"value": 25})}))  # fmt: skip
    assert offers.get_template(db, "next_purchase").terms.value == 25
    # An upgrade where ops had changed the old rule keeps theirs and adds the new one inactive.
    db.execute("DELETE FROM offer_templates WHERE id = 'next_purchase'")
    db.execute("UPDATE offer_templates SET active = 1, value = 12 WHERE id = 'next_purchase_10'")
    step = MIGRATIONS[2]
    for sql in step.sql.split(";"):
        db.execute(sql)
    assert offers.get_template(db, "next_purchase_10").active
    assert not offers.get_template(db, "next_purchase").active
