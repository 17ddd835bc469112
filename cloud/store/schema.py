"""Imports every domain module that owns tables, so `connect()` registers their migrations.

Add a domain here when it declares `register_migrations(...)`. Order matters only for
foreign keys between components.
"""

import importlib

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
    importlib.import_module(_name)
