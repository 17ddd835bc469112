"""The storage root: imports every domain module that owns tables, so `connect()` registers
their migrations, and installs the hooks each declares in `HOOKS` (cloud/hooks.py): one place
that wires the domains together, instead of each registering itself when imported.

Add a domain here when it declares `register_migrations(...)` or `HOOKS`. Order matters only
for foreign keys between components, and for the order hooks of one point run in.
"""

import importlib

from storelens.cloud import hooks

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


def install() -> None:
    """Import every component (registering its migrations) and install the hooks each
    declares; idempotent. Called by `Database.migrate`, so importing this module wires
    nothing."""
    for name in COMPONENTS:
        hooks.install(getattr(importlib.import_module(name), "HOOKS", ()), owner=name)
