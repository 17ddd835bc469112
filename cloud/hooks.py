"""Named hook points between cloud domains, filled in one place.

A domain that reacts to another's events declares it, without registering anything on import:

    HOOKS = [("member_forgotten", forget_member), ("order_created", _on_order_created)]

and the storage root (`cloud/db/schema.py`, which already collects every domain's
migrations) installs what each listed component declares, once per process, before any
database is used. The hook lists themselves stay with the domain that calls them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

# point -> (module, list attribute) of the domain that runs the hooks.
POINTS: dict[str, tuple[str, str]] = {
    "events_stored": ("storelens.cloud.ingest.worker", "on_events_stored"),
    "order_created": ("storelens.cloud.commerce.orders", "on_order_created"),
    "member_forgotten": ("storelens.cloud.commerce.members", "on_member_forgotten"),
    "member_enrolled": ("storelens.cloud.commerce.members", "on_member_enrolled"),
    "tracking_withdrawn": ("storelens.cloud.commerce.members", "on_tracking_withdrawn"),
}

Declared = Iterable[tuple[str, Callable[..., Any]]]


def install(declared: Declared, *, owner: str = "") -> None:
    """Add each declared hook to its point's list (idempotent: a hook is added once)."""
    for point, hook in declared:
        if point not in POINTS:
            raise ValueError(f"{owner}: unknown hook point {point!r}; one of {sorted(POINTS)}")
        module, attr = POINTS[point]
        hooks: list = getattr(importlib.import_module(module), attr)
        if hook not in hooks:
            hooks.append(hook)
