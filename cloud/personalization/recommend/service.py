"""The recommendation service: a model rebuilt in the background, served per member and store.

Rebuilds run on a schedule and on demand (`request_rebuild()` after bulk imports); the
serving path swaps in the new model with one reference assignment, so requests never wait
for a build and never see half a model.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from storelens.cloud.db import Database
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


class RecommendationService:
    def __init__(
        self,
        db: Database,
        settings: RecommendSettings | None = None,
        *,
        history_days: float = 730.0,
    ) -> None:
        self.db = db
        self.settings = settings or RecommendSettings()
        self.history_days = history_days
        self._model: RecommendationModel | None = None
        self._zones: dict[str, dict[str, str]] = {}
        self._timezones: dict[str, ZoneInfo] = {}
        self._build_lock = threading.Lock()
        self._ready = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    # -- building ------------------------------------------------------------------------
    def rebuild(self, *, now: float | None = None) -> RecommendationModel:
        """Build a fresh model from the database and swap it in; returns it."""
        now = time.time() if now is None else now
        with self._build_lock:
            since = now - self.history_days * 86400
            started = time.perf_counter()
            model = build_model(
                load_catalog(self.db),
                load_purchases(self.db, since=since, until=now),
                load_dwells(self.db, since=since, until=now),
                settings=self.settings,
                now=now,
                previous=self._model,
            )
            zones: dict[str, dict[str, str]] = {}
            for r in self.db.query("SELECT store, zone, category FROM store_zones"):
                zones.setdefault(r["store"], {})[r["zone"]] = r["category"]
            timezones = {}
            for r in self.db.query("SELECT id, timezone FROM stores"):
                try:
                    timezones[r["id"]] = ZoneInfo(r["timezone"] or "UTC")
                except (ZoneInfoNotFoundError, ValueError):
                    timezones[r["id"]] = ZoneInfo("UTC")
            self._zones, self._timezones, self._model = zones, timezones, model
            self._ready.set()
            log.info(
                "recommendation model rebuilt: %d items, %d members in %.2fs",
                len(model.catalog.skus), len(model.member_index), time.perf_counter() - started,
            )  # fmt: skip
            return model

    @property
    def model(self) -> RecommendationModel:
        model = self._model
        return model if model is not None else self.rebuild()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until a first model exists (built by the background thread)."""
        return self._ready.wait(timeout)

    def request_rebuild(self) -> None:
        """Ask the background thread to rebuild soon (e.g. after a bulk import)."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="recommend-rebuild", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._model is not None:  # fresh enough: wait for the schedule or a request
                self._wake.wait(self.settings.rebuild_interval_s)
                self._wake.clear()
                if self._stop.is_set():
                    return
            try:
                self.rebuild()
                self.last_error = None
            except Exception as exc:  # keep serving the previous model; retry next round
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("recommendation rebuild failed")
                self._wake.wait(min(60.0, self.settings.rebuild_interval_s))

    # -- serving -------------------------------------------------------------------------
    def start_of_day(self, store: str, now: float) -> float:
        tz = self._timezones.get(store, ZoneInfo("UTC"))
        local = datetime.fromtimestamp(now, tz)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def today_dwell(self, token: str, store: str, now: float | None = None) -> dict[str, float]:
        """Seconds per category the member spent in this store's zones today."""
        now = time.time() if now is None else now
        if self._model is None:
            self.rebuild()
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
