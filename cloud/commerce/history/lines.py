"""Order lines as columns, for models that learn from purchase history (recommender,
propensity): POS sale lines, online order lines and returns, with each item's category."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from storelens.cloud.db import Database

# Orders that never became purchases; the recommender's loader skips the same ones.
EXCLUDED_ORDER_STATUSES = ("cancelled", "unfulfillable")


@dataclass(frozen=True)
class OrderLines:
    """Parallel arrays, one entry per line, oldest first."""

    member: np.ndarray  # member ID (str objects; '' when anonymous)
    order: np.ndarray  # sale or order ID (str objects; the source order for returns)
    sku: np.ndarray  # str objects
    category: np.ndarray  # str objects ('' for SKUs no longer in the catalog)
    ts: np.ndarray  # float epoch seconds
    qty: np.ndarray  # float units, always positive
    unit_price: np.ndarray  # float
    store: np.ndarray  # str objects; '' online
    is_return: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.sku)

    @property
    def amount(self) -> np.ndarray:
        """Money per line, negative for returns (monetary features net of returns)."""
        return np.where(self.is_return, -1.0, 1.0) * self.qty * self.unit_price


def load_order_lines(
    db: Database, *, since: float = 0.0, until: float | None = None, returns: bool = True
) -> OrderLines:
    """Every purchase line (and, with ``returns``, return line) in ``[since, until)``."""
    upper = 1e18 if until is None else until
    marks = ", ".join("?" for _ in EXCLUDED_ORDER_STATUSES)
    sql = [
        "SELECT s.member_id AS member, s.id AS ord, i.sku, s.ts, i.qty, i.unit_price,"
        " s.store, 0 AS is_return FROM pos_sales s JOIN pos_sale_items i ON i.sale_id = s.id"
        " WHERE s.ts >= ? AND s.ts < ?",
        "SELECT COALESCE(o.member_id, a.member_id) AS member, o.id AS ord, i.sku,"
        " o.created_at AS ts, i.qty, i.unit_price, NULL AS store, 0 AS is_return"
        " FROM online_orders o JOIN online_order_items i ON i.order_id = o.id"
        " LEFT JOIN customer_accounts a ON a.id = o.customer_account"
        f" WHERE o.created_at >= ? AND o.created_at < ? AND o.status NOT IN ({marks})",
    ]
    params: list[object] = [since, upper, since, upper, *EXCLUDED_ORDER_STATUSES]
    if returns:
        sql.append(
            "SELECT member_id AS member, order_ref AS ord, sku, returned_at AS ts, qty,"
            " unit_price, store, 1 AS is_return FROM history_returns"
            " WHERE returned_at >= ? AND returned_at < ?"
        )
        params += [since, upper]
    rows = db.query(" UNION ALL ".join(sql), params)
    rows.sort(key=lambda r: r["ts"])
    categories = {r["sku"]: r["category"] for r in db.query("SELECT sku, category FROM products")}

    def column(name: str) -> np.ndarray:
        return np.array([r[name] or "" for r in rows], dtype=object)

    skus = column("sku")
    return OrderLines(
        member=column("member"),
        order=column("ord"),
        sku=skus,
        category=np.array([categories.get(s, "") for s in skus], dtype=object),
        ts=np.array([r["ts"] for r in rows], dtype=float),
        qty=np.array([r["qty"] for r in rows], dtype=float),
        unit_price=np.array([r["unit_price"] for r in rows], dtype=float),
        store=column("store"),
        is_return=np.array([bool(r["is_return"]) for r in rows], dtype=bool),
    )
