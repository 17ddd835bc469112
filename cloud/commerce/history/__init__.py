"""Purchase history from a retailer's other systems: read order-line CSVs (with real-data
rules and rejects), import them as members, products, orders, POS sales and returns, and load
order lines back as columns for the models that learn from them."""

from storelens.cloud.commerce.history.importer import ImportSummary, import_history
from storelens.cloud.commerce.history.lines import OrderLines, load_order_lines
from storelens.cloud.commerce.history.reader import (
    HistoryFile,
    HistoryFormatError,
    HistoryLine,
    HistoryRules,
    parse_mapping,
    read_history,
)

__all__ = [
    "HistoryFile",
    "HistoryFormatError",
    "HistoryLine",
    "HistoryRules",
    "ImportSummary",
    "OrderLines",
    "import_history",
    "load_order_lines",
    "parse_mapping",
    "read_history",
]
