"""The precomputed recommendation model: everything serving needs, built offline in one pass.

Serving never touches orders, sales or events of other members: it slices the member's row
of a few sparse matrices and reads per-store best-seller lists built here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from storelens.cloud.personalization.recommend import learned


@dataclass(frozen=True)
class RecommendSettings:
    """Tuning knobs of the hybrid recommender (all times in seconds)."""

    purchase_half_life_s: float = 120 * 86400.0
    dwell_half_life_s: float = 14 * 86400.0
    popularity_half_life_s: float = 30 * 86400.0
    neighbours: int = 40  # similar items kept per item
    # Blend of the two signals at serving time (each normalised to a max of 1 first).
    weight_similar: float = 1.5
    weight_affinity: float = 1.0
    weight_repeat: float = 0.3  # consumables the member buys again
    # Category affinity blend: today's dwell dominates, then past dwell, then purchases.
    weight_today_dwell: float = 3.0
    weight_past_dwell: float = 0.5
    weight_purchases: float = 1.0
    weight_prior: float = 0.05  # chain-wide category mix, so sparse histories still rank
    dense_similarity_max_items: int = 4000  # below this, a dense matrix is faster to serve
    min_dwell_reason_s: float = 30.0
    consumable_categories: frozenset[str] = frozenset()
    rebuild_interval_s: float = 900.0
    # Learn from the history itself how likely each member buys each item again or new
    # (`learned.py`); small or short histories keep the hand-set blend above.
    learn_ranker: bool = True
    label_days: float = 30.0  # the horizon the learned ranker predicts
    # The web shop's product views and cart adds of items not bought since, added at serving
    # time per item (the learned scores are scaled to a top of `weight_similar`): an item left
    # in a cart is the strongest open intent there is, a view a weaker one.
    weight_viewed_online: float = 1.5
    weight_carted_online: float = 3.0
    online_half_life_s: float = 7 * 86400.0
    online_days: float = 30.0


@dataclass(frozen=True)
class Catalog:
    """Items in model order. ``active`` False items are never recommended."""

    skus: list[str]
    names: list[str]
    categories: list[str]  # category name per item
    active: np.ndarray  # bool per item
    consumable: np.ndarray | None = None  # bool per item: repeat purchases are recommended

    @property
    def category_names(self) -> list[str]:
        return sorted(set(self.categories))


@dataclass(frozen=True)
class Interactions:
    """Purchases (online orders and POS sales) as parallel arrays; ``store`` is '' online."""

    member: np.ndarray  # member id (str objects)
    sku: np.ndarray  # str objects
    ts: np.ndarray  # float epoch seconds
    qty: np.ndarray  # float
    store: np.ndarray  # str objects
    basket: np.ndarray | None = None  # sale or order ID (str objects), for anonymous baskets

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> Interactions:
        """Rows of (member or None, sku, ts, qty, store or None[, basket ID])."""
        if not rows:
            empty = np.array([], dtype=object)
            return cls(empty, empty, np.array([], dtype=float), np.array([], dtype=float), empty)
        columns = list(zip(*rows, strict=True))
        member, sku, ts, qty, store = columns[:5]
        basket = np.array(columns[5], dtype=object) if len(columns) > 5 else None
        return cls(
            np.array([m or "" for m in member], dtype=object),
            np.array(sku, dtype=object),
            np.asarray(ts, dtype=float),
            np.asarray(qty, dtype=float),
            np.array([s or "" for s in store], dtype=object),
            basket,
        )

    def __len__(self) -> int:
        return len(self.sku)


@dataclass(frozen=True)
class Dwells:
    """Past in-store dwell of members, already mapped from zones to categories."""

    member: np.ndarray  # str objects
    category: np.ndarray  # str objects
    ts: np.ndarray
    dwell_s: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[tuple[str, str, float, float]]) -> Dwells:
        if not rows:
            e = np.array([], dtype=object)
            return cls(e, e, np.array([], dtype=float), np.array([], dtype=float))
        member, category, ts, dwell = zip(*rows, strict=True)
        return cls(
            np.array(member, dtype=object),
            np.array(category, dtype=object),
            np.asarray(ts, dtype=float),
            np.asarray(dwell, dtype=float),
        )


@dataclass
class RecommendationModel:
    settings: RecommendSettings
    catalog: Catalog
    built_at: float
    sku_index: dict[str, int]
    category_index: dict[str, int]
    item_category: np.ndarray  # category index per item
    member_index: dict[str, int]
    history: sp.csr_matrix  # members x items, time-decayed purchase weight
    similarity: sp.csr_matrix  # items x items, top-K cosine, no diagonal
    purchase_affinity: np.ndarray  # members x categories, rows sum to 1 (or 0)
    dwell_affinity: np.ndarray  # members x categories, rows sum to 1 (or 0)
    store_popularity: dict[str, np.ndarray]  # store -> decayed units sold per item
    global_popularity: np.ndarray
    consumable: np.ndarray  # bool per item
    store_best: dict[str, np.ndarray] = field(default_factory=dict)  # item idx, best first
    global_best: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int64))
    similarity_dense: np.ndarray | None = None  # same as `similarity`, for small catalogs
    category_prior: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sums to 1
    store_share: dict[str, np.ndarray] = field(default_factory=dict)  # item share of its category
    global_share: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # members x items: learned P(member buys item within `label_days`), repeat or new; None
    # when the history was too small to learn from (the hand-set blend serves then).
    personal: sp.csr_matrix | None = None
    # the same for never-bought items from the classifier of new items: serves "new only"
    personal_new: sp.csr_matrix | None = None
    ranker_info: dict = field(default_factory=dict)
    fitted: learned.Fitted | None = None  # the classifier, for the next build to reuse

    def popularity(self, store: str) -> np.ndarray:
        return self.store_popularity.get(store, self.global_popularity)

    def category_share(self, store: str) -> np.ndarray:
        """Each item's share of its category's sales at the store (chain-wide if unknown)."""
        return self.store_share.get(store, self.global_share)

    def best_sellers(self, store: str) -> np.ndarray:
        return self.store_best.get(store, self.global_best)


def _encode(values: np.ndarray, index: dict[str, int]) -> np.ndarray:
    """Map labels to indexes (-1 when unknown), looking up each distinct label once."""
    if len(values) == 0:
        return np.array([], dtype=np.int64)
    distinct, inverse = np.unique(values.astype(str), return_inverse=True)
    codes = np.array([index.get(v, -1) for v in distinct], dtype=np.int64)
    return codes[inverse]


def _decay(age_s: np.ndarray, half_life_s: float) -> np.ndarray:
    return np.power(0.5, np.clip(age_s, 0.0, None) / half_life_s)


def _row_normalise(m: np.ndarray) -> np.ndarray:
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def _top_k_cosine(history: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Item-item cosine similarity keeping the ``k`` best neighbours of each item.

    implicit's all-pairs k-NN runs in C++ over the sparse matrix; we only drop self-similarity.
    """
    from implicit.nearest_neighbours import all_pairs_knn

    n_items = history.shape[1]
    if history.nnz == 0 or n_items < 2:
        return sp.csr_matrix((n_items, n_items))
    # Cosine = dot product of unit-length item columns.
    norms = np.sqrt(np.asarray(history.multiply(history).sum(axis=0)).ravel())
    scale = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0))
    unit = (history @ scale).astype(np.float64).tocsr()
    knn = all_pairs_knn(unit, min(k + 1, n_items), show_progress=False, num_threads=1)
    sim = knn.tocsr().astype(np.float32)
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    return sim


def build_model(
    catalog: Catalog,
    purchases: Interactions,
    dwells: Dwells | None = None,
    *,
    settings: RecommendSettings | None = None,
    now: float | None = None,
    previous: RecommendationModel | None = None,
) -> RecommendationModel:
    """Vectorised build: no Python loop runs over interactions or item pairs. ``previous``
    (the model this one replaces) lends its learned classifier when it is recent enough."""
    settings = settings or RecommendSettings()
    now = time.time() if now is None else now
    dwells = dwells or Dwells.from_rows([])
    sku_index = {s: i for i, s in enumerate(catalog.skus)}
    categories = catalog.category_names
    category_index = {c: i for i, c in enumerate(categories)}
    item_category = np.array([category_index[c] for c in catalog.categories], dtype=np.int64)
    n_items, n_cats = len(catalog.skus), len(categories)

    # Purchases of items the catalog no longer has are dropped, not errors.
    all_items = _encode(purchases.sku, sku_index)
    known = all_items >= 0
    p_member = purchases.member[known]
    p_item = all_items[known]
    p_ts, p_qty, p_store = purchases.ts[known], purchases.qty[known], purchases.store[known]

    members = sorted(set(p_member[p_member != ""]) | set(dwells.member))
    member_index = {m: i for i, m in enumerate(members)}
    n_members = len(members)

    # Member x item matrix of decayed purchase weights (anonymous purchases only feed popularity).
    with_member = p_member != ""
    rows = _encode(p_member[with_member], member_index)
    # One purchase line counts once whatever the quantity: ten coffees are one signal of taste.
    weight = _decay(now - p_ts[with_member], settings.purchase_half_life_s)
    history = sp.csr_matrix(
        (weight, (rows, p_item[with_member])), shape=(n_members, n_items), dtype=np.float32
    )
    history.sum_duplicates()
    # Co-purchase also comes from anonymous baskets (walk-in sales): each is one more row.
    co_purchase = history
    if purchases.basket is not None:
        anonymous = ~with_member
        baskets = purchases.basket[known][anonymous]
        if len(baskets):
            labels, basket_rows = np.unique(baskets.astype(str), return_inverse=True)
            anon_weight = _decay(now - p_ts[anonymous], settings.purchase_half_life_s)
            anon = sp.csr_matrix(
                (anon_weight, (basket_rows, p_item[anonymous])),
                shape=(len(labels), n_items),
                dtype=np.float32,
            )
            co_purchase = sp.vstack([history, anon]).tocsr()
    similarity = _top_k_cosine(co_purchase, settings.neighbours)

    item_to_cat = sp.csr_matrix(
        (np.ones(n_items, dtype=np.float32), (np.arange(n_items), item_category)),
        shape=(n_items, n_cats),
    )
    purchase_affinity = _row_normalise(np.asarray((history @ item_to_cat).todense()))

    dwell_affinity = np.zeros((n_members, n_cats), dtype=np.float64)
    d_rows = d_cols = np.array([], dtype=np.int64)
    d_ts = d_s = np.array([], dtype=float)
    if len(dwells.member):
        all_cols = _encode(dwells.category, category_index)
        ok = all_cols >= 0
        d_rows = _encode(dwells.member[ok], member_index)
        d_cols = all_cols[ok]
        d_ts, d_s = dwells.ts[ok], dwells.dwell_s[ok]
        d_w = d_s * _decay(now - d_ts, settings.dwell_half_life_s)
        np.add.at(dwell_affinity, (d_rows, d_cols), d_w)
        dwell_affinity = _row_normalise(dwell_affinity)

    pop_w = _decay(now - p_ts, settings.popularity_half_life_s) * np.maximum(p_qty, 1.0)
    global_popularity = np.bincount(p_item, weights=pop_w, minlength=n_items).astype(np.float64)
    store_popularity: dict[str, np.ndarray] = {}
    for store in sorted(set(p_store) - {""}):  # loop over stores, a handful
        mask = p_store == store
        store_popularity[store] = np.bincount(
            p_item[mask], weights=pop_w[mask], minlength=n_items
        ).astype(np.float64)

    consumable = np.array(
        [c in settings.consumable_categories for c in catalog.categories], dtype=bool
    )
    if catalog.consumable is not None:
        consumable |= catalog.consumable
    model = RecommendationModel(
        settings=settings,
        catalog=catalog,
        built_at=now,
        sku_index=sku_index,
        category_index=category_index,
        item_category=item_category,
        member_index=member_index,
        history=history,
        similarity=similarity,
        purchase_affinity=purchase_affinity,
        dwell_affinity=dwell_affinity,
        store_popularity=store_popularity,
        global_popularity=global_popularity,
        consumable=consumable,
    )
    model.global_best = _rank(global_popularity, catalog.active)
    model.store_best = {s: _rank(p, catalog.active) for s, p in store_popularity.items()}
    if n_items <= settings.dense_similarity_max_items:
        model.similarity_dense = np.asarray(similarity.todense(), dtype=np.float32)
    cat_totals = np.bincount(item_category, weights=global_popularity, minlength=n_cats)
    model.category_prior = cat_totals / cat_totals.sum() if cat_totals.sum() > 0 else cat_totals
    model.global_share = _share(global_popularity, item_category, n_cats)
    model.store_share = {s: _share(p, item_category, n_cats) for s, p in store_popularity.items()}
    if settings.learn_ranker and n_members and n_items:
        member_codes = np.full(len(p_item), -1, dtype=np.int64)
        member_codes[with_member] = rows
        if purchases.basket is not None:
            basket = np.unique(purchases.basket[known].astype(str), return_inverse=True)[1]
        else:  # one basket per member and timestamp
            keys = np.char.add(p_member.astype(str), p_ts.astype(str))
            basket = np.unique(keys, return_inverse=True)[1]
        facts = learned.ItemFacts(
            n_members=n_members, n_items=n_items, item_category=item_category,
            consumable=consumable, active=catalog.active, dwell=(d_rows, d_cols, d_ts, d_s),
            similarity=similarity,
        )  # fmt: skip
        events = learned.Events(member_codes, p_item, p_ts, basket.astype(np.int64))
        blend = (
            settings.weight_similar,
            settings.weight_affinity,
            settings.weight_repeat,
            settings.weight_past_dwell,
            settings.weight_purchases,
            settings.weight_prior,
        )
        learn = learned.LearnSettings(label_days=settings.label_days, blend=blend,
                                      purchase_half_life_s=settings.purchase_half_life_s,
                                      dwell_half_life_s=settings.dwell_half_life_s)  # fmt: skip
        reuse = previous.fitted if previous is not None else None
        ranker = learned.learn_ranker(events, facts, now, learn, previous=reuse)
        if ranker is not None:
            model.personal, model.ranker_info = ranker.scores, ranker.info
            model.personal_new = ranker.new_scores
            model.fitted = ranker.fitted
    return model


def _share(popularity: np.ndarray, item_category: np.ndarray, n_cats: int) -> np.ndarray:
    totals = np.bincount(item_category, weights=popularity, minlength=n_cats)[item_category]
    return np.divide(popularity, totals, out=np.zeros_like(popularity), where=totals > 0)


def _rank(popularity: np.ndarray, active: np.ndarray) -> np.ndarray:
    order = np.argsort(-popularity, kind="stable")
    return order[active[order] & (popularity[order] > 0)]
