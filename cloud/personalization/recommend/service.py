"""The recommendation service: a model served per member and store, swapped in with one
reference assignment, so requests never wait for a build and never see half a model.

Two roles, chosen by the composition root (`Services`):

- ``build``: builds the model from the database on a schedule and on demand
  (`request_rebuild()` after bulk imports) and, with ``store=True``, stores each build
  (`artifacts`). The builder process (`storelens cloud recommend build`) runs this role.
- ``load``: the API's role. It never builds the learned model: it loads the newest stored one
  and polls for a newer one every `load_interval_s`. Until a builder has stored a first model
  it serves a fallback built in-process without the learned ranker (the hand-set blend and
  best sellers, seconds to build), says so in `source`, and logs it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from storelens.cloud.db import Database
from storelens.cloud.personalization.recommend import artifacts
from storelens.cloud.personalization.recommend.dataset import (
    load_catalog,
    load_dwells,
    load_online_interest,
    load_purchases,
)
from storelens.cloud.personalization.recommend.model import (
    RecommendationModel,
    RecommendSettings,
    build_model,
)
from storelens.cloud.personalization.recommend.ranking import (
    Recommendation,
    ServingContext,
    recommend,
)

log = logging.getLogger(__name__)

Role = Literal["build", "load"]
FALLBACK = "fallback"  # `source` while the API serves its own blend-only model


def build_from_db(
    db: Database,
    settings: RecommendSettings,
    *,
    now: float,
    history_days: float = 730.0,
    previous: RecommendationModel | None = None,
) -> RecommendationModel:
    """One model from what the database holds in the last ``history_days`` before ``now``."""
    since = now - history_days * 86400
    return build_model(
        load_catalog(db),
        load_purchases(db, since=since, until=now),
        load_dwells(db, since=since, until=now),
        settings=settings,
        now=now,
        previous=previous,
    )


class RecommendationService:
    def __init__(
        self,
        db: Database,
        settings: RecommendSettings | None = None,
        *,
        history_days: float = 730.0,
        role: Role = "build",
        store: bool = False,
        load_interval_s: float = 30.0,
    ) -> None:
        self.db = db
        self.settings = settings or RecommendSettings()
        self.history_days = history_days
        self.role: Role = role
        self.store = store  # build role: write each build to `recommend_models`
        self.load_interval_s = load_interval_s
        self._model: RecommendationModel | None = None
        self._model_id: int | None = None  # the stored model serving (load role)
        self.source: str | None = None  # "built", "stored #ID" or FALLBACK
        self._zones: dict[str, dict[str, str]] = {}
        self._timezones: dict[str, ZoneInfo] = {}
        self._build_lock = threading.Lock()
        self._ready = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    # -- building and loading ------------------------------------------------------------
    def rebuild(self, *, now: float | None = None) -> RecommendationModel:
        """Build role: a fresh model from the database, stored when ``store``, swapped in.
        Load role: the newest stored model if there is a newer one, else (none stored yet)
        a fresh fallback; it never builds the learned model."""
        if self.role == "load":
            return self.refresh(now=now, rebuild_fallback=True)
        now = time.time() if now is None else now
        with self._build_lock:
            started = time.perf_counter()
            previous = self._model
            if previous is None and self.store:  # a new builder reuses the stored classifier
                stored = artifacts.load_latest(self.db)
                previous = stored.model if stored is not None else None
            model = build_from_db(
                self.db, self.settings, now=now, history_days=self.history_days,
                previous=previous,
            )  # fmt: skip
            source = "built"
            if self.store:
                source = f"stored #{artifacts.save(self.db, model)}"
            self._swap(model, source)
            log.info(
                "recommendation model built (%s): %d items, %d members in %.2fs",
                source, len(model.catalog.skus), len(model.member_index),
                time.perf_counter() - started,
            )  # fmt: skip
            return model

    def refresh(
        self, *, now: float | None = None, rebuild_fallback: bool = False
    ) -> RecommendationModel:
        """Load role: swap in the newest stored model when it is newer than the one serving;
        with none stored, build the fallback (once, or again with ``rebuild_fallback``)."""
        with self._build_lock:
            newest = artifacts.latest_id(self.db)
            if newest is not None and newest != self._model_id:
                stored = artifacts.load_latest(self.db)
                if stored is not None:
                    self._model_id = stored.id
                    self._swap(stored.model, f"stored #{stored.id}")
                    log.info("recommendation model #%d loaded (built at %.0f)",
                             stored.id, stored.model.built_at)  # fmt: skip
            elif newest is None and (self._model is None or rebuild_fallback):
                log.warning(
                    "no built recommendation model stored yet: serving the hand-set blend "
                    "until `storelens cloud recommend build` stores one"
                )
                now = time.time() if now is None else now
                blend_only = dataclasses.replace(self.settings, learn_ranker=False)
                model = build_from_db(self.db, blend_only, now=now,
                                      history_days=self.history_days)  # fmt: skip
                self._swap(model, FALLBACK)
            assert self._model is not None
            return self._model

    def _swap(self, model: RecommendationModel, source: str) -> None:
        zones: dict[str, dict[str, str]] = {}
        for r in self.db.query("SELECT store, zone, category FROM store_zones"):
            zones.setdefault(r["store"], {})[r["zone"]] = r["category"]
        timezones = {}
        for r in self.db.query("SELECT id, timezone FROM stores"):
            try:
                timezones[r["id"]] = ZoneInfo(r["timezone"] or "UTC")
            except (ZoneInfoNotFoundError, ValueError):
                timezones[r["id"]] = ZoneInfo("UTC")
        self._zones, self._timezones, self._model, self.source = zones, timezones, model, source
        self._ready.set()

    @property
    def model(self) -> RecommendationModel:
        model = self._model
        return model if model is not None else self.rebuild()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until a first model exists (built or loaded by the background thread)."""
        return self._ready.wait(timeout)

    def request_rebuild(self) -> None:
        """Ask the background thread to rebuild (load role: to look for a newer model, and
        to refresh the fallback) soon, e.g. after a bulk import."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            name = "recommend-rebuild" if self.role == "build" else "recommend-load"
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        interval = (self.settings.rebuild_interval_s if self.role == "build"
                    else self.load_interval_s)  # fmt: skip
        while not self._stop.is_set():
            requested = False
            if self._model is not None:  # fresh enough: wait for the schedule or a request
                requested = self._wake.wait(interval)
                self._wake.clear()
                if self._stop.is_set():
                    return
            try:
                if self.role == "build":
                    self.rebuild()
                else:
                    self.refresh(rebuild_fallback=requested and self.source == FALLBACK)
                self.last_error = None
            except Exception as exc:  # keep serving the previous model; retry next round
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("recommendation model %s failed", self.role)
                self._wake.wait(min(60.0, interval))

    # -- serving -------------------------------------------------------------------------
    def start_of_day(self, store: str, now: float) -> float:
        tz = self._timezones.get(store, ZoneInfo("UTC"))
        local = datetime.fromtimestamp(now, tz)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def today_dwell(self, token: str, store: str, now: float | None = None) -> dict[str, float]:
        """Seconds per category the member spent in this store's zones today."""
        now = time.time() if now is None else now
        if self._model is None:
            _ = self.model
        zones = self._zones.get(store, {})
        rows = self.db.query(
            "SELECT zone, sum(dwell_s) AS dwell FROM events WHERE member = ? AND ts >= ?"
            " AND store = ? AND type = 'zone_visit' GROUP BY zone",
            (token, self.start_of_day(store, now), store),
        )
        dwell: dict[str, float] = {}
        for r in rows:
            category = zones.get(r["zone"])
            if category is not None:
                dwell[category] = dwell.get(category, 0.0) + float(r["dwell"] or 0.0)
        return dwell

    def bought_since(self, member_id: str, since: float) -> frozenset[str]:
        rows = self.db.query(
            "SELECT i.sku FROM pos_sales s JOIN pos_sale_items i ON i.sale_id = s.id"
            " WHERE s.member_id = ? AND (s.ts >= ? OR s.created_at >= ?)",
            (member_id, since, since),  # created_at: a sale recorded late, after the build
        )
        rows += self.db.query(
            "SELECT i.sku FROM online_orders o JOIN online_order_items i ON i.order_id = o.id"
            " WHERE o.member_id = ? AND (o.created_at >= ? OR o.updated_at >= ?)",
            (member_id, since, since),
        )
        return frozenset(r["sku"] for r in rows)

    def online_interest(
        self, member_id: str, now: float
    ) -> tuple[dict[str, float], dict[str, float]]:
        """(viewed, carted): SKU -> recency-weighted count of the member's online views and
        cart adds of items not bought since (read per request: a cart filled a minute ago
        counts before the next rebuild)."""
        s = self.settings
        rows = load_online_interest(
            self.db, member_id, since=now - s.online_days * 86400, until=now + 1
        )
        viewed: dict[str, float] = {}
        carted: dict[str, float] = {}
        for sku, kind, at in rows:
            into = carted if kind == "cart_add" else viewed
            into[sku] = into.get(sku, 0.0) + 0.5 ** (max(now - at, 0.0) / s.online_half_life_s)
        return viewed, carted

    def in_stock(self, store: str, skus: list[str]) -> set[str]:
        if not skus:
            return set()
        marks = ", ".join("?" for _ in skus)
        rows = self.db.query(
            f"SELECT sku FROM inventory WHERE store = ? AND sku IN ({marks})"
            " AND on_hand - reserved > 0",
            (store, *skus),
        )
        return {r["sku"] for r in rows}

    def for_member(
        self, member: dict | None, store: str, *, limit: int = 10, now: float | None = None
    ) -> list[Recommendation]:
        """Recommendations for a member row (from `members.get_member`) or None (anonymous).

        In-store dwell and online interest are used only when the member allows tracking."""
        now = time.time() if now is None else now
        model = self.model
        today: dict[str, float] = {}
        bought: frozenset[str] = frozenset()
        viewed: dict[str, float] = {}
        carted: dict[str, float] = {}
        member_id = None
        if member is not None:
            member_id = member["id"]
            if member.get("tracking", True):
                today = self.today_dwell(member["token"], store, now)
                viewed, carted = self.online_interest(member_id, now)
            bought = self.bought_since(member_id, model.built_at - 60)
        ctx = ServingContext(
            member=member_id, store=store, today_dwell=today, bought_recently=bought,
            viewed_online=viewed, carted_online=carted,
        )  # fmt: skip
        return recommend(model, ctx, limit=limit, in_stock=lambda skus: self.in_stock(store, skus))
