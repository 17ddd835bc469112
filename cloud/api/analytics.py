"""Ops analytics as JSON and CSV: ``/api/v1/analytics/<chart>`` (add ``?format=csv`` or use
``/api/v1/analytics/<chart>.csv``). Both forms carry the same rows, so a downloaded CSV always
matches what the dashboard plotted."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from pydantic import BaseModel, Field

from storelens.cloud import analytics
from storelens.cloud.api.deps import Caller, get_db, get_sale_link, require_ops
from storelens.cloud.commerce import visit_sales
from storelens.cloud.db import Database
from storelens.contract.bounds import MAX_EPOCH_S, MIN_EPOCH_S

router = APIRouter(prefix="/analytics", tags=["analytics"])

CHART_DOCS = {
    "footfall-hourly": "Entrances, visits, visitors per local hour; each day's peak hour marked.",
    "footfall-daily": "Visitors per local day with the previous period; busiest days marked.",
    "peak-hours": "Average visitors per hour of the day; the busiest hours marked.",
    "dwell": "Per zone: visits, dwell quartiles, histogram bins; ranked by visits.",
    "heatmap": "Seconds of presence per 0.5 m floor cell of one store (the one selected, else "
    "the selected store with most visits).",
    "flows": "Moves from one zone straight to another, with entry and exit.",
    "paths": "The most common zone sequences of a visit.",
    "conversion": "POS transactions / visitors, revenue and basket per store and day; the "
    "period's rate counts the transactions of store-days that counted visitors.",
    "conversion-hourly": "POS transactions / visitors per hour of the day.",
    "member-share": "Share of finished visits linked to a member, per store and day.",
    "coupon-uplift": "Members offered coupons vs the holdout group: redemption and spend.",
    "staff": "Per store and day: visits devices flagged as staff (badge or staff-only zone), "
    "left out of every other chart.",
    "try-ons": "Per store and day: visits using a fitting room, session length, members' "
    "try-on to purchase conversion (the camera sees people, never garments).",
    "checkout-queue": "Per store and hour of day: people queueing at the tills (occupancy "
    "snapshots), checkouts, wait and service times.",
    "entry-to-checkout": "Per store and day: sales attached to a visit (member at the till, or "
    "by time at the till), unmatched, and minutes from entry to checkout.",
    "devices": "Each edge device: last seen, fps, cameras, outbox depth, losses.",
}


class ChartOut(BaseModel):
    chart: str
    filters: dict[str, Any] = Field(description="The filters applied (defaults filled in).")
    columns: list[str] = Field(description="Column order, as in the CSV.")
    rows: list[dict[str, Any]] = Field(description="The chart's numbers, one object per row.")

    model_config = {"extra": "allow"}


# The days a store's data can have (storelens.contract.bounds); the year 1 or 9999 made date
# arithmetic overflow into a 500.
FIRST_DAY = datetime.fromtimestamp(MIN_EPOCH_S, UTC).date()
LAST_DAY = datetime.fromtimestamp(MAX_EPOCH_S, UTC).date() - timedelta(days=1)


class Filters:
    """Query parameters shared by every chart."""

    def __init__(
        self,
        stores: str | None = Query(
            None, description="Comma-separated store IDs; empty = all stores.", max_length=2000
        ),
        start: date | None = Query(
            None,
            ge=FIRST_DAY,
            le=LAST_DAY,
            description=f"First local day (default: {analytics.DEFAULT_DAYS - 1} days "
            "before the last).",
        ),
        end: date | None = Query(
            None,
            ge=FIRST_DAY,
            le=LAST_DAY,
            description="Last local day, inclusive (default: today on the selected "
            "stores' clocks, in their time zone).",
        ),
        hour_from: int = Query(0, ge=0, le=23, description="Local hours from (inclusive)."),
        hour_to: int = Query(24, ge=1, le=24, description="Local hours to (exclusive); wraps."),
    ) -> None:
        self.stores = tuple(s.strip() for s in (stores or "").split(",") if s.strip())
        self.start, self.end = start, end  # defaults need the stores' time zones: scope_for
        self.hour_from, self.hour_to = hour_from, hour_to


def _table(
    db: Database, chart: str, f: Filters, caller: Caller, sale_link: visit_sales.LinkWindows
) -> tuple[analytics.Table, analytics.Scope]:
    build = analytics.CHARTS.get(chart)
    if build is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no chart {chart!r}; charts: {', '.join(analytics.CHARTS)}",
        )
    try:
        stores = caller.stores_in_scope(f.stores)  # an ops user limited to stores: 403 or theirs
        scope = analytics.scope_for(
            db, f.start, f.end, stores, f.hour_from, f.hour_to, sale_link=sale_link
        )
    except analytics.ScopeError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return build(db, scope), scope


def _csv(table: analytics.Table, scope: analytics.Scope) -> Response:
    name = f"storelens-{table.chart}-{scope.start}-{scope.end}.csv"
    return Response(
        table.to_csv(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("", summary="The charts available")
def list_charts(_: Caller = Depends(require_ops("analyst"))) -> dict[str, str]:
    return CHART_DOCS


@router.get(
    "/{chart}.csv",
    summary="One chart's rows as CSV",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def chart_csv(
    chart: str,
    f: Filters = Depends(),
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_ops("analyst")),
    sale_link: visit_sales.LinkWindows = Depends(get_sale_link),
) -> Response:
    return _csv(*_table(db, chart, f, caller, sale_link))


@router.get(
    "/{chart}",
    response_model=ChartOut,
    summary="One chart's rows as JSON (or CSV with format=csv)",
    responses={200: {"content": {"text/csv": {}}}},
)
def chart_json(
    chart: str,
    f: Filters = Depends(),
    format: Literal["json", "csv"] = Query("json", description="json or csv."),
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_ops("analyst")),
    sale_link: visit_sales.LinkWindows = Depends(get_sale_link),
) -> Any:
    table, scope = _table(db, chart, f, caller, sale_link)
    if format == "csv":
        return _csv(table, scope)
    return table.to_json(scope.describe())
