"""Purchase propensity: per member and category, a calibrated probability of buying in the next
``horizon_days``, learned from the purchase history with scikit-learn.

Features at a cutoff time T use only lines before T: recency, frequency (baskets in the last
30 and 90 days and in the whole feature window) and monetary value (net of returns) of the
member in the category and overall, the member's tenure and breadth, and the category's
current reach (share of active members buying it). The label is "bought the category in
[T, T + horizon)". Training takes several cutoffs one horizon apart, all with labels already
known: a gradient-boosted tree model (`HistGradientBoostingClassifier`) learns to rank on the
older ones, and isotonic calibration (`CalibratedClassifierCV`) fitted on the newest one turns
its scores into probabilities, so "0.3" means three in ten such members buy.

`refresh(db)` trains on the database's history and stores every active member's scores in
``member_propensity`` (the API, the POS and offer audiences read that table, never a model).
The settings below are fixed a priori, not tuned to a data set.

`RefreshScheduler` runs it beside the API every ``STORELENS_PROPENSITY_REFRESH_S`` (daily by
default; `storelens cloud propensity-refresh` still runs it by hand). `refresh_if_due` is
idempotent: scores fresher than the interval are kept, and the interval's slot is claimed by
one insert, so several API replicas (or restarts) train once per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from storelens.cloud.commerce.history.lines import OrderLines, load_order_lines
from storelens.cloud.db import Database, migrations

log = logging.getLogger(__name__)
DAY = 86400.0

MIGRATIONS = migrations(
    "propensity",
    [
        """
        CREATE TABLE member_propensity (
            member_id TEXT NOT NULL,
            category TEXT NOT NULL,
            probability {REAL} NOT NULL,
            horizon_days {REAL} NOT NULL,
            computed_at {REAL} NOT NULL,
            PRIMARY KEY (member_id, category)
        );
        CREATE INDEX member_propensity_category ON member_propensity (category, probability)
        """,
        # One row per scheduled refresh slot: the replica that inserts it runs that refresh.
        """
        CREATE TABLE propensity_runs (
            slot {BIGINT} PRIMARY KEY,
            started_at {REAL} NOT NULL,
            finished_at {REAL},
            outcome TEXT
        )
        """,
    ],
)

FEATURES = (
    "pair_recency_days", "pair_baskets_30", "pair_baskets_90", "pair_baskets_all",
    "pair_spend_all", "pair_share_of_baskets", "member_recency_days", "member_baskets_30",
    "member_baskets_90", "member_baskets_all", "member_spend_all", "member_tenure_days",
    "member_categories_all", "category_reach_30", "category_reach_90",
)  # fmt: skip


@dataclass(frozen=True)
class PropensitySettings:
    horizon_days: float = 30.0
    training_cutoffs: int = 3  # snapshots one horizon apart, newest ending at the train end
    lookback_days: float = 365.0
    min_probability_stored: float = 0.005  # below: not stored, read as 0
    negatives_per_positive: float = 10.0  # tree training subsample (weighted back)
    seed: int = 0


@dataclass
class Snapshot:
    """One row per (active member, category) at a cutoff."""

    member: np.ndarray  # str objects
    category: np.ndarray  # str objects
    X: np.ndarray  # float, len(FEATURES) columns (NaN: never happened)
    y: np.ndarray | None  # bool; None when the future is unknown


def _purchases(lines: OrderLines) -> OrderLines:
    keep = (lines.member != "") & (lines.category != "")
    return OrderLines(*(getattr(lines, f)[keep] for f in OrderLines.__dataclass_fields__))


def snapshot(
    lines: OrderLines,
    cutoff: float,
    *,
    horizon_days: float | None,
    lookback_days: float = 365.0,
    categories: list[str] | None = None,
) -> Snapshot:
    """Features of every member active in the lookback before ``cutoff``, for every category;
    with ``horizon_days`` also the label. ``lines`` must be member lines with a category."""
    past = (lines.ts < cutoff) & (lines.ts >= cutoff - lookback_days * DAY)
    ever = lines.ts < cutoff
    buy = past & ~lines.is_return
    members_ = np.unique(lines.member[buy].astype(str))
    cats = sorted(set(lines.category[ever & ~lines.is_return].astype(str))) if categories is None \
        else list(categories)  # fmt: skip
    n_m, n_c = len(members_), len(cats)
    if n_m == 0 or n_c == 0:
        empty = np.array([], dtype=object)
        return Snapshot(empty, empty, np.zeros((0, len(FEATURES))), None)
    m_index = {m: i for i, m in enumerate(members_)}
    c_index = {c: i for i, c in enumerate(cats)}

    def codes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = np.array([m_index.get(v, -1) for v in lines.member[mask]], dtype=np.int64)
        c = np.array([c_index.get(v, -1) for v in lines.category[mask]], dtype=np.int64)
        return m, c

    n_pairs = n_m * n_c
    age = (cutoff - lines.ts) / DAY
    X = np.full((n_pairs, len(FEATURES)), np.nan)
    col = {f: i for i, f in enumerate(FEATURES)}

    # Baskets: a (order, member, category) counts once however many lines it has.
    bm, bc = codes(buy)
    ok = (bm >= 0) & (bc >= 0)
    b_pair = (bm * n_c + bc)[ok]
    b_age = age[buy][ok]
    b_order = lines.order[buy][ok].astype(str)
    key = np.char.add(np.char.add(b_order, "|"), b_pair.astype(str))
    _, first = np.unique(key, return_index=True)
    u_pair, u_age = b_pair[first], b_age[first]
    for name, days in (("30", 30), ("90", 90), ("all", lookback_days)):
        sel = u_age < min(days, lookback_days)
        X[:, col[f"pair_baskets_{name}"]] = np.bincount(u_pair[sel], minlength=n_pairs)
    last = np.full(n_pairs, np.inf)
    np.minimum.at(last, b_pair, b_age)
    X[:, col["pair_recency_days"]] = np.where(np.isfinite(last), last, np.nan)
    pm, pc = codes(past)
    ok_p = (pm >= 0) & (pc >= 0)
    spend = np.bincount((pm * n_c + pc)[ok_p], weights=lines.amount[past][ok_p],
                        minlength=n_pairs)  # fmt: skip
    X[:, col["pair_spend_all"]] = spend

    # Member level: baskets are orders.
    m_of_pair = np.repeat(np.arange(n_m), n_c)
    c_of_pair = np.tile(np.arange(n_c), n_m)
    o_key = np.char.add(np.char.add(b_order, "|"), (b_pair // n_c).astype(str))
    _, o_first = np.unique(o_key, return_index=True)
    o_member, o_age = (b_pair // n_c)[o_first], b_age[o_first]
    for name, days in (("30", 30), ("90", 90), ("all", lookback_days)):
        sel = o_age < min(days, lookback_days)
        X[:, col[f"member_baskets_{name}"]] = np.bincount(o_member[sel], minlength=n_m)[m_of_pair]
    m_spend = np.bincount(pm[ok_p], weights=lines.amount[past][ok_p], minlength=n_m)
    X[:, col["member_spend_all"]] = m_spend[m_of_pair]
    m_last = np.full(n_m, np.inf)
    np.minimum.at(m_last, o_member, o_age)
    X[:, col["member_recency_days"]] = m_last[m_of_pair]
    first_age = np.zeros(n_m)
    np.maximum.at(first_age, o_member, o_age)  # first purchase within the lookback
    X[:, col["member_tenure_days"]] = first_age[m_of_pair]
    bought_all = X[:, col["pair_baskets_all"]] > 0
    X[:, col["member_categories_all"]] = np.bincount(m_of_pair[bought_all], minlength=n_m)[
        m_of_pair
    ]
    X[:, col["pair_share_of_baskets"]] = X[:, col["pair_baskets_all"]] / np.maximum(
        X[:, col["member_baskets_all"]], 1
    )
    # Category reach: share of active members who bought it lately.
    for days in (30, 90):
        bought = X[:, col[f"pair_baskets_{days}"]] > 0
        reach = np.bincount(c_of_pair[bought], minlength=n_c) / n_m
        X[:, col[f"category_reach_{days}"]] = reach[c_of_pair]

    y = None
    if horizon_days is not None:
        future = (lines.ts >= cutoff) & (lines.ts < cutoff + horizon_days * DAY) & ~lines.is_return
        fm, fc = codes(future)
        okf = (fm >= 0) & (fc >= 0)
        y = np.zeros(n_pairs, dtype=bool)
        y[(fm * n_c + fc)[okf]] = True
    return Snapshot(members_[m_of_pair].astype(object), np.array(cats, dtype=object)[c_of_pair],
                    X, y)  # fmt: skip


def effective_lookback(lines: OrderLines, end: float, settings: PropensitySettings) -> float:
    """The feature window, in days: the configured lookback, shortened to the history the
    oldest training cutoff has. Training and scoring then describe members over the same
    window (a tree model cannot extrapolate to counts longer windows would produce)."""
    oldest = end - settings.horizon_days * DAY * settings.training_cutoffs
    before = lines.ts[lines.ts < oldest]
    if len(before) == 0:
        return settings.lookback_days
    return max(1.0, min(settings.lookback_days, (oldest - float(before.min())) / DAY))


def training_snapshots(
    lines: OrderLines, end: float, settings: PropensitySettings, lookback_days: float
) -> tuple[list[Snapshot], list[str]]:
    """Labelled snapshots whose label windows all end by ``end``, newest first; and the
    category list (every category sold before ``end``)."""
    h = settings.horizon_days
    cats = sorted(set(lines.category[(lines.ts < end) & ~lines.is_return].astype(str)))
    snaps = []
    for k in range(settings.training_cutoffs):
        cutoff = end - h * DAY * (k + 1)
        snap = snapshot(lines, cutoff, horizon_days=h, lookback_days=lookback_days,
                        categories=cats)  # fmt: skip
        if len(snap.X):
            snaps.append(snap)
    return snaps, cats


def fit(snaps: list[Snapshot], settings: PropensitySettings) -> Any:
    """Trees learn on the older snapshots; isotonic calibration maps their scores to
    probabilities on the newest one (a later period than they learned on, as in use).

    Negatives are subsampled for the trees (at most ``negatives_per_positive`` of them per
    positive, each weighted up by the inverse of its sampling rate, so the trees still see
    the true odds); calibration uses every row of its snapshot."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.frozen import FrozenEstimator

    if not snaps:
        raise ValueError("propensity needs purchase history before the training cutoffs")
    calibration = snaps[0]
    learn = snaps[1:] or snaps[:1]  # one snapshot: it serves for both
    X = np.vstack([s.X for s in learn])
    y = np.concatenate([s.y for s in learn])
    cal_y = calibration.y
    if not (y.any() and (~y).any() and cal_y.any() and (~cal_y).any()):
        raise ValueError("propensity needs both buyers and non-buyers in the training periods")
    rng = np.random.default_rng(settings.seed)
    rate = min(1.0, settings.negatives_per_positive * y.sum() / max((~y).sum(), 1))
    keep = y | (rng.random(len(y)) < rate)
    weight = np.where(y, 1.0, 1.0 / rate)[keep]
    trees = HistGradientBoostingClassifier(
        max_iter=150, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=50,
        l2_regularization=1.0, early_stopping=True, validation_fraction=0.1,
        random_state=settings.seed,
    )  # fmt: skip
    trees.fit(X[keep], y[keep], sample_weight=weight)
    model = CalibratedClassifierCV(FrozenEstimator(trees), method="isotonic")
    model.fit(calibration.X, cal_y)
    return model


def predict(model: Any, X: np.ndarray) -> np.ndarray:
    if len(X) == 0:
        return np.zeros(0)
    return model.predict_proba(X)[:, 1]


# -- the service: train on the database, store scores ------------------------------------


def refresh(
    db: Database, *, settings: PropensitySettings | None = None, now: float | None = None
) -> dict[str, Any]:
    """Train on the stored history and replace every stored score; returns a summary."""
    settings = settings or PropensitySettings()
    now = time.time() if now is None else now
    started = time.perf_counter()
    lookback_s = settings.lookback_days * DAY
    span = settings.horizon_days * settings.training_cutoffs * DAY + lookback_s
    lines = _purchases(load_order_lines(db, since=now - span, until=now))
    lookback = effective_lookback(lines, now, settings)
    snaps, cats = training_snapshots(lines, now, settings, lookback)
    model = fit(snaps, settings)
    y = np.concatenate([s.y for s in snaps])
    snap = snapshot(lines, now, horizon_days=None, lookback_days=lookback, categories=cats)
    p = predict(model, snap.X)
    keep = p >= settings.min_probability_stored
    rows = [
        (m, c, round(float(q), 4), settings.horizon_days, now)
        for m, c, q in zip(snap.member[keep], snap.category[keep], p[keep], strict=True)
    ]
    with db.transaction():
        db.execute("DELETE FROM member_propensity")
        db.executemany(
            "INSERT INTO member_propensity (member_id, category, probability, horizon_days,"
            " computed_at) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
    return {
        "training_rows": len(y), "training_positive_rate": round(float(y.mean()), 4),
        "members": len(set(snap.member)), "categories": len(cats), "stored": len(rows),
        "horizon_days": settings.horizon_days, "lookback_days": round(lookback, 1),
        "seconds": round(time.perf_counter() - started, 2),
    }  # fmt: skip


def refresh_if_due(
    db: Database,
    interval_s: float,
    *,
    settings: PropensitySettings | None = None,
    now: float | None = None,
) -> str | None:
    """Refresh when the stored scores are older than ``interval_s`` and no one has claimed
    this interval yet; returns the outcome (``refreshed``, ``skipped: <reason>``, ``failed``)
    or None when nothing was due."""
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    now = time.time() if now is None else now
    newest = db.scalar("SELECT max(computed_at) FROM member_propensity")
    if newest is not None and now - float(newest) < interval_s:
        return None  # fresh (the seed, the CLI or another replica just trained)
    slot = int(now // interval_s)
    claimed = db.execute(
        "INSERT INTO propensity_runs (slot, started_at) VALUES (?, ?)"
        " ON CONFLICT (slot) DO NOTHING",
        (slot, now),
    )
    if claimed != 1:
        return None  # this interval's refresh ran (or runs) already
    try:
        summary = refresh(db, settings=settings, now=now)
        outcome = "refreshed"
        log.info("propensity refreshed: %s", summary)
    except ValueError as exc:  # not enough history yet: try again next interval
        outcome = f"skipped: {exc}"
        log.info("propensity refresh %s", outcome)
    except Exception:
        outcome = "failed"
        log.exception("propensity refresh failed; next try in %.0f s", interval_s)
    db.execute(
        "UPDATE propensity_runs SET finished_at = ?, outcome = ? WHERE slot = ?",
        (time.time(), outcome[:500], slot),
    )
    return outcome


class RefreshScheduler:
    """`refresh_if_due` in a daemon thread: first after ``first_s`` (a starting API serves
    before it trains), then every ``check_s`` (a cheap query; training happens once per
    ``interval_s``)."""

    def __init__(
        self,
        db: Database,
        interval_s: float,
        *,
        first_s: float | None = None,
        check_s: float | None = None,
        settings: PropensitySettings | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.db, self.interval_s, self.settings = db, interval_s, settings
        self.first_s = min(interval_s, 300.0) if first_s is None else first_s
        self.check_s = min(interval_s, 60.0) if check_s is None else check_s
        self.runs: list[str] = []  # outcomes of the refreshes this process ran
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="propensity-refresh", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        wait = self.first_s
        while not self._stop.wait(wait):
            wait = self.check_s
            try:
                outcome = refresh_if_due(self.db, self.interval_s, settings=self.settings)
            except Exception:  # a database hiccup must not end the scheduler
                log.exception("propensity schedule check failed; retrying")
                continue
            if outcome is not None:
                self.runs.append(outcome)


def for_member(db: Database, member_id: str, *, limit: int = 50) -> dict[str, float]:
    """Category -> probability of buying within the horizon, most likely first."""
    rows = db.query(
        "SELECT category, probability FROM member_propensity WHERE member_id = ?"
        " ORDER BY probability DESC, category LIMIT ?",
        (member_id, limit),
    )
    return {r["category"]: float(r["probability"]) for r in rows}


def horizon_days(db: Database) -> float | None:
    value = db.scalar("SELECT max(horizon_days) FROM member_propensity")
    return None if value is None else float(value)


def forget_member(db: Database, member_id: str, _token: str) -> None:
    db.execute("DELETE FROM member_propensity WHERE member_id = ?", (member_id,))


# Collected by cloud/db/schema.py into each process's Services (cloud/hooks.py).
HOOKS = [("member_forgotten", forget_member)]
