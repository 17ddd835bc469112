"""The storage root: imports every domain module that owns tables, so `connect()` registers
their migrations, and installs the hooks each declares in `HOOKS` (cloud/hooks.py): one place
that wires the domains together, instead of each registering itself when imported.

Add a domain here when it declares `register_migrations(...)` or `HOOKS`. Order matters only
for foreign keys between components, and for the order hooks of one point run in.
"""

import importlib

from storelens.cloud import hooks

COMPONENTS: tuple[str, ...] = (
    "storelens.cloud.stores",
    "storelens.cloud.catalog",
    "storelens.cloud.events",
    "storelens.cloud.rollups.sql",
    "storelens.cloud.retention",
    "storelens.cloud.members",
    "storelens.cloud.orders",
    "storelens.cloud.fulfillment",
    "storelens.cloud.sales",
    "storelens.cloud.visit_sales",
    "storelens.cloud.auth",
    "storelens.cloud.coupons",
    "storelens.cloud.offers",
    "storelens.cloud.scoring_plans",
    "storelens.cloud.handoff",
    "storelens.cloud.scoring",
    "storelens.cloud.till",
    "storelens.cloud.interactions",
    "storelens.cloud.history.importer",
    "storelens.cloud.propensity",
)

for _name in COMPONENTS:
    hooks.install(getattr(importlib.import_module(_name), "HOOKS", ()), owner=_name)
