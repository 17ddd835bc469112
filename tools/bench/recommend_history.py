"""Backtest of the recommender on a retailer's own history, against standard baselines.

Train on every line before the split date, then score the customers known before it who
bought after it, under two protocols (as in the next-basket literature, Li et al., "A Next
Basket Recommendation Reality Check"):

- ``all``: precision@10 and recall@10 over the distinct items a customer bought after the
  split, repeat purchases included;
- ``new``: only items the customer never bought before count, and already-bought items are
  excluded from every ranking.

Only items and customers present before the split count. The baselines run in the same pass
on the same data: popularity over the last 90 days, the customer's own most-bought items
(topped up with popularity when they bought fewer than ten), implicit's ALS and item-kNN.
Every method gets its settings from an inner split (the 30 days before the split, trained
on what came before them), never from the test period: the baselines from a small grid,
the storelens recommender by itself inside its build.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from storelens.cloud.commerce.history.reader import HistoryLine, HistoryRules, read_history
from storelens.cloud.personalization.recommend.model import Catalog, Interactions, build_model
from storelens.cloud.personalization.recommend.ranking import ServingContext, recommend

K = 10
DAY = 86400.0
INNER_DAYS = 30.0
POPULARITY_DAYS = 90.0
PROTOCOLS = ("all", "new")
ALS_GRID = [{"factors": f, "regularization": r} for f in (32, 64, 128) for r in (0.01, 0.1)]
KNN_GRID = [{"K": k} for k in (20, 50, 100, 200)]
UNCATEGORISED = "uncategorised"


class BacktestError(ValueError):
    pass


@dataclass
class _Split:
    """Train lines encoded, and what each known customer bought after the split."""

    t: float
    skus: list[str]
    sku_index: dict[str, int]
    customers: list[str]
    customer_index: dict[str, int]
    bought: sp.csr_matrix  # customers x items: distinct orders with the item (train)
    last: sp.csr_matrix  # customers x items: last purchase time (train), for tie-breaks
    popularity: np.ndarray  # lines per item in the last 90 days (anonymous included)
    truth: dict[int, set[int]]  # customer -> items bought after the split


def parse_date(text: str, zone: tzinfo) -> float:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BacktestError(f"bad date {text!r} (YYYY-MM-DD)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.timestamp()


def _split(lines: list[HistoryLine], t: float, until: float) -> _Split:
    train = [x for x in lines if x.ordered_at < t]
    skus = sorted({x.sku for x in train})
    sku_index = {s: i for i, s in enumerate(skus)}
    customers = sorted({x.customer_id for x in train if x.customer_id})
    customer_index = {c: i for i, c in enumerate(customers)}
    seen: set[tuple[int, int, str]] = set()
    rows, cols, last_ts = [], [], []
    for x in train:
        if x.customer_id:
            key = (customer_index[x.customer_id], sku_index[x.sku], x.order_id)
            if key not in seen:
                seen.add(key)
                rows.append(key[0])
                cols.append(key[1])
                last_ts.append(x.ordered_at)
    shape = (len(customers), len(skus))
    bought = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
    bought.sum_duplicates()
    last = sp.coo_matrix((np.array(last_ts) - t, (rows, cols)), shape=shape).tocsr()
    last.sum_duplicates()  # sums of negative ages: only the order matters for tie-breaks
    recent = [sku_index[x.sku] for x in train if x.ordered_at >= t - POPULARITY_DAYS * DAY]
    popularity = np.bincount(np.array(recent, dtype=np.int64), minlength=len(skus))
    truth: dict[int, set[int]] = defaultdict(set)
    for x in lines:
        if t <= x.ordered_at < until and x.customer_id in customer_index and x.sku in sku_index:
            truth[customer_index[x.customer_id]].add(sku_index[x.sku])
    return _Split(t, skus, sku_index, customers, customer_index, bought, last,
                  popularity.astype(float), dict(truth))  # fmt: skip


def _targets(sp_: _Split) -> dict[str, dict[int, set[int]]]:
    """Per protocol, customer -> the items that count."""
    new: dict[int, set[int]] = {}
    for u, items in sp_.truth.items():
        mine = set(sp_.bought.indices[sp_.bought.indptr[u] : sp_.bought.indptr[u + 1]].tolist())
        if items - mine:
            new[u] = items - mine
    return {"all": sp_.truth, "new": new}


Ranker = Callable[[list[int], str], dict[int, list[int]]]
"""(customers, protocol) -> customer -> up to K item indexes, best first."""


def _score(recs: dict[int, list[int]], targets: dict[int, set[int]]) -> dict[str, float]:
    p, r = [], []
    for u, wanted in targets.items():
        hits = len(set(recs.get(u, [])[:K]) & wanted)
        p.append(hits / K)
        r.append(hits / len(wanted))
    return {
        "precision_at_10": round(float(np.mean(p)), 4) if p else 0.0,
        "recall_at_10": round(float(np.mean(r)), 4) if r else 0.0,
    }


def _owned(sp_: _Split, u: int) -> np.ndarray:
    return sp_.bought.indices[sp_.bought.indptr[u] : sp_.bought.indptr[u + 1]]


def popularity_ranker(sp_: _Split) -> Ranker:
    order = np.argsort(-sp_.popularity, kind="stable")
    order = order[sp_.popularity[order] > 0]

    def rank(users: list[int], protocol: str) -> dict[int, list[int]]:
        out = {}
        for u in users:
            mine = set(_owned(sp_, u).tolist()) if protocol == "new" else set()
            out[u] = [int(i) for i in order[: K + len(mine)] if i not in mine][:K]
        return out

    return rank


def own_most_bought_ranker(sp_: _Split) -> Ranker:
    popular = popularity_ranker(sp_)

    def rank(users: list[int], protocol: str) -> dict[int, list[int]]:
        if protocol == "new":  # nothing of one's own may be recommended: popularity remains
            return popular(users, protocol)
        filler = popular(users, "new")
        out = {}
        for u in users:
            lo, hi = sp_.bought.indptr[u], sp_.bought.indptr[u + 1]
            items, counts = sp_.bought.indices[lo:hi], sp_.bought.data[lo:hi]
            recency = sp_.last.data[lo:hi]  # same sparsity pattern
            mine = [int(i) for i in items[np.lexsort((-recency, -counts))][:K]]
            out[u] = mine + [i for i in filler[u] if i not in mine][: K - len(mine)]
        return out

    return rank


def _implicit_ranker(model: Any, sp_: _Split) -> Ranker:
    def rank(users: list[int], protocol: str) -> dict[int, list[int]]:
        if not users:
            return {}
        ids = np.array(users)
        rows = sp_.bought[ids].astype(np.float32).tocsr()
        recs, _ = model.recommend(ids, rows, N=K, filter_already_liked_items=protocol == "new")
        return {u: [int(i) for i in r if i >= 0] for u, r in zip(users, recs, strict=True)}

    return rank


def als_ranker(sp_: _Split, params: dict[str, Any]) -> Ranker:
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(**params, iterations=15, random_state=0, num_threads=1)
    model.fit(sp_.bought.astype(np.float32).tocsr(), show_progress=False)
    return _implicit_ranker(model, sp_)


def knn_ranker(sp_: _Split, params: dict[str, Any]) -> Ranker:
    from implicit.nearest_neighbours import CosineRecommender

    model = CosineRecommender(**params, num_threads=1)
    model.fit(sp_.bought.astype(np.float32).tocsr(), show_progress=False)
    return _implicit_ranker(model, sp_)


def storelens_ranker(purchases: list[HistoryLine], sp_: _Split) -> tuple[Ranker, dict]:
    """The product's own recommender, built exactly as the service builds it."""
    names: dict[str, str] = {}
    categories: dict[str, str] = {}
    train = [x for x in purchases if x.ordered_at < sp_.t]
    for x in train:  # latest name and category win, as in the import
        if x.product_name:
            names[x.sku] = x.product_name
        if x.category:
            categories[x.sku] = x.category
    catalog = Catalog(
        skus=sp_.skus,
        names=[names.get(s, s) for s in sp_.skus],
        categories=[categories.get(s, UNCATEGORISED) for s in sp_.skus],
        active=np.ones(len(sp_.skus), dtype=bool),
    )
    interactions = Interactions.from_rows([
        (x.customer_id, x.sku, x.ordered_at, x.quantity, x.store if x.in_store else None,
         x.order_id)
        for x in train
    ])  # fmt: skip
    started, cpu = time.perf_counter(), time.process_time()
    model = build_model(catalog, interactions, now=sp_.t)
    build_s, build_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    stores: dict[str, Counter[str]] = defaultdict(Counter)
    for x in train:
        if x.customer_id and x.in_store:
            stores[x.customer_id][x.store or ""] += 1

    def rank(users: list[int], protocol: str) -> dict[int, list[int]]:
        repeats = "never" if protocol == "new" else "learned"
        out = {}
        for u in users:
            customer = sp_.customers[u]
            votes = stores.get(customer)
            store = votes.most_common(1)[0][0] if votes else ""
            ctx = ServingContext(member=customer, store=store, repeats=repeats)
            out[u] = [sp_.sku_index[r.sku] for r in recommend(model, ctx, limit=K)]
        return out

    return rank, {
        "model_build_s": round(build_s, 2),
        "model_build_cpu_s": round(build_cpu_s, 2),
        "learned_ranker": model.ranker_info or None,
    }


def _tune(make: Callable[[_Split, dict], Ranker], grid: list[dict], inner: _Split,
          targets: dict[str, dict[int, set[int]]]) -> dict[str, dict]:  # fmt: skip
    """Per protocol, the grid point with the best inner precision@10."""
    best: dict[str, tuple[float, dict]] = {}
    for params in grid:
        ranker = make(inner, params)
        for protocol in PROTOCOLS:
            users = sorted(targets[protocol])
            p = _score(ranker(users, protocol), targets[protocol])["precision_at_10"]
            if protocol not in best or p > best[protocol][0]:
                best[protocol] = (p, params)
    return {protocol: params for protocol, (_, params) in best.items()}


def run(path: Path | str, split: str, *, until: str | None = None,
        mapping: dict[str, str] | None = None, rules: HistoryRules | None = None,
        ) -> dict[str, Any]:  # fmt: skip
    """The backtest JSON for one history file and one split date."""
    import threadpoolctl

    rules = rules or HistoryRules()
    started = time.perf_counter()
    history = read_history(path, mapping=mapping, rules=rules)
    purchases = [x for x in history.lines if not x.is_return]
    t = parse_date(split, rules.timezone)
    t_until = parse_date(until, rules.timezone) if until else float("inf")
    if not any(x.ordered_at < t for x in purchases) or not any(
        t <= x.ordered_at < t_until for x in purchases
    ):
        raise BacktestError(f"the history has no purchases on both sides of {split}")
    outer = _split(purchases, t, t_until)
    inner = _split(purchases, t - INNER_DAYS * DAY, t)
    targets, inner_targets = _targets(outer), _targets(inner)
    result: dict[str, Any] = {}
    # implicit warns (and slows down) when BLAS runs its own threads inside its loops.
    with threadpoolctl.threadpool_limits(1):
        ours, about = storelens_ranker(purchases, outer)
        als_params = _tune(als_ranker, ALS_GRID, inner, inner_targets)
        knn_params = _tune(knn_ranker, KNN_GRID, inner, inner_targets)
        baselines: dict[str, dict[str, Any]] = {}
        for protocol in PROTOCOLS:
            users = sorted(targets[protocol])
            result[protocol] = _score(ours(users, protocol), targets[protocol])
            result[protocol]["customers"] = len(users)
            rankers = {
                "popularity_90d": popularity_ranker(outer),
                "own_most_bought": own_most_bought_ranker(outer),
                "als": als_ranker(outer, als_params[protocol]),
                "item_knn": knn_ranker(outer, knn_params[protocol]),
            }
            for name, ranker in rankers.items():
                entry = baselines.setdefault(name, {})
                entry[protocol] = _score(ranker(users, protocol), targets[protocol])
            baselines["als"].setdefault("params", {})[protocol] = als_params[protocol]
            baselines["item_knn"].setdefault("params", {})[protocol] = knn_params[protocol]
    result["baselines"] = baselines
    lift = {}
    for protocol in PROTOCOLS:
        best_name = max(baselines, key=lambda n: baselines[n][protocol]["precision_at_10"])
        best = baselines[best_name][protocol]["precision_at_10"]
        lift[protocol] = {
            "best_baseline": best_name,
            "precision_lift": round(result[protocol]["precision_at_10"] / best, 3)
            if best
            else None,
        }
    result["vs_best_baseline"] = lift
    result.update(about)
    result.update({
        "history": str(path), "split": split, "until": until,
        "train_lines": sum(1 for x in purchases if x.ordered_at < t),
        "items": len(outer.skus), "customers_before_split": len(outer.customers),
        "inner_split_days": INNER_DAYS, "seconds": round(time.perf_counter() - started, 1),
    })  # fmt: skip
    return result
