"""Serving: rank items for one member in one store from the precomputed model.

Cost per request is a few sparse-row slices and vector operations over the catalog, plus the
caller's stock check on a short candidate list; nothing here depends on the number of members
or orders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from storelens.cloud.personalization.recommend.model import RecommendationModel

StockCheck = Callable[[list[str]], set[str]]
"""Given SKUs, returns those available at the store (on hand minus reserved > 0)."""


@dataclass(frozen=True)
class Recommendation:
    sku: str
    name: str
    category: str
    score: float
    reason: str
    source: (
        str  # repeat | similar | today_dwell | affinity | viewed_online | carted_online |
        # category_best_seller | store_best_seller
    )


@dataclass(frozen=True)
class ServingContext:
    """What the request knows beyond the model."""

    member: str | None
    store: str
    today_dwell: dict[str, float] = field(default_factory=dict)  # category -> seconds today
    bought_recently: frozenset[str] = frozenset()  # SKUs bought after the model was built
    # The web shop's open interest, SKU -> recency-weighted count (each event 1 when fresh,
    # halving every `online_half_life_s`) of views and cart adds of items not bought since.
    viewed_online: dict[str, float] = field(default_factory=dict)
    carted_online: dict[str, float] = field(default_factory=dict)
    excluded_categories: frozenset[str] = frozenset()  # categories the member is not eligible for
    # Which already-bought items may come again: "learned" (as likely as the learned ranker
    # says; the consumable rule when it has nothing on the member), "consumable" (only
    # consumables) or "never".
    repeats: Literal["learned", "consumable", "never"] = "learned"


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(int(round(seconds)), 1)} s"
    return f"{int(round(seconds / 60))} min"


def _normalised(v: np.ndarray) -> np.ndarray:
    top = float(v.max()) if v.size else 0.0
    return v / top if top > 0 else np.zeros_like(v)


class _Scorer:
    """Scores of every catalog item for one request, and the parts that explain them."""

    def __init__(self, model: RecommendationModel, ctx: ServingContext) -> None:
        self.model, self.ctx = model, ctx
        s = model.settings
        n_items, n_cats = len(model.catalog.skus), len(model.category_index)
        m = model.member_index.get(ctx.member) if ctx.member else None
        self.hist_idx = np.array([], dtype=np.int32)
        self.hist_w = np.array([], dtype=np.float32)
        similar = np.zeros(n_items)
        repeat = np.zeros(n_items)
        past_dwell = np.zeros(n_cats)
        purchases = np.zeros(n_cats)
        if m is not None:
            h = model.history
            lo, hi = h.indptr[m], h.indptr[m + 1]
            self.hist_idx, self.hist_w = h.indices[lo:hi], h.data[lo:hi]
            if self.hist_idx.size:
                if model.similarity_dense is not None:
                    similar = self.hist_w @ model.similarity_dense[self.hist_idx]
                else:
                    similar = np.asarray(model.similarity[self.hist_idx].T @ self.hist_w).ravel()
                repeat[self.hist_idx] = self.hist_w * model.consumable[self.hist_idx]
            past_dwell = model.dwell_affinity[m]
            purchases = model.purchase_affinity[m]
        today = np.zeros(n_cats)
        for category, seconds in ctx.today_dwell.items():
            ci = model.category_index.get(category)
            if ci is not None and seconds > 0:
                today[ci] += seconds
        today = today / today.sum() if today.sum() > 0 else today
        self.today_part = s.weight_today_dwell * today
        self.dwell_part = s.weight_past_dwell * past_dwell
        self.purchase_part = s.weight_purchases * purchases
        self.prior_part = s.weight_prior * model.category_prior
        # Affinity picks the category, the item's share of its category's sales at this store
        # picks the items inside it.
        share = model.category_share(ctx.store)
        learned = self._learned_row(m)
        self.learned = learned is not None
        if learned is not None:
            # The learned ranker already weighed purchases, past dwell and repeat habits on
            # one probability scale; only today's dwell, which it cannot know, adds to it.
            self.dwell_part = np.zeros(n_cats)
            self.purchase_part = np.zeros(n_cats)
            self.prior_part = np.zeros(n_cats)
            bought = np.zeros(n_items, dtype=bool)
            bought[self.hist_idx] = True
            top = float(learned.max()) or 1.0
            similar = np.where(bought, 0.0, learned) / top
            repeat = np.where(bought, learned, 0.0) / top
            self.similar = s.weight_similar * similar
            self.repeat = s.weight_similar * repeat
        else:
            self.similar = s.weight_similar * _normalised(similar)
            self.repeat = s.weight_repeat * _normalised(repeat)
        affinity = self.today_part + self.dwell_part + self.purchase_part + self.prior_part
        self.affinity = affinity
        self.by_affinity = s.weight_affinity * _normalised(affinity[model.item_category] * share)
        self.viewed = s.weight_viewed_online * self._online(ctx.viewed_online)
        self.carted = s.weight_carted_online * self._online(ctx.carted_online)
        self.total = self.similar + self.by_affinity + self.repeat + self.viewed + self.carted
        online = self.viewed.any() or self.carted.any()
        if not (self.hist_idx.size or today.any() or past_dwell.any() or online):
            self.total = np.zeros(n_items)  # nothing personal known: the fallbacks decide
        self.allowed = self._allowed()

    def _online(self, counts: dict[str, float]) -> np.ndarray:
        """Per item, 0..1: one fresh event or more is full interest; older ones fade."""
        out = np.zeros(len(self.model.catalog.skus))
        for sku, count in counts.items():
            i = self.model.sku_index.get(sku)
            if i is not None and count > 0:
                out[i] = min(float(count), 1.0)
        return out

    def _learned_row(self, m: int | None) -> np.ndarray | None:
        personal = self.model.personal
        # Only new items wanted: the classifier that learned from new items alone ranks them.
        new_only = getattr(self.model, "personal_new", None)  # None in models stored before
        if self.ctx.repeats == "never" and new_only is not None:
            personal = new_only
        if personal is None or m is None or m >= personal.shape[0]:
            return None
        lo, hi = personal.indptr[m], personal.indptr[m + 1]
        if lo == hi:
            return None
        row = np.zeros(personal.shape[1])
        row[personal.indices[lo:hi]] = personal.data[lo:hi]
        return row

    def _allowed(self) -> np.ndarray:
        model, ctx = self.model, self.ctx
        allowed = model.catalog.active.copy()
        bought = np.zeros_like(allowed)
        bought[self.hist_idx] = True
        just_bought = np.zeros_like(allowed)  # after the model was built: it cannot know
        for sku in ctx.bought_recently:
            i = model.sku_index.get(sku)
            if i is not None:
                just_bought[i] = True
        if ctx.repeats == "never":
            allowed &= ~(bought | just_bought)
        elif ctx.repeats == "consumable" or not self.learned:
            allowed &= ~((bought | just_bought) & ~model.consumable)
        else:
            allowed &= ~(just_bought & ~model.consumable)
        for category in ctx.excluded_categories:
            ci = model.category_index.get(category)
            if ci is not None:
                allowed &= model.item_category != ci
        return allowed

    def _anchor(self, i: int) -> int | None:
        """The bought item that most suggests item ``i`` by co-purchase, if any does."""
        model = self.model
        if not self.hist_idx.size:
            return None
        if model.similarity_dense is not None:
            column = model.similarity_dense[self.hist_idx, i]
        else:
            column = np.asarray(model.similarity[self.hist_idx, i].todense()).ravel()
        contrib = column * self.hist_w
        best = int(np.argmax(contrib))
        return int(self.hist_idx[best]) if contrib[best] > 0 else None

    def explain(self, i: int) -> tuple[str, str]:
        """(source, human reason) for a personalised pick, from its largest score part."""
        model, ctx = self.model, self.ctx
        category = model.catalog.categories[i]
        ci = model.item_category[i]
        aff_total = self.affinity[ci] or 1.0
        parts = {
            "repeat": self.repeat[i],
            "similar": self.similar[i],
            "today_dwell": self.by_affinity[i] * self.today_part[ci] / aff_total,
            "affinity": self.by_affinity[i]
            * (self.dwell_part[ci] + self.purchase_part[ci])
            / aff_total,
            "popular": self.by_affinity[i] * self.prior_part[ci] / aff_total,
            "viewed_online": self.viewed[i],
            "carted_online": self.carted[i],
        }
        today_s = ctx.today_dwell.get(category, 0.0)
        if today_s < model.settings.min_dwell_reason_s:
            parts["affinity"] += parts.pop("today_dwell")
        source = max(parts, key=lambda k: parts[k])
        if source == "popular":
            return source, f"popular in {category}"
        if source == "carted_online":
            return source, "in your online cart"
        if source == "viewed_online":
            return source, "you viewed this online"
        if source == "repeat":
            return source, "you buy this regularly"
        if source == "similar" and self.learned:
            anchor = self._anchor(i)
            if anchor is None:
                return "popular", f"popular with customers like you in {category}"
            return source, f"often bought with {model.catalog.names[anchor]}"
        if source == "similar" and self.hist_idx.size:
            if model.similarity_dense is not None:
                column = model.similarity_dense[self.hist_idx, i]
            else:
                column = np.asarray(model.similarity[self.hist_idx, i].todense()).ravel()
            contrib = column * self.hist_w
            anchor = int(self.hist_idx[int(np.argmax(contrib))])
            return source, f"often bought with {model.catalog.names[anchor]}"
        if source == "today_dwell":
            return source, f"spent {format_duration(today_s)} in {category} today"
        if self.dwell_part[ci] > self.purchase_part[ci]:
            return "affinity", f"you often browse {category} in store"
        return "affinity", f"you often buy {category}"


def _take(
    model: RecommendationModel,
    ordered: Iterable[int],
    picked: dict[int, Recommendation],
    limit: int,
    in_stock: StockCheck | None,
    describe: Callable[[int], tuple[str, str, float]],
    batch: int,
) -> None:
    """Append items from ``ordered`` (skipping picked ones) that are in stock, batch by batch."""
    pending: list[int] = []

    def flush() -> None:
        skus = [model.catalog.skus[i] for i in pending]
        available = set(skus) if in_stock is None else in_stock(skus)
        for i in pending:
            if len(picked) >= limit:
                break
            if model.catalog.skus[i] in available:
                source, reason, score = describe(i)
                picked[i] = Recommendation(
                    sku=model.catalog.skus[i],
                    name=model.catalog.names[i],
                    category=model.catalog.categories[i],
                    score=round(float(score), 4),
                    reason=reason,
                    source=source,
                )
        pending.clear()

    for i in ordered:
        if len(picked) >= limit:
            return
        if i in picked:
            continue
        pending.append(int(i))
        if len(pending) >= batch:
            flush()
    if pending:
        flush()


def recommend(
    model: RecommendationModel,
    ctx: ServingContext,
    *,
    limit: int = 10,
    in_stock: StockCheck | None = None,
    max_candidates: int = 200,
) -> list[Recommendation]:
    """Personalised picks, then the store's best sellers in today's categories, then its best
    sellers; every pick in stock, eligible, and not already bought unless consumable."""
    if limit <= 0:
        return []
    scorer = _Scorer(model, ctx)
    allowed = scorer.allowed
    picked: dict[int, Recommendation] = {}
    batch = max(limit * 3, 10)

    total = np.where(allowed, scorer.total, 0.0)
    n_pos = int((total > 0).sum())
    if n_pos:
        k = min(n_pos, max_candidates)
        top = np.argpartition(-total, k - 1)[:k]
        ordered = top[np.argsort(-total[top], kind="stable")]

        def personal(i: int) -> tuple[str, str, float]:
            source, reason = scorer.explain(i)
            return source, reason, total[i]

        _take(model, ordered, picked, limit, in_stock, personal, batch)

    best = model.best_sellers(ctx.store)
    best = best[allowed[best]][:max_candidates]
    dwelt = sorted(
        (
            (sec, cat)
            for cat, sec in ctx.today_dwell.items()
            if cat in model.category_index and sec > 0
        ),
        reverse=True,
    )
    for seconds, category in dwelt:
        if len(picked) >= limit:
            break
        ci = model.category_index[category]
        in_cat = best[model.item_category[best] == ci]
        reason = f"best seller in {category}, where you spent {format_duration(seconds)} today"
        _take(
            model,
            in_cat,
            picked,
            limit,
            in_stock,
            lambda _i, r=reason: ("category_best_seller", r, 0.0),
            batch,
        )
    if len(picked) < limit:
        _take(
            model,
            best,
            picked,
            limit,
            in_stock,
            lambda _i: ("store_best_seller", "best seller at this store", 0.0),
            batch,
        )
    return list(picked.values())
