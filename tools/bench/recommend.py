"""Offline evaluation of the recommender on seed data, split by time.

The model is built from everything before a cutoff; for each member who buys afterwards it
recommends 10 items at the member's usual store and scores them against what the member
then bought. The best-seller baseline (the store's best sellers) runs in the same pass with
the same filters (not already bought unless consumable), so the two numbers are comparable.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from storelens.cloud.db import Database
from storelens.cloud.personalization.recommend.dataset import (
    load_catalog,
    load_dwells,
    load_purchases,
)
from storelens.cloud.personalization.recommend.model import RecommendSettings, build_model
from storelens.cloud.personalization.recommend.ranking import ServingContext, recommend

K = 10


@dataclass
class Evaluation:
    members: int
    precision_at_10: float
    recall_at_10: float
    baseline_precision_at_10: float
    baseline_recall_at_10: float
    build_s: float
    recommend_ms_mean: float
    ranker: dict | None = None
    build_cpu_s: float = 0.0  # this process's CPU: on a shared machine, steadier than wall

    def as_json(self) -> dict[str, Any]:
        return {
            "precision_at_10": round(self.precision_at_10, 4),
            "recall_at_10": round(self.recall_at_10, 4),
            "baseline_precision_at_10": round(self.baseline_precision_at_10, 4),
            "baseline_recall_at_10": round(self.baseline_recall_at_10, 4),
            "lift": round(self.precision_at_10 / self.baseline_precision_at_10, 2)
            if self.baseline_precision_at_10
            else None,
            "members_evaluated": self.members,
            "model_build_s": round(self.build_s, 2),
            "model_build_cpu_s": round(self.build_cpu_s, 2),
            "recommend_ms_mean": round(self.recommend_ms_mean, 3),
            "learned_ranker": self.ranker,
        }


def evaluate(db: Database, cutoff: float, *, settings: RecommendSettings | None = None,
             until: float | None = None) -> Evaluation:  # fmt: skip
    """Train on purchases before ``cutoff``, test on purchases in ``[cutoff, until)``."""
    catalog = load_catalog(db)
    started, cpu = time.perf_counter(), time.process_time()
    train = load_purchases(db, until=cutoff)
    model = build_model(
        catalog, train, load_dwells(db, until=cutoff), settings=settings, now=cutoff
    )
    build_s, build_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    test = load_purchases(db, since=cutoff, until=until)

    # Usual store: where the member bought most in training (online-only members: none).
    store_votes: dict[str, Counter[str]] = defaultdict(Counter)
    for member, store in zip(train.member, train.store, strict=True):
        if member and store:
            store_votes[member][store] += 1
    bought_before: dict[str, set[str]] = defaultdict(set)
    for member, sku in zip(train.member, train.sku, strict=True):
        if member:
            bought_before[member].add(sku)
    consumable = {s for s, c in zip(catalog.skus, model.consumable, strict=True) if c}
    truth: dict[str, set[str]] = defaultdict(set)
    for member, sku in zip(test.member, test.sku, strict=True):
        # Only what the recommender may suggest counts: new items, or consumables again.
        if member and (sku not in bought_before[member] or sku in consumable):
            truth[member].add(sku)

    p, r, bp, br, times = [], [], [], [], []
    for member, wanted in truth.items():
        if not wanted:
            continue
        votes = store_votes.get(member)
        store = votes.most_common(1)[0][0] if votes else ""
        t0 = time.perf_counter()
        # The protocol scores only new items and consumables again, so ask for just those.
        ctx = ServingContext(member=member, store=store, repeats="consumable")
        recs = recommend(model, ctx, limit=K)
        times.append(time.perf_counter() - t0)
        hits = len({x.sku for x in recs} & wanted)
        p.append(hits / K)
        r.append(hits / len(wanted))
        baseline = []
        for i in model.best_sellers(store):
            sku = model.catalog.skus[int(i)]
            if sku in bought_before[member] and sku not in consumable:
                continue
            baseline.append(sku)
            if len(baseline) == K:
                break
        b_hits = len(set(baseline) & wanted)
        bp.append(b_hits / K)
        br.append(b_hits / len(wanted))
    return Evaluation(
        members=len(p),
        precision_at_10=float(np.mean(p)) if p else 0.0,
        recall_at_10=float(np.mean(r)) if r else 0.0,
        baseline_precision_at_10=float(np.mean(bp)) if bp else 0.0,
        baseline_recall_at_10=float(np.mean(br)) if br else 0.0,
        build_s=build_s,
        build_cpu_s=build_cpu_s,
        recommend_ms_mean=1000 * float(np.mean(times)) if times else 0.0,
        ranker=model.ranker_info or None,
    )


def run(*, members: int = 3000, days: int = 180, test_days: int = 30,
        seed: int = 42) -> dict[str, Any]:  # fmt: skip
    """Seed a fresh in-memory-sized SQLite chain and evaluate; returns the bench JSON."""
    import tempfile
    from datetime import UTC, date, datetime
    from pathlib import Path

    from storelens.cloud.db import connect
    from storelens.tools.seed import chain as seed_data

    end = date(2026, 1, 1)  # fixed: the same seed gives the same numbers on every run
    with tempfile.TemporaryDirectory() as tmp:
        db = connect(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            seeded = seed_data.seed(db, seed=seed, members=members, days=days, end=end)
            t_end = datetime.combine(end, datetime.min.time(), UTC).timestamp()
            result = evaluate(db, t_end - test_days * 86400, until=t_end)
        finally:
            db.close()
    out = result.as_json()
    out.update(
        {
            "seed": seed,
            "members": members,
            "days": days,
            "test_days": test_days,
            "pos_sales": seeded.pos_sales,
            "online_orders": seeded.online_orders,
        }
    )
    return out
