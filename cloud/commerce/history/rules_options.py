"""Builds `HistoryRules` from command-line text, with one clear error per bad option."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from storelens.cloud.commerce.history.reader import HistoryFormatError, HistoryRules


def rules_from_options(
    *, exclude_skus: str | None = None, exclude_pattern: str | None = None,
    cancelled_prefix: str | None = None, timezone: str = "UTC", date_format: str | None = None,
) -> HistoryRules:  # fmt: skip
    try:
        pattern = re.compile(exclude_pattern) if exclude_pattern else None
    except re.error as exc:
        raise HistoryFormatError(f"bad --exclude-pattern: {exc}") from None
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise HistoryFormatError(f"unknown --timezone {timezone!r}") from None
    skus = frozenset(s.strip() for s in (exclude_skus or "").split(",") if s.strip())
    return HistoryRules(
        exclude_skus=skus,
        exclude_pattern=pattern,
        cancelled_prefix=cancelled_prefix or None,
        timezone=zone,
        date_format=date_format,
    )
