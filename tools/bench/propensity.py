"""`storelens bench propensity`: the propensity model on a retailer's history file, trained on
lines before each split date and scored on who bought which category in the horizon after it.

Metrics on the held-out period: ROC AUC (ranking), Brier score and log loss (probabilities),
expected calibration error over ten equal-count bins, and the calibration table itself
(mean predicted vs observed rate per bin). Baselines in the same run, fitted on the same
training rows: the category's base rate, and a recency/frequency logistic regression (the
classic RFM score). Several ``--split`` dates guard against a result that holds for one month.

Files without categories (the UCI Online Retail data has none) get one per product by a
documented rule: ``prefix:N`` takes the first N characters of the SKU (UCI stock codes are
allocated in ranges, so a prefix groups a product family), ``word`` the last word of the
product name (its product type: "... T-LIGHT HOLDER" -> HOLDER).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from storelens.cloud.commerce.history.lines import OrderLines
from storelens.cloud.commerce.history.reader import (
    HistoryFile,
    HistoryLine,
    HistoryRules,
    read_history,
)
from storelens.cloud.personalization import propensity

# The UCI Online Retail file's own columns and rules (cancellations start with C; postage,
# fees and manual lines are not products). Used when the header has these columns.
UCI_MAPPING = {
    "order_id": "InvoiceNo", "customer_id": "CustomerID", "sku": "StockCode",
    "quantity": "Quantity", "unit_price": "UnitPrice", "ordered_at": "InvoiceDate",
    "product_name": "Description",
}  # fmt: skip
UCI_NON_PRODUCTS = r"POST|DOT|M|D|C2|S|B|CRUK|PADS|AMAZONFEE|BANK CHARGES|gift_\d+_\d+"


def category_rule(rule: str):  # noqa: ANN201 - returns a small function
    """``prefix:N`` or ``word``; raises ValueError for anything else."""
    if rule == "word":
        return lambda x: (x.product_name or "").strip().split()[-1:] or [x.sku]
    if rule.startswith("prefix:") and rule[7:].isdigit() and int(rule[7:]) > 0:
        n = int(rule[7:])
        return lambda x: [x.sku[:n]]
    raise ValueError(f"category rule must be prefix:N or word, not {rule!r}")


def order_lines(lines: list[HistoryLine], rule: str) -> OrderLines:
    """History lines as the columns the models read; the file's category when it has one."""
    derive = category_rule(rule)
    lines = sorted(lines, key=lambda x: x.ordered_at)

    def col(values: list[Any], dtype: Any = object) -> np.ndarray:
        return np.array(values, dtype=dtype)

    return OrderLines(
        member=col([x.customer_id or "" for x in lines]),
        order=col([x.order_id for x in lines]),
        sku=col([x.sku for x in lines]),
        category=col([x.category or derive(x)[0] for x in lines]),
        ts=col([x.ordered_at for x in lines], float),
        qty=col([x.quantity for x in lines], float),
        unit_price=col([x.unit_price for x in lines], float),
        store=col([x.store or "" for x in lines]),
        is_return=col([x.is_return for x in lines], bool),
    )


def _calibration(p: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[float, list[dict]]:
    order = np.argsort(p, kind="stable")
    table, ece = [], 0.0
    for chunk in np.array_split(order, bins):
        if len(chunk) == 0:
            continue
        mean_p, rate = float(p[chunk].mean()), float(y[chunk].mean())
        ece += len(chunk) / len(p) * abs(mean_p - rate)
        table.append({"n": len(chunk), "mean_predicted": round(mean_p, 4),
                      "observed_rate": round(rate, 4)})  # fmt: skip
    return round(ece, 4), table


def _scores(p: np.ndarray, y: np.ndarray, *, table: bool = False) -> dict[str, Any]:
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    p = np.clip(p, 1e-6, 1 - 1e-6)
    ece, cal = _calibration(p, y)
    out: dict[str, Any] = {
        "auc": round(float(roc_auc_score(y, p)), 4),
        "brier": round(float(brier_score_loss(y, p)), 5),
        "log_loss": round(float(log_loss(y, p)), 5),
        "ece": ece,
        "mean_predicted": round(float(p.mean()), 4),
    }
    if table:
        out["calibration"] = cal
    return out


def _rfm_baseline(X: np.ndarray, y: np.ndarray, X_test: np.ndarray) -> np.ndarray:
    """Logistic regression on the member's recency and frequency in the category."""
    from sklearn.linear_model import LogisticRegression

    cols = [propensity.FEATURES.index(f) for f in ("pair_recency_days", "pair_baskets_all")]

    def rf(m: np.ndarray) -> np.ndarray:
        recency = np.nan_to_num(m[:, cols[0]], nan=2 * 365.0)
        return np.column_stack([np.log1p(recency), np.log1p(m[:, cols[1]]), m[:, cols[1]] == 0])

    model = LogisticRegression(max_iter=1000)
    model.fit(rf(X), y)
    return model.predict_proba(rf(X_test))[:, 1]


def _category_rate(
    train_cats: np.ndarray, y: np.ndarray, test_cats: np.ndarray
) -> np.ndarray:  # fmt: skip
    rates: dict[str, float] = {}
    for c in np.unique(train_cats):
        rates[c] = float(y[train_cats == c].mean())
    overall = float(y.mean())
    return np.array([rates.get(c, overall) for c in test_cats], dtype=float)


def run_split(lines: OrderLines, split: float, settings: propensity.PropensitySettings) -> dict:
    started = time.perf_counter()
    train = lines.ts < split
    lookback = propensity.effective_lookback(lines, split, settings)
    snaps, cats = propensity.training_snapshots(lines, split, settings, lookback)
    model = propensity.fit(snaps, settings)
    fitted_s = time.perf_counter() - started
    # Baselines learn on the same labelled rows the model saw (all training snapshots).
    X = np.vstack([s.X for s in snaps])
    y = np.concatenate([s.y for s in snaps])
    train_cats = np.concatenate([s.category for s in snaps])
    # Only members active and categories sold before the split are scored.
    test = propensity.snapshot(lines, split, horizon_days=settings.horizon_days,
                               lookback_days=lookback, categories=cats)  # fmt: skip
    assert test.y is not None
    p = propensity.predict(model, test.X)
    return {
        "split": datetime.fromtimestamp(split, UTC).date().isoformat(),
        "train_lines": int(train.sum()),
        "train_rows": len(y),
        "train_positive_rate": round(float(y.mean()), 4),
        "test_rows": len(test.y),
        "test_members": len(set(test.member)),
        "categories": len(cats),
        "lookback_days": round(lookback, 1),
        "test_positive_rate": round(float(test.y.mean()), 4),
        "model": _scores(p, test.y, table=True),
        "baselines": {
            "category_rate": _scores(_category_rate(train_cats, y, test.category), test.y),
            "rfm_logistic": _scores(_rfm_baseline(X, y, test.X), test.y),
        },
        "fit_seconds": round(fitted_s, 1),
    }


def read(
    path: Path, mapping: dict[str, str] | None = None, rules: HistoryRules | None = None
) -> HistoryFile:
    """The history file; the UCI Online Retail columns and rules when its header has them."""
    import csv
    import re

    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        header = next(csv.reader(f), [])
    if mapping is None and set(UCI_MAPPING.values()) <= set(header):
        mapping = UCI_MAPPING
        rules = rules or HistoryRules(
            cancelled_prefix="C", exclude_pattern=re.compile(UCI_NON_PRODUCTS)
        )
    return read_history(path, mapping=mapping, rules=rules)


def run(
    path: Path,
    splits: list[str],
    *,
    horizon_days: float = 30.0,
    category: str = "prefix:3",
    mapping: dict[str, str] | None = None,
    rules: HistoryRules | None = None,
) -> dict[str, Any]:
    category_rule(category)  # a bad rule fails before the file is read
    history = read(path, mapping, rules)
    lines = propensity._purchases(order_lines(history.lines, category))
    settings = propensity.PropensitySettings(horizon_days=horizon_days)
    results = []
    for text in splits:
        split = datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
        results.append(run_split(lines, split, settings))
    first = results[0]
    return {
        "bench": "propensity",
        "file": path.name,
        "lines": len(history.lines),
        "rejects": dict(history.reject_counts()),
        "category_rule": category,
        "horizon_days": horizon_days,
        "training_cutoffs": settings.training_cutoffs,
        "model": "HistGradientBoostingClassifier on older cutoffs, isotonic calibration on the"
        " newest training cutoff",
        "auc": first["model"]["auc"],
        "brier": first["model"]["brier"],
        "splits": results,
    }
