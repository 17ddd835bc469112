"""A learned purchase ranker: how likely each member buys each candidate item next, repeat
purchases and new items on one probability scale, so the data decides how much to recommend
again versus recommend new.

Candidates per member: everything they bought (repeat), the best new items by an item-item
model (EASE, Steck 2019: a closed-form linear item model that ranks unseen items better
than matrix factorisation on basket data; on the most-bought items of large catalogs),
and the best new items of their favourite categories. Features: the member-item purchase
frequency and recency, the member's activity and repeat habit, the item's recent
popularity and repeat rate, the item model's score, category affinity from purchases and
in-store dwell. A gradient-boosted classifier (scikit-learn) learns from the model's own
history: built at ``now``, it trains on what was known ``label_days`` earlier and what
members bought in those last days; its regularisation strength for EASE is chosen the same
way. Nothing is tuned by hand to one data set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)
DAY = 86400.0
# EASE regularisation as multiples of the mean item purchase count (the Gram diagonal), so
# the same grid fits catalogs and histories of any size; the inner split picks one.
EASE_LAMBDA_SCALES = (1.0, 2.5, 5.0, 10.0, 20.0, 40.0)
ALS_GRID = tuple((f, r) for f in (32, 64, 128) for r in (0.01, 0.1))  # factors, regularisation
USER_CHUNK = 2048  # members scored per dense block (memory stays ~chunk x items)


@dataclass(frozen=True)
class Events:
    """Purchases encoded for learning: member code (-1 anonymous), item code, time, basket."""

    member: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    basket: np.ndarray  # int code per line; lines of one order share it

    def before(self, t: float) -> Events:
        m = self.ts < t
        return Events(self.member[m], self.item[m], self.ts[m], self.basket[m])

    def between(self, t0: float, t1: float) -> Events:
        m = (self.ts >= t0) & (self.ts < t1)
        return Events(self.member[m], self.item[m], self.ts[m], self.basket[m])


@dataclass(frozen=True)
class ItemFacts:
    """What the learner knows about items and members besides purchases."""

    n_members: int
    n_items: int
    item_category: np.ndarray  # category code per item
    consumable: np.ndarray  # bool per item
    active: np.ndarray  # bool per item
    # (member code, category code, ts, seconds) of past in-store dwell
    dwell: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    similarity: sp.csr_matrix  # co-purchase k-NN (the hand-set blend uses it)


@dataclass(frozen=True)
class Fitted:
    """A trained classifier and what scoring with it needs; its features name no member and
    no item, so it scores a later build's members and catalog as well."""

    # sklearn HistGradientBoostingClassifiers (a bag of them each, averaged): of all
    # candidates, and of new ones if learned
    classifiers: tuple[tuple[object, ...], ...]
    negative_rates: tuple[float, ...]  # each one's negative sample rate, to scale odds back
    columns: tuple[np.ndarray, ...]  # the features each one uses
    n_features: int  # a build whose features differ (a newer storelens) trains again
    ease_scale: float
    als: tuple[int, float]  # ALS factors and regularisation
    fitted_at: float  # the build time it learned at
    info: dict


@dataclass
class LearnedRanker:
    """The outcome of a build: probabilities per (member, candidate item), and how it was
    learned (for logs and the backtest)."""

    scores: sp.csr_matrix  # members x items, P(bought in the next label window)
    info: dict
    fitted: Fitted | None = None
    # members x never-bought items, the same probability from the classifier of new items
    new_scores: sp.csr_matrix | None = None


@dataclass(frozen=True)
class LearnSettings:
    label_days: float = 30.0  # the horizon the ranker predicts: "the next month"
    new_candidates: int = 50  # new items per member from the item model
    blend_candidates: int = 50  # new items per member from the hand-set blend
    # The hand-set blend of `RecommendSettings` (similar, affinity, repeat; past dwell,
    # purchases, prior): its score is a feature and a candidate source, so the learner
    # starts from it and keeps what it gets right.
    blend: tuple[float, float, float, float, float, float] = (1.5, 1.0, 0.3, 0.5, 1.0, 0.05)
    min_positives: int = 100  # fewer labelled purchases than this: not enough to learn
    min_members: int = 30
    # Label windows stacked into the training set, each ending `window_step_days` before the
    # next: overlapping windows give the learner more moments to learn from on short histories
    # (on the real history, inner splits before the test months: 4 windows 10 days apart
    # beat 2 a month apart and 3 half a month apart).
    windows: int = 4
    window_step_days: float = 10.0
    negatives_per_positive: float = 5.0  # training sample of the non-purchased candidates
    boosting_iterations: int = 300
    learning_rate: float = 0.05
    max_training_members: int = 4000  # summed over the label windows
    # A build within this time of the last training scores with that classifier instead of
    # training again (the service rebuilds every 15 min; what a day teaches changes little).
    refit_interval_s: float = 6 * 3600.0
    # EASE runs on the most-bought items only: its cost grows with the cube of the items, and
    # items outside that head have too few buyers for an item model to rank them anyway.
    ease_items: int = 4000
    dwell_half_life_s: float = 14 * DAY
    purchase_half_life_s: float = 120 * DAY
    recent_days: float = 30.0  # the "current basket" the item model also scores from
    recent_candidates: int = 25  # new items per member from that recent context
    # Matrix factorisation (implicit's ALS on distinct-order counts) as a third view of taste:
    # its score is a feature and its best new items are candidates; its factors and
    # regularisation come from `ALS_GRID` on the latest window.
    als: bool = True
    als_iterations: int = 15
    als_candidates: int = 50
    separate_new_model: bool = True  # a classifier of new items for "new items only"
    bags: int = 3  # classifiers per kind, each on its own sample of negatives


# -- per-(member, item), per-member and per-item statistics at a point in time --------------


@dataclass
class _Stats:
    t: float
    pair_member: np.ndarray  # one entry per (member, item) bought
    pair_item: np.ndarray
    pair_orders: np.ndarray  # distinct baskets with the item
    pair_last: np.ndarray
    pair_first: np.ndarray
    bought: sp.csr_matrix  # members x items, 1 where bought
    order_counts: sp.csr_matrix  # members x items, distinct baskets with the item
    member_orders: np.ndarray
    member_last: np.ndarray
    member_items: np.ndarray
    member_repeat_share: np.ndarray
    item_pop90: np.ndarray
    item_pop30: np.ndarray
    item_repeat_rate: np.ndarray
    item_age: np.ndarray
    purchase_affinity: np.ndarray  # members x categories, rows sum to 1
    dwell_affinity: np.ndarray
    item_share: np.ndarray  # item's share of its category's recent sales
    history: sp.csr_matrix  # members x items, time-decayed purchase lines
    category_prior: np.ndarray  # chain-wide category mix of recent sales
    # Repeat timing and recent context (aligned with the pairs, members or items above):
    pair_recent: np.ndarray  # baskets with the item, weighted by a 30-day half-life
    pair_gap: np.ndarray  # days between the member's purchases of the item (NaN: once)
    member_gap: np.ndarray  # days between the member's orders (NaN: one order)
    item_cycle: np.ndarray  # typical days between repurchases of the item (NaN: never)
    item_pop14: np.ndarray
    recent: sp.csr_matrix  # members x items bought in the last `recent_days`
    # Counted in the member's own orders, not in days (the same for weekly and quarterly
    # buyers): baskets with the item weighted 0.8 per later order, and orders since the last.
    pair_order_decayed: np.ndarray
    pair_orders_since: np.ndarray


def _decay(age_s: np.ndarray, half_life_s: float) -> np.ndarray:
    return np.power(0.5, np.clip(age_s, 0.0, None) / half_life_s)


def _row_normalise(m: np.ndarray) -> np.ndarray:
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def _stats(ev: Events, facts: ItemFacts, t: float, s: LearnSettings) -> _Stats:
    n_m, n_i = facts.n_members, facts.n_items
    n_c = int(facts.item_category.max()) + 1 if n_i else 0
    known = ev.member >= 0
    mem, item, ts, basket = ev.member[known], ev.item[known], ev.ts[known], ev.basket[known]
    pair = mem.astype(np.int64) * n_i + item
    # Distinct baskets per pair: sort by (pair, basket) and keep the first of each run.
    order = np.lexsort((basket, pair))
    p_sorted, b_sorted = pair[order], basket[order]
    first_of_basket = np.ones(len(order), dtype=bool)
    first_of_basket[1:] = (p_sorted[1:] != p_sorted[:-1]) | (b_sorted[1:] != b_sorted[:-1])
    pairs, inverse = np.unique(pair, return_inverse=True)
    orders = np.bincount(inverse[order][first_of_basket], minlength=len(pairs)).astype(float)
    last = np.full(len(pairs), -np.inf)
    np.maximum.at(last, inverse, ts)
    first = np.full(len(pairs), np.inf)
    np.minimum.at(first, inverse, ts)
    # Each basket's place among the member's orders, 0 for the latest.
    mb = mem.astype(np.int64) * (int(basket.max()) + 1 if len(basket) else 1) + basket
    baskets, b_inverse = np.unique(mb, return_inverse=True)
    b_ts = np.full(len(baskets), -np.inf)
    np.maximum.at(b_ts, b_inverse, ts)
    b_member = np.zeros(len(baskets), dtype=np.int64)
    b_member[b_inverse] = mem
    by_recency = np.lexsort((-b_ts, b_member))
    starts = np.r_[0, np.flatnonzero(np.diff(b_member[by_recency])) + 1]
    run = np.diff(np.r_[starts, len(by_recency)])
    place = np.empty(len(baskets), dtype=np.int64)
    place[by_recency] = np.arange(len(by_recency)) - np.repeat(starts, run)
    line_place = place[b_inverse][order][first_of_basket]  # one per (pair, basket)
    line_pair = inverse[order][first_of_basket]
    pair_order_decayed = np.bincount(line_pair, weights=0.8**line_place, minlength=len(pairs))
    pair_orders_since = np.full(len(pairs), np.iinfo(np.int64).max)
    np.minimum.at(pair_orders_since, line_pair, line_place)
    pm, pi = pairs // n_i, pairs % n_i
    bought = sp.csr_matrix((np.ones(len(pairs), np.float32), (pm, pi)), shape=(n_m, n_i))
    order_counts = sp.csr_matrix((orders.astype(np.float32), (pm, pi)), shape=(n_m, n_i))
    lines_recent = np.bincount(inverse, weights=_decay(t - ts, 30 * DAY), minlength=len(pairs))
    # Lines per basket inflate it; scale back to baskets with the pair's lines-per-basket.
    lines = np.bincount(inverse, minlength=len(pairs)).astype(float)
    pair_recent = lines_recent * np.divide(orders, lines, out=np.zeros(len(pairs)), where=lines > 0)
    repeated = orders >= 2
    pair_gap = np.full(len(pairs), np.nan)
    pair_gap[repeated] = (last[repeated] - first[repeated]) / DAY / (orders[repeated] - 1)
    log_gap = np.log(np.maximum(pair_gap[repeated], 0.5))
    gap_n = np.bincount(pi[repeated], minlength=n_i).astype(float)
    gap_sum = np.bincount(pi[repeated], weights=log_gap, minlength=n_i)
    item_cycle = np.full(n_i, np.nan)
    has_cycle = gap_n > 0
    item_cycle[has_cycle] = np.exp(gap_sum[has_cycle] / gap_n[has_cycle])  # geometric mean
    is_recent = ts >= t - s.recent_days * DAY
    recent = sp.csr_matrix(
        (np.ones(int(is_recent.sum()), np.float32), (mem[is_recent], item[is_recent])),
        shape=(n_m, n_i),
    )
    recent.data[:] = 1.0

    # Members: distinct baskets, last purchase, distinct items, share of items bought again.
    n_b = int(basket.max()) + 1 if len(basket) else 1
    m_orders = np.bincount(np.unique(mem.astype(np.int64) * n_b + basket) // n_b,
                           minlength=n_m).astype(float)  # fmt: skip
    m_last = np.full(n_m, -np.inf)
    np.maximum.at(m_last, mem, ts)
    m_first = np.full(n_m, np.inf)
    np.minimum.at(m_first, mem, ts)
    m_gap = np.full(n_m, np.nan)
    several = m_orders >= 2
    m_gap[several] = (m_last[several] - m_first[several]) / DAY / (m_orders[several] - 1)
    m_items = np.bincount(pm, minlength=n_m).astype(float)
    m_repeat = np.divide(np.bincount(pm[orders >= 2], minlength=n_m), m_items,
                         out=np.zeros(n_m), where=m_items > 0)  # fmt: skip

    # Items: popularity over all lines (anonymous included), repeat rate among buyers, age.
    a_item, a_ts = ev.item, ev.ts
    pop90 = np.bincount(a_item[a_ts >= t - 90 * DAY], minlength=n_i).astype(float)
    pop30 = np.bincount(a_item[a_ts >= t - 30 * DAY], minlength=n_i).astype(float)
    pop14 = np.bincount(a_item[a_ts >= t - 14 * DAY], minlength=n_i).astype(float)
    buyers = np.bincount(pi, minlength=n_i).astype(float)
    rebuyers = np.bincount(pi[orders >= 2], minlength=n_i).astype(float)
    repeat_rate = (rebuyers + 1.0) / (buyers + 10.0)  # shrunk towards 10% for rare items
    first_sale = np.full(n_i, np.nan)
    if len(a_item):
        fs = np.full(n_i, np.inf)
        np.minimum.at(fs, a_item, a_ts)
        first_sale = np.where(np.isfinite(fs), fs, np.nan)
    item_age = (t - first_sale) / DAY

    w = _decay(t - ts, s.purchase_half_life_s)
    history = sp.csr_matrix((w, (mem, item)), shape=(n_m, n_i), dtype=np.float32)
    history.sum_duplicates()
    p_aff = np.zeros((n_m, n_c))
    np.add.at(p_aff, (mem, facts.item_category[item]), w)
    d_m, d_c, d_ts, d_s = facts.dwell
    d_aff = np.zeros((n_m, n_c))
    keep = d_ts < t
    np.add.at(
        d_aff, (d_m[keep], d_c[keep]), d_s[keep] * _decay(t - d_ts[keep], s.dwell_half_life_s)
    )
    cat_pop = np.bincount(facts.item_category, weights=pop90, minlength=n_c)[facts.item_category]
    share = np.divide(pop90, cat_pop, out=np.zeros(n_i), where=cat_pop > 0)
    cat_totals = np.bincount(facts.item_category, weights=pop90, minlength=n_c)
    prior = cat_totals / cat_totals.sum() if cat_totals.sum() > 0 else cat_totals
    return _Stats(
        t=t, pair_member=pm, pair_item=pi, pair_orders=orders, pair_last=last, pair_first=first,
        bought=bought, order_counts=order_counts, member_orders=m_orders, member_last=m_last,
        member_items=m_items,
        member_repeat_share=m_repeat, item_pop90=pop90, item_pop30=pop30,
        item_repeat_rate=repeat_rate, item_age=item_age,
        purchase_affinity=_row_normalise(p_aff), dwell_affinity=_row_normalise(d_aff),
        item_share=share, history=history, category_prior=prior, pair_recent=pair_recent,
        pair_gap=pair_gap, member_gap=m_gap, item_cycle=item_cycle, item_pop14=pop14,
        recent=recent, pair_order_decayed=pair_order_decayed,
        pair_orders_since=pair_orders_since.astype(float),
    )  # fmt: skip


# -- the item model ----------------------------------------------------------------------


def _ease(bought: sp.csr_matrix, scale: float) -> np.ndarray:
    """EASE item weights B (diagonal 0) for regularisation ``scale`` x mean item count.

    Hand-written: it is four lines of linear algebra and no maintained package offers it."""
    # float32 halves the inverse's time; the added diagonal keeps it well conditioned.
    gram = np.asarray((bought.T @ bought).todense(), dtype=np.float32)
    diag = np.diag_indices_from(gram)
    lam = scale * max(float(gram[diag].mean()), 1e-9)
    gram[diag] += lam
    p = np.linalg.inv(gram)
    b = p / -np.diag(p)
    b[diag] = 0.0
    return b


ItemScorer = Callable[[sp.csr_matrix], np.ndarray]
"""Member rows of the bought matrix -> dense scores of every item for those members."""


def _ease_head(bought: sp.csr_matrix, s: LearnSettings) -> np.ndarray | None:
    """The items EASE models (the most-bought ``ease_items``), or None for all of them."""
    if bought.shape[1] <= s.ease_items:
        return None
    buyers = np.asarray((bought > 0).sum(axis=0)).ravel()
    return np.sort(np.argsort(-buyers, kind="stable")[: s.ease_items])


def _item_scorer(bought: sp.csr_matrix, s: LearnSettings, scale: float,
                 head: np.ndarray | None) -> ItemScorer:  # fmt: skip
    if head is None:
        b = _ease(bought, scale)
        return lambda rows: np.asarray(rows @ b)
    b = _ease(bought[:, head].tocsr(), scale)

    def score(rows: sp.csr_matrix) -> np.ndarray:
        out = np.zeros(rows.shape, dtype=np.float32)
        out[:, head] = np.asarray(rows[:, head] @ b)
        return out

    return score


@dataclass(frozen=True)
class _Factors:
    """ALS member and item factors; a member's scores are their dot products."""

    members: np.ndarray  # members x factors
    items: np.ndarray  # items x factors

    def score(self, chunk: np.ndarray) -> np.ndarray:
        return self.members[chunk] @ self.items.T


def _als(st: _Stats, n_factors: int, regularization: float,
         s: LearnSettings) -> _Factors | None:  # fmt: skip
    """implicit's ALS on distinct-order counts (confidence grows with repeat purchases)."""
    if not s.als or n_factors <= 0 or st.order_counts.nnz == 0:
        return None
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    model = AlternatingLeastSquares(factors=n_factors, regularization=regularization,
                                    iterations=s.als_iterations, random_state=0,
                                    num_threads=1)  # fmt: skip
    # implicit runs its own loop; BLAS threads inside it only contend (implicit warns so).
    with threadpool_limits(1):
        model.fit(st.order_counts.tocsr(), show_progress=False)
    return _Factors(np.asarray(model.user_factors), np.asarray(model.item_factors))


def _top_new(scores: np.ndarray, bought_rows: sp.csr_matrix, allowed: np.ndarray,
             k: int) -> np.ndarray:  # fmt: skip
    """Indexes of the ``k`` best items per row that the member has not bought."""
    s = np.where(allowed[None, :], scores, -np.inf)
    r, c = bought_rows.nonzero()
    s[r, c] = -np.inf
    k = min(k, s.shape[1])
    if k <= 0:
        return np.zeros((s.shape[0], 0), dtype=np.int64)
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    ok = np.take_along_axis(s, top, axis=1) > -np.inf
    return np.where(ok, top, -1)


# -- candidates and features -------------------------------------------------------------


def _row_max_normalised(m: np.ndarray) -> np.ndarray:
    top = m.max(axis=1, keepdims=True) if m.size else m
    return np.divide(m, top, out=np.zeros_like(m), where=top > 0)


def _blend(st: _Stats, facts: ItemFacts, s: LearnSettings, chunk: np.ndarray) -> np.ndarray:
    """The serving blend of `ranking._Scorer` without today's dwell, for a block of members:
    co-purchase similarity, category affinity x item share, consumables again."""
    w_sim, w_aff, w_rep, w_dwell, w_buy, w_prior = s.blend
    h = st.history[chunk]
    similar = np.asarray((h @ facts.similarity).todense(), dtype=np.float64)
    affinity = (w_dwell * st.dwell_affinity[chunk] + w_buy * st.purchase_affinity[chunk]
                + w_prior * st.category_prior[None, :])  # fmt: skip
    by_affinity = affinity[:, facts.item_category] * st.item_share[None, :]
    repeat = np.asarray(h.multiply(facts.consumable[None, :].astype(np.float32)).todense())
    return (w_sim * _row_max_normalised(similar) + w_aff * _row_max_normalised(by_affinity)
            + w_rep * _row_max_normalised(repeat.astype(np.float64)))  # fmt: skip


N_SCORES = 8


def _candidates(st: _Stats, facts: ItemFacts, s: LearnSettings, scorer: ItemScorer,
                members: np.ndarray, factors: _Factors | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(member, item, scores) for the members' candidates; scores are the item model's from
    all purchases and from the recent ones, the hand-set blend's, ALS's, and each of the four
    as a share of the member's best (scales differ from member to member)."""
    out_m, out_i, out_s = [], [], []
    allowed = facts.active
    for start in range(0, len(members), USER_CHUNK):
        chunk = members[start : start + USER_CHUNK]
        rows = st.bought[chunk]
        scores = scorer(rows)
        recent = scorer(st.recent[chunk])
        blend = _blend(st, facts, s, chunk)
        als = factors.score(chunk) if factors is not None else np.zeros_like(scores)
        # Repeat candidates: everything the member bought.
        r, c = rows.nonzero()
        cand = [(r, c)]
        new = _top_new(scores, rows, allowed, s.new_candidates)
        by_blend = _top_new(blend, rows, allowed, s.blend_candidates)
        by_recent = _top_new(recent, rows, allowed, s.recent_candidates)
        by_als = _top_new(als, rows, allowed, s.als_candidates if factors is not None else 0)
        for block in (new, by_blend, by_recent, by_als):
            rr = np.repeat(np.arange(len(chunk)), block.shape[1])
            cc = block.ravel()
            ok = cc >= 0
            cand.append((rr[ok], cc[ok]))
        rr = np.concatenate([x[0] for x in cand])
        cc = np.concatenate([x[1] for x in cand])
        key = np.unique(rr.astype(np.int64) * facts.n_items + cc)
        rr, cc = key // facts.n_items, key % facts.n_items
        out_m.append(chunk[rr])
        out_i.append(cc)
        parts = [scores[rr, cc], recent[rr, cc], blend[rr, cc], als[rr, cc]]
        for full, part in zip((scores, recent, blend, als), list(parts), strict=True):
            top = np.where(allowed[None, :], full, -np.inf).max(axis=1)[rr]
            parts.append(np.divide(part, top, out=np.zeros(len(part)), where=top > 0))
        out_s.append(np.column_stack(parts))
    if not out_m:
        empty = np.array([], dtype=np.int64)
        return empty, empty, np.zeros((0, N_SCORES), dtype=np.float32)
    return np.concatenate(out_m), np.concatenate(out_i), np.concatenate(out_s)


def _features(st: _Stats, facts: ItemFacts, m: np.ndarray, i: np.ndarray,
              score: np.ndarray) -> np.ndarray:  # fmt: skip
    n_i = facts.n_items
    pair_key = st.pair_member.astype(np.int64) * n_i + st.pair_item  # sorted (np.unique)
    key = m.astype(np.int64) * n_i + i
    if len(pair_key):
        pos = np.minimum(np.searchsorted(pair_key, key), len(pair_key) - 1)
        is_rep = pair_key[pos] == key
    else:
        pos, is_rep = np.zeros(len(key), dtype=np.int64), np.zeros(len(key), dtype=bool)

    def of_pair(values: np.ndarray, otherwise: float) -> np.ndarray:
        return (
            np.where(is_rep, values[pos], otherwise)
            if len(values)
            else np.full(len(key), otherwise)
        )

    orders = of_pair(st.pair_orders, 0.0)
    since_last = of_pair((st.t - st.pair_last) / DAY, np.nan)  # NaN: never bought
    since_first = of_pair((st.t - st.pair_first) / DAY, np.nan)
    pair_gap = of_pair(st.pair_gap, np.nan)
    cycle = st.item_cycle[i]
    cat = facts.item_category[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        # Repurchase timing: how far into the member's own cycle for the item, and into the
        # item's typical cycle, the time since the last purchase is (NaN: no cycle known).
        own_cycle = np.log1p(since_last) - np.log1p(pair_gap)
        item_cycle = np.log1p(since_last) - np.log1p(cycle)
        trend = np.log1p(st.item_pop14[i] * (90 / 14)) - np.log1p(st.item_pop90[i])
    return np.column_stack([
        is_rep.astype(float), np.log1p(orders), np.log1p(since_last), np.log1p(since_first),
        *score.T,
        np.log1p(of_pair(st.pair_recent, 0.0)), orders / np.maximum(st.member_orders[m], 1.0),
        of_pair(st.pair_order_decayed, 0.0), np.log1p(of_pair(st.pair_orders_since, np.nan)),
        own_cycle, item_cycle, np.log1p(cycle), np.log1p(st.member_gap[m]), trend,
        np.log1p(st.member_orders[m]), np.log1p((st.t - st.member_last[m]) / DAY),
        np.log1p(st.member_items[m]), st.member_repeat_share[m],
        np.log1p(st.item_pop90[i]), np.log1p(st.item_pop30[i]), st.item_repeat_rate[i],
        np.log1p(np.clip(st.item_age[i], 0, None)), facts.consumable[i].astype(float),
        st.purchase_affinity[m, cat], st.dwell_affinity[m, cat], st.item_share[i],
        # The hand-set blend's "category by affinity, item by share", given as products: a
        # tree ensemble only approximates products in many small steps.
        st.purchase_affinity[m, cat] * st.item_share[i],
        st.dwell_affinity[m, cat] * st.item_share[i],
        st.purchase_affinity[m, cat] / np.maximum(st.purchase_affinity.max(axis=1)[m], 1e-9),
    ])  # fmt: skip


# -- learning ----------------------------------------------------------------------------


def _precision_new(scorer: Callable[[np.ndarray, sp.csr_matrix], np.ndarray], st: _Stats,
                   facts: ItemFacts, members: np.ndarray,
                   truth: sp.csr_matrix) -> float:  # fmt: skip
    """Precision@10 of an item model's new-item ranking against what members bought;
    ``scorer`` maps (member codes, their bought rows) to scores of every item."""
    hits, n = 0.0, 0
    for start in range(0, len(members), USER_CHUNK):
        chunk = members[start : start + USER_CHUNK]
        rows = st.bought[chunk]
        top = _top_new(scorer(chunk, rows), rows, facts.active, 10)
        t = truth[chunk].toarray() > 0
        t[rows.nonzero()] = False  # only new items count
        has_new = t.any(axis=1)
        got = np.take_along_axis(t, np.maximum(top, 0), axis=1) & (top >= 0)
        hits += got[has_new].sum()
        n += int(has_new.sum())
    return hits / (10 * n) if n else 0.0


@dataclass
class _Window:
    stats: _Stats  # what was known at the window's start
    truth: sp.csr_matrix  # members x items bought inside the window
    active: np.ndarray  # members known before the window who bought in it


def _window(events: Events, facts: ItemFacts, end: float, s: LearnSettings) -> _Window | None:
    start = end - s.label_days * DAY
    past, inside = events.before(start), events.between(start, end)
    if not len(past.item) or not len(inside.item):
        return None
    st = _stats(past, facts, start, s)
    known = inside.member >= 0
    truth = sp.csr_matrix(
        (np.ones(int(known.sum()), np.float32), (inside.member[known], inside.item[known])),
        shape=(facts.n_members, facts.n_items),
    )
    truth.data[:] = 1.0
    active = np.flatnonzero((np.diff(truth.indptr) > 0) & (st.member_items > 0))
    return _Window(st, truth, active) if len(active) >= s.min_members else None


def learn_ranker(events: Events, facts: ItemFacts, now: float,
                 settings: LearnSettings | None = None,
                 previous: Fitted | None = None) -> LearnedRanker | None:  # fmt: skip
    """Fit on what members bought in the last label windows (each from what was known at its
    start), then score every member at ``now``; or score with ``previous`` when it learned
    less than `refit_interval_s` before ``now``. None when the history is too short or too
    small to learn from."""
    s = settings or LearnSettings()
    fitted = previous
    if fitted is not None and 0 <= now - fitted.fitted_at < s.refit_interval_s:
        # A classifier from an older storelens may know other features: then it trains again.
        ranker = _score_all(events, facts, now, s, fitted)
        if ranker is not None:
            return ranker
    fitted = _fit(events, facts, now, s)
    return _score_all(events, facts, now, s, fitted) if fitted is not None else None


def _fit(events: Events, facts: ItemFacts, now: float, s: LearnSettings) -> Fitted | None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    windows = [_window(events, facts, now - w * s.window_step_days * DAY, s)
               for w in range(s.windows)]  # fmt: skip
    windows = [w for w in windows if w is not None]
    if not windows:
        return None
    # Past `max_training_members` more rows barely change the ranking but keep costing: a
    # large chain trains on a random share of its members (fixed seed).
    trained = sum(len(w.active) for w in windows)
    if trained > s.max_training_members:
        share = s.max_training_members / trained
        rng = np.random.default_rng(1)
        for w in windows:
            w.active = np.sort(rng.choice(w.active, round(len(w.active) * share), replace=False))
    latest = windows[0]
    best_scale, best_p, tried = EASE_LAMBDA_SCALES[0], -1.0, {}
    latest_scorers: dict[float, ItemScorer] = {}
    head = _ease_head(latest.stats.bought, s)
    for scale in EASE_LAMBDA_SCALES:  # the regularisation the latest window prefers
        scorer = _item_scorer(latest.stats.bought, s, scale, head)
        p = _precision_new(lambda _c, rows, f=scorer: f(rows), latest.stats, facts,
                           latest.active, latest.truth)  # fmt: skip
        tried[scale] = round(p, 4)
        if p > best_p:
            best_scale, best_p, latest_scorers = scale, p, {scale: scorer}
    # ALS's size and regularisation, chosen the same way (a grid like the backtest's).
    best_als, best_p, tried_als = ALS_GRID[0], -1.0, {}
    for als_params in ALS_GRID if s.als else ():
        factors = _als(latest.stats, *als_params, s)
        if factors is None:
            break
        p = _precision_new(lambda c, _rows, f=factors: f.score(c), latest.stats, facts,
                           latest.active, latest.truth)  # fmt: skip
        tried_als[f"{als_params[0]}x{als_params[1]}"] = round(p, 4)
        if p > best_p:
            best_als, best_p = als_params, p
    features, labels = [], []
    for w in windows:
        scorer = (latest_scorers.get(best_scale) if w is latest else None) or _item_scorer(
            w.stats.bought, s, best_scale, _ease_head(w.stats.bought, s)
        )
        m, i, score = _candidates(w.stats, facts, s, scorer, w.active,
                                  _als(w.stats, *best_als, s))  # fmt: skip
        features.append(_features(w.stats, facts, m, i, score))
        labels.append(np.asarray(w.truth[m, i]).ravel() > 0)
    y = np.concatenate(labels)
    if y.sum() < s.min_positives or y.all():
        return None
    x = np.vstack(features)
    # One classifier ranks every candidate, repeat and new on one probability scale (how
    # much to recommend again versus new); a second one learns from the new candidates
    # alone, for "only what they never bought": there, the many repeat purchases would
    # otherwise decide the splits that rank new items.
    new = x[:, 0] < 0.5
    kinds = [np.ones(len(y), dtype=bool)]
    if s.separate_new_model and y[new].sum() >= s.min_positives and not y[new].all():
        kinds.append(new)
    models, rates, columns = [], [], []
    for n, kind in enumerate(kinds):
        # Pair features (times since the member's last purchase of it...) are all missing for
        # new candidates: their classifier goes without them.
        used = np.flatnonzero(~np.isnan(x[kind]).all(axis=0))
        xk, yk = x[kind][:, used], y[kind]
        # Negatives are many and alike: a sample of them trains as well, several times
        # faster; the odds are scaled back after prediction so the probabilities stay
        # calibrated.
        # Which negatives the sample keeps moves the ranking by a few per cent: `bags`
        # classifiers on different samples, averaged, keep what they agree on.
        rate = min(1.0, s.negatives_per_positive * yk.sum() / max((~yk).sum(), 1))
        bag = []
        for b in range(max(s.bags, 1)):
            keep = yk | (np.random.default_rng([n, b]).random(len(yk)) < rate)
            clf = HistGradientBoostingClassifier(
                max_iter=s.boosting_iterations,
                learning_rate=s.learning_rate,
                max_leaf_nodes=15,
                min_samples_leaf=200,
                l2_regularization=1.0,
                early_stopping=False,  # a fixed number of rounds: no holdout, no loss per round
                random_state=b,
            )
            # One thread: OpenMP threads spinning against the API and ingest on a small box
            # cost ten times more than they save.
            with threadpool_limits(1):
                clf.fit(xk[keep], yk[keep])
            bag.append(clf)
        models.append(tuple(bag))
        rates.append(rate)
        columns.append(used)
    info = {
        "label_windows": len(windows),
        "trained_on_members": int(sum(len(w.active) for w in windows)),
        "training_candidates": int(len(y)),
        "training_positives": int(y.sum()),
        "negative_sample_rate": [round(r, 4) for r in rates],
        "ease_lambda_scale": best_scale,
        "ease_items": facts.n_items if head is None else len(head),
        "ease_inner_precision_new": tried,
        "als_factors_x_regularization": f"{best_als[0]}x{best_als[1]}",
        "als_inner_precision_new": tried_als,
        "classifiers": ["all", "new"][: len(models)],
        "fitted_at": now,
    }
    log.info("learned ranker trained: %s", info)
    return Fitted(tuple(models), tuple(rates), tuple(columns), x.shape[1], best_scale,
                  best_als, now, info)  # fmt: skip


def _score_all(events: Events, facts: ItemFacts, now: float, s: LearnSettings,
               fitted: Fitted) -> LearnedRanker | None:  # fmt: skip
    """Scores with ``fitted``; None when it was trained on other features than these."""
    from threadpoolctl import threadpool_limits

    st = _stats(events, facts, now, s)
    everyone = np.flatnonzero(st.member_items > 0)
    scorer = _item_scorer(st.bought, s, fitted.ease_scale, _ease_head(st.bought, s))
    m, i, score = _candidates(st, facts, s, scorer, everyone, _als(st, *fitted.als, s))
    x = _features(st, facts, m, i, score)
    if getattr(fitted, "n_features", None) != x.shape[1]:
        return None
    kinds = [np.ones(len(x), dtype=bool), x[:, 0] < 0.5][: len(fitted.classifiers)]
    matrices = []
    parts = zip(fitted.classifiers, fitted.negative_rates, fitted.columns, kinds, strict=True)
    for bag, rate, used, kind in parts:
        prob = np.zeros(int(kind.sum()), dtype=np.float32)
        for clf in bag:
            with threadpool_limits(1):
                sampled = clf.predict_proba(x[kind][:, used])[:, 1]  # type: ignore[attr-defined]
            prob += (sampled * rate / (sampled * rate + 1.0 - sampled)) / len(bag)
        # A floor keeps every candidate's entry in the sparse matrix (0 would drop it).
        matrices.append(sp.csr_matrix((np.maximum(prob, 1e-6), (m[kind], i[kind])),
                                      shape=(facts.n_members, facts.n_items)))  # fmt: skip
    return LearnedRanker(
        scores=matrices[0],
        info=dict(fitted.info),
        fitted=fitted,
        new_scores=matrices[1] if len(matrices) > 1 else None,
    )
