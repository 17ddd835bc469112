"""Purchase-history import on both databases: members, products, orders, POS sales and
returns from one CSV; real-data rules and rejects; re-import changes nothing; forget-me."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storelens.assets import AssetError, find_asset
from storelens.cli import app
from storelens.cloud.commerce import catalog, members, stores
from storelens.cloud.commerce.history import (
    HistoryFormatError,
    HistoryRules,
    import_history,
    load_order_lines,
    parse_mapping,
    read_history,
)
from storelens.cloud.personalization.recommend.dataset import load_purchases

CSV = """order_id,customer_id,sku,quantity,unit_price,ordered_at,product_name,store,note
A1,c1,TEA-1,2,4.5,2024-03-01T10:00:00,Green tea,,x
A1,c1,CUP-1,1,9.0,2024-03-01T10:00:00,Mug,,
A2,12.0,TEA-1,1,4.5,2024-03-02 11:00:00,Green tea,s1,
A3,,CUP-1,3,9.0,2024-03-03 12:00:00,Mug,,
A4,c1,TEA-1,-1,4.5,2024-03-04 12:00:00,Green tea,,
CA5,12,CUP-1,1,9.0,2024-03-05 12:00:00,Mug,s1,
A6,c1,POST,1,15.0,2024-03-05 12:00:00,Postage,,
A6,c1,FEE-9,1,1.0,2024-03-05 12:00:00,Fee,,
A7,c3,TEA-1,abc,4.5,2024-03-06 12:00:00,Green tea,,
A7,c3,TEA-1,0,4.5,2024-03-06 12:00:00,Green tea,,
A7,c3,TEA-1,1,-4.5,2024-03-06 12:00:00,Green tea,,
A7,c3,TEA-1,1,4.5,yesterday,Green tea,,
A7,c3,BAD SKU,1,4.5,2024-03-06 12:00:00,Broken,,
,c3,TEA-1,1,4.5,2024-03-06 12:00:00,Green tea,,
A8,c3,TEA-1,1,4.5,2024-03-06 12:00:00,Green tea,s9,
A9,c3,NEW-1,1,2.0,2024-03-07 12:00:00,,,
"""
RETAIL_HISTORY = "data/online-retail-2010-12_2011-06.csv"
RULES = HistoryRules(
    exclude_skus=frozenset({"POST"}), exclude_pattern=re.compile(r"FEE-\d+"), cancelled_prefix="C"
)


def _shop(db) -> None:
    stores.upsert_store(db, stores.Store(id="s1", name="One", lat=48.85, lon=2.35))
    catalog.upsert_products(
        db, [catalog.Product(sku="TEA-1", name="Tea (catalog)", category="grocery", price=5)]
    )


def _counts(db) -> dict[str, int]:
    tables = ("members", "member_consent", "customer_accounts", "products", "online_orders",
              "online_order_items", "pos_sales", "pos_sale_items", "history_returns")  # fmt: skip
    return {t: db.scalar(f"SELECT count(*) FROM {t}") for t in tables}


def test_history_import_end_to_end(db) -> None:
    _shop(db)
    history = read_history(CSV.encode(), rules=RULES)
    summary = import_history(db, history)
    assert summary.rejected == {
        "excluded sku": 2, "bad quantity": 1, "zero quantity": 1, "negative unit_price": 1,
        "bad ordered_at": 1, "invalid sku": 1, "missing order_id": 1, "unknown store s9": 1,
    }  # fmt: skip
    assert [(r.line, r.reason) for r in history.rejects][:3] == [
        (8, "excluded sku"), (9, "excluded sku"), (10, "bad quantity"),
    ]  # fmt: skip
    assert summary.members == 3 and summary.products == 2  # CUP-1, NEW-1; TEA-1 existed
    assert (summary.online_orders, summary.pos_sales, summary.returns) == (3, 1, 2)
    # Members with the external ID as their account, consent unknown = off.
    m1 = members.member_by_account(db, "c1")
    assert m1 is not None and m1["accounts"] == ["c1"] and not m1["marketing"]
    assert members.member_by_account(db, "12") is not None  # "12.0" is customer 12
    # Unknown SKUs get their names, known products keep theirs.
    assert catalog.get_product(db, "CUP-1")["name"] == "Mug"
    assert catalog.get_product(db, "NEW-1")["name"] == "NEW-1"
    assert catalog.get_product(db, "TEA-1")["name"] == "Tea (catalog)"
    # Store lines are POS sales, the rest online orders; stock is not moved by history.
    sale = db.query_one("SELECT * FROM pos_sales")
    assert sale["store"] == "s1" and sale["member_id"] == members.member_by_account(db, "12")["id"]
    assert stores.get_inventory(db, "s1") == []
    # Returns (negative quantity; cancelled order prefix) are not purchases.
    purchases = load_purchases(db)
    assert sorted(purchases.sku) == ["CUP-1", "CUP-1", "NEW-1", "TEA-1", "TEA-1"]
    assert "" in set(purchases.member)  # the anonymous line still counts for best sellers
    lines = load_order_lines(db)
    assert int(lines.is_return.sum()) == 2 and set(lines.category) >= {"grocery"}
    assert lines.amount[lines.is_return].sum() == pytest.approx(-13.5)
    # Importing the same file again changes nothing.
    before = _counts(db)
    again = import_history(db, read_history(CSV.encode(), rules=RULES))
    assert _counts(db) == before
    assert again.already_imported == again.lines and again.members == again.products == 0
    # Forget-me detaches the member's returns too.
    members.forget(db, m1["id"])
    assert db.scalar("SELECT count(*) FROM history_returns WHERE customer_account = 'c1'") == 0


def test_mapping_and_file_errors() -> None:
    theirs = "Inv,Cust,Code,Qty,Price,When\nX1,7,AB-1,2,1.5,1700000000\n"
    mapping = parse_mapping("order_id=Inv,customer_id=Cust,sku=Code,quantity=Qty,"
                            "unit_price=Price,ordered_at=When")  # fmt: skip
    (line,) = read_history(theirs.encode(), mapping=mapping).lines
    assert (line.order_id, line.customer_id, line.quantity, line.ordered_at) == (
        "X1", "7", 2, 1700000000.0,
    )  # fmt: skip
    with pytest.raises(HistoryFormatError, match="missing columns"):
        read_history(theirs.encode())
    with pytest.raises(HistoryFormatError, match="no column 'Nope'"):
        read_history(theirs.encode(), mapping={**mapping, "store": "Nope"})
    with pytest.raises(HistoryFormatError, match="unknown canonical"):
        parse_mapping("basket=Inv")
    with pytest.raises(HistoryFormatError, match="empty file"):
        read_history(b"")
    short = read_history(b"order_id,customer_id,sku,quantity,unit_price,ordered_at\nA,B\n")
    assert [r.reason for r in short.rejects] == ["wrong number of fields"]


def test_cli_import_history(tmp_path: Path, db_url: str) -> None:
    from storelens.cloud.db import connect

    data = tmp_path / "orders.csv"
    data.write_text(CSV.replace("order_id,customer_id", "Invoice,customer_id"))
    args = ["cloud", "import", "history", str(data), "--db", db_url, "--map", "order_id=Invoice",
            "--exclude-skus", "POST", "--exclude-pattern", r"FEE-\d+",
            "--cancelled-prefix", "C"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rejected_total"] == 11 and summary["members"] == 2  # no store s1 here
    rejects = (tmp_path / "orders.csv.rejects.csv").read_text().splitlines()
    assert rejects[0].startswith("line,reason,Invoice") and len(rejects) == 12
    assert rejects[1].startswith("4,unknown store s1,A2,12.0,TEA-1,1,4.5,2024-03-02 11:00:00")
    database = connect(db_url)
    try:
        assert database.scalar("SELECT count(*) FROM online_orders") == 3
    finally:
        database.close()
    bad = CliRunner().invoke(app, ["cloud", "import", "history", str(data), "--db", db_url])
    assert bad.exit_code == 1 and "missing columns order_id" in bad.output


@pytest.mark.slow
def test_real_retail_history_imports_in_under_a_minute(tmp_path: Path) -> None:
    try:
        source = find_asset(RETAIL_HISTORY, download=False)
    except AssetError:
        pytest.skip("retail history asset not present")
    args = ["cloud", "import", "history", str(source), "--db", f"sqlite:///{tmp_path / 'h.db'}",
            "--map", "order_id=InvoiceNo,customer_id=CustomerID,sku=StockCode,"
            "quantity=Quantity,unit_price=UnitPrice,ordered_at=InvoiceDate,"
            "product_name=Description", "--exclude-pattern", "POST|DOT|M|C2|BANK CHARGES",
            "--cancelled-prefix", "C"]  # fmt: skip
    started = time.perf_counter()
    result = CliRunner().invoke(app, args)
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["members"] > 2000 and summary["returns"] > 4000
    assert summary["rejected"]["excluded sku"] > 1000
    assert elapsed < 60
