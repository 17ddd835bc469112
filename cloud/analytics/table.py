"""The shape every chart returns: a flat table (what the CSV holds) plus chart extras."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

Cell = str | int | float | None


@dataclass
class Table:
    """``columns`` and ``rows`` are the chart's numbers; ``extra`` carries what a plot needs on
    top (peak markers, previous-period totals, a grid) and is JSON only."""

    chart: str
    columns: list[str]
    rows: list[dict[str, Cell]]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, filters: dict[str, Any]) -> dict[str, Any]:
        return {
            "chart": self.chart,
            "filters": filters,
            "columns": self.columns,
            "rows": [{c: _finite(r.get(c)) for c in self.columns} for r in self.rows],
            **self.extra,
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        for row in self.rows:
            writer.writerow(
                ["" if row.get(c) is None else _finite(row.get(c)) for c in self.columns]
            )
        return out.getvalue()


def _finite(value: Cell) -> Cell:
    # JSON has no NaN/inf; a ratio over zero visitors is "no value", not a number.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def ratio(numerator: float, denominator: float, digits: int = 4) -> float | None:
    return round(numerator / denominator, digits) if denominator else None


def change(current: float, previous: float) -> float | None:
    """Relative change in percent against the previous period (None when it had nothing)."""
    return round(100.0 * (current - previous) / previous, 1) if previous else None
