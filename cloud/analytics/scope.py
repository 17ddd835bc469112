"""What an analytics query looks at: stores, a local date range, hours of the day.

Every chart reads events in *store-local* time: "footfall at 10:00" means 10:00 on the store's
clock. Timestamps are epoch seconds (UTC) in the database; a store's UTC offset is added in SQL
(one ``CASE`` over the selected stores) so bucketing stays a single portable aggregation on
SQLite and PostgreSQL. Offsets are fixed for a query (taken at the middle of the period), so a
DST switch inside the period shifts that part by an hour; that is the price of one GROUP BY.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_S = 86_400
HOUR_S = 3_600
MAX_DAYS = 366

if TYPE_CHECKING:
    from storelens.cloud.commerce.visit_sales import LinkWindows


class ScopeError(ValueError):
    """A filter that cannot be answered (bad dates, hours out of range)."""


@dataclass(frozen=True)
class Scope:
    """Filters of one analytics request. ``end`` is inclusive; hours are ``[hour_from, hour_to)``
    in local time and wrap past midnight when ``hour_from > hour_to`` (e.g. 22-2)."""

    start: date
    end: date
    stores: tuple[str, ...] = ()
    hour_from: int = 0
    hour_to: int = 24
    offsets: Mapping[str, int] = field(default_factory=dict)
    # True: answer from the raw events (the system of record) instead of the rollups; the
    # rollup tests compare both, and `describe` leaves it out (the numbers are the same).
    raw: bool = False
    # The service's sale-to-visit windows, for the charts that link pending sales before they
    # read (None: the defaults); settings, not a filter, so `describe` leaves it out too.
    sale_link: LinkWindows | None = None
    # store -> time zone name ("" for none) of every store, as `scope_for` read them: the
    # rollup reads group stores by zone without reading the stores again (empty: they do).
    zones: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ScopeError(f"end {self.end} is before start {self.start}")
        if self.days > MAX_DAYS:
            raise ScopeError(f"at most {MAX_DAYS} days per query, got {self.days}")
        if not (0 <= self.hour_from <= 23 and 1 <= self.hour_to <= 24):
            raise ScopeError("hours must satisfy 0 <= hour_from <= 23 and 1 <= hour_to <= 24")
        if self.hour_from == self.hour_to:
            raise ScopeError("hour_from and hour_to must differ")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def all_hours(self) -> bool:
        return self.hour_from == 0 and self.hour_to == 24

    def hour_selected(self, hour: int) -> bool:
        if self.hour_from < self.hour_to:
            return self.hour_from <= hour < self.hour_to
        return hour >= self.hour_from or hour < self.hour_to

    def contains(self, store: str, ts: float) -> bool:
        """Whether ``where`` holds for a row of ``store`` at ``ts`` (in Python)."""
        if self.stores and store not in self.stores:
            return False
        local = ts + int(self.offsets.get(store, 0) or 0)
        day = date(1970, 1, 1) + timedelta(days=int(local // DAY_S))
        if not self.start <= day <= self.end:
            return False
        return self.all_hours or self.hour_selected(int(local // HOUR_S) % 24)

    def previous(self) -> Scope:
        """The period of equal length just before this one (same stores and hours)."""
        span = timedelta(days=self.days)
        return replace(self, start=self.start - span, end=self.end - span)

    def describe(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "stores": list(self.stores),
            "hour_from": self.hour_from,
            "hour_to": self.hour_to,
        }

    # -- SQL ------------------------------------------------------------------------------
    def local_ts(self, alias: str = "", ts: str = "ts") -> tuple[str, list[Any]]:
        """SQL for the store-local epoch of a row (its ``ts`` plus the store's offset)."""
        col = f"{alias}." if alias else ""
        used = self._shifted()
        if not used:
            return f"{col}{ts}", []
        whens = " ".join("WHEN ? THEN " + str(int(o)) for o in used.values())
        return f"({col}{ts} + CASE {col}store {whens} ELSE 0 END)", list(used)

    def _shifted(self) -> dict[str, int]:
        """The selected stores' non-zero offsets (any other store's local time is UTC)."""
        return {
            s: o for s, o in self.offsets.items() if o and (not self.stores or s in self.stores)
        }

    def where(self, alias: str = "", ts: str = "ts") -> tuple[str, list[Any]]:
        """Conditions on store, local date range and local hour; AND-able to any WHERE.
        The table needs a ``store`` column and an epoch column (``ts`` unless named)."""
        col = f"{alias}." if alias else ""
        # Whole seconds as integers: PostgreSQL compares a BIGINT column (the rollups' ts) with
        # a float parameter as NUMERIC, which no index on it serves (a scan of the whole kind).
        lo = int(datetime.combine(self.start, time(), UTC).timestamp())
        hi = int(datetime.combine(self.end + timedelta(days=1), time(), UTC).timestamp())
        lts, lts_params = self.local_ts(alias, ts)
        # The plain ts bounds let an index on ts do the coarse cut; the local bounds are exact.
        # They are padded by the scope's own offsets, not by the widest zone's (+14 h): the
        # rows of the padding are scanned (their local ts computed) only to be dropped.
        shifts = {0, *(int(o) for o in self._shifted().values())}
        parts = [f"{col}{ts} >= ?", f"{col}{ts} < ?", f"{lts} >= ?", f"{lts} < ?"]
        params: list[Any] = [lo - max(shifts), hi - min(shifts)]
        params += lts_params + [lo] + lts_params + [hi]
        if self.stores:
            parts.append(f"{col}store IN ({', '.join('?' for _ in self.stores)})")
            params += list(self.stores)
        if not self.all_hours:
            hour, hour_params = self.local_hour(alias, ts)
            if self.hour_from < self.hour_to:
                parts.append(f"{hour} >= ? AND {hour} < ?")
            else:
                parts.append(f"({hour} >= ? OR {hour} < ?)")
            params += hour_params + [self.hour_from] + hour_params + [self.hour_to]
        return " AND ".join(parts), params

    def local_hour(self, alias: str = "", ts: str = "ts") -> tuple[str, list[Any]]:
        lts, params = self.local_ts(alias, ts)
        return f"(CAST(FLOOR({lts} / 3600.0) AS BIGINT) % 24)", params

    def bucket(self, seconds: int, alias: str = "") -> tuple[str, list[Any]]:
        """SQL for the local bucket start (epoch seconds, local clock) of width ``seconds``."""
        lts, params = self.local_ts(alias)
        return f"(CAST(FLOOR({lts} / {float(seconds)}) AS BIGINT) * {int(seconds)})", params


def local_label(bucket_epoch: float, *, daily: bool) -> str:
    """ISO text of a local bucket start (a "naive" local clock value, no offset)."""
    moment = datetime.fromtimestamp(bucket_epoch, UTC).replace(tzinfo=None)
    return moment.date().isoformat() if daily else moment.isoformat(timespec="minutes")


def utc_offsets(timezones: Mapping[str, str | None], on: date) -> dict[str, int]:
    """Seconds east of UTC for each store's IANA time zone on ``on`` (unknown zones: UTC)."""
    noon = datetime.combine(on, time(12))
    offsets: dict[str, int] = {}
    for store, name in timezones.items():
        if not name:
            offsets[store] = 0
            continue
        try:
            delta = noon.replace(tzinfo=ZoneInfo(name)).utcoffset()
        except (ZoneInfoNotFoundError, ValueError):
            delta = None
        offsets[store] = int(delta.total_seconds()) if delta else 0
    return offsets


def local_today(timezones: Iterable[str | None], now: datetime | None = None) -> date:
    """Today's date on the clock of the store furthest ahead (UTC's when there are none).

    A period that ends here holds every selected store's "today": at 23:40 UTC a Paris store is
    already on the next day, so a UTC-dated default would leave its live events out."""
    now = now or datetime.now(UTC)
    days = [now.date()] if not timezones else []
    for name in timezones:
        try:
            days.append(now.astimezone(ZoneInfo(name)).date() if name else now.date())
        except (ZoneInfoNotFoundError, ValueError):
            days.append(now.date())
    return max(days)
