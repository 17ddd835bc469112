"""Purchase propensity on both backends: trained on stored sales, stored per member and
category, shown on the profile and the POS card, usable as an offer audience, forgotten with
the member; and the backtest command on a history file with a planted pattern."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from personalization_chain import KEY_HEX, build_chain
from typer.testing import CliRunner

from storelens.cloud.api.app import create_app
from storelens.cloud.commerce import members, sales
from storelens.cloud.personalization import offers, propensity
from storelens.cloud.personalization.coupons import DiscountTerms
from storelens.cloud.settings import Settings

DAY = 86400.0
SETTINGS = propensity.PropensitySettings(horizon_days=14, training_cutoffs=3)


def _history(db, chain, now: float) -> tuple[set[str], set[str], dict[str, str]]:
    """Regulars buy Beauty every ~10 days; occasionals bought Handbags once or twice."""
    from personalization_chain import KEY

    rng = np.random.default_rng(7)
    regulars, occasionals, cards = set(), set(), {}
    for n in range(60):
        m = members.enroll(db, KEY, members.Enrollment(card_number=f"7700{n:04d}", marketing=True))
        cards[m["id"]] = f"7700{n:04d}"
        if n % 2 == 0:
            regulars.add(m["id"])
            t = now - 120 * DAY + rng.uniform(0, 10) * DAY
            while t < now:
                sales.record_sale(
                    db,
                    sales.SaleIn(
                        store="paris",
                        ts=t,
                        member_id=m["id"],
                        items=[sales.SaleItem(sku="B1", qty=1)],
                    ),
                )
                t += rng.uniform(7, 13) * DAY
        else:
            occasionals.add(m["id"])
            for _ in range(int(rng.integers(1, 3))):
                t = now - rng.uniform(1, 110) * DAY
                sales.record_sale(
                    db,
                    sales.SaleIn(
                        store="paris",
                        ts=t,
                        member_id=m["id"],
                        items=[sales.SaleItem(sku="H2", qty=1)],
                    ),
                )
    return regulars, occasionals, cards


@pytest.mark.slow
def test_refresh_scores_members_and_feeds_profile_pos_and_offers(db, monkeypatch) -> None:
    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", KEY_HEX)
    chain = build_chain(db)
    now = time.time()
    regulars, occasionals, cards = _history(db, chain, now)
    summary = propensity.refresh(db, settings=SETTINGS, now=now)
    # Members who bought within the feature window (shortened to the 78 days of history the
    # oldest training cutoff has) are scored: every regular, most occasionals.
    assert summary["lookback_days"] == pytest.approx(78, abs=11) and summary["categories"] == 2
    assert 30 < summary["members"] <= 60 and summary["stored"] > 0
    beauty = {m: propensity.for_member(db, m).get("Beauty", 0.0) for m in regulars | occasionals}
    assert all(0.0 <= p <= 1.0 for p in beauty.values())
    assert np.mean([beauty[m] for m in regulars]) > 0.6
    assert np.mean([beauty[m] for m in occasionals]) < 0.2
    regular, occasional = sorted(regulars)[0], sorted(occasionals)[0]

    # An offer for members likely to buy Beauty soon.
    with pytest.raises(ValueError, match="Category>probability"):
        offers.OfferTemplate(
            id="x",
            name="x",
            terms=DiscountTerms(kind="percent", value=5),
            audience="propensity",
            audience_value="Beauty",
        )
    offers.save_template(
        db,
        offers.OfferTemplate(
            id="beauty_soon",
            name="Beauty 10%",
            audience="propensity",
            audience_value="Beauty>0.3",
            terms=DiscountTerms(kind="percent", value=10, scope="category", scope_value="Beauty"),
        ),
    )
    policy = offers.OfferPolicy(holdout_share=0.0)

    def proposed(member_id: str) -> list[str]:
        facts = offers.MemberFacts(member_id, True, propensity=propensity.for_member(db, member_id))
        return [p.template_id for p in offers.propose(db, facts, "paris", policy=policy, now=now)]

    assert "beauty_soon" in proposed(regular) and "beauty_soon" not in proposed(occasional)

    app = create_app(Settings.from_env({}, db_url="unused", handoff_interval_s=0), db=db)
    paris = {"Authorization": f"Bearer {chain.tokens['paris']}"}
    with TestClient(app) as client:
        # A POS reads only the member at its till: the regular swipes their card first.
        swipe = client.post(
            "/api/v1/pos/members/lookup", json={"card_number": cards[regular]}, headers=paris
        )
        assert swipe.status_code == 200, swipe.text
        profile = client.get(f"/api/v1/members/{regular}/profile", headers=paris).json()
        assert profile["propensity"]["Beauty"] == pytest.approx(beauty[regular])
        assert profile["propensity_horizon_days"] == 14
        card = client.get(f"/api/v1/pos/members/{regular}", headers=paris)
        assert card.status_code == 200, card.text
        assert card.json()["propensity"]["Beauty"] == pytest.approx(beauty[regular])
        bad = {
            "id": "p",
            "name": "p",
            "audience": "propensity",
            "audience_value": "Beauty>2",
            "terms": {"kind": "percent", "value": 5},
        }
        admin_token = _admin(db)
        r = client.put("/api/v1/offers/templates/p", json=bad, headers=admin_token)
        assert r.status_code == 422
        recommender = app.state.services.recommender
        if recommender is not None:
            recommender.stop()
    members.forget(db, regular)
    assert propensity.for_member(db, regular) == {}


def _admin(db) -> dict[str, str]:
    from storelens.cloud.api import principals as auth

    auth.create_user(db, "prop-admin", "password123", "admin")
    return {"Authorization": f"Bearer {auth.login(db, 'prop-admin', 'password123', 600)}"}


def test_pos_card_shows_propensity_only_with_marketing_consent(db, monkeypatch) -> None:
    monkeypatch.setenv("STORELENS_PSEUDONYM_KEY", KEY_HEX)
    chain = build_chain(db)
    ann, bob = chain.member("ann")["id"], chain.member("bob")["id"]  # bob: no marketing
    rows = [(m, "Beauty", 0.42, 30.0, time.time()) for m in (ann, bob)]
    db.executemany(
        "INSERT INTO member_propensity (member_id, category, probability, horizon_days,"
        " computed_at) VALUES (?, ?, ?, ?, ?)",
        rows,
    )
    from storelens.cloud.api.pos import _card

    assert _card(db, members.get_member(db, ann)).propensity == {"Beauty": 0.42}
    assert _card(db, members.get_member(db, bob)).propensity == {}


def _write_history(path, seed: int = 3) -> None:
    """Canonical columns; customers with a habit (one category every ~2 weeks) and random
    one-off buyers, over eight months."""
    rng = np.random.default_rng(seed)
    start = 1_293_840_000.0  # 2011-01-01
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["order_id", "customer_id", "sku", "quantity", "unit_price", "ordered_at", "category"]
        )
        order = 0
        for c in range(150):
            habit = ["Tea", "Toys", "Garden"][c % 3] if c % 2 == 0 else None
            t = start + rng.uniform(0, 20) * DAY
            while t < start + 240 * DAY:
                order += 1
                cat = habit or ["Tea", "Toys", "Garden", "Lamps"][int(rng.integers(0, 4))]
                w.writerow(
                    [
                        f"O{order}",
                        f"c{c}",
                        f"{cat[:2].upper()}{int(rng.integers(0, 5))}",
                        1,
                        3.5,
                        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)),
                        cat,
                    ]
                )
                t += (rng.uniform(10, 18) if habit else rng.uniform(40, 120)) * DAY


def test_bench_propensity_command(tmp_path) -> None:
    from storelens.cli import app

    history = tmp_path / "history.csv"
    _write_history(history)
    out = tmp_path / "out.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "propensity",
            "--history",
            str(history),
            "--split",
            "2011-06-01",
            "--split",
            "2011-07-01",
            "--horizon-days",
            "21",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [s["split"] for s in report["splits"]] == ["2011-06-01", "2011-07-01"]
    for s in report["splits"]:
        assert s["model"]["auc"] > 0.75
        assert 0 <= s["model"]["brier"] < 0.25 and len(s["model"]["calibration"]) == 10
        assert set(s["baselines"]) == {"category_rate", "rfm_logistic"}
        assert s["model"]["auc"] > s["baselines"]["category_rate"]["auc"]
    assert report["auc"] == report["splits"][0]["model"]["auc"]
    bad = CliRunner().invoke(
        app,
        ["bench", "propensity", "--history", str(history), "--split", "June", "--json", str(out)],
    )
    assert bad.exit_code == 2 and "June" in bad.output


def test_refresh_command(tmp_path) -> None:
    from storelens.cli import app
    from storelens.cloud.db import connect

    url = f"sqlite:///{tmp_path / 'p.db'}"
    db = connect(url)
    runner = CliRunner()
    empty = runner.invoke(app, ["cloud", "propensity-refresh", "--db", url])
    assert empty.exit_code == 1 and "needs purchase history" in empty.output
    _history(db, build_chain(db, with_tokens=False), time.time())
    db.close()
    done = runner.invoke(app, ["cloud", "propensity-refresh", "--db", url, "--horizon-days", "14"])
    assert done.exit_code == 0, done.output
    assert "categories 2" in done.output and "horizon_days 14.0" in done.output
    db = connect(url)
    assert db.scalar("SELECT count(*) FROM member_propensity") > 0
    db.close()


def test_bench_scoring_replays_contacts_against_contacting_everyone(tmp_path) -> None:
    """Habitual customers (an order every 10-18 days) reach the plan's threshold and buy again
    within its response window; the scored arm spends far fewer contacts per response."""
    from storelens.cli import app

    history = tmp_path / "history.csv"
    _write_history(history)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "id: weekly\nresponse_days: 14\ninteractions: {online_order: {points: 10}}\n"
        "thresholds: [{name: hot, score: 12, cooldown_hours: 168, action: {kind: pos_alert}}]\n"
    )
    out = tmp_path / "scoring.json"
    result = CliRunner().invoke(app, [
        "bench", "scoring", "--history", str(history), "--split", "2011-06-01", "--weeks", "6",
        "--plan", str(plan), "--json", str(out),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    split = report["splits"][0]
    scored, everyone = split["arms"]["scored"], split["arms"]["contact_all"]
    assert 0 < scored["contacts"] < everyone["contacts"]
    assert scored["response_rate"] > everyone["response_rate"]
    assert scored["contacts_per_response"] < everyone["contacts_per_response"]
    assert split["contact_threshold"] == {"name": "hot", "score": 12.0, "cooldown_hours": 168.0}


def test_seed_command_trains_propensity(tmp_path) -> None:
    from storelens.cli import app
    from storelens.cloud.db import connect

    url = f"sqlite:///{tmp_path / 'seed.db'}"
    args = ["cloud", "seed", "--db", url, "--members", "200", "--days", "120",
            "--instore-days", "0", "--out", str(tmp_path / "cred.json")]  # fmt: skip
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "member x category scores" in done.output
    db = connect(url)
    try:
        p = db.query("SELECT probability FROM member_propensity")
        assert p and all(0.0 <= r["probability"] <= 1.0 for r in p)
    finally:
        db.close()


class FakeTraining:
    """Stands in for `propensity.refresh` (tested above): the schedule is what is tested."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.history = False

    def __call__(self, db, *, settings=None, now=None) -> dict:
        if not self.history:
            raise ValueError("propensity needs purchase history before the training cutoffs")
        self.calls.append(now)
        with db.transaction():
            db.execute("DELETE FROM member_propensity")
            db.execute("INSERT INTO member_propensity VALUES ('m1', 'Beauty', 0.4, 14, ?)", (now,))
        return {"stored": 1}


def test_scheduled_refresh_is_idempotent_per_interval(db, monkeypatch) -> None:
    training = FakeTraining()
    monkeypatch.setattr(propensity, "refresh", training)
    day = 86_400.0
    now = 1_790_000_000.0
    # Nothing to learn from yet: the slot is used, the reason recorded, no scores.
    assert propensity.refresh_if_due(db, day, now=now - 3 * day).startswith("skipped: ")
    training.history = True
    assert propensity.refresh_if_due(db, day, now=now) == "refreshed"
    # Fresh scores: nothing due, at once or later in the interval.
    assert propensity.refresh_if_due(db, day, now=now + 60) is None
    assert propensity.refresh_if_due(db, day, now=now + day - 60) is None
    # Stale, but this interval's slot is claimed (another replica trains): not twice.
    db.execute("UPDATE member_propensity SET computed_at = ?", (now - 2 * day,))
    assert propensity.refresh_if_due(db, day, now=now + 1) is None
    # The next interval: trained again.
    assert propensity.refresh_if_due(db, day, now=now + day) == "refreshed"
    assert training.calls == [now, now + day]
    runs = db.query("SELECT outcome, finished_at FROM propensity_runs ORDER BY slot")
    assert [r["outcome"].split(":")[0] for r in runs] == ["skipped", "refreshed", "refreshed"]
    assert all(r["finished_at"] is not None for r in runs)
    with pytest.raises(ValueError, match="interval_s must be positive"):
        propensity.refresh_if_due(db, 0)


def test_the_scheduler_thread_refreshes_and_the_api_starts_it(db, db_url, monkeypatch) -> None:
    from conftest import wait_for

    training = FakeTraining()
    training.history = True
    monkeypatch.setattr(propensity, "refresh", training)
    scheduler = propensity.RefreshScheduler(db, 86_400.0, first_s=0, check_s=0.01)
    scheduler.start()
    try:
        wait_for(lambda: bool(scheduler.runs), timeout=20)
        wait_for(lambda: db.scalar("SELECT count(*) FROM propensity_runs") >= 1, timeout=20)
    finally:
        scheduler.stop()
    assert scheduler.runs == ["refreshed"] and len(training.calls) == 1  # then found fresh
    # The API runs one with the configured interval; 0 runs none.
    with TestClient(create_app(Settings(db_url=db_url, propensity_refresh_s=3600), db=db)) as c:
        running = c.app.state.propensity
        assert running.interval_s == 3600 and running._thread.is_alive()
    assert running._thread is None  # stopped with the app
    with TestClient(create_app(Settings(db_url=db_url, propensity_refresh_s=0), db=db)) as c:
        assert c.app.state.propensity is None
    with pytest.raises(ValueError, match="at least 60 seconds"):
        Settings(propensity_refresh_s=5)
