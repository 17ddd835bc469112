"""Ship-from-store and pick-up-in-store: routing online orders to stores (`rules`, `router`),
the store's task workflow (`workflow`, `states`), deadlines (`deadlines`), the POS and ops
read side (`tasks`) and the link to the orders domain (`intake`, `progress`).

Its tables (`tables.MIGRATIONS`) and its hooks (routing on order creation,
forget-me) are declared in `HOOKS` and collected by `cloud/db/schema.py` with every other
domain's into each process's `Services` (cloud/hooks.py).
"""

from storelens.cloud.fulfillment import intake, tables

MIGRATIONS = tables.MIGRATIONS
HOOKS = [("order_created", intake.route_new_order), ("member_forgotten", intake.forget_member)]

__all__ = ["HOOKS", "MIGRATIONS", "intake", "tables"]
