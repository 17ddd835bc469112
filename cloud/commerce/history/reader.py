"""Reads a retailer's order-line CSV into clean purchase and return lines, and rejects.

One row is one order line. The canonical columns are ``order_id, customer_id, sku, quantity,
unit_price, ordered_at``, optionally ``product_name, category, store, channel, cancelled``;
any other CSV is read through a mapping ``canonical -> their column``. Every row ends up in
exactly one place: a purchase line, a return line, or a reject with its file line number and
reason. Nothing here touches a database, so the importer and the backtest read files alike.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path

ONLINE_CHANNELS = frozenset({"online", "web", "webshop", "ecommerce", "e-commerce", "app"})
REQUIRED = ("order_id", "customer_id", "sku", "quantity", "unit_price", "ordered_at")
OPTIONAL = ("product_name", "category", "store", "channel", "cancelled")
CANONICAL = REQUIRED + OPTIONAL

# The catalog's own SKU rule (storelens.cloud.commerce.catalog.Sku): a history line for a SKU the
# catalog could never hold is rejected here, not half-imported.
_SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_TRUE = frozenset({"1", "true", "yes", "y", "t", "cancelled", "canceled", "returned"})
# Spreadsheet and pandas exports turn integer IDs into floats ("17850.0").
_FLOAT_ID = re.compile(r"^(\d+)\.0+$")


class HistoryFormatError(ValueError):
    """The file as a whole cannot be read (missing columns, bad mapping, not a CSV)."""


@dataclass(frozen=True)
class HistoryRules:
    """Real-data rules: which lines are not products, and how cancellations are marked."""

    exclude_skus: frozenset[str] = frozenset()  # exact SKUs that are fees, postage, ...
    exclude_pattern: re.Pattern[str] | None = None  # or a regular expression (full match)
    cancelled_prefix: str | None = None  # order IDs starting with it are cancellations
    timezone: tzinfo = UTC  # for timestamps without an offset
    date_format: str | None = None  # strptime format; default ISO 8601 or epoch seconds
    known_stores: frozenset[str] | None = None  # store lines for others are rejected

    def with_stores(self, stores: Iterable[str]) -> HistoryRules:
        return replace(self, known_stores=frozenset(stores))

    def excluded(self, sku: str) -> bool:
        if sku in self.exclude_skus:
            return True
        return self.exclude_pattern is not None and self.exclude_pattern.fullmatch(sku) is not None


@dataclass(frozen=True, slots=True)
class HistoryLine:
    line: int  # line number in the file (the header is line 1)
    order_id: str
    customer_id: str | None  # None: anonymous (still counts for best sellers)
    sku: str
    quantity: int  # always positive; `is_return` tells the direction
    unit_price: float
    ordered_at: float  # epoch seconds
    is_return: bool
    product_name: str | None = None
    category: str | None = None
    store: str | None = None
    channel: str | None = None

    @property
    def in_store(self) -> bool:
        """A POS line: it names a store and its channel is not an online one."""
        return bool(self.store) and (self.channel or "") not in ONLINE_CHANNELS


@dataclass(frozen=True, slots=True)
class Reject:
    line: int
    reason: str
    row: dict[str, str]


@dataclass
class HistoryFile:
    lines: list[HistoryLine] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # the file's own header

    @property
    def purchases(self) -> list[HistoryLine]:
        return [x for x in self.lines if not x.is_return]

    @property
    def returns(self) -> list[HistoryLine]:
        return [x for x in self.lines if x.is_return]

    def reject_counts(self) -> Counter[str]:
        return Counter(r.reason for r in self.rejects)

    def add_rejects(self, rejected: dict[int, str]) -> None:
        """Move lines (by line number) from `lines` to `rejects` with the given reasons."""
        kept = []
        for x in self.lines:
            reason = rejected.get(x.line)
            if reason is None:
                kept.append(x)
            else:
                self.rejects.append(Reject(x.line, reason, _as_row(x)))
        self.lines = kept
        self.rejects.sort(key=lambda r: r.line)

    def write_rejects(self, path: Path) -> None:
        """CSV of every rejected row: its line number, the reason, then the row as read."""
        path.parent.mkdir(parents=True, exist_ok=True)
        extra = sorted({k for r in self.rejects for k in r.row} - set(self.columns))
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["line", "reason", *self.columns, *extra])
            for r in self.rejects:
                writer.writerow(
                    [r.line, r.reason, *(r.row.get(c, "") for c in self.columns + extra)]
                )


def _as_row(x: HistoryLine) -> dict[str, str]:
    return {k: "" if getattr(x, k) is None else str(getattr(x, k)) for k in CANONICAL[:-1]}


def parse_mapping(spec: str | None) -> dict[str, str]:
    """``canonical=theirs,...`` -> {canonical: theirs}; unknown canonical names are errors."""
    mapping: dict[str, str] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        name, sep, theirs = part.partition("=")
        name, theirs = name.strip(), theirs.strip()
        if not sep or not theirs:
            raise HistoryFormatError(f"bad --map entry {part!r}: expected canonical=theirs")
        if name not in CANONICAL:
            raise HistoryFormatError(
                f"unknown canonical column {name!r} in --map (one of {', '.join(CANONICAL)})"
            )
        mapping[name] = theirs
    return mapping


class _Timestamps:
    """Parses timestamps, caching each distinct text (an order's lines share one)."""

    def __init__(self, rules: HistoryRules) -> None:
        self.rules = rules
        self.cache: dict[str, float | None] = {}

    def __call__(self, text: str) -> float | None:
        value = self.cache.get(text, False)
        if value is False:
            value = self.cache[text] = self._parse(text)
        return value  # type: ignore[return-value]

    def _parse(self, text: str) -> float | None:
        try:
            if self.rules.date_format:
                parsed = datetime.strptime(text, self.rules.date_format)
            else:
                try:
                    return float(text)
                except ValueError:
                    parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.rules.timezone)
        return parsed.timestamp()


def _clean_id(text: str) -> str:
    m = _FLOAT_ID.match(text)
    return m.group(1) if m else text


def read_history(
    source: Path | str | bytes, *, mapping: dict[str, str] | None = None,
    rules: HistoryRules | None = None,
) -> HistoryFile:  # fmt: skip
    """Read a whole file (path, or its bytes); raises HistoryFormatError only for file-level
    problems, every row-level problem becomes a reject."""
    rules = rules or HistoryRules()
    if isinstance(source, bytes):
        text_io: io.TextIOBase = io.StringIO(source.decode("utf-8-sig"))
        return _read(text_io, mapping or {}, rules)
    with Path(source).open(newline="", encoding="utf-8-sig", errors="replace") as f:
        return _read(f, mapping or {}, rules)


def _columns(header: list[str], mapping: dict[str, str]) -> dict[str, int]:
    """Canonical name -> column position; a mapped name must exist in the header."""
    positions = {name.strip(): i for i, name in enumerate(header)}
    found: dict[str, int] = {}
    for name in CANONICAL:
        theirs = mapping.get(name, name)
        if theirs in positions:
            found[name] = positions[theirs]
        elif name in mapping:
            raise HistoryFormatError(f"--map {name}={theirs}: no column {theirs!r} in the file")
    missing = [n for n in REQUIRED if n not in found]
    if missing:
        raise HistoryFormatError(
            f"missing columns {', '.join(missing)} (the file has {', '.join(header)};"
            " use --map canonical=theirs)"
        )
    return found


def _read(f: io.TextIOBase, mapping: dict[str, str], rules: HistoryRules) -> HistoryFile:
    reader = csv.reader(f)
    try:
        header = next(reader)
    except StopIteration:
        raise HistoryFormatError("empty file: no header row") from None
    except csv.Error as exc:
        raise HistoryFormatError(f"not a CSV file: {exc}") from None
    cols = _columns(header, mapping)
    out = HistoryFile(columns=header)
    timestamps = _Timestamps(rules)
    for line, row in _rows(reader):
        parsed = _line(line, row, len(header), cols, rules, timestamps)
        if isinstance(parsed, HistoryLine):
            out.lines.append(parsed)
        else:
            out.rejects.append(Reject(line, parsed, dict(zip(header, row, strict=False))))
    return out


def _rows(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:  # a broken quote swallows the rest of the line: reject, go on
            yield reader.line_num, []  # type: ignore[attr-defined]
            continue
        if row:
            yield reader.line_num, row  # type: ignore[attr-defined]


def _line(
    line: int, row: list[str], width: int, cols: dict[str, int], rules: HistoryRules,
    timestamps: _Timestamps,
) -> HistoryLine | str:  # fmt: skip
    """A clean line, or the reason the row is rejected."""
    if len(row) != width:
        return "wrong number of fields"

    def get(name: str) -> str:
        i = cols.get(name)
        return row[i].strip() if i is not None else ""

    order_id, sku = get("order_id"), get("sku")
    if not order_id:
        return "missing order_id"
    if not sku:
        return "missing sku"
    if rules.excluded(sku):
        return "excluded sku"
    if not _SKU.match(sku):
        return "invalid sku"
    try:
        qty_f = float(get("quantity"))
    except ValueError:
        return "bad quantity"
    if qty_f != qty_f or qty_f in (float("inf"), float("-inf")) or qty_f != int(qty_f):
        return "bad quantity"
    quantity = int(qty_f)
    if quantity == 0:
        return "zero quantity"
    try:
        price = float(get("unit_price"))
    except ValueError:
        return "bad unit_price"
    if price != price or price in (float("inf"), float("-inf")):
        return "bad unit_price"
    if price < 0:
        return "negative unit_price"
    ts = timestamps(get("ordered_at"))
    if ts is None:
        return "bad ordered_at"
    cancelled = get("cancelled").lower() in _TRUE or bool(
        rules.cancelled_prefix and order_id.startswith(rules.cancelled_prefix)
    )
    customer = _clean_id(get("customer_id")) or None
    parsed = HistoryLine(
        line=line,
        order_id=order_id,
        customer_id=customer,
        sku=sku,
        quantity=abs(quantity),
        unit_price=price,
        ordered_at=ts,
        is_return=cancelled or quantity < 0,
        product_name=get("product_name") or None,
        category=get("category") or None,
        store=get("store") or None,
        channel=get("channel").lower() or None,
    )
    if (
        rules.known_stores is not None
        and parsed.in_store
        and parsed.store not in rules.known_stores
    ):
        return f"unknown store {parsed.store}"
    return parsed
