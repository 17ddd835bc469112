"""The ranges a store's numbers can have, for every number that crosses the API or the wire.

One place for them so a price, a quantity, a stock movement or a timestamp means the same
range wherever it is accepted: anything outside (and every NaN or infinity) is refused at the
edge with a 422 that names the field, before it can reach storage (where SQLite would store
it, or silently turn an overflowing integer into a REAL, and PostgreSQL would refuse it).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

# 2000-01-01 .. 2100-01-01 UTC: older history is not a store's; later is a wrong clock.
MIN_EPOCH_S = 946_684_800.0
MAX_EPOCH_S = 4_102_444_800.0
MAX_PRICE = 1_000_000.0  # one unit; a currency amount (discount, minimum spend) likewise
MAX_UNITS = 10_000_000  # units of one SKU in one store
MAX_LINE_QTY = 10_000  # units on one sale or order line
MAX_STORED_INT = 2**63 - 1  # a BIGINT, on both backends

# Event times the cloud accepts: never from the future beyond a small clock drift of the
# device (relative to the cloud's clock when it hears the message), never before MIN_EPOCH_S
# (a device sends late what its outbox kept, but not from before stores had it). Outside,
# the whole message is dead-lettered as `clock_skew`.
MAX_FUTURE_SKEW_S = 600.0

Price = Annotated[float, Field(ge=0, le=MAX_PRICE, allow_inf_nan=False)]
Amount = Price
Quantity = Annotated[int, Field(ge=1, le=MAX_LINE_QTY)]
StockLevel = Annotated[int, Field(ge=0, le=MAX_UNITS)]
StockDelta = Annotated[int, Field(ge=-MAX_UNITS, le=MAX_UNITS)]
EpochSeconds = Annotated[float, Field(ge=MIN_EPOCH_S, le=MAX_EPOCH_S, allow_inf_nan=False)]
Coordinate = Annotated[float, Field(allow_inf_nan=False)]
SmallCount = Annotated[int, Field(ge=0, le=1_000_000)]  # capacities, minutes, priorities

__all__ = [
    "MAX_EPOCH_S",
    "MAX_FUTURE_SKEW_S",
    "MAX_LINE_QTY",
    "MAX_PRICE",
    "MAX_UNITS",
    "MIN_EPOCH_S",
    "Amount",
    "Coordinate",
    "EpochSeconds",
    "Price",
    "Quantity",
    "SmallCount",
    "StockDelta",
    "StockLevel",
]
