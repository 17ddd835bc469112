"""Named hook points between cloud domains, as a value the composition root owns.

A domain that reacts to another's events declares it, without registering anything on import:

    HOOKS = [("member_forgotten", forget_member), ("order_created", _on_order_created)]

The storage root (`cloud/db/schema.py`, which already collects every domain's migrations)
collects what each listed component declares into a `Hooks` (`schema.declared_hooks`), and the
process's `Services` holds it (cloud/services.py). Whoever runs a point is handed the `Hooks`:
the ingest worker by its constructor, the service functions by their ``hooks`` parameter. No
module keeps a list of hooks, so two `Services` in one process (tests, the demo) stay apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

# The points and who runs them (arguments each hook receives):
POINTS: tuple[str, ...] = (
    "events_stored",  # ingest/worker.py, after each committed batch: (db, member rows)
    "order_created",  # commerce/orders.py, inside the order's transaction: (db, order_id)
    "member_forgotten",  # commerce/members.py forget, in its transaction: (db, member_id, token)
    "member_enrolled",  # commerce/members.py enroll, in its transaction: (db, member_id)
    "tracking_withdrawn",  # commerce/members.py set_consent: (db, member_id)
)

Hook = Callable[..., Any]
Declared = Iterable[tuple[str, Hook]]


class Hooks:
    """The hooks of each point, in the order they were declared (immutable once built)."""

    def __init__(self, declared: Mapping[str, Declared] | None = None) -> None:
        """``declared``: owner (a component's module name) -> its ``HOOKS``; a hook declared
        twice runs once."""
        by_point: dict[str, list[Hook]] = {point: [] for point in POINTS}
        for owner, hooks in (declared or {}).items():
            for point, hook in hooks:
                if point not in by_point:
                    raise ValueError(
                        f"{owner}: unknown hook point {point!r}; one of {sorted(POINTS)}"
                    )
                if hook not in by_point[point]:
                    by_point[point].append(hook)
        self._by_point = {point: tuple(hooks) for point, hooks in by_point.items()}

    def __getitem__(self, point: str) -> tuple[Hook, ...]:
        return self._by_point[point]

    def __repr__(self) -> str:
        counts = ", ".join(f"{p}={len(h)}" for p, h in self._by_point.items())
        return f"Hooks({counts})"
