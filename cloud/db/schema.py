"""The storage root: collects the migrations every domain module declares in `MIGRATIONS`,
in the order of `COMPONENTS`, and the hooks each declares in `HOOKS` (cloud/hooks.py; the
process's `Services` holds them): one place that wires the domains together, instead of each
registering itself when imported.

Add a domain here when it declares `MIGRATIONS` or `HOOKS`. Order matters: a component's
migrations run after those of the components listed before it (``events_partitions`` in
`storelens.cloud.db.retention` rewrites the ``events`` table of `storelens.cloud.ingest.events`;
foreign keys point to earlier components), and hooks of one point run in this order.
"""

import importlib

from storelens.cloud.db.base import Migration
from storelens.cloud.hooks import Hooks

COMPONENTS: tuple[str, ...] = (
    "storelens.cloud.commerce.stores",
    "storelens.cloud.commerce.catalog",
    "storelens.cloud.ingest.events",
    "storelens.cloud.analytics.rollups.sql",
    "storelens.cloud.db.retention",
    "storelens.cloud.commerce.members",
    "storelens.cloud.commerce.orders",
    "storelens.cloud.fulfillment",
    "storelens.cloud.commerce.sales",
    "storelens.cloud.commerce.visit_sales",
    "storelens.cloud.api.principals",
    "storelens.cloud.personalization.coupons",
    "storelens.cloud.personalization.offers",
    "storelens.cloud.personalization.scoring_plans",
    "storelens.cloud.personalization.handoff",
    "storelens.cloud.personalization.scoring",
    "storelens.cloud.commerce.till",
    "storelens.cloud.personalization.interactions",
    "storelens.cloud.commerce.history.importer",
    "storelens.cloud.personalization.propensity",
    "storelens.cloud.personalization.recommend.artifacts",
)


def declared_hooks(components: tuple[str, ...] = COMPONENTS) -> Hooks:
    """The hooks ``components`` declare, a new value each call (a `Services` holds it)."""
    return Hooks({name: getattr(importlib.import_module(name), "HOOKS", ()) for name in components})


def declared_migrations() -> list[Migration]:
    """Every component's migrations, components in `COMPONENTS` order, each in its own."""
    return [
        m for name in COMPONENTS for m in getattr(importlib.import_module(name), "MIGRATIONS", ())
    ]
