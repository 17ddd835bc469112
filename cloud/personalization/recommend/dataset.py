"""Reads the training data of the recommender from the database, in bulk, once per rebuild."""

from __future__ import annotations

import numpy as np

from storelens.cloud.db import Database
from storelens.cloud.personalization.recommend.model import Catalog, Dwells, Interactions

_EXCLUDED_ORDER_STATUSES = ("cancelled", "unfulfillable")


def load_catalog(db: Database) -> Catalog:
    rows = db.query("SELECT sku, name, category, active, consumable FROM products ORDER BY sku")
    return Catalog(
        skus=[r["sku"] for r in rows],
        names=[r["name"] for r in rows],
        categories=[r["category"] for r in rows],
        active=np.array([bool(r["active"]) for r in rows], dtype=bool),
        consumable=np.array([bool(r["consumable"]) for r in rows], dtype=bool),
    )


def load_purchases(db: Database, *, since: float = 0.0, until: float | None = None) -> Interactions:
    """POS sale lines and online order lines in ``[since, until)``; online orders are
    attributed to the member directly or through the linked customer account."""
    until = float("inf") if until is None else until
    upper = 1e18 if until == float("inf") else until
    pos = db.query(
        "SELECT s.member_id AS member, i.sku, s.ts, i.qty, s.store, s.id AS basket FROM pos_sales s"
        " JOIN pos_sale_items i ON i.sale_id = s.id WHERE s.ts >= ? AND s.ts < ?",
        (since, upper),
    )
    marks = ", ".join("?" for _ in _EXCLUDED_ORDER_STATUSES)
    online = db.query(
        "SELECT COALESCE(o.member_id, a.member_id) AS member, i.sku, o.created_at AS ts, i.qty,"
        " NULL AS store, o.id AS basket FROM online_orders o"
        " JOIN online_order_items i ON i.order_id = o.id"
        " LEFT JOIN customer_accounts a ON a.id = o.customer_account"
        f" WHERE o.created_at >= ? AND o.created_at < ? AND o.status NOT IN ({marks})",
        (since, upper, *_EXCLUDED_ORDER_STATUSES),
    )
    return Interactions.from_rows(
        [(r["member"], r["sku"], r["ts"], r["qty"], r["store"], r["basket"]) for r in pos + online]
    )


# Online browsing counts as browsing, weaker than in store: a product view weighs like half a
# minute in that category's zone, a cart add like two (a zone stay is typically minutes).
ONLINE_BROWSE_S = {"product_viewed": 30.0, "cart_add": 120.0}


def load_dwells(db: Database, *, since: float = 0.0, until: float | None = None) -> Dwells:
    """Linked zone visits mapped to the category of the zone in that store, and the web
    shop's product views and cart adds (`interactions`) mapped to the product's category, so
    the one customer view covers both channels."""
    upper = 1e18 if until is None else until
    rows = db.query(
        "SELECT m.id AS member, z.category, e.ts, e.dwell_s FROM events e"
        " JOIN members m ON m.token = e.member"
        " JOIN store_zones z ON z.store = e.store AND z.zone = e.zone"
        " WHERE e.type = 'zone_visit' AND e.member IS NOT NULL AND e.ts >= ? AND e.ts < ?",
        (since, upper),
    )
    kinds = list(ONLINE_BROWSE_S)
    online = db.query(
        "SELECT i.member_id AS member, COALESCE(i.category, p.category) AS category,"
        " i.at AS ts, i.type FROM interactions i LEFT JOIN products p ON p.sku = i.sku"
        f" WHERE i.type IN ({', '.join('?' for _ in kinds)}) AND i.at >= ? AND i.at < ?",
        (*kinds, since, upper),
    )
    return Dwells.from_rows(
        [(r["member"], r["category"], r["ts"], r["dwell_s"] or 0.0) for r in rows]
        + [
            (r["member"], r["category"], r["ts"], ONLINE_BROWSE_S[r["type"]])
            for r in online
            if r["category"]
        ]  # fmt: skip
    )


def load_online_interest(
    db: Database, member_id: str, *, since: float, until: float
) -> list[tuple[str, str, float]]:
    """(sku, type, at) of the member's online product views and cart adds in ``[since,
    until)``, without those of an item the member bought at or after that time: a view that
    ended in a purchase is no longer an open interest."""
    kinds = list(ONLINE_BROWSE_S)
    rows = db.query(
        "SELECT sku, type, at FROM interactions WHERE member_id = ?"
        f" AND type IN ({', '.join('?' for _ in kinds)}) AND at >= ? AND at < ?"
        " AND sku IS NOT NULL",
        (member_id, *kinds, since, until),
    )
    if not rows:
        return []
    skus = sorted({r["sku"] for r in rows})
    excluded = _EXCLUDED_ORDER_STATUSES
    marks = ", ".join("?" for _ in skus)
    last_bought: dict[str, float] = {}
    for r in db.query(
        "SELECT i.sku, max(s.ts) AS ts FROM pos_sales s JOIN pos_sale_items i"
        f" ON i.sale_id = s.id WHERE s.member_id = ? AND s.ts >= ? AND i.sku IN ({marks})"
        " GROUP BY i.sku",
        (member_id, since, *skus),
    ) + db.query(
        "SELECT i.sku, max(o.created_at) AS ts FROM online_orders o"
        " JOIN online_order_items i ON i.order_id = o.id"
        " LEFT JOIN customer_accounts a ON a.id = o.customer_account"
        " WHERE COALESCE(o.member_id, a.member_id) = ? AND o.created_at >= ?"
        f" AND i.sku IN ({marks}) AND o.status NOT IN ({', '.join('?' for _ in excluded)})"
        " GROUP BY i.sku",
        (member_id, since, *skus, *excluded),
    ):
        last_bought[r["sku"]] = max(last_bought.get(r["sku"], -1.0), float(r["ts"]))
    return [
        (r["sku"], r["type"], float(r["at"]))
        for r in rows
        if float(r["at"]) > last_bought.get(r["sku"], -1.0)
    ]
