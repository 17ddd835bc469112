"""Backtest on a purchase history: both protocols, the baselines in the same run, the
learned ranker (repeat vs new decided from the data), and the command line."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from storelens.cli import app
from storelens.cloud.personalization.recommend.model import Catalog, Interactions, build_model
from storelens.cloud.personalization.recommend.ranking import ServingContext, recommend
from storelens.tools.bench import recommend_history as recommend_backtest

START = datetime(2024, 1, 1, tzinfo=UTC)
HEADER = "order_id,customer_id,sku,quantity,unit_price,ordered_at,product_name\n"


def _history(path: Path, customers: int = 150, days: int = 120, seed: int = 7) -> Path:
    """Customers with staples they buy again and again, plus new items from a favourite
    group of items that sell together; some anonymous orders, returns and postage."""
    rng = random.Random(seed)
    groups = [[f"G{g}-{i:02d}" for i in range(10)] for g in range(6)]
    lines = [HEADER]
    order = 0
    for c in range(customers):
        group = groups[c % len(groups)]
        staples = rng.sample([s for g in groups for s in g], 3)
        day = rng.uniform(0, 10)
        while day < days:
            order += 1
            when = (START + timedelta(days=day)).strftime("%Y-%m-%d %H:%M:%S")
            basket = [s for s in staples if rng.random() < 0.7]
            basket += rng.sample(group, 2)
            for sku in dict.fromkeys(basket):
                lines.append(f"O{order},{c},{sku},{rng.randint(1, 4)},2.5,{when},Item {sku}\n")
            if rng.random() < 0.1:
                lines.append(f"O{order},{c},POST,1,5.0,{when},Postage\n")
            day += rng.expovariate(1 / 8)
    for n in range(200):  # walk-in buyers: popularity only
        when = (START + timedelta(days=rng.uniform(0, days))).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"W{n},,{rng.choice(groups[0])},1,2.5,{when},\n")
    lines.append(f"CO1,3,G0-01,-1,2.5,{START.strftime('%Y-%m-%d')} 10:00:00,Item\n")
    path.write_text("".join(lines))
    return path


def test_backtest_protocols_and_baselines(tmp_path: Path) -> None:
    from storelens.cloud.commerce.history import HistoryRules

    rules = HistoryRules(exclude_skus=frozenset({"POST"}), cancelled_prefix="C")
    out = recommend_backtest.run(_history(tmp_path / "h.csv"), "2024-03-31", rules=rules)
    for protocol in ("all", "new"):
        assert set(out[protocol]) >= {"precision_at_10", "recall_at_10"}
        for name in ("popularity_90d", "own_most_bought", "als", "item_knn"):
            metrics = out["baselines"][name][protocol]
            assert 0.0 <= metrics["precision_at_10"] <= 1.0 and metrics["recall_at_10"] >= 0.0
    assert out["learned_ranker"] is not None  # enough history: repeat vs new is learned
    assert out["learned_ranker"]["label_windows"] == 4  # overlapping windows, 10 days apart
    # New items have a classifier of their own, and ALS's size came from the latest window.
    assert out["learned_ranker"]["classifiers"] == ["all", "new"]
    assert out["learned_ranker"]["als_factors_x_regularization"]
    assert out["all"]["customers"] > 100 and out["new"]["customers"] > 30
    base = out["baselines"]
    # Staples come back: the repeat-aware ranking beats popularity by far under `all`, and
    # the new-item ranking beats popularity under `new` (favourite groups sell together).
    assert out["all"]["precision_at_10"] > 1.5 * base["popularity_90d"]["all"]["precision_at_10"]
    assert out["all"]["precision_at_10"] >= 0.9 * base["own_most_bought"]["all"]["precision_at_10"]
    assert out["new"]["precision_at_10"] > base["popularity_90d"]["new"]["precision_at_10"]
    # Without own items, the own-most-bought baseline is popularity.
    assert base["own_most_bought"]["new"] == base["popularity_90d"]["new"]
    assert out["vs_best_baseline"]["all"]["best_baseline"] in base
    with pytest.raises(recommend_backtest.BacktestError, match="both sides"):
        recommend_backtest.run(tmp_path / "h.csv", "2030-01-01", rules=rules)


def test_learned_repeats_follow_the_data() -> None:
    """A non-consumable item a member buys every week comes again under the learned policy,
    never under `never`; items bought once do not crowd out new ones."""
    rng = np.random.default_rng(3)
    skus = [f"I{i:02d}" for i in range(40)]
    catalog = Catalog(skus=skus, names=skus, categories=["home"] * 40,
                      active=np.ones(40, dtype=bool))  # fmt: skip
    now = (START + timedelta(days=120)).timestamp()
    rows = []
    for m in range(80):
        staple = skus[m % 5]  # five staples, each the weekly buy of 16 members
        for week in range(17):
            ts = START.timestamp() + week * 7 * 86400 + m * 60
            rows.append((f"m{m}", staple, ts, 1, None, f"o{m}-{week}"))
            rows.append((f"m{m}", skus[int(rng.integers(5, 40))], ts, 1, None, f"o{m}-{week}"))
    model = build_model(catalog, Interactions.from_rows(rows), now=now)
    assert model.personal is not None and model.ranker_info["training_positives"] > 100
    learned = recommend(model, ServingContext(member="m0", store=""), limit=5)
    assert learned[0].sku == "I00" and learned[0].source == "repeat"
    assert learned[0].reason == "you buy this regularly"
    never = recommend(model, ServingContext(member="m0", store="", repeats="never"), limit=5)
    bought = {r[1] for r in rows if r[0] == "m0"}
    assert not {r.sku for r in never} & bought
    assert all(r.reason for r in never)
    # Bought after the build: not suggested again at once (it is not a consumable).
    ctx = ServingContext(member="m0", store="", bought_recently=frozenset({"I00"}))
    assert "I00" not in [r.sku for r in recommend(model, ctx, limit=5)]


def test_rebuilds_reuse_a_recent_classifier() -> None:
    """A rebuild soon after the last training scores everyone anew with that classifier (no
    second training); hours later it trains again."""
    skus, catalog, rows, now, first = _weekly_model()
    assert first.fitted is not None and first.fitted.fitted_at == now
    rows.append(("m0", "I29", now + 60, 1, None, "late"))  # a purchase since
    soon = build_model(catalog, Interactions.from_rows(rows), now=now + 900, previous=first)
    assert soon.fitted is first.fitted and soon.personal is not None
    assert soon.personal[0, skus.index("I29")] > 0  # scored from the new history
    later = build_model(catalog, Interactions.from_rows(rows), now=now + 86400, previous=first)
    assert later.fitted is not first.fitted and later.fitted.fitted_at == now + 86400


def test_cli_backtest(tmp_path: Path) -> None:
    history = _history(tmp_path / "h.csv", customers=60, days=100)
    out = tmp_path / "bt.json"
    args = ["bench", "recommend", "--history", str(history), "--split", "2024-03-20",
            "--json", str(out), "--exclude-skus", "POST", "--cancelled-prefix", "C"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    for key in ("all", "new"):
        assert {"precision_at_10", "recall_at_10"} <= set(data[key])
        assert {"precision_at_10", "recall_at_10"} <= set(data["baselines"]["als"][key])
    no_split = CliRunner().invoke(app, ["bench", "recommend", "--history", str(history)])
    assert no_split.exit_code == 2 and "--split" in no_split.output
    bad = CliRunner().invoke(app, ["bench", "recommend", "--history", str(history),
                                   "--split", "soon"])  # fmt: skip
    assert bad.exit_code == 1 and "bad date" in bad.output


def _weekly_rows(rng: np.random.Generator, skus: list[str]) -> list[tuple]:
    rows = []
    for m in range(60):
        for week in range(16):
            ts = START.timestamp() + week * 7 * 86400 + m * 60
            for sku in {skus[m % 6], skus[int(rng.integers(6, 30))]}:
                rows.append((f"m{m}", sku, ts, 1, None, f"o{m}-{week}"))
    return rows


def test_new_items_only_are_ranked_by_the_classifier_of_new_items() -> None:
    """ "Only what they never bought" is served from the classifier trained on new
    candidates alone, not from the one that mixes repeats and new items."""
    skus = [f"I{i:02d}" for i in range(30)]
    catalog = Catalog(skus=skus, names=skus, categories=["home"] * 30,
                      active=np.ones(30, dtype=bool))  # fmt: skip
    rows = _weekly_rows(np.random.default_rng(5), skus)
    model = build_model(catalog, Interactions.from_rows(rows),
                        now=(START + timedelta(days=112)).timestamp())  # fmt: skip
    assert model.personal is not None and model.personal_new is not None
    assert model.ranker_info["classifiers"] == ["all", "new"]
    m = model.member_index["m0"]
    bought = set(model.history[m].indices.tolist())
    row = model.personal_new[m].toarray().ravel()
    assert not set(np.flatnonzero(row).tolist()) & bought  # new candidates only
    wanted = [skus[i] for i in np.argsort(-row, kind="stable")[:3]]
    never = recommend(model, ServingContext(member="m0", store="", repeats="never"), limit=3)
    assert [r.sku for r in never] == wanted


def test_a_classifier_of_other_features_is_trained_again() -> None:
    """A stored classifier that knows another feature set (an older storelens) is not used
    to score: the next build trains anew instead of failing or scoring nonsense."""
    import dataclasses

    skus, catalog, rows, now, first = _weekly_model()
    assert first.fitted is not None
    old = dataclasses.replace(first.fitted, n_features=first.fitted.n_features - 1)
    first.fitted = old
    soon = build_model(catalog, Interactions.from_rows(rows), now=now + 900, previous=first)
    assert soon.fitted is not old and soon.fitted is not None
    assert soon.fitted.fitted_at == now + 900 and soon.personal is not None


def _weekly_model() -> tuple[list[str], Catalog, list[tuple], float, Any]:
    """Sixteen weeks of two purchases a week by 60 members, and the model built on them."""
    skus = [f"I{i:02d}" for i in range(30)]
    catalog = Catalog(skus=skus, names=skus, categories=["home"] * 30,
                      active=np.ones(30, dtype=bool))  # fmt: skip
    rows = _weekly_rows(np.random.default_rng(5), skus)
    now = (START + timedelta(days=112)).timestamp()
    return skus, catalog, rows, now, build_model(catalog, Interactions.from_rows(rows), now=now)
