"""Writes a read history file into the cloud's own tables, in bulk and idempotently.

Customers become members with a linked online account (their external ID; no card), unknown
SKUs become products, lines with a store go to POS sales and the rest to online orders, and
returns go to `history_returns`. Row IDs are derived from the file's order IDs, so importing
the same file again finds every order already there and writes nothing. History is a record
of the past: it does not move stock, route orders or award engagement points.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from storelens.cloud.commerce import members as member_domain
from storelens.cloud.commerce.history.reader import HistoryFile, HistoryLine
from storelens.cloud.db import Database, migrations

MIGRATIONS = migrations(
    "history",
    [
        """
        CREATE TABLE history_returns (
            id TEXT PRIMARY KEY,
            order_ref TEXT NOT NULL,
            member_id TEXT,
            customer_account TEXT,
            sku TEXT NOT NULL,
            qty INTEGER NOT NULL,
            unit_price {REAL} NOT NULL,
            store TEXT,
            returned_at {REAL} NOT NULL,
            created_at {REAL} NOT NULL
        );
        CREATE INDEX history_returns_member ON history_returns (member_id, returned_at);
        CREATE INDEX history_returns_sku ON history_returns (sku)
        """
    ],
)

DEFAULT_CATEGORY = "uncategorised"
BATCH = 5000  # rows per executemany: progress moves, memory stays flat

Progress = Callable[[int], None]
"""Called with the number of file lines just written."""


@dataclass
class ImportSummary:
    lines: int = 0  # lines read without a reject
    purchase_lines: int = 0
    return_lines: int = 0
    online_orders: int = 0  # new in this run
    pos_sales: int = 0
    returns: int = 0
    members: int = 0
    products: int = 0
    already_imported: int = 0  # lines of orders an earlier import wrote
    rejected: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "rejected"}
        out["rejected"] = dict(sorted(self.rejected.items()))
        out["rejected_total"] = sum(self.rejected.values())
        return out


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def order_row_id(order_id: str) -> str:
    """The online order / POS sale ID of a history order (stable across imports)."""
    return "h_" + _digest("order", order_id)[:24]


def member_id_for(customer_id: str) -> str:
    return "m_h" + _digest("member", customer_id)[:15]


def _member_token(customer_id: str) -> str:
    # members.token is unique and not null; card pseudonyms are hex digests, so this prefixed
    # value can never equal one and in-store events never link to an imported customer.
    return "account:" + _digest("token", customer_id)[:32]


def _chunks(rows: Sequence[Any], size: int = BATCH) -> Iterable[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def known_stores(db: Database) -> set[str]:
    """Pass these to `HistoryRules.with_stores` so the reader rejects lines of other stores."""
    return {r["id"] for r in db.query("SELECT id FROM stores")}


def _reject_unknown_stores(db: Database, history: HistoryFile) -> None:
    # A file read without the store list: same rule here (rejects then carry canonical names).
    known = known_stores(db)
    bad = {x.line: f"unknown store {x.store}" for x in history.lines
           if x.in_store and x.store not in known}  # fmt: skip
    if bad:
        history.add_rejects(bad)


def import_history(
    db: Database, history: HistoryFile, *, currency: str = "EUR",
    progress: Progress | None = None,
) -> ImportSummary:  # fmt: skip
    """Write ``history`` (after `read_history`); returns what was new. Rows are written in
    batches, each batch in its own transaction, so a large file never holds one huge lock."""
    progress = progress or (lambda _n: None)
    _reject_unknown_stores(db, history)
    summary = ImportSummary(rejected=history.reject_counts())
    lines = history.lines
    summary.lines = len(lines)
    summary.return_lines = sum(1 for x in lines if x.is_return)
    summary.purchase_lines = summary.lines - summary.return_lines
    now = time.time()

    summary.products = _import_products(db, lines, now)
    account_member = _import_members(db, lines, now)
    summary.members = account_member.pop("", 0)  # type: ignore[arg-type]

    purchases = [x for x in lines if not x.is_return]
    orders: dict[str, list[HistoryLine]] = {}
    for x in purchases:
        orders.setdefault(x.order_id, []).append(x)
    existing = _existing_ids(db, [order_row_id(o) for o in orders])
    online, pos = [], []
    for order_id, order_lines in orders.items():
        if order_row_id(order_id) in existing:
            summary.already_imported += len(order_lines)
            progress(len(order_lines))
        elif order_lines[0].in_store:
            pos.append(order_lines)
        else:
            online.append(order_lines)
    for batch in _chunks(online, 500):
        summary.online_orders += _write_online(db, batch, account_member, currency)
        progress(sum(len(o) for o in batch))
    for batch in _chunks(pos, 500):
        summary.pos_sales += _write_pos(db, batch, account_member)
        progress(sum(len(o) for o in batch))
    new_returns, seen = _return_rows(db, [x for x in lines if x.is_return], account_member, now)
    summary.already_imported += seen
    progress(seen)
    for batch in _chunks(new_returns):
        summary.returns += db.insert_many("history_returns", batch, ignore_conflicts_on="id")
        progress(len(batch))
    return summary


def _existing_ids(db: Database, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(ids, 900):  # under SQLite's bound-parameter limit
        marks = ", ".join("?" for _ in chunk)
        for table in ("online_orders", "pos_sales"):
            found |= {r["id"] for r in db.query(f"SELECT id FROM {table} WHERE id IN ({marks})",
                                                 chunk)}  # fmt: skip
    return found


def _import_products(db: Database, lines: list[HistoryLine], now: float) -> int:
    """Unknown SKUs become products: the latest name and category seen, the latest price."""
    known = {r["sku"] for r in db.query("SELECT sku FROM products")}
    new: dict[str, dict[str, Any]] = {}
    for x in sorted((x for x in lines if x.sku not in known), key=lambda x: x.ordered_at):
        p = new.setdefault(x.sku, {"sku": x.sku, "name": x.sku, "category": DEFAULT_CATEGORY,
                                   "brand": "", "price": 0.0, "consumable": 0, "active": 1,
                                   "updated_at": now})  # fmt: skip
        if x.product_name:
            p["name"] = x.product_name[:200]
        if x.category:
            p["category"] = x.category[:64]
        if not x.is_return:
            p["price"] = x.unit_price
    rows = list(new.values())
    written = 0
    for batch in _chunks(rows):
        written += db.insert_many("products", batch, ignore_conflicts_on="sku")
    return written


def _import_members(db: Database, lines: list[HistoryLine], now: float) -> dict[str, Any]:
    """Account (external customer ID) -> member ID, creating both where missing. The count of
    members created is returned under the key ''.

    Consent is unknown for imported customers, so both flags start off (the conservative
    default): nothing is linked in store and nothing is marketed until they say yes."""
    customers = sorted({x.customer_id for x in lines if x.customer_id})
    linked: dict[str, str | None] = {}
    for chunk in _chunks(customers, 900):
        marks = ", ".join("?" for _ in chunk)
        for r in db.query(f"SELECT id, member_id FROM customer_accounts WHERE id IN ({marks})",
                          chunk):  # fmt: skip
            linked[r["id"]] = r["member_id"]
    result: dict[str, Any] = {c: linked[c] for c in customers if linked.get(c)}
    missing = [c for c in customers if not linked.get(c)]
    members = [{"id": member_id_for(c), "token": _member_token(c), "key_id": "account",
                "name": None, "tier": "standard", "created_at": now} for c in missing]  # fmt: skip
    consent = [{"member_id": m["id"], "tracking": 0, "marketing": 0, "updated_at": now}
               for m in members]  # fmt: skip
    created = 0
    with db.transaction():
        for batch in _chunks(members):
            created += db.insert_many("members", batch, ignore_conflicts_on="id")
        for batch in _chunks(consent):
            db.insert_many("member_consent", batch, ignore_conflicts_on="member_id")
        new_accounts = [(c, member_id_for(c), now, now) for c in missing if c not in linked]
        for batch in _chunks(new_accounts):
            db.executemany(
                "INSERT INTO customer_accounts (id, member_id, created_at, linked_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                batch,
            )
        unlinked = [(member_id_for(c), now, c) for c in missing if c in linked]
        if unlinked:
            db.executemany(
                "UPDATE customer_accounts SET member_id = ?, linked_at = ? WHERE id = ?", unlinked
            )
        if created:
            member_domain.bump_consent_version(db)
    result.update({c: member_id_for(c) for c in missing})
    result[""] = created
    return result


def _order_items(order_lines: list[HistoryLine], row_id: str) -> list[tuple[Any, ...]]:
    return [(row_id, n, x.sku, x.quantity, x.unit_price) for n, x in enumerate(order_lines, 1)]


def _total(order_lines: list[HistoryLine]) -> float:
    return round(sum(x.quantity * x.unit_price for x in order_lines), 2)


def _write_online(
    db: Database, orders: list[list[HistoryLine]], account_member: dict[str, Any], currency: str
) -> int:
    heads, items = [], []
    for order_lines in orders:
        first = order_lines[0]
        row_id = order_row_id(first.order_id)
        account = first.customer_id
        heads.append(
            (row_id, first.order_id, account, account_member.get(account) if account else None,
             "delivered", "ship", first.store, _total(order_lines), currency,
             first.ordered_at, first.ordered_at)
        )  # fmt: skip
        items += _order_items(order_lines, row_id)
    with db.transaction():
        new = db.executemany(
            "INSERT INTO online_orders (id, external_id, customer_account, member_id, status,"
            " fulfillment_type, pickup_store, total, currency, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            heads,
        )
        db.executemany(
            "INSERT INTO online_order_items (order_id, line, sku, qty, unit_price)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (order_id, line) DO NOTHING",
            items,
        )
    return new


def _write_pos(db: Database, sales: list[list[HistoryLine]], account_member: dict[str, Any]) -> int:
    heads, items = [], []
    for sale_lines in sales:
        first = sale_lines[0]
        row_id = order_row_id(first.order_id)
        member = account_member.get(first.customer_id) if first.customer_id else None
        heads.append((row_id, first.store, "history", first.ordered_at, member,
                      _total(sale_lines), first.ordered_at))  # fmt: skip
        items += _order_items(sale_lines, row_id)
    with db.transaction():
        new = db.executemany(
            "INSERT INTO pos_sales (id, store, device, ts, member_id, total, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            heads,
        )
        db.executemany(
            "INSERT INTO pos_sale_items (sale_id, line, sku, qty, unit_price)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (sale_id, line) DO NOTHING",
            items,
        )
    return new


def _return_rows(
    db: Database, returns: list[HistoryLine], account_member: dict[str, Any], now: float
) -> tuple[list[dict[str, Any]], int]:
    """New return rows, and how many lines an earlier import already wrote."""
    per_order: Counter[str] = Counter()
    rows = []
    for x in returns:
        per_order[x.order_id] += 1
        rows.append({
            "id": "r_" + _digest("return", x.order_id, str(per_order[x.order_id]))[:24],
            "order_ref": x.order_id,
            "member_id": account_member.get(x.customer_id) if x.customer_id else None,
            "customer_account": x.customer_id,
            "sku": x.sku,
            "qty": x.quantity,
            "unit_price": x.unit_price,
            "store": x.store if x.in_store else None,
            "returned_at": x.ordered_at,
            "created_at": now,
        })  # fmt: skip
    existing: set[str] = set()
    for chunk in _chunks([r["id"] for r in rows], 900):
        marks = ", ".join("?" for _ in chunk)
        existing |= {r["id"] for r in db.query(
            f"SELECT id FROM history_returns WHERE id IN ({marks})", chunk)}  # fmt: skip
    return [r for r in rows if r["id"] not in existing], len(existing)


def forget_member(db: Database, member_id: str, _token: str) -> None:
    """Forget-me: returns stay as accounting records without anything naming the person."""
    db.execute(
        "UPDATE history_returns SET member_id = NULL, customer_account = NULL WHERE member_id = ?",
        (member_id,),
    )


# Collected by cloud/db/schema.py into each process's Services (cloud/hooks.py).
HOOKS = [("member_forgotten", forget_member)]
